//! The Kafka sink: a write's options, checked on the driver, and the producer each task sends
//! its rows with.
//!
//! A row is one record. Its columns follow Spark's contract: `value` (required; a null value is a
//! tombstone), and optionally `key`, `topic`, `partition` and `headers`; the driver casts them to
//! the types [`SinkColumns`] reads (binary key and value, string topic, int partition, headers as
//! `list<struct<key string, value binary>>`). The `topic` option wins over a `topic` column.
//!
//! Each task has one idempotent producer and sends its records in its rows' order; the task
//! succeeds only once the brokers confirmed every record ([`TaskProducer::finish`]), and the first
//! refused record fails it, naming topic and partition. The guarantee is at-least-once: a retried
//! task sends its records again. Sends never block (they are queued; when librdkafka's queue is
//! full the task waits asynchronously); delivery reports are served by the producer's own polling
//! thread; the topic check (a metadata request) and stopping the producer run on blocking threads.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, AsArray, BinaryArray, Int32Array, ListArray, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Schema};
use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Redaction, Result};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;

use super::client::{self, ClientWatch, guarded_by_watch};
use super::options::{SourceOptions, check_kafka_params};
use super::schema::headers_type;
use super::security;

/// Producer properties the sink sets unless the user sets them (or an alias): durable ones, so
/// that a task never loses or reorders a partition's records, and Java's partitioner, so that a
/// key lands in the partition a Java (Spark) producer would choose.
pub const PRODUCER_DEFAULTS: &[(&[&str], &str)] = &[
    (&["acks", "request.required.acks"], "all"),
    (&["enable.idempotence"], "true"),
    (
        &["max.in.flight.requests.per.connection", "max.in.flight"],
        "5",
    ),
    (&["partitioner"], "murmur2_random"),
];

/// librdkafka's `delivery.timeout.ms` default (its alias `message.timeout.ms`).
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_millis(300_000);

/// Producer properties a write refuses, with why.
const RESERVED_PRODUCER_PARAMS: &[(&str, &str)] = &[
    (
        "key.serializer",
        "keys are sent as the bytes of the 'key' column (cast a column to binary or string)",
    ),
    (
        "value.serializer",
        "values are sent as the bytes of the 'value' column (build them with to_json or to_avro)",
    ),
    (
        "transactional.id",
        "writes are at-least-once; transactional (exactly-once) writes are not supported yet",
    ),
];

/// A Kafka write's options, checked: where records go and how the producer is configured.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// The topic of every record (the `topic` option); `None`: each row's `topic` column.
    pub topic: Option<String>,
    /// librdkafka producer properties (the `kafka.*` options without their prefix), with
    /// [`PRODUCER_DEFAULTS`] applied.
    pub producer: BTreeMap<String, String>,
}

impl std::fmt::Debug for SinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redaction = Redaction::default();
        let producer: BTreeMap<&str, std::borrow::Cow<'_, str>> = self
            .producer
            .iter()
            .map(|(k, v)| (k.as_str(), redaction.value(&format!("kafka.{k}"), v)))
            .collect();
        f.debug_struct("SinkOptions")
            .field("topic", &self.topic)
            .field("producer", &producer)
            .finish()
    }
}

impl SinkOptions {
    /// Parse a write's options (normalised where they entered): `topic` and `kafka.*`.
    pub fn parse(options: &SourceOptions, redaction: &Redaction) -> Result<SinkOptions> {
        let mut topic = None;
        let mut producer = BTreeMap::new();
        for (key, value) in options.iter() {
            if let Some(param) = key.strip_prefix("kafka.") {
                if let Some((_, why)) = RESERVED_PRODUCER_PARAMS.iter().find(|(p, _)| *p == param) {
                    return Err(Error::user(format!(
                        "Kafka write option 'kafka.{param}' is not supported: {why}"
                    )));
                }
                producer.insert(param.to_string(), value.to_string());
            } else if key == "topic" {
                let name = value.trim();
                if name.is_empty() {
                    return Err(Error::user(
                        "Kafka write option 'topic' is empty: expected a topic name",
                    ));
                }
                topic = Some(name.to_string());
            } else {
                return Err(Error::user(format!(
                    "unknown Kafka write option '{key}': expected 'topic', or a librdkafka producer property prefixed with 'kafka.' (e.g. 'kafka.bootstrap.servers', 'kafka.compression.type')"
                )));
            }
        }
        if producer
            .get("bootstrap.servers")
            .is_none_or(|v| v.trim().is_empty())
        {
            return Err(Error::user(
                "Kafka write option 'kafka.bootstrap.servers' must be set: expected host:port[,host:port…] of the brokers",
            ));
        }
        for (names, value) in PRODUCER_DEFAULTS {
            if !names.iter().any(|n| producer.contains_key(*n)) {
                producer.insert(names[0].to_string(), value.to_string());
            }
        }
        check_kafka_params(&producer, redaction)?;
        Ok(SinkOptions { topic, producer })
    }

