//! Kafka-protocol brokers for the tests, on free 127.0.0.1 ports, stopped when dropped:
//! noida-db (PyPI, installed by the test command) and, when installed, Tansu. Plus topic creation
//! and producing through librdkafka.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Which broker program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// noida-db: in memory, fast, transactions.
    Noida,
    /// Tansu: SQLite storage; no topic auto-creation, no transactions.
    Tansu,
}

/// A running broker.
pub struct Broker {
    child: Child,
    /// `host:port` for `kafka.bootstrap.servers`.
    pub servers: String,
    /// Which one.
    pub kind: Kind,
    /// The port it tells clients to use (its own, unless something forwards to it).
    advertised: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // The whole group: noida-db's script runs the broker as a child of its own.
        faisca_bench::local_kafka::kill_group(&mut self.child);
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("faisca-ci")
}

fn program(variable: &str, fallback: PathBuf) -> Option<PathBuf> {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .or(Some(fallback))
        .filter(|p| p.exists())
}

/// The noida-db program (`FAISCA_NOIDA_DB`, or the test command's venv).
pub fn noida_program() -> PathBuf {
    program(
        "FAISCA_NOIDA_DB",
        cache_dir().join("venv-kafka/bin/noida-db"),
    )
    .expect("noida-db not found: run scripts/test.sh, which installs it (or set FAISCA_NOIDA_DB)")
}

