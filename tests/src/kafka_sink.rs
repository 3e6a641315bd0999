//! The Kafka sink on a real broker (noida-db): Spark's columns and options, `COPY … STORED AS
//! KAFKA` and `INSERT INTO` a Kafka table, records read back byte for byte with an independent
//! consumer, Kafka → Kafka incremental runs, and bad input.

use faisca::Session;

use crate::kafka_brokers::{Broker, Consumed, Kind, now_ms};

async fn session() -> Session {
    Session::builder().master("local[2]").build().await.unwrap()
}

async fn run(session: &Session, sql: &str) -> u64 {
    let df = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = crate::common::normalized_rows(
        &df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")),
    );
    rows.first().and_then(|r| r.parse().ok()).unwrap_or(0)
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

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `(key, value)` of each record, as text, in partition and offset order.
fn pairs(records: &[Consumed]) -> Vec<(Option<String>, Option<String>)> {
    records
        .iter()
        .map(|r| (text(&r.key), text(&r.value)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_sparks_columns_and_reads_them_back_byte_for_byte() {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    for (topic, partitions) in [
        ("plain", 1),
        ("keyed", 3),
        ("red", 2),
        ("blue", 2),
        ("forced", 1),
    ] {
        broker.create_topic(topic, partitions).await;
    }
    let session = session().await;

    // value only (a string), through COPY; a null value is a tombstone.
    let n = run(
        &session,
        &format!(
            "COPY (SELECT * FROM (VALUES ('a'), ('b'), (NULL)) AS t(value)) TO 'plain' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}')"
        ),
    )
    .await;
    assert_eq!(n, 3);
    let plain = broker.consume_all("plain").await;
    let mut values: Vec<_> = plain.iter().map(|r| text(&r.value)).collect();
    values.sort();
    assert_eq!(values, [None, Some("a".into()), Some("b".into())]);
    assert!(
        plain
            .iter()
            .all(|r| r.key.is_none() && r.headers.is_empty())
    );

    // Binary key and value (bytes that are not UTF-8), explicit partitions, headers with a null
    // value, through a DataFrame; extra columns are ignored, as in Spark.
    let df = session
        .sql(
            "SELECT * FROM (VALUES (0, 'k0'), (1, 'k1'), (2, 'k2'), (3, 'k3'), (4, 'k4'), (5, 'k5')) AS t(i, k)",
        )
        .await
        .unwrap()
        .select_expr(&[
            "CAST(k AS BYTEA) AS key",
            "decode(concat('ff00', lpad(to_hex(i), 2, '0')), 'hex') AS value",
            "CAST(i % 3 AS BIGINT) AS partition",
            "make_array(named_struct('key', 'n', 'value', CAST(CAST(i AS VARCHAR) AS BYTEA)), named_struct('key', 'nil', 'value', CAST(NULL AS BYTEA))) AS headers",
            "i AS ignored",
        ])
        .unwrap();
    let sent = df
        .write()
        .format("kafka")
        .option("kafka.bootstrap.servers", s)
        .option("topic", "keyed")
        .option("kafka.linger.ms", "0")
        .save()
        .await
        .unwrap();
    assert_eq!(sent, 6);
    let keyed = broker.consume_all("keyed").await;
    assert_eq!(keyed.len(), 6);
    for r in &keyed {
        let i: i64 = text(&r.key).unwrap()[1..].parse().unwrap();
        assert_eq!(r.partition as i64, i % 3, "{r:?}");
        assert_eq!(
            r.value.as_deref(),
            Some(&[0xff, 0x00, i as u8][..]),
            "{r:?}"
        );
        assert_eq!(
            r.headers,
            [
                ("n".to_string(), Some(i.to_string().into_bytes())),
                ("nil".to_string(), None)
            ]
        );
    }
    // Records of one task keep their order within a partition.
    let p0: Vec<_> = keyed
        .iter()
        .filter(|r| r.partition == 0)
        .map(|r| text(&r.key).unwrap())
        .collect();
    assert_eq!(p0, ["k0", "k3"]);

    // A `topic` column routes rows to several topics; the `topic` option overrides it.
    let routed =
        "SELECT * FROM (VALUES ('red', 'r1'), ('blue', 'b1'), ('red', 'r2')) AS t(topic, value)";
    let n = run(
        &session,
        &format!(
            "COPY ({routed}) TO 'forced' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}')"
        ),
    )
    .await;
    assert_eq!(n, 3);
    assert_eq!(broker.consume_all("forced").await.len(), 3);
    let df = session.sql(routed).await.unwrap();
    let n = df
        .write()
        .format("kafka")
        .option("kafka.bootstrap.servers", s)
        .save()
        .await
        .unwrap();
    assert_eq!(n, 3);
    let mut red: Vec<_> = pairs(&broker.consume_all("red").await)
        .into_iter()
        .map(|(_, v)| v.unwrap())
        .collect();
    red.sort();
    assert_eq!(red, ["r1", "r2"]);
    assert_eq!(
        pairs(&broker.consume_all("blue").await),
        [(None, Some("b1".to_string()))]
    );

    // Written records read back through the source, headers included.
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE keyed STORED AS KAFKA LOCATION 'keyed' OPTIONS ('kafka.bootstrap.servers' '{s}', 'includeHeaders' 'true')"
        ))
        .await
        .unwrap();
    let back = crate::common::normalized_rows(
        &session
            .sql("SELECT CAST(key AS VARCHAR), encode(value, 'hex'), partition, CAST(headers[1]['value'] AS VARCHAR) FROM keyed")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    assert!(back.contains(&"k4|ff0004|1|4".to_string()), "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insert_into_a_kafka_table_and_copy_send_the_same_records_and_append() {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    broker.create_topic("by-insert", 2).await;
    broker.create_topic("by-copy", 2).await;
    let session = session().await;
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE sink STORED AS KAFKA LOCATION 'by-insert' OPTIONS ('kafka.bootstrap.servers' '{s}')"
        ))
        .await
        .unwrap();
    let rows = "SELECT CAST(n AS VARCHAR) AS key, concat('v', CAST(n AS VARCHAR)) AS value FROM (SELECT unnest(range(1, 51)) AS n)";
    let n = run(
        &session,
        &format!("INSERT INTO sink (key, value) SELECT key, value FROM ({rows})"),
    )
    .await;
    assert_eq!(n, 50);
    let copy = format!(
        "COPY ({rows}) TO 'by-copy' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}')"
    );
    assert_eq!(run(&session, &copy).await, 50);
    let strip = |records: Vec<Consumed>| {
        let mut v: Vec<_> = records
            .into_iter()
            .map(|r| (r.partition, r.key, r.value))
            .collect();
        v.sort();
        v
    };
    let inserted = strip(broker.consume_all("by-insert").await);
    let copied = strip(broker.consume_all("by-copy").await);
    // Same records, and the same partition for each key (Java's murmur2 partitioner).
    assert_eq!(inserted, copied);
    assert!(inserted.iter().any(|r| r.0 == 0) && inserted.iter().any(|r| r.0 == 1));
    // A second COPY appends; so does `errorifexists`.
    assert_eq!(run(&session, &copy).await, 50);
    assert_eq!(broker.consume_all("by-copy").await.len(), 100);
    let df = session.sql(rows).await.unwrap();
    df.write()
        .format("kafka")
        .mode("errorifexists")
        .option("kafka.bootstrap.servers", s)
        .option("topic", "by-copy")
        .save()
        .await
        .unwrap();
    assert_eq!(broker.consume_all("by-copy").await.len(), 150);
    // Java's partitioner: key "1" goes where murmur2 puts it, as a Java producer would.
    let one = copied
        .iter()
        .find(|r| r.1.as_deref() == Some(b"1".as_slice()))
        .unwrap();
    assert_eq!(one.0, java_partition(b"1", 2));
}

/// The partition Kafka's Java client picks for `key`: murmur2, positive, modulo.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let mut h: u32 = seed ^ key.len() as u32;
    let chunks = key.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_to_kafka_runs_send_each_record_once_and_a_run_stopped_before_its_commit_resends_only_its_own()
 {
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    let (input, output) = (format!("in-{}", now_ms()), format!("out-{}", now_ms()));
    broker.create_topic(&input, 2).await;
    broker.create_topic(&output, 2).await;
    broker.produce_values(&input, 0, "a", 4).await;
    broker.produce_values(&input, 1, "b", 3).await;
    let checkpoint = tempfile::tempdir().unwrap();
    let cp = format!("file://{}/cp", checkpoint.path().display());
    let session = session().await;
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE source STORED AS KAFKA LOCATION '{input}' OPTIONS ('kafka.bootstrap.servers' '{s}', 'startingOffsets' 'latest', 'checkpointLocation' '{cp}')"
        ))
        .await
        .unwrap();
    let job = format!(
        "COPY (SELECT key, upper(CAST(value AS VARCHAR)) AS value FROM source) TO '{output}' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}')"
    );
    let values = |records: Vec<Consumed>| {
        let mut v: Vec<String> = records.iter().map(|r| text(&r.value).unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(run(&session, &job).await, 7);
    assert_eq!(run(&session, &job).await, 0);
    broker.produce_values(&input, 1, "c", 2).await;
    assert_eq!(run(&session, &job).await, 2);
    assert_eq!(
        values(broker.consume_all(&output).await),
        ["A0", "A1", "A2", "A3", "B0", "B1", "B2", "C0", "C1"]
    );

    // A run whose records were delivered but whose checkpoint commit never happened: the next
    // run sends that batch again (and only that batch), then new records once.
    broker.produce_values(&input, 0, "d", 2).await;
    session
        .sql("SET faisca.test.stopBeforeSourceCommit = true")
        .await
        .unwrap();
    let e = error(&session, &job).await;
    assert!(e.contains("stopBeforeSourceCommit"), "{e}");
    session
        .sql("SET faisca.test.stopBeforeSourceCommit = false")
        .await
        .unwrap();
    broker.produce_values(&input, 1, "e", 1).await;
    assert_eq!(run(&session, &job).await, 2);
    assert_eq!(run(&session, &job).await, 1);
    assert_eq!(run(&session, &job).await, 0);
    assert_eq!(
        values(broker.consume_all(&output).await),
        [
            "A0", "A1", "A2", "A3", "B0", "B1", "B2", "C0", "C1", "D0", "D0", "D1", "D1", "E0"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_kafka_writes_fail_with_the_thing_named() {
    let broker = Broker::start(Kind::Noida);
    let servers = broker.servers.clone();
    let s = &servers;
    broker.create_topic("t", 1).await;
    let session = session().await;
    let copy = |query: &str, options: &str| {
        format!(
            "COPY ({query}) TO 't' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}'{options})"
        )
    };
    // Planning: columns, options, save modes.
    let e = error(&session, &copy("SELECT 'x' AS v", "")).await;
    assert!(
        e.contains("needs a 'value' column") && e.contains("the rows have v"),
        "{e}"
    );
    let e = error(&session, &copy("SELECT 42 AS value", "")).await;
    assert!(
        e.contains("column 'value' is Int64") && e.contains("binary or string"),
        "{e}"
    );
    let e = error(&session, &copy("SELECT 'x' AS value, 'p' AS partition", "")).await;
    assert!(e.contains("column 'partition' is Utf8"), "{e}");
    let e = error(
        &session,
        &copy("SELECT 'x' AS value", ", 'kafka.acks' 'most'"),
    )
    .await;
    assert!(e.contains("'kafka.acks'"), "{e}");
    let e = error(&session, &copy("SELECT 'x' AS value", ", 'subscribe' 't'")).await;
    assert!(e.contains("unknown Kafka write option 'subscribe'"), "{e}");
    let df = session.sql("SELECT 'x' AS value").await.unwrap();
    let write = || {
        df.clone()
            .write()
            .format("kafka")
            .option("kafka.bootstrap.servers", s)
    };
    let e = write().save().await.unwrap_err().to_string();
    assert!(e.contains("needs a topic"), "{e}");
    let e = write()
        .mode("overwrite")
        .option("topic", "t")
        .save()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Save mode Overwrite not allowed for Kafka"),
        "{e}"
    );
    assert!(broker.consume_all("t").await.is_empty());

    // Running: a topic that does not exist (and is not created), a record too large.
    let e = write()
        .option("topic", "no-such-topic")
        .option("kafka.allow.auto.create.topics", "false")
        .save()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Kafka topic 'no-such-topic' does not exist"),
        "{e}"
    );
    let e = error(
        &session,
        &copy(
            "SELECT repeat('x', 2000000) AS value",
            ", 'kafka.message.max.bytes' '1000000'",
        ),
    )
    .await;
    assert!(
        e.contains("topic 't'") && e.contains("message.max.bytes"),
        "{e}"
    );

    // A broker that is gone: the write fails within the delivery timeout, naming it.
    drop(broker);
    let e = error(
        &session,
        &copy(
            "SELECT 'x' AS value",
            ", 'kafka.delivery.timeout.ms' '3000'",
        ),
    )
    .await;
    assert!(e.contains(s.as_str()) && e.contains("'t'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_read_as_a_table_keeps_the_latest_value_per_key_however_tasks_split_it() {
    use std::collections::BTreeMap;

    use crate::kafka_brokers::Record;
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    broker.create_topic("users", 3).await;
    // Upserts and tombstones over three partitions; one key may be in several partitions, and
    // timestamps within a partition go back and forth (the offset still decides there).
    let base = now_ms() - 3_600_000;
    let mut produced: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for i in 0..300i64 {
        let partition = (i % 3) as i32;
        let key = (i % 29 != 0).then(|| format!("k{}", (i * 7) % 23));
        let mut record = Record::new(key.as_deref(), &format!("v{i}"));
        if i % 11 == 0 {
            record.value = None;
        }
        record.timestamp_ms = Some(base + ((i * 37) % 100) * 1000);
        produced.entry(partition).or_default().push(record);
    }
    for (partition, records) in &produced {
        broker.produce("users", *partition, records).await;
    }
    // The dictionary the records describe.
    let mut per_partition: BTreeMap<(String, i32), (i64, &Record)> = BTreeMap::new();
    for (partition, records) in &produced {
        for (offset, r) in records.iter().enumerate() {
            if let Some(key) = &r.key {
                per_partition.insert((key.clone(), *partition), (offset as i64, r));
            }
        }
    }
    let mut winners: BTreeMap<String, (i64, i32, i64, &Record)> = BTreeMap::new();
    for ((key, partition), (offset, r)) in per_partition {
        let candidate = (r.timestamp_ms.unwrap(), partition, offset, r);
        let entry = winners.entry(key).or_insert(candidate);
        if (candidate.0, candidate.1) > (entry.0, entry.1) {
            *entry = candidate;
        }
    }
    let mut expected: Vec<String> = winners
        .into_iter()
        .filter_map(|(key, (_, partition, offset, r))| {
            r.value
                .as_ref()
                .map(|v| format!("{key}|{v}|users|{partition}|{offset}"))
        })
        .collect();
    expected.sort();
    assert!(expected.len() > 10 && expected.len() < 23, "{expected:?}");

    let session = session().await;
    session
        .sql("SET faisca.kafka.maxRecordsPerTask = 7")
        .await
        .unwrap();
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE users STORED AS KAFKA LOCATION 'users' OPTIONS ('kafka.bootstrap.servers' '{s}', 'asTable' 'true')"
        ))
        .await
        .unwrap();
    let query = "SELECT CAST(key AS VARCHAR), CAST(value AS VARCHAR), topic, partition, \"offset\" FROM users";
    let mut rows =
        crate::common::normalized_rows(&session.sql(query).await.unwrap().collect().await.unwrap());
    rows.sort();
    assert_eq!(rows, expected);
    // The records without a key were skipped and counted in the job's metrics, once each
    // although the scan ran as many tasks.
    let null_keys = produced
        .values()
        .flatten()
        .filter(|r| r.key.is_none())
        .count() as u64;
    assert!(null_keys > 5);
    let jobs = session.client().list_jobs().await.unwrap();
    // The query is the session's latest job.
    let job = jobs
        .iter()
        .filter(|j| j.session_id == session.id())
        .max_by_key(|j| (j.submitted_unix_ms, j.job_id.clone()))
        .expect("the query's job");
    assert_eq!(
        job.metrics.get("kafka.nullKeyRecordsSkipped"),
        Some(&null_keys),
        "{job:?}"
    );
    assert!(job.stages[0].tasks > 3, "{job:?}");
    // The scan is split into many tasks, merged by key.
    let plan = crate::common::normalized_rows(
        &session
            .sql(&format!("EXPLAIN {query}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    )
    .join("\n");
    assert!(plan.contains("KafkaScan"), "{plan}");
    // The same through a DataFrame reader, with its timestamp column.
    let df = session
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", s)
        .option("subscribe", "users")
        .option("asTable", "true")
        .load()
        .await
        .unwrap();
    assert_eq!(df.count().await.unwrap() as usize, expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_to_kafka_job_re_encodes_avro_with_the_schema_registered_under_its_subject() {
    use crate::kafka::{AVRO_PERSON, avro_person};
    use crate::schema_registry::{TestRegistry, framed};
    let registry = TestRegistry::start(&[], None);
    let broker = Broker::start(Kind::Noida);
    let s = &broker.servers;
    let (input, output) = (
        format!("people-{}", now_ms()),
        format!("shout-{}", now_ms()),
    );
    broker.create_topic(&input, 2).await;
    broker.create_topic(&output, 2).await;
    // A producer's records: its schema registered under `<topic>-value`, values framed with its id.
    let id = registry.register(&format!("{input}-value"), AVRO_PERSON);
    let people: Vec<(i64, Option<&str>)> = vec![(1, Some("ana")), (2, None), (3, Some("rui"))];
    let producer = broker.producer();
    for (i, (pid, name)) in people.iter().enumerate() {
        let value = framed(id, &avro_person(*pid, *name));
        let key = format!("p{pid}");
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&input)
                    .partition(i as i32 % 2)
                    .key(&key)
                    .payload(&value),
                std::time::Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let session = session().await;
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE people STORED AS KAFKA LOCATION '{input}' OPTIONS ('kafka.bootstrap.servers' '{s}')"
        ))
        .await
        .unwrap();
    let address = &registry.address;
    // The output schema differs from the input's (id is an int, name a string without null).
    let shout = r#"{"type":"record","name":"shout","fields":[{"name":"id","type":"int"},{"name":"name","type":"string"}]}"#;
    let subject = format!("{output}-value");
    let job = format!(
        "COPY (SELECT key, to_avro(named_struct('id', CAST(p['id'] * 10 AS INT), 'name', upper(coalesce(p['name'], '?'))), '{shout}', MAP {{'schemaRegistryAddress': '{address}', 'subject': '{subject}'}}) AS value \
         FROM (SELECT key, from_avro(value, '{AVRO_PERSON}', MAP {{'schemaRegistryAddress': '{address}'}}) AS p FROM people)) \
         TO '{output}' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{s}')"
    );
    assert_eq!(run(&session, &job).await, 3);
    // The writer schema was registered under the subject, once, with a new id.
    let versions = registry.versions(&subject);
    assert_eq!(versions.len(), 1, "{versions:?}");
    let out_id = versions[0];
    assert_ne!(out_id, id);

    // Each value is framed with that id; the datum is Avro's encoding of the new record
    // (int zig-zag, then a string: length zig-zag, bytes), checked by hand here.
    let mut got: Vec<(String, Vec<u8>)> = broker
        .consume_all(&output)
        .await
        .into_iter()
        .map(|r| (text(&r.key).unwrap(), r.value.unwrap()))
        .collect();
    got.sort();
    let expected: Vec<(String, Vec<u8>)> = [(1, "ANA"), (2, "?"), (3, "RUI")]
        .iter()
        .map(|(pid, name)| {
            let mut datum = vec![(pid * 10 * 2) as u8, (name.len() * 2) as u8];
            datum.extend_from_slice(name.as_bytes());
            (format!("p{pid}"), framed(out_id, &datum))
        })
        .collect();
    assert_eq!(got, expected);

    // Read back through the registry with from_avro.
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE shouts STORED AS KAFKA LOCATION '{output}' OPTIONS ('kafka.bootstrap.servers' '{s}')"
        ))
        .await
        .unwrap();
    let df = session
        .sql(&format!(
            "SELECT v['id'], v['name'] FROM (SELECT from_avro(value, '{shout}', MAP {{'schemaRegistryAddress': '{address}'}}) AS v FROM shouts) ORDER BY 1"
        ))
        .await
        .unwrap();
    assert_eq!(
        crate::common::normalized_rows(&df.collect().await.unwrap()),
        ["10|ANA", "20|?", "30|RUI"]
    );

    // A second run registers nothing new (the same schema has the same id); with
    // autoRegisterSchemas off, a subject without the schema is an error naming it.
    assert_eq!(run(&session, &job).await, 3);
    assert_eq!(registry.versions(&subject), [out_id]);
    let missing = job
        .replace(&subject, "nobody-value")
        .replace("'subject'", "'autoRegisterSchemas': 'false', 'subject'");
    let e = error(&session, &missing).await;
    assert!(
        e.contains("subject 'nobody-value'") && e.contains("autoRegisterSchemas"),
        "{e}"
    );
}