    /// The brokers, for messages.
    pub fn bootstrap_servers(&self) -> &str {
        self.producer
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// How long librdkafka tries to deliver a record (`delivery.timeout.ms`).
    pub fn delivery_timeout(&self) -> Duration {
        ["delivery.timeout.ms", "message.timeout.ms"]
            .iter()
            .find_map(|k| self.producer.get(*k))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_DELIVERY_TIMEOUT)
    }
}

/// The sink's columns, by name, and the type each is cast to (`value` is required).
pub const SINK_COLUMNS: &[&str] = &["key", "value", "topic", "partition", "headers"];

/// librdkafka settings only a consumer reads. A Kafka table's settings serve its reads and its
/// `INSERT INTO`s alike; these are left out of the producer an insert makes (librdkafka would
/// warn that it ignores them).
pub const CONSUMER_ONLY_PARAMS: &[&str] = &[
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "check.crcs",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.error.backoff.ms",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "allow.auto.create.topics",
];

/// The canonical type of sink column `name` (one of [`SINK_COLUMNS`]).
pub fn sink_column_type(name: &str) -> DataType {
    match name {
        "key" | "value" => DataType::Binary,
        "topic" => DataType::Utf8,
        "partition" => DataType::Int32,
        _ => headers_type(),
    }
}

/// Where the sink's columns are in a task's batches (already in canonical types).
#[derive(Debug, Clone, Copy)]
pub struct SinkColumns {
    key: Option<usize>,
    value: usize,
    topic: Option<usize>,
    partition: Option<usize>,
    headers: Option<usize>,
}

impl SinkColumns {
    /// Find the columns in `schema`; a missing `value` or a column of another type is a bug of
    /// the write's planning.
    pub fn of(schema: &Schema) -> Result<SinkColumns> {
        let find = |name: &str| -> Result<Option<usize>> {
            let Ok(index) = schema.index_of(name) else {
                return Ok(None);
            };
            let actual = schema.field(index).data_type();
            let expected = sink_column_type(name);
            let same = match (actual, &expected) {
                (DataType::List(a), DataType::List(e)) => a.data_type() == e.data_type(),
                _ => actual == &expected,
            };
            if !same {
                return Err(Error::internal(format!(
                    "the Kafka write stage's column '{name}' is {actual}, not {expected}"
                )));
            }
            Ok(Some(index))
        };
        Ok(SinkColumns {
            key: find("key")?,
            value: find("value")?.ok_or_else(|| {
                Error::internal("the Kafka write stage's output has no 'value' column")
            })?,
            topic: find("topic")?,
            partition: find("partition")?,
            headers: find("headers")?,
        })
    }
}

/// The first record the brokers (or librdkafka) refused.
#[derive(Debug, Clone)]
struct Refusal {
    topic: String,
    partition: i32,
    error: KafkaError,
}

/// Counts confirmed deliveries and keeps the first refusal; called from the producer's polls.
/// A refused login (reported to the error callback) or broker is kept too.
pub struct DeliveryTracker {
    state: Mutex<(u64, Option<Refusal>)>,
    watch: ClientWatch,
}

impl DeliveryTracker {
    /// A tracker holding the producer's connections to `allowed`.
    pub fn new(allowed: &AllowedLocations) -> Self {
        DeliveryTracker {
            state: Mutex::default(),
            watch: ClientWatch::new(allowed.clone()),
        }
    }
}

guarded_by_watch!(DeliveryTracker);

