//! The Kafka source on real Kafka-protocol brokers (noida-db, and Tansu when installed): Spark's
//! options and row schema, exact offset ranges, incremental `latest` runs with a checkpoint, data
//! loss, unreachable brokers, and request errors injected with librdkafka's mock cluster.

use std::time::{Duration, Instant};

use faisca::Session;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::common::normalized_rows;
use crate::kafka_brokers::{Broker, Kind, Record, now_ms, tansu_program};
use crate::schema_registry::{TestRegistry, framed};

async fn session() -> Session {
    Session::builder().master("local[2]").build().await.unwrap()
}

async fn rows(session: &Session, sql: &str) -> Vec<String> {
    let df = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    normalized_rows(&df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

async fn error(session: &Session, sql: &str) -> String {
    match session.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df
            .collect()
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} succeeded"))
            .to_string(),
    }
}

async fn count(session: &Session, table: &str) -> u64 {
    let r = rows(session, &format!("SELECT count(*) FROM {table}")).await;
    r[0].parse().unwrap()
}

/// `CREATE EXTERNAL TABLE name STORED AS KAFKA LOCATION 'location' OPTIONS (…)`.
async fn create(
    session: &Session,
    name: &str,
    location: &str,
    servers: &str,
    options: &[(&str, &str)],
) {
    let mut all = vec![format!("'kafka.bootstrap.servers' '{servers}'")];
    all.extend(options.iter().map(|(k, v)| format!("'{k}' '{v}'")));
    let sql = format!(
        "CREATE EXTERNAL TABLE {name} STORED AS KAFKA LOCATION '{location}' OPTIONS ({})",
        all.join(", ")
    );
    session
        .sql(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub(crate) const AVRO_PERSON: &str = r#"{"type":"record","name":"person","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]}]}"#;

/// One `AVRO_PERSON` datum in Avro's binary encoding.
pub(crate) fn avro_person(id: i64, name: Option<&str>) -> Vec<u8> {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut out = Vec::new();
    long(id, &mut out);
    match name {
        None => long(0, &mut out),
        Some(s) => {
            long(1, &mut out);
            long(s.len() as i64, &mut out);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// `AVRO_PERSON` with an optional `email` added (a compatible evolution).
const AVRO_PERSON_V2: &str = r#"{"type":"record","name":"person","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]},{"name":"email","type":["null","string"],"default":null}]}"#;

/// One `AVRO_PERSON_V2` datum.
fn avro_person_v2(id: i64, name: Option<&str>, email: &str) -> Vec<u8> {
    let mut out = avro_person(id, name);
    out.push(2); // Union branch 1 (string), zig-zag encoded.
    out.push((email.len() as u8) << 1);
    out.extend_from_slice(email.as_bytes());
    out
}

async fn explain(session: &Session, sql: &str) -> String {
    rows(session, &format!("EXPLAIN {sql}")).await.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_exact_ranges_with_sparks_schema() {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    broker.create_topic("events", 3).await;
    let base = now_ms() - 3_600_000;
    let timed: Vec<Record> = (0..10)
        .map(|i| Record {
            timestamp_ms: Some(base + i * 1000),
            ..Record::new(Some(&format!("k{i}")), &format!("p0-{i}"))
        })
        .collect();
    broker.produce("events", 0, &timed).await;
    broker.produce_values("events", 1, "p1-", 10).await;
    broker.produce_values("events", 2, "p2-", 10).await;
    let session = session().await;

    create(&session, "events", "events", s, &[]).await;
    assert_eq!(count(&session, "events").await, 30);
    assert_eq!(
        rows(
            &session,
            "SELECT partition, min(offset), max(offset), count(*) FROM events GROUP BY partition"
        )
        .await,
        ["0|0|9|10", "1|0|9|10", "2|0|9|10"]
    );
    // Spark's schema: names, types, values.
    assert_eq!(
        rows(&session, "SELECT arrow_typeof(key), arrow_typeof(value), arrow_typeof(topic), arrow_typeof(partition), arrow_typeof(offset), arrow_typeof(timestamp), arrow_typeof(\"timestampType\") FROM events LIMIT 1").await,
        ["Binary|Binary|Utf8|Int32|Int64|Timestamp(µs, \"UTC\")|Int32"]
    );
    assert_eq!(
        rows(&session, &format!("SELECT CAST(key AS VARCHAR), CAST(value AS VARCHAR), topic, \"timestampType\", CAST(timestamp AS BIGINT) = {} FROM events WHERE partition = 0 AND offset = 3", (base + 3000) * 1000)).await,
        ["k3|p0-3|events|0|true"]
    );

    // Explicit offsets (-2 earliest, -1 latest), ending offsets.
    create(
        &session,
        "slice",
        "events",
        s,
        &[
            ("startingOffsets", r#"{"events":{"0":2,"1":-2,"2":-1}}"#),
            ("endingOffsets", r#"{"events":{"0":5,"1":3,"2":-1}}"#),
        ],
    )
    .await;
    assert_eq!(
        rows(
            &session,
            "SELECT partition, CAST(value AS VARCHAR) FROM slice"
        )
        .await,
        ["0|p0-2", "0|p0-3", "0|p0-4", "1|p1-0", "1|p1-1", "1|p1-2"]
    );
    // Timestamps: partition 0's records are an hour old, the others are new.
    create(
        &session,
        "since",
        "events",
        s,
        &[("startingTimestamp", &(base + 5000).to_string())],
    )
    .await;
    assert_eq!(count(&session, "since").await, 25);
    create(
        &session,
        "window",
        "events",
        s,
        &[
            ("startingTimestamp", &(base + 5000).to_string()),
            ("endingTimestamp", &(base + 8000).to_string()),
        ],
    )
    .await;
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM window").await,
        ["p0-5", "p0-6", "p0-7"]
    );
    // assign overrides LOCATION.
    create(
        &session,
        "one",
        "ignored",
        s,
        &[("assign", r#"{"events":[1]}"#)],
    )
    .await;
    assert_eq!(
        rows(&session, "SELECT DISTINCT partition FROM one").await,
        ["1"]
    );

    // Tasks: one per partition, cut by maxRecordsPerPartition or minPartitions; every record once.
    let plan = explain(&session, "SELECT count(*) FROM events").await;
    assert!(plan.contains("Stage 0 (tasks=3"), "{plan}");
    create(
        &session,
        "small",
        "events",
        s,
        &[("maxRecordsPerPartition", "4")],
    )
    .await;
    let plan = explain(&session, "SELECT count(*) FROM small").await;
    assert!(
        plan.contains("Stage 0 (tasks=9") && plan.contains("KafkaScanExec"),
        "{plan}"
    );
    assert_eq!(
        rows(
            &session,
            "SELECT count(*), count(DISTINCT (partition, offset)) FROM small"
        )
        .await,
        ["30|30"]
    );
    create(&session, "wide", "events", s, &[("minPartitions", "6")]).await;
    let plan = explain(&session, "SELECT count(*) FROM wide").await;
    assert!(plan.contains("Stage 0 (tasks=6"), "{plan}");
    assert_eq!(count(&session, "wide").await, 30);

    // Pattern subscription over several topics; headers.
    broker.create_topic("logs-a", 1).await;
    broker.create_topic("logs-b", 2).await;
    broker.produce_values("logs-a", 0, "a", 2).await;
    broker.produce_values("logs-b", 1, "b", 3).await;
    create(
        &session,
        "logs",
        "unused",
        s,
        &[("subscribePattern", "logs-.*")],
    )
    .await;
    assert_eq!(
        rows(&session, "SELECT topic, count(*) FROM logs GROUP BY topic").await,
        ["logs-a|2", "logs-b|3"]
    );
    broker.create_topic("tagged", 1).await;
    broker
        .produce(
            "tagged",
            0,
            &[
                Record {
                    headers: vec![
                        ("trace".into(), Some(b"abc".to_vec())),
                        ("empty".into(), None),
                    ],
                    ..Record::new(None, "with")
                },
                Record::new(None, "without"),
            ],
        )
        .await;
    create(
        &session,
        "tagged",
        "tagged",
        s,
        &[("includeHeaders", "true")],
    )
    .await;
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR), key IS NULL, cardinality(headers), headers[1]['key'], CAST(headers[1]['value'] AS VARCHAR), headers[2]['value'] IS NULL FROM tagged").await,
        ["without|true|NULL|NULL|NULL|true", "with|true|2|trace|abc|true"]
    );
    // A record with more headers than faisca.kafka.maxHeadersPerRecord fails the task, named.
    rows(&session, "SET faisca.kafka.maxHeadersPerRecord = 1").await;
    let e = error(&session, "SELECT * FROM tagged").await;
    assert!(
        e.contains("Kafka record tagged-0 at offset 0 has 2 headers")
            && e.contains("faisca.kafka.maxHeadersPerRecord (1)"),
        "{e}"
    );
    rows(&session, "SET faisca.kafka.maxHeadersPerRecord = 1000").await;

    // JSON values to columns, in SQL and with the DataFrame API.
    broker.create_topic("people", 2).await;
    broker
        .produce(
            "people",
            0,
            &[
                Record::new(None, r#"{"id": 1, "name": "ana", "tags": ["a", "b"]}"#),
                Record::new(None, "{not json"),
            ],
        )
        .await;
    broker
        .produce(
            "people",
            1,
            &[Record::new(None, r#"{"id": 2, "name": "rui"}"#)],
        )
        .await;
    create(&session, "people", "people", s, &[]).await;
    assert_eq!(
        rows(&session, "SELECT p['id'], p['name'], cardinality(p['tags']) FROM (SELECT from_json(value, 'id INT, name STRING, tags ARRAY<STRING>') AS p FROM people)").await,
        ["1|ana|2", "2|rui|NULL", "NULL|NULL|NULL"]
    );
    let people = session.table("people").await.unwrap();
    let parsed = people
        .select([faisca::functions::from_json(
            faisca::functions::col("value"),
            "id INT, name STRING",
        )
        .alias("p")])
        .unwrap()
        .select_expr(&["p['name'] AS name"])
        .unwrap()
        .filter("name IS NOT NULL")
        .unwrap();
    assert_eq!(parsed.count().await.unwrap(), 2);

    // With kafka.group.id, a run's end offsets are committed to the group (for lag monitoring).
    create(
        &session,
        "grouped",
        "events",
        s,
        &[("kafka.group.id", "faisca-lag")],
    )
    .await;
    assert_eq!(count(&session, "grouped").await, 30);
    let servers = s.clone();
    let committed = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "faisca-lag")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition("events", p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        got.elements()
            .iter()
            .map(|e| format!("{}:{:?}", e.partition(), e.offset()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(committed, ["0:Offset(10)", "1:Offset(10)", "2:Offset(10)"]);

    // Raw Avro values (Spark's from_avro with a JSON schema).
    broker.create_topic("avro", 1).await;
    let producer = broker.producer();
    for (id, name) in [(1i64, Some("ana")), (2, None)] {
        let value = avro_person(id, name);
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), [u8]>::to("avro")
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    create(&session, "avro", "avro", s, &[]).await;
    assert_eq!(
        rows(&session, &format!("SELECT p['id'], p['name'] FROM (SELECT from_avro(value, '{AVRO_PERSON}') AS p FROM avro)")).await,
        ["1|ana", "2|NULL"]
    );

    // The DataFrame reader, with Spark's option names.
    let df = session
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", s)
        .option("subscribe", "events,logs-a")
        .option(
            "endingOffsets",
            r#"{"events":{"0":1,"1":1,"2":1},"logs-a":{"0":-1}}"#,
        )
        .load()
        .await
        .unwrap();
    assert_eq!(df.count().await.unwrap(), 5);
}

/// `startingOffsets = latest` with a checkpoint, on one broker.
async fn incremental_runs(broker: &Broker) {
    let s = &broker.servers;
    let topic = format!("orders-{}", now_ms());
    broker.create_topic(&topic, 2).await;
    broker.produce_values(&topic, 0, "a", 5).await;
    broker.produce_values(&topic, 1, "b", 5).await;
    let checkpoint = tempfile::tempdir().unwrap();
    let cp = format!("file://{}/cp", checkpoint.path().display());
    let session = session().await;
    create(
        &session,
        "orders",
        &topic,
        s,
        &[("startingOffsets", "latest"), ("checkpointLocation", &cp)],
    )
    .await;
    create(
        &session,
        "everything",
        &topic,
        s,
        &[("checkpointLocation", &format!("{cp}-earliest"))],
    )
    .await;

    // A first run reads everything; then only what is new.
    assert_eq!(count(&session, "orders").await, 10);
    assert_eq!(count(&session, "orders").await, 0);
    broker.produce_values(&topic, 0, "c", 3).await;
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM orders").await,
        ["c0", "c1", "c2"]
    );
    // earliest with a checkpoint: the whole log, every run; explicit offsets: those, every run.
    assert_eq!(count(&session, "everything").await, 13);
    assert_eq!(count(&session, "everything").await, 13);
    let from = format!(r#"{{"{topic}":{{"0":6,"1":-2}}}}"#);
    create(
        &session,
        "pinned",
        &topic,
        s,
        &[
            ("startingOffsets", &from),
            ("checkpointLocation", &format!("{cp}-pinned")),
        ],
    )
    .await;
    assert_eq!(count(&session, "pinned").await, 7);
    assert_eq!(count(&session, "pinned").await, 7);

    // A run that dies after recording its ranges and before its commit is redone with the same
    // ranges, even though more records arrived since.
    broker.produce_values(&topic, 1, "d", 4).await;
    session
        .sql("SET faisca.test.failTasks = '*:1:user'")
        .await
        .unwrap();
    let e = error(&session, "SELECT count(*) FROM orders").await;
    assert!(e.contains("injected"), "{e}");
    session
        .sql("SET faisca.test.failTasks = 'none'")
        .await
        .unwrap();
    broker.produce_values(&topic, 0, "e", 2).await;
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM orders").await,
        ["d0", "d1", "d2", "d3"]
    );
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM orders").await,
        ["e0", "e1"]
    );
    let logged = std::fs::read_dir(checkpoint.path().join("cp/offsets"))
        .unwrap()
        .count();
    let committed = std::fs::read_dir(checkpoint.path().join("cp/commits"))
        .unwrap()
        .count();
    // Batches 0..=4 planned (the failed one redone under its number), all committed.
    assert_eq!((logged, committed), (5, 5));

    // Kafka → Parquet, appending each batch once.
    let lake = tempfile::tempdir().unwrap();
    let out = lake.path().join("orders").display().to_string();
    let cp2 = format!("file://{}/cp2", checkpoint.path().display());
    let read = |session: &Session| {
        session
            .read()
            .format("kafka")
            .option("kafka.bootstrap.servers", s)
            .option("subscribe", &topic)
            .option("startingOffsets", "latest")
            .option("checkpointLocation", &cp2)
    };
    let df = read(&session).load().await.unwrap();
    let written = df
        .select_expr(&["CAST(value AS VARCHAR) AS v", "partition", "offset"])
        .unwrap()
        .write()
        .mode("append")
        .parquet(&out)
        .await
        .unwrap();
    assert_eq!(written, 19);
    broker.produce_values(&topic, 1, "f", 1).await;
    let df = read(&session).load().await.unwrap();
    let written = df
        .select_expr(&["CAST(value AS VARCHAR) AS v", "partition", "offset"])
        .unwrap()
        .write()
        .mode("append")
        .parquet(&out)
        .await
        .unwrap();
    assert_eq!(written, 1);
    let lake_rows = session.read().parquet(&out).await.unwrap();
    assert_eq!(lake_rows.count().await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_reads_only_new_records_on_noida_db() {
    incremental_runs(&Broker::start(Kind::Noida)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_reads_only_new_records_on_tansu() {
    if tansu_program().is_none() {
        panic!(
            "tansu is not installed: run scripts/test.sh, which installs it (or set FAISCA_TANSU)"
        );
    }
    incremental_runs(&Broker::start(Kind::Tansu)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_kafka_options_are_named_when_the_table_is_created() {
    // Options are checked before any broker is contacted: this address never answers.
    let session = session().await;
    let create_error = |options: &'static str| {
        let session = session.clone();
        async move {
            error(&session, &format!("CREATE EXTERNAL TABLE bad STORED AS KAFKA LOCATION 't' OPTIONS ('kafka.bootstrap.servers' '127.0.0.1:9', {options})")).await
        }
    };
    let e = create_error("'startingOffsets' 'latest'").await;
    assert!(
        e.contains("'startingOffsets' is 'latest'") && e.contains("'checkpointLocation'"),
        "{e}"
    );
    let e = create_error("'startingOffset' 'earliest'").await;
    assert!(e.contains("unknown Kafka option 'startingoffset'"), "{e}");
    let e = create_error("'failOnDataLoss' 'sometimes'").await;
    assert!(e.contains("'failOnDataLoss' is 'sometimes'"), "{e}");
    let e = create_error("'kafka.auto.offset.reset' 'earliest'").await;
    assert!(
        e.contains("'kafka.auto.offset.reset' is not supported"),
        "{e}"
    );
    let e = create_error("'readAheadRanges' 'many'").await;
    assert!(e.contains("'readAheadRanges' is 'many'"), "{e}");
    let e = create_error("'readAheadRanges' '65'").await;
    assert!(
        e.contains("'readAheadRanges' is '65': expected at most 64"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_topic_is_named_when_queried() {
    let broker = Broker::start(Kind::Noida);
    let session = session().await;
    // A table is not checked against the brokers when created.
    create(&session, "ghost", "no-such-topic", &broker.servers, &[]).await;
    let e = error(&session, "SELECT * FROM ghost").await;
    assert!(
        e.contains("Kafka topic 'no-such-topic' does not exist"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_lost_since_the_last_run_fail_the_query_unless_fail_on_data_loss_is_false() {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    let session = session().await;
    // The topic is deleted and re-created with fewer records after a run.
    broker.create_topic("shrinks", 1).await;
    broker.produce_values("shrinks", 0, "old", 6).await;
    let checkpoint = tempfile::tempdir().unwrap();
    let cp = format!("file://{}/cp", checkpoint.path().display());
    create(
        &session,
        "strict",
        "shrinks",
        s,
        &[("startingOffsets", "latest"), ("checkpointLocation", &cp)],
    )
    .await;
    assert_eq!(count(&session, "strict").await, 6);
    broker.delete_topic("shrinks").await;
    broker.create_topic("shrinks", 1).await;
    broker.produce_values("shrinks", 0, "new", 2).await;
    let e = error(&session, "SELECT * FROM strict").await;
    assert!(
        e.contains("shrinks-0")
            && e.contains("stopped at offset 6")
            && e.contains("'failOnDataLoss'"),
        "{e}"
    );
    create(
        &session,
        "lenient",
        "shrinks",
        s,
        &[
            ("startingOffsets", "latest"),
            ("checkpointLocation", &cp),
            ("failOnDataLoss", "false"),
        ],
    )
    .await;
    assert_eq!(
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM lenient").await,
        ["new0", "new1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_broker_gives_up_after_bounded_retries_naming_its_address() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let session = session().await;
    session
        .sql("SET faisca.kafka.requestTimeout = '500ms'")
        .await
        .unwrap();
    create(
        &session,
        "down",
        "t",
        &dead,
        &[
            ("fetchOffset.numRetries", "1"),
            ("fetchOffset.retryIntervalMs", "100"),
        ],
    )
    .await;
    // The bound only catches a hang, far above the second or so that two 500 ms attempts take
    // on a loaded machine.
    let e = tokio::time::timeout(
        Duration::from_secs(120),
        error(&session, "SELECT * FROM down"),
    )
    .await
    .expect("a query on a dead broker gives up");
    assert!(
        e.contains(&dead) && e.contains("did not answer") && e.contains("2 time(s)"),
        "{e}"
    );
}

/// A one-broker librdkafka mock cluster with `topic` of `partitions` partitions holding
/// `records` records `"{partition}-{i}"` each; returns it and its bootstrap servers.
async fn mock_topic(
    topic: &str,
    partitions: i32,
    records: usize,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(topic, partitions, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for p in 0..partitions {
        for i in 0..records {
            producer
                .send(
                    rdkafka::producer::FutureRecord::<str, str>::to(topic)
                        .partition(p)
                        .payload(&format!("{p}-{i}")),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
    }
    (mock, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_errors_injected_by_the_mock_cluster_are_retried_exactly() {
    let (mock, servers) = mock_topic("faulty", 2, 50).await;
    let session = session().await;
    create(
        &session,
        "faulty",
        "faulty",
        &servers,
        &[("maxRecordsPerPartition", "20")],
    )
    .await;
    // Every fetch answered with transient errors first: librdkafka retries, each range is read once.
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4],
    );
    assert_eq!(
        rows(&session, "SELECT count(*), count(DISTINCT (partition, offset)), min(offset), max(offset) FROM faulty").await,
        ["100|100|0|49"]
    );
    // Offset lookups failing with a retryable error are tried again (fetchOffset.numRetries).
    mock.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 2],
    );
    assert_eq!(count(&session, "faulty").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_aborted_records_and_markers_never_stall_a_range() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("tx", 1).await;
    let servers = broker.servers.clone();
    // Committed 3, aborted 2, committed 1, and finally a transaction left open.
    let producer = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("transactional.id", "faisca-test")
            .create()
            .unwrap();
        let t = Duration::from_secs(10);
        producer.init_transactions(t).unwrap();
        let batch = |values: &[&str]| {
            producer.begin_transaction().unwrap();
            for v in values {
                producer
                    .send(BaseRecord::<(), str>::to("tx").partition(0).payload(*v))
                    .unwrap();
            }
            producer.flush(t).unwrap();
        };
        batch(&["c1", "c2", "c3"]);
        producer.commit_transaction(t).unwrap();
        batch(&["a1", "a2"]);
        producer.abort_transaction(t).unwrap();
        batch(&["c4"]);
        producer.commit_transaction(t).unwrap();
        batch(&["open"]);
        producer
    })
    .await
    .unwrap();
    let session = session().await;
    create(
        &session,
        "tx",
        "tx",
        &broker.servers,
        &[("kafkaConsumer.pollTimeoutMs", "300000")],
    )
    .await;
    // The open transaction's records are past the last stable offset: the read stops there
    // rather than waiting for them until the (5-minute) poll timeout.
    let read = tokio::time::timeout(
        Duration::from_secs(120),
        rows(&session, "SELECT CAST(value AS VARCHAR) FROM tx"),
    )
    .await
    .expect("the read stops at the last stable offset, without waiting for the poll timeout");
    assert_eq!(read, ["c1", "c2", "c3", "c4"]);
    // Read uncommitted, the open and aborted records are there too.
    create(
        &session,
        "dirty",
        "tx",
        &broker.servers,
        &[("kafka.isolation.level", "read_uncommitted")],
    )
    .await;
    assert_eq!(count(&session, "dirty").await, 7);
    drop(producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_lost_while_tasks_read_fails_the_job_after_the_poll_timeout() {
    let (mock, servers) = mock_topic("lost", 2, 1).await;
    let session = session().await;
    create(
        &session,
        "lost",
        "lost",
        &servers,
        &[("kafkaConsumer.pollTimeoutMs", "1000")],
    )
    .await;
    // Tasks wait a second before they run: the broker goes away after the driver planned the ranges.
    session
        .sql("SET faisca.test.taskDelay = '*:1s'")
        .await
        .unwrap();
    session
        .sql("SET faisca.task.maxAttempts = 2")
        .await
        .unwrap();
    let client = session.client().clone();
    let query = tokio::spawn(async move { error(&session, "SELECT count(*) FROM lost").await });
    // Once the job runs, the driver has planned its ranges (its tasks are still waiting).
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_jobs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the query never became a job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mock.broker_down(1).unwrap();
    // The bound only catches a hang: the poll timeout (1 s) ends each attempt.
    let message = tokio::time::timeout(Duration::from_secs(120), query)
        .await
        .expect("the job fails after the poll timeout instead of waiting for the broker")
        .unwrap();
    assert!(
        message.contains("sent no record") && message.contains("kafkaConsumer.pollTimeoutMs"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confluent_framed_avro_is_read_with_the_registrys_writer_schemas() {
    // faisca:secret
    let registry = TestRegistry::start(
        &[(1, AVRO_PERSON), (2, AVRO_PERSON_V2)],
        Some("ZmFpc2NhOnNlY3JldA=="),
    );
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    broker.create_topic("people", 1).await;
    broker.create_topic("odd", 1).await;
    let producer = broker.producer();
    let send = |topic: &'static str, value: Option<Vec<u8>>| {
        let producer = producer.clone();
        async move {
            let mut record = rdkafka::producer::FutureRecord::<(), [u8]>::to(topic).partition(0);
            if let Some(v) = &value {
                record = record.payload(v);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
        }
    };
    // Two writer schemas in one topic, and a null value.
    send("people", Some(framed(1, &avro_person(1, Some("ana"))))).await;
    send(
        "people",
        Some(framed(2, &avro_person_v2(2, None, "b@x.pt"))),
    )
    .await;
    send("people", None).await;
    send("people", Some(framed(1, &avro_person(3, None)))).await;
    // Not framed; framed with an id the registry lacks; a truncated datum.
    send("odd", Some(b"plain text".to_vec())).await;
    send("odd", Some(framed(99, &avro_person(4, None)))).await;
    send("odd", Some(framed(1, &avro_person(5, Some("cut"))[..3]))).await;

    let session = session().await;
    create(&session, "people", "people", s, &[]).await;
    create(&session, "odd", "odd", s, &[]).await;
    let address = &registry.address;
    let with_registry = format!(
        "MAP {{'schemaRegistryAddress': '{address}', 'basic.auth.user.info': 'faisca:secret'}}"
    );
    let people = format!(
        "SELECT offset, p['id'], p['name'], p['email'] FROM (SELECT offset, from_avro(value, '{AVRO_PERSON_V2}', {with_registry}) AS p FROM people) ORDER BY offset"
    );
    let expected = [
        "0|1|ana|NULL",
        "1|2|NULL|b@x.pt",
        "2|NULL|NULL|NULL",
        "3|3|NULL|NULL",
    ];
    assert_eq!(rows(&session, &people).await, expected);
    assert_eq!(rows(&session, &people).await, expected);
    // The DataFrame API, with Spark's from_avro(data, jsonFormatSchema, options).
    let emails = session
        .table("people")
        .await
        .unwrap()
        .select([faisca::functions::from_avro_with_options(
            faisca::functions::col("value"),
            AVRO_PERSON_V2,
            &[
                ("schemaRegistryAddress", address.as_str()),
                ("basic.auth.user.info", "faisca:secret"),
            ],
        )
        .alias("p")])
        .unwrap()
        .select_expr(&["p['email'] AS email"])
        .unwrap()
        .filter("email IS NOT NULL")
        .unwrap();
    assert_eq!(emails.count().await.unwrap(), 1);
    // Each executor asks once per id; local[2] executors share this process.
    assert_eq!(registry.requests("/schemas/ids/1"), 1);
    assert_eq!(registry.requests("/schemas/ids/2"), 1);
    // Read with the older schema: the newer field is dropped (Avro schema resolution).
    assert_eq!(
        rows(&session, &format!("SELECT o, p FROM (SELECT offset AS o, from_avro(value, '{AVRO_PERSON}', {with_registry}) AS p FROM people) ORDER BY o")).await,
        ["0|{id: 1, name: ana}", "1|{id: 2, name: }", "2|NULL", "3|{id: 3, name: }"]
    );

    let odd = |offset: i64, options: &str| {
        format!(
            "SELECT p['id'] FROM (SELECT from_avro(value, '{AVRO_PERSON}', {options}) AS p FROM odd WHERE offset = {offset})"
        )
    };
    let e = error(&session, &odd(0, &with_registry)).await;
    assert!(
        e.contains("value 0 of this batch is not in the Confluent Schema Registry wire format")
            && e.contains("PERMISSIVE"),
        "{e}"
    );
    let e = error(&session, &odd(1, &with_registry)).await;
    assert!(
        e.contains("no schema with id 99") && e.contains(address.as_str()),
        "{e}"
    );
    let e = error(&session, &odd(2, &with_registry)).await;
    assert!(e.contains("not one Avro datum"), "{e}");
    // PERMISSIVE: nulls for values that are not datums; an unknown id is still an error.
    let permissive = format!(
        "MAP {{'schemaRegistryAddress': '{address}', 'basic.auth.user.info': 'faisca:secret', 'mode': 'permissive'}}"
    );
    assert_eq!(
        rows(&session, &format!("SELECT offset, from_avro(value, '{AVRO_PERSON}', {permissive})['id'] FROM odd WHERE offset <> 1 ORDER BY offset")).await,
        ["0|NULL", "2|NULL"]
    );
    // Wrong credentials, an unreachable registry, bad options: errors naming them.
    let e = error(
        &session,
        &odd(1, &format!("MAP {{'schemaRegistryAddress': '{address}'}}")),
    )
    .await;
    assert!(
        e.contains("401") && e.contains("schemaRegistryAddress"),
        "{e}"
    );
    let e = error(
        &session,
        &odd(
            1,
            "MAP {'schemaRegistryAddress': 'http://127.0.0.1:1', 'schemaRegistryTimeout': '2s'}",
        ),
    )
    .await;
    assert!(
        e.contains("cannot reach the schema registry") && e.contains("127.0.0.1:1"),
        "{e}"
    );
    let e = error(&session, &odd(1, "MAP {'schemaRegistryUrl': 'x'}")).await;
    assert!(e.contains("no option 'schemaRegistryUrl'"), "{e}");
    let e = error(&session, &odd(1, "MAP {'mode': 'lenient'}")).await;
    assert!(e.contains("'mode' is 'lenient'"), "{e}");
    // Raw values with options (no registry): PERMISSIVE applies the same way.
    assert_eq!(
        rows(&session, &format!("SELECT from_avro(value, '{AVRO_PERSON}', MAP {{'mode': 'PERMISSIVE'}}) IS NULL FROM odd WHERE offset = 0")).await,
        ["true"]
    );
}

/// Range reader options for `servers` (a 20 s poll timeout).
fn reader_options(
    servers: &str,
    read_ahead: usize,
) -> faisca_connectors::kafka::options::ReadOptions {
    faisca_connectors::kafka::options::ReadOptions {
        kafka_params: [("bootstrap.servers".to_string(), servers.to_string())]
            .into_iter()
            .collect(),
        include_headers: false,
        fail_on_data_loss: true,
        poll_timeout: Duration::from_secs(20),
        read_ahead,
    }
}

/// Every value `reader` (projected to the value column) reads, as text.
async fn values_read(
    reader: &mut faisca_connectors::kafka::reader::RangeReader,
) -> Result<Vec<String>, String> {
    let mut values = Vec::new();
    while let Some(batch) = reader.next_batch().await.map_err(|e| e.to_string())? {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .unwrap();
        values.extend(
            column
                .iter()
                .map(|v| String::from_utf8(v.unwrap().to_vec()).unwrap()),
        );
    }
    Ok(values)
}

/// Reads `[start, end)` of partition 0 with a range reader of the process's consumer pool, told
/// that the partition ended at `known_end` when the range was planned (a micro-batch; `None`: a
/// batch read): the values, and whether the range went on from a consumer positioned at its start.
async fn read_range(
    servers: &str,
    topic: &str,
    [start, end]: [i64; 2],
    known_end: Option<i64>,
) -> Result<(Vec<String>, bool), String> {
    use faisca_connectors::kafka::reader::RangeReader;
    use faisca_connectors::kafka::{OffsetRange, TopicPartition};
    let read = reader_options(servers, 3);
    let range = OffsetRange {
        topic: topic.to_string(),
        partition: 0,
        start,
        end,
    };
    let partition = TopicPartition {
        topic: topic.to_string(),
        partition: 0,
    };
    let known_ends = known_end.map(|e| (partition, e)).into_iter().collect();
    let mut reader = RangeReader::new(&read, vec![range], Some(&[1]), 1000)
        .unwrap()
        .with_known_ends(std::sync::Arc::new(known_ends));
    let values = values_read(&mut reader).await?;
    Ok((values, reader.ranges_continued() == 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_range_of_a_partition_goes_on_from_the_consumer_left_where_the_last_ended() {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    broker.create_topic("positioned", 1).await;
    broker.produce_values("positioned", 0, "a", 100).await;
    let expect = |prefix: &str, from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!("{prefix}{i}")).collect()
    };
    let read =
        |range: [i64; 2], known_end: Option<i64>| read_range(s, "positioned", range, known_end);

    // Batch reads give their consumers back unassigned.
    let (values, continued) = read([0, 10], None).await.unwrap();
    assert_eq!((values, continued), (expect("a", 0, 10), false));
    let (values, continued) = read([10, 20], None).await.unwrap();
    assert_eq!((values, continued), (expect("a", 10, 20), false));

    // A micro-batch short of the partition's end leaves its consumer positioned: the next
    // batch's range of the partition reads on without a new assignment.
    let (values, continued) = read([0, 40], Some(100)).await.unwrap();
    assert_eq!((values, continued), (expect("a", 0, 40), false));
    // (Told of records past 100 that are not there yet, it stays positioned at the end.)
    let (values, continued) = read([40, 100], Some(120)).await.unwrap();
    assert_eq!((values, continued), (expect("a", 40, 100), true));
    // That consumer reached the partition's end before more records came: that end is not a
    // loss of the next range's records.
    broker.produce_values("positioned", 0, "b", 50).await;
    let (values, continued) = read([100, 150], Some(150)).await.unwrap();
    assert_eq!((values, continued), (expect("b", 0, 50), true));
    // At the partition's end it went back unassigned; elsewhere, ranges are assigned anew.
    let (values, continued) = read([150, 150], Some(150)).await.unwrap();
    assert_eq!((values, continued), (vec![], false));
    let (values, continued) = read([10, 20], Some(150)).await.unwrap();
    assert_eq!((values, continued), (expect("a", 10, 20), false));
    let (values, continued) = read([20, 150], Some(150)).await.unwrap();
    assert_eq!(values.len(), 130);
    assert!(continued);
    // A positioned consumer's end is checked, not excused: the partition ends at 150, so a
    // range to 160 names the records it lacks.
    read([140, 145], Some(160)).await.unwrap();
    let error = read([145, 160], Some(160)).await.unwrap_err();
    assert!(
        error.contains("positioned-0")
            && error.contains("[145, 160)")
            && error.contains("ends at offset 150"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_ranges_read_ahead_come_out_exactly_and_in_order() {
    use faisca_connectors::kafka::OffsetRange;
    use faisca_connectors::kafka::reader::RangeReader;
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("ahead", 4).await;
    for p in 0..4 {
        broker
            .produce_values("ahead", p, &format!("p{p}-"), 30)
            .await;
    }
    let range = |partition: i32, start: i64, end: i64| OffsetRange {
        topic: "ahead".to_string(),
        partition,
        start,
        end,
    };
    // Two ranges of partition 0 (the second goes on from the first's consumer), an empty one.
    let ranges = vec![
        range(0, 0, 10),
        range(1, 0, 30),
        range(0, 10, 30),
        range(2, 5, 25),
        range(3, 7, 7),
        range(3, 0, 30),
    ];
    let mut expected = Vec::new();
    for r in &ranges {
        expected.extend((r.start..r.end).map(|i| format!("p{}-{i}", r.partition)));
    }
    for read_ahead in [0, 1, 2, 8] {
        let read = reader_options(&broker.servers, read_ahead);
        // Small batches: ranges end inside and across them.
        let mut reader = RangeReader::new(&read, ranges.clone(), Some(&[1]), 7).unwrap();
        let values = values_read(&mut reader).await.unwrap();
        assert_eq!(values, expected, "readAheadRanges = {read_ahead}");
    }
    // A reader dropped before its ranges ahead were read leaves nothing behind for the next.
    let read = reader_options(&broker.servers, 4);
    let mut reader = RangeReader::new(&read, ranges.clone(), Some(&[1]), 3).unwrap();
    reader.next_batch().await.unwrap();
    drop(reader);
    let mut reader = RangeReader::new(&read, vec![range(2, 0, 5)], Some(&[1]), 100).unwrap();
    let values = values_read(&mut reader).await.unwrap();
    assert_eq!(
        values,
        (0..5).map(|i| format!("p2-{i}")).collect::<Vec<_>>()
    );
}