/// The Tansu program (`FAISCA_TANSU`, or the test command's install), if installed.
pub fn tansu_program() -> Option<PathBuf> {
    program("FAISCA_TANSU", cache_dir().join("tansu/bin/tansu"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Start a broker of `kind` and wait until it accepts connections.
    pub fn start(kind: Kind) -> Broker {
        let port = free_port();
        let advertised = port;
        let dir = tempfile::Builder::new()
            .prefix("faisca-kafka-")
            .tempdir()
            .unwrap();
        let child = Self::launch(kind, port, advertised, dir.path(), &[]);
        Broker {
            child,
            servers: format!("127.0.0.1:{port}"),
            kind,
            advertised,
            _dir: dir,
        }
    }

    /// Stop this Tansu broker and start it again on the same port and storage with
    /// `--authentication`: every client must then log in with SASL (SCRAM users made with
    /// [`Self::create_scram_user`] before). With `behind`, it then tells clients to connect to
    /// 127.0.0.1:`behind` (where the test forwards to it) instead of its own port.
    pub fn restart_requiring_login(&mut self, behind: Option<u16>) {
        if let Some(port) = behind {
            self.advertised = port;
        }
        assert_eq!(self.kind, Kind::Tansu, "only Tansu checks SASL credentials");
        faisca_bench::local_kafka::kill_group(&mut self.child);
        let port: u16 = self.servers.rsplit(':').next().unwrap().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "Tansu did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Self::launch(
            self.kind,
            port,
            self.advertised,
            self._dir.path(),
            &["--authentication"],
        );
    }

    /// A SCRAM user (`mechanism`: `scram256` or `scram512`) in this Tansu broker's storage, made
    /// with Tansu's own client (AlterUserScramCredentials).
    pub fn create_scram_user(&self, name: &str, password: &str, mechanism: &str) {
        let output = Command::new(tansu_program().expect("tansu is installed"))
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://{}", self.servers))
            .args(["--mechanism", mechanism, name, password])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tansu user create {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn launch(
        kind: Kind,
        port: u16,
        advertised: u16,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> Child {
        let mut command = match kind {
            Kind::Noida => {
                let mut c = Command::new(noida_program());
                c.args([
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    &port.to_string(),
                ])
                .arg("--data-dir")
                .arg(dir);
                c
            }
            Kind::Tansu => {
                let mut c = Command::new(tansu_program().expect("tansu is installed"));
                let url = format!("tcp://127.0.0.1:{port}");
                let advertised = format!("tcp://127.0.0.1:{advertised}");
                c.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &advertised,
                ])
                // Tansu opens a sqlite:// file relative to its working directory.
                .args(["--storage-engine", "sqlite://tansu.db"])
                .args(extra)
                .current_dir(dir);
                c
            }
        };
        let log = dir.join("broker.log");
        let child = faisca_bench::local_kafka::in_own_group(&mut command)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {kind:?}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{kind:?} did not start on port {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        c
    }

    /// Create `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => panic!("creating topic {t}: {e}"),
            }
        }
    }

    /// Delete `topic` (noida-db only: Tansu deletes every topic).
    pub async fn delete_topic(&self, topic: &str) {
        assert_eq!(
            self.kind,
            Kind::Noida,
            "Tansu's DeleteTopics deletes all topics"
        );
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        for r in admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
        }
        // Deletion is asynchronous: wait until the metadata no longer lists the topic.
        let consumer: rdkafka::consumer::BaseConsumer = self.config().create().unwrap();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let gone = match consumer.fetch_metadata(Some(&topic), Duration::from_secs(2)) {
                    Ok(m) => m
                        .topics()
                        .iter()
                        .all(|t| t.name() != topic || t.error().is_some()),
                    Err(_) => false,
                };
                if gone {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "topic {topic} still listed 10 s after its deletion"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .unwrap();
    }

    /// A producer (acks from the leader; no compression).
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5")
            .create()
            .unwrap()
    }

    /// Produce `records` to `topic` partition `partition`, waiting for every acknowledgement.
    pub async fn produce(&self, topic: &str, partition: i32, records: &[Record]) {
        let producer = self.producer();
        let sends = records.iter().map(|r| {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).partition(partition);
            if let Some(value) = &r.value {
                record = record.payload(value.as_bytes());
            }
            if let Some(key) = &r.key {
                record = record.key(key.as_bytes());
            }

            if let Some(ts) = r.timestamp_ms {
                record = record.timestamp(ts);
            }
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                record = record.headers(headers);
            }
            producer.send(record, Duration::from_secs(10))
        });
        for result in futures::future::join_all(sends).await {
            result.unwrap_or_else(|(e, _)| panic!("producing to {topic}-{partition}: {e}"));
        }
    }

    /// Produce `n` records `"{prefix}{i}"` (keys `k{i}`, current time) to a partition.
    pub async fn produce_values(&self, topic: &str, partition: i32, prefix: &str, n: usize) {
        let records: Vec<Record> = (0..n)
            .map(|i| Record::new(Some(&format!("k{i}")), &format!("{prefix}{i}")))
            .collect();
        self.produce(topic, partition, &records).await;
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Broker {
    /// Every record of `topic`, by partition and offset, read with an independent consumer.
    pub async fn consume_all(&self, topic: &str) -> Vec<Consumed> {
        let config = self.config();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || consume_all(config, &topic))
            .await
            .unwrap()
    }
}

fn consume_all(mut config: ClientConfig, topic: &str) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = config
        .set("group.id", "faisca-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut ends = std::collections::BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap();
        if high > low {
            ends.insert(*p, high);
            list.add_partition_offset(topic, *p, Offset::Offset(low))
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = std::collections::BTreeSet::new();
    while done.len() < ends.len() {
        assert!(Instant::now() < deadline, "reading {topic} back stalled");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = message.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
        if m.offset() + 1 >= ends[&m.partition()] {
            done.insert(m.partition());
        }
    }
    out.sort();
    out
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key.
    pub key: Option<String>,
    /// Value (`None`: a tombstone).
    pub value: Option<String>,
    /// Create time (ms); the producer's clock when `None`.
    pub timestamp_ms: Option<i64>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A record with `key` and `value`.
    pub fn new(key: Option<&str>, value: &str) -> Record {
        Record {
            key: key.map(str::to_string),
            value: Some(value.to_string()),
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