impl ClientContext for DeliveryTracker {
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.watch.observe(&error, reason) {
            tracing::warn!("librdkafka: {error}: {reason}");
        }
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => state.0 += 1,
            Err((error, message)) => {
                if state.1.is_none() {
                    state.1 = Some(Refusal {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        error: error.clone(),
                    });
                }
            }
        }
    }
}

impl DeliveryTracker {
    fn delivered(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn refusal(&self) -> Option<Refusal> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

/// Whether a refusal is the write's fault (the same records would be refused again).
fn is_users_fault(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidRequiredAcks
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}

fn refusal_error(servers: &str, topic: &str, partition: Option<i32>, error: &KafkaError) -> Error {
    let at = match partition {
        Some(p) if p >= 0 => format!("topic '{topic}' partition {p}"),
        _ => format!("topic '{topic}'"),
    };
    let message = format!("Kafka ({servers}) did not accept a record for {at}: {error}");
    if is_users_fault(error.rdkafka_error_code()) {
        Error::user(message)
    } else {
        Error::external(message)
    }
}

/// One task's producer: sends rows as records in order, then waits for every confirmation.
pub struct TaskProducer {
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    topic: Option<String>,
    servers: String,
    delivery_timeout: Duration,
    checked_topics: HashSet<String>,
    max_message_bytes: String,
    sent: u64,
    /// The producer properties as given (for naming the principal).
    params: BTreeMap<String, String>,
}

impl std::fmt::Debug for TaskProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskProducer")
            .field("servers", &self.servers)
            .field("topic", &self.topic)
            .field("sent", &self.sent)
            .finish()
    }
}

/// How long a full queue waits before the next try.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

impl TaskProducer {
    /// A producer for `options` (no connection is made yet), connecting only where `allowed`
    /// allows (see [`client`]).
    pub fn new(options: &SinkOptions, allowed: &AllowedLocations) -> Result<TaskProducer> {
        let producer: ThreadedProducer<DeliveryTracker> = client::create(
            &security::client_config(&options.producer)?,
            DeliveryTracker::new(allowed),
        )
        .map_err(|e| {
            Error::user(format!(
                "cannot create a Kafka producer for '{}': {e}",
                options.bootstrap_servers()
            ))
        })?;
        Ok(TaskProducer {
            producer: Arc::new(producer),
            topic: options.topic.clone(),
            servers: options.bootstrap_servers().to_string(),
            delivery_timeout: options.delivery_timeout(),
            checked_topics: HashSet::new(),
            max_message_bytes: options
                .producer
                .get("message.max.bytes")
                .cloned()
                .unwrap_or_else(|| "1000000 by default".to_string()),
            sent: 0,
            params: options.producer.clone(),
        })
    }

