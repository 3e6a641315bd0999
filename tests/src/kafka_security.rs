//! Kafka security against a real broker: Tansu with `--authentication` checks SCRAM
//! credentials (its users live in its SQLite storage). Spark's `kafka.sasl.jaas.config`, the
//! password from a file, a wrong password and no login, on the source and the sink.
//!
//! Neither noida-db 0.2.3 nor Tansu 0.6.0 serves TLS (Tansu parses `--cert`/`--key` but never
//! wraps its listener), so for Kafka over TLS the test puts a TLS endpoint of its own (rustls,
//! with a CA made in the test) in front of Tansu, which advertises that endpoint: librdkafka
//! then speaks TLS — and SCRAM inside it — to every broker address it uses, verifying the
//! certificate against the PEM trust store given with Spark's option names.

use std::time::{Duration, Instant};

use faisca::Session;

use crate::common::normalized_rows;
use crate::kafka_brokers::{Broker, Kind, free_port, tansu_program};

const PASSWORD: &str = "s3cret-of-alice";

fn jaas(user: &str, password: &str) -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";"
    )
}

/// A Tansu broker holding topic `orders` (5 records) and the SCRAM-SHA-512 user alice, now
/// requiring a login (and, `behind` a forwarding port, advertising that port).
async fn secured_broker(behind: Option<u16>) -> Broker {
    assert!(
        tansu_program().is_some(),
        "tansu is not installed: run scripts/test.sh, which installs it (or set FAISCA_TANSU)"
    );
    let mut broker = Broker::start(Kind::Tansu);
    broker.create_topic("orders", 1).await;
    broker.produce_values("orders", 0, "o", 5).await;
    broker.create_scram_user("alice", PASSWORD, "scram512");
    broker.restart_requiring_login(behind);
    broker
}

/// `CREATE EXTERNAL TABLE name` of topic `orders` at `servers` over SASL_PLAINTEXT with `login`.
async fn create_table(session: &Session, name: &str, servers: &str, login: &[(&str, &str)]) {
    let mut options = vec![
        format!("'kafka.bootstrap.servers' '{servers}'"),
        "'kafka.security.protocol' 'SASL_PLAINTEXT'".to_string(),
        "'fetchOffset.numRetries' '0'".to_string(),
    ];
    options.extend(login.iter().map(|(k, v)| format!("'{k}' '{v}'")));
    let sql = format!(
        "CREATE EXTERNAL TABLE {name} STORED AS KAFKA LOCATION 'orders' OPTIONS ({})",
        options.join(", ")
    );
    session.sql(&sql).await.unwrap();
}

/// Write `sql`'s rows to topic `orders`, logging in as SCRAM-SHA-512 with `options`.
async fn write_orders(
    session: &Session,
    sql: &str,
    options: &[(&str, &str)],
) -> faisca::Result<u64> {
    let mut writer = session
        .sql(sql)
        .await
        .unwrap()
        .write()
        .format("kafka")
        .option("kafka.sasl.mechanism", "SCRAM-SHA-512")
        .option("topic", "orders");
    for (key, value) in options {
        writer = writer.option(key, value);
    }
    writer.save().await
}