    /// Check once per topic that it exists (or that the brokers created it on the producer's
    /// request), so that a missing topic fails the task at once instead of after librdkafka's
    /// metadata propagation wait.
    async fn check_topic(&mut self, topic: &str) -> Result<()> {
        if self.checked_topics.contains(topic) {
            return Ok(());
        }
        let producer = self.producer.clone();
        let name = topic.to_string();
        let timeout = self.delivery_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&name), timeout)
        })
        .await
        .map_err(|e| Error::internal(format!("the Kafka topic check stopped: {e}")))?
        .map_err(|e| {
            if let Some(refused) = self.refused() {
                return refused;
            }
            Error::external(format!(
                "cannot reach the Kafka brokers '{}' to write topic '{topic}' within the delivery timeout ({} ms): {e}",
                self.servers,
                timeout.as_millis()
            ))
        })?;
        let error = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.error());
        match error {
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                return Err(Error::user(format!(
                    "Kafka topic '{topic}' does not exist on '{}', and the brokers did not create it: create the topic, or let the brokers create topics (auto.create.topics.enable, and the producer property kafka.allow.auto.create.topics)",
                    self.servers
                )));
            }
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
                return Err(Error::user(format!(
                    "Kafka topic '{topic}' on '{}' may not be written by {} (TOPIC_AUTHORIZATION_FAILED): ask for write access to the topic (a Kafka ACL), or log in as a user who has it",
                    self.servers,
                    security::principal(&self.params)
                )));
            }
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION) => {
                return Err(Error::user(format!(
                    "'{topic}' is not a valid Kafka topic name (the brokers at '{}' refused it)",
                    self.servers
                )));
            }
            // Other answers (a leader being elected) are transient: deliveries wait for them.
            _ => {}
        }
        self.checked_topics.insert(topic.to_string());
        Ok(())
    }

    /// The error of a login the brokers refused, or of a broker the producer may not connect
    /// to, if there is one.
    fn refused(&self) -> Option<Error> {
        self.producer
            .context()
            .watch
            .refused_error(&self.servers, &self.params)
    }

    /// Fail with the first refused record, if any.
    fn check_refusals(&self) -> Result<()> {
        if let Some(refused) = self.refused() {
            return Err(refused);
        }
        match self.producer.context().refusal() {
            Some(r) => Err(refusal_error(
                &self.servers,
                &r.topic,
                Some(r.partition),
                &r.error,
            )),
            None => Ok(()),
        }
    }

    /// Queue `batch`'s rows as records, in order. Fails at the first refusal reported so far.
    pub async fn send_batch(&mut self, batch: &RecordBatch, columns: &SinkColumns) -> Result<()> {
        let binary = |i: Option<usize>| i.map(|i| batch.column(i).as_binary::<i32>());
        let keys: Option<&BinaryArray> = binary(columns.key);
        let values: &BinaryArray = batch.column(columns.value).as_binary::<i32>();
        let topics: Option<&StringArray> = columns.topic.map(|i| batch.column(i).as_string());
        let partitions: Option<&Int32Array> = columns.partition.map(|i| {
            batch
                .column(i)
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
        });
        let headers: Option<&ListArray> = columns.headers.map(|i| batch.column(i).as_list());
        let fixed = self.topic.clone();
        if let Some(topic) = &fixed {
            self.check_topic(topic).await?;
        }
        for row in 0..batch.num_rows() {
            let topic: &str = match (&fixed, topics) {
                (Some(topic), _) => topic,
                (None, Some(t)) if t.is_valid(row) => {
                    let topic = t.value(row);
                    self.check_topic(topic).await?;
                    topic
                }
                _ => {
                    return Err(Error::user(
                        "a row to write to Kafka has a null 'topic' and no 'topic' option is set: give every row a topic, or set the option",
                    ));
                }
            };
            let row_headers = headers
                .filter(|h| h.is_valid(row))
                .map(|h| owned_headers(h.value(row).as_struct()));
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(keys) = keys.filter(|k| k.is_valid(row)) {
                record = record.key(keys.value(row));
            }
            if values.is_valid(row) {
                record = record.payload(values.value(row));
            }
            if let Some(p) = partitions.filter(|p| p.is_valid(row)) {
                record = record.partition(p.value(row));
            }
            if let Some(h) = row_headers {
                record = record.headers(h);
            }
            self.send(record).await?;
            self.sent += 1;
        }
        self.check_refusals()
    }

    /// Queue one record, waiting while librdkafka's queue is full.
    async fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.check_refusals()?;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), r)) => {
                    let size = r.payload.map_or(0, <[u8]>::len) + r.key.map_or(0, <[u8]>::len);
                    return Err(Error::user(format!(
                        "a record for Kafka topic '{}' is {size} bytes, more than the producer's message.max.bytes ({}): make it smaller, or raise kafka.message.max.bytes (and the topic's max.message.bytes)",
                        r.topic, self.max_message_bytes
                    )));
                }
                Err((error, r)) => {
                    return Err(refusal_error(&self.servers, r.topic, r.partition, &error));
                }
            }
        }
    }

    /// Wait until the brokers confirmed every record sent; returns how many. The wait is
    /// bounded by the delivery timeout: librdkafka fails a record it could not deliver by then.
    pub async fn finish(self) -> Result<u64> {
        let deadline = Instant::now() + self.delivery_timeout + Duration::from_secs(30);
        let mut wait = Duration::from_micros(200);
        while self.producer.in_flight_count() > 0 {
            self.check_refusals()?;
            if Instant::now() > deadline {
                return Err(Error::external(format!(
                    "Kafka ({}) confirmed {} of {} records within the delivery timeout ({} ms) and librdkafka reported no failure",
                    self.servers,
                    self.producer.context().delivered(),
                    self.sent,
                    self.delivery_timeout.as_millis()
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(5));
        }
        self.check_refusals()?;
        let delivered = self.producer.context().delivered();
        if delivered != self.sent {
            return Err(Error::internal(format!(
                "Kafka confirmed {delivered} records of the {} this task sent",
                self.sent
            )));
        }
        // Stopping the producer joins its polling thread: not on an async worker.
        let producer = self.producer.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
        Ok(delivered)
    }
}

impl Drop for TaskProducer {
    /// A task that stops early (failed, cancelled) drops what it queued: its records are not
    /// sent after the task has ended.
    fn drop(&mut self) {
        if self.producer.in_flight_count() > 0 {
            self.producer
                .purge(rdkafka::producer::PurgeConfig::default().queue());
        }
    }
}

/// A row's headers as librdkafka's (a null header value stays null).
fn owned_headers(entries: &StructArray) -> OwnedHeaders {
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_binary::<i32>();
    let mut headers = OwnedHeaders::new_with_capacity(entries.len());
    for i in 0..entries.len() {
        if !entries.is_valid(i) {
            continue;
        }
        headers = headers.insert(Header {
            key: if keys.is_valid(i) { keys.value(i) } else { "" },
            value: values.is_valid(i).then(|| values.value(i)),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SinkOptions> {
        SinkOptions::parse(
            &SourceOptions::normalize(pairs.iter().copied())?,
            &Redaction::default(),
        )
    }

    #[test]
    fn durable_defaults_unless_the_user_says_otherwise() {
        let o = parse(&[
            ("kafka.bootstrap.servers", "127.0.0.1:9092"),
            ("format.topic", "out"),
            ("kafka.request.required.acks", "1"),
            ("kafka.linger.ms", "20"),
        ])
        .unwrap();
        assert_eq!(o.topic.as_deref(), Some("out"));
        assert_eq!(o.producer["enable.idempotence"], "true");
        assert_eq!(o.producer["max.in.flight.requests.per.connection"], "5");
        assert_eq!(o.producer["partitioner"], "murmur2_random");
        assert_eq!(o.producer["linger.ms"], "20");
        // An alias given by the user is not set twice.
        assert_eq!(o.producer["request.required.acks"], "1");
        assert!(!o.producer.contains_key("acks"));
        assert_eq!(o.delivery_timeout(), DEFAULT_DELIVERY_TIMEOUT);
        let o = parse(&[
            ("kafka.bootstrap.servers", "b:1"),
            ("kafka.message.timeout.ms", "2500"),
        ])
        .unwrap();
        assert_eq!(o.producer["acks"], "all");
        assert_eq!(o.delivery_timeout(), Duration::from_millis(2500));
        assert_eq!(o.topic, None);
    }

    #[test]
    fn bad_options_are_named() {
        let e = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().to_string();
        assert!(e(&[("topic", "t")]).contains("'kafka.bootstrap.servers' must be set"));
        let err = e(&[("kafka.bootstrap.servers", "b:1"), ("subscribe", "t")]);
        assert!(
            err.contains("unknown Kafka write option 'subscribe'"),
            "{err}"
        );
        let err = e(&[
            ("kafka.bootstrap.servers", "b:1"),
            ("kafka.value.serializer", "x"),
        ]);
        assert!(
            err.contains("'kafka.value.serializer' is not supported"),
            "{err}"
        );
        let err = e(&[("kafka.bootstrap.servers", "b:1"), ("kafka.acks", "most")]);
        assert!(err.contains("'kafka.acks'"), "{err}");
        let err = e(&[("kafka.bootstrap.servers", "b:1"), ("topic", " ")]);
        assert!(err.contains("'topic' is empty"), "{err}");
    }

    #[test]
    fn columns_are_found_by_name_in_canonical_types() {
        use datafusion::arrow::datatypes::Field;
        let schema = Schema::new(vec![
            Field::new("partition", DataType::Int32, true),
            Field::new("value", DataType::Binary, true),
            Field::new("headers", headers_type(), true),
        ]);
        let c = SinkColumns::of(&schema).unwrap();
        assert_eq!(
            (c.value, c.partition, c.headers, c.key, c.topic),
            (1, Some(0), Some(2), None, None)
        );
        let schema = Schema::new(vec![Field::new("value", DataType::Utf8, true)]);
        assert!(SinkColumns::of(&schema).is_err());
    }
}