async fn count(session: &Session, table: &str) -> Result<String, String> {
    let df = session
        .sql(&format!("SELECT count(*) FROM {table}"))
        .await
        .map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(normalized_rows(&batches).join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scram_logins_read_and_write_and_refusals_name_the_principal() {
    let broker = secured_broker(None).await;
    let s = &broker.servers;
    let session = Session::builder()
        .master("local[2]")
        .config("faisca.kafka.requestTimeout", "5s")
        .build()
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let password_file = password_file.display().to_string();

    // Spark's JAAS form, translated to librdkafka's user and password.
    let jaas_ok = jaas("alice", PASSWORD);
    create_table(
        &session,
        "by_jaas",
        s,
        &[
            ("kafka.sasl.mechanism", "SCRAM-SHA-512"),
            ("kafka.sasl.jaas.config", &jaas_ok),
        ],
    )
    .await;
    assert_eq!(count(&session, "by_jaas").await.unwrap(), "5");

    // librdkafka's names, the password from a file.
    create_table(
        &session,
        "by_file",
        s,
        &[
            ("kafka.sasl.mechanisms", "SCRAM-SHA-512"),
            ("kafka.sasl.username", "alice"),
            ("kafka.sasl.password.file", &password_file),
        ],
    )
    .await;
    assert_eq!(count(&session, "by_file").await.unwrap(), "5");

    // A wrong password: refused at once (not after retries), naming the user, never the
    // password.
    let jaas_bad = jaas("alice", "not-her-password");
    create_table(
        &session,
        "wrong",
        s,
        &[
            ("kafka.sasl.mechanism", "SCRAM-SHA-512"),
            ("kafka.sasl.jaas.config", &jaas_bad),
        ],
    )
    .await;
    let started = Instant::now();
    let error = count(&session, "wrong").await.unwrap_err();
    assert!(
        error.contains("refused the login of user 'alice' (SASL SCRAM-SHA-512)"),
        "{error}"
    );
    assert!(!error.contains("not-her-password"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    // An unknown user is refused the same way.
    let jaas_nobody = jaas("mallory", PASSWORD);
    create_table(
        &session,
        "nobody",
        s,
        &[
            ("kafka.sasl.mechanism", "SCRAM-SHA-256"),
            ("kafka.sasl.jaas.config", &jaas_nobody),
        ],
    )
    .await;
    let error = count(&session, "nobody").await.unwrap_err();
    assert!(error.contains("user 'mallory'"), "{error}");

    // No login at all: the broker answers nothing but the handshake; the error names the
    // brokers.
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE anonymous STORED AS KAFKA LOCATION 'orders' OPTIONS ('kafka.bootstrap.servers' '{s}', 'fetchOffset.numRetries' '0')"
        ))
        .await
        .unwrap();
    let error = count(&session, "anonymous").await.unwrap_err();
    assert!(error.contains(s.as_str()), "{error}");

    // The sink logs in the same way: records written as alice are read back.
    let three = "SELECT CAST(concat('w', CAST(i AS VARCHAR)) AS BYTEA) AS value FROM (VALUES (1), (2), (3)) AS t(i)";
    let written = write_orders(
        &session,
        three,
        &[
            ("kafka.bootstrap.servers", s),
            ("kafka.security.protocol", "SASL_PLAINTEXT"),
            ("kafka.sasl.jaas.config", &jaas_ok),
        ],
    )
    .await
    .unwrap();
    assert_eq!(written, 3);
    assert_eq!(count(&session, "by_jaas").await.unwrap(), "8");

    // A write with a wrong password fails naming the user; nothing is written.
    let error = write_orders(
        &session,
        "SELECT CAST('x' AS BYTEA) AS value",
        &[
            ("kafka.bootstrap.servers", s),
            ("kafka.security.protocol", "SASL_PLAINTEXT"),
            ("kafka.sasl.jaas.config", &jaas_bad),
            ("kafka.message.timeout.ms", "10000"),
        ],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("user 'alice'"), "{error}");
    assert!(!error.contains("not-her-password"), "{error}");
    assert_eq!(count(&session, "by_jaas").await.unwrap(), "8");
}

/// A plain Tansu broker holding topic `events` (2 records), and its port: reached as
/// `localhost`, it advertises itself as `127.0.0.1`.
async fn events_broker() -> (Broker, String) {
    assert!(
        tansu_program().is_some(),
        "tansu is not installed: run scripts/test.sh, which installs it (or set FAISCA_TANSU)"
    );
    let broker = Broker::start(Kind::Tansu);
    broker.create_topic("events", 1).await;
    broker.produce_values("events", 0, "e", 2).await;
    let port = broker.servers.rsplit(':').next().unwrap().to_string();
    (broker, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brokers_advertised_outside_the_allowed_locations_are_refused() {
    let (_broker, port) = events_broker().await;
    // Reached as localhost, the broker advertises itself as 127.0.0.1: reads would connect
    // there, so the rule must allow that address too.
    let bootstrap = format!("localhost:{port}");
    let table = format!(
        "CREATE EXTERNAL TABLE events STORED AS KAFKA LOCATION 'events' OPTIONS ('kafka.bootstrap.servers' '{bootstrap}', 'kafka.broker.address.family' 'v4')"
    );
    let allowing = |rule: String| async move {
        Session::builder()
            .master("local[1]")
            .config("faisca.sql.allowedLocations", rule)
            .build()
            .await
            .unwrap()
    };
    let only_bootstrap = allowing(format!("kafka://{bootstrap}")).await;
    only_bootstrap.sql(&table).await.unwrap();
    // Refused by the driver's check of the metadata, or where its planning client connects,
    // whichever comes first.
    let error = count(&only_bootstrap, "events").await.unwrap_err();
    assert!(
        error.contains(&format!("kafka://127.0.0.1:{port}"))
            && error.contains("faisca.sql.allowedLocations"),
        "{error}"
    );
    only_bootstrap.stop().await;
    let both = allowing(format!("kafka://{bootstrap},kafka://127.0.0.1:{port}")).await;
    both.sql(&table).await.unwrap();
    assert_eq!(count(&both, "events").await.unwrap(), "2");
    both.stop().await;
}

/// Executors' clients are held to the rule where librdkafka connects, not only where the
/// driver planned: a range reader and a producer made with a rule naming only the bootstrap
/// broker (reached as localhost) are refused the broker the metadata advertises (127.0.0.1), and
/// say so instead of waiting for records or deliveries; with both named they read and write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_clients_are_refused_advertised_brokers_where_they_connect() {
    use std::sync::Arc;

    use datafusion::arrow::array::BinaryArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use faisca_common::locations::AllowedLocations;
    use faisca_connectors::kafka::OffsetRange;
    use faisca_connectors::kafka::options::ReadOptions;
    use faisca_connectors::kafka::reader::RangeReader;
    use faisca_connectors::kafka::sink::{SinkColumns, SinkOptions, TaskProducer};

    let (_broker, port) = events_broker().await;
    let bootstrap = format!("localhost:{port}");
    let params = |extra: &[(&str, &str)]| {
        [
            ("bootstrap.servers", bootstrap.as_str()),
            ("broker.address.family", "v4"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let read = ReadOptions {
        kafka_params: params(&[]),
        include_headers: false,
        fail_on_data_loss: true,
        poll_timeout: Duration::from_secs(20),
        read_ahead: 0,
    };
    let range = OffsetRange {
        topic: "events".into(),
        partition: 0,
        start: 0,
        end: 2,
    };
    let only_bootstrap = AllowedLocations::parse(&format!("kafka://{bootstrap}"));
    let both = AllowedLocations::parse(&format!("kafka://{bootstrap},kafka://127.0.0.1:{port}"));
    let refused_at = format!("'kafka://127.0.0.1:{port}' is outside faisca.sql.allowedLocations");

    let started = Instant::now();
    let mut reader = RangeReader::new(&read, vec![range.clone()], None, 100)
        .unwrap()
        .with_allowed(only_bootstrap.clone());
    let error = reader.next_batch().await.unwrap_err().to_string();
    assert!(
        error.contains(&refused_at) && error.contains("not connecting"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the poll timeout"
    );
    let mut reader = RangeReader::new(&read, vec![range], None, 100)
        .unwrap()
        .with_allowed(both.clone());
    let batch = reader.next_batch().await.unwrap().expect("records");
    assert_eq!(batch.num_rows(), 2);

    let sink = SinkOptions {
        topic: Some("events".into()),
        producer: params(&[("message.timeout.ms", "20000")]),
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        DataType::Binary,
        false,
    )]));
    let rows = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(BinaryArray::from(vec![&b"x"[..], &b"y"[..]]))],
    )
    .unwrap();
    let columns = SinkColumns::of(&schema).unwrap();
    let started = Instant::now();
    let mut producer = TaskProducer::new(&sink, &only_bootstrap).unwrap();
    let sent = producer.send_batch(&rows, &columns).await;
    let error = match sent {
        Err(e) => e,
        Ok(()) => producer.finish().await.unwrap_err(),
    }
    .to_string();
    assert!(
        error.contains(&refused_at) && error.contains("not connecting"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the delivery timeout"
    );
    let mut producer = TaskProducer::new(&sink, &both).unwrap();
    producer.send_batch(&rows, &columns).await.unwrap();
    assert_eq!(producer.finish().await.unwrap(), 2);
}

/// A TLS endpoint on 127.0.0.1:`port` requiring a client certificate signed by `ca` (mutual
/// TLS) and forwarding each connection, decrypted, to `target`, until the returned task is
/// aborted (dropping every connection with it).
async fn tls_endpoint(
    port: u16,
    target: String,
    (cert, key): (&std::path::Path, &std::path::Path),
    ca: &std::path::Path,
) -> tokio::task::JoinHandle<()> {
    let mut config = faisca_common::FaiscaConfig::default();
    config
        .set("faisca.ssl.caFile", &ca.display().to_string())
        .unwrap();
    config.set("faisca.ssl.clientAuth", "required").unwrap();
    config
        .set("faisca.ssl.certFile", &cert.display().to_string())
        .unwrap();
    config
        .set("faisca.ssl.keyFile", &key.display().to_string())
        .unwrap();
    let tls =
        faisca_common::tls::ServerTls::new(&config.tls_settings().unwrap(), "kafka", b"kafka")
            .unwrap()
            .expect("a certificate");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tls, target) = (tls.clone(), target.clone());
            connections.spawn(async move {
                let Ok(mut client) = tls.accept(stream).await else {
                    return;
                };
                // Faísca's server TLS lets a client without a certificate finish the handshake
                // (its gRPC servers then refuse it with a clear status): this endpoint closes.
                if client
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_none_or(|c| c.is_empty())
                {
                    return;
                }
                let Ok(mut broker) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scram_over_mutual_tls_with_sparks_pem_trust_and_key_stores() {
    let dir = tempfile::tempdir().unwrap();
    let authority = crate::tls::Authority::new("kafka-test-ca");
    let ca = authority.write(dir.path(), "ca.pem");
    let (cert, key) = crate::tls::write_pair(dir.path(), "broker", authority.issue("broker"));
    // The client's certificate and key in one PEM file: Java's PEM key store.
    let (client_cert, client_key) = authority.issue("alice-client");
    let keystore = dir.path().join("client.pem");
    std::fs::write(&keystore, format!("{client_cert}{client_key}")).unwrap();
    let other_ca = crate::tls::Authority::new("another-ca").write(dir.path(), "other.pem");
    let port = free_port();
    let broker = secured_broker(Some(port)).await;
    let endpoint = tls_endpoint(port, broker.servers.clone(), (&cert, &key), &ca).await;
    let session = Session::builder()
        .master("local[2]")
        .config("faisca.kafka.requestTimeout", "5s")
        .build()
        .await
        .unwrap();
    let jaas_ok = jaas("alice", PASSWORD);
    let key_store = format!(
        ", 'kafka.ssl.keystore.type' 'PEM', 'kafka.ssl.keystore.location' '{}'",
        keystore.display()
    );
    let table = |name: &str, trust: &std::path::Path, key_store: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} STORED AS KAFKA LOCATION 'orders' OPTIONS ('kafka.bootstrap.servers' '127.0.0.1:{port}', 'kafka.security.protocol' 'SASL_SSL', 'kafka.sasl.mechanism' 'SCRAM-SHA-512', 'kafka.sasl.jaas.config' '{jaas_ok}', 'kafka.ssl.truststore.location' '{}', 'kafka.ssl.truststore.type' 'PEM', 'fetchOffset.numRetries' '0'{key_store})",
            trust.display()
        )
    };
    session
        .sql(&table("over_tls", &ca, &key_store))
        .await
        .unwrap();
    assert_eq!(count(&session, "over_tls").await.unwrap(), "5");
    // Without a client certificate, the endpoint closes the connection.
    session.sql(&table("anonymous_tls", &ca, "")).await.unwrap();
    let error = count(&session, "anonymous_tls").await.unwrap_err();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    // A trust store of another CA: the handshake fails, and the error says why.
    session
        .sql(&table("untrusted", &other_ca, &key_store))
        .await
        .unwrap();
    let error = count(&session, "untrusted").await.unwrap_err();
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && error.contains("certificate verify failed"),
        "{error}"
    );
    // The sink speaks TLS the same way.
    let servers = format!("127.0.0.1:{port}");
    let keystore = keystore.display().to_string();
    let written = write_orders(
        &session,
        "SELECT CAST('tls' AS BYTEA) AS value",
        &[
            ("kafka.bootstrap.servers", &servers),
            ("kafka.security.protocol", "SASL_SSL"),
            ("kafka.sasl.jaas.config", &jaas_ok),
            ("kafka.ssl.ca.location", &ca.display().to_string()),
            ("kafka.ssl.certificate.location", &keystore),
            ("kafka.ssl.key.location", &keystore),
        ],
    )
    .await
    .unwrap();
    assert_eq!(written, 1);
    assert_eq!(count(&session, "over_tls").await.unwrap(), "6");
    endpoint.abort();
}
