//! The brokers, through librdkafka: the [`OffsetSource`] the driver plans runs with, the consumer
//! configuration tasks read with, and offset commits to a consumer group.
//!
//! Every call blocks (librdkafka's API is synchronous): run them off the async runtime. Lookups
//! are tried `fetchOffset.numRetries + 1` times, `fetchOffset.retryIntervalMs` apart, each bounded
//! by the request timeout, so an unreachable cluster fails in bounded time with its address named.

use std::collections::BTreeMap;
use std::time::Duration;

use faisca_common::locations::AllowedLocations;
use faisca_common::{Error, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};

use super::client::{self, ClientWatch, guarded_by_watch};
use super::options::{KafkaOptions, ReadOptions, Subscription};
use super::resolve::{OffsetSource, PartitionBounds};
use super::security;
use super::{OffsetRange, TopicPartition};

/// The consumer configuration every reader and lookup uses: the user's `kafka.*` properties, and
/// what exact ranges need (no automatic commits or resets, partition-end events, no topic
/// creation by reading).
/// Security options are translated and secret files read here ([`security::client_config`]).
pub fn consumer_config(read: &ReadOptions) -> Result<ClientConfig> {
    let mut config = security::client_config(&read.kafka_params)?;
    if !read.kafka_params.contains_key("group.id") {
        // librdkafka wants one for a consumer; with assign() no group is ever joined.
        config.set("group.id", "faisca-reader");
    }
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("allow.auto.create.topics", "false");
    Ok(config)
}

/// Whether an error says the user's setup is wrong (retrying cannot help).
fn is_users_fault(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}

/// librdkafka's callbacks for the planning client: a refused login or broker is kept (the
/// failed call then names it), other client errors are logged.
#[derive(Debug)]
pub struct PlanningContext {
    watch: ClientWatch,
}

impl PlanningContext {
    /// A context holding the client's connections to `allowed`.
    pub fn new(allowed: &AllowedLocations) -> Self {
        PlanningContext {
            watch: ClientWatch::new(allowed.clone()),
        }
    }
}

impl ClientContext for PlanningContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.watch.observe(&error, reason) {
            tracing::warn!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for PlanningContext {}

guarded_by_watch!(PlanningContext);

/// A connection to the brokers of one source, for planning.
pub struct Broker {
    consumer: BaseConsumer<PlanningContext>,
    params: BTreeMap<String, String>,
    /// The topic list of the metadata fetched when connecting, until first asked for.
    fresh_topics: std::sync::Mutex<Option<BTreeMap<String, Vec<i32>>>>,
    servers: String,
    timeout: Duration,
    retries: u32,
    interval: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("servers", &self.servers)
            .finish()
    }
}

impl Broker {
    /// A client for `options`' brokers; `timeout` bounds each request. The brokers — those
    /// named and every one the cluster's metadata advertises — are checked against the driver's
    /// `allowed` rule, resolved addresses included, before any offset is asked for.
    pub fn connect(
        options: &KafkaOptions,
        timeout: Duration,
        allowed: &AllowedLocations,
    ) -> Result<Broker> {
        allowed.resolve_and_check_brokers(options.bootstrap_servers())?;
        let consumer: BaseConsumer<PlanningContext> = client::create(
            &consumer_config(&options.read)?,
            PlanningContext::new(allowed),
        )
        .map_err(|e| {
            Error::user(format!(
                "cannot create a Kafka client for '{}': {e}",
                options.bootstrap_servers()
            ))
        })?;
        let broker = Broker {
            consumer,
            params: options.read.kafka_params.clone(),
            fresh_topics: std::sync::Mutex::default(),
            servers: options.bootstrap_servers().to_string(),
            timeout,
            retries: options.fetch_retries,
            interval: options.fetch_retry_interval,
        };
        broker.check_advertised(allowed)?;
        Ok(broker)
    }

    /// Refuse the cluster when a broker its metadata advertises (where reads and writes will
    /// connect) is outside `allowed`, or resolves to a metadata address.
    /// The topics of that same answer are kept for the first [`Self::topics`] call.
    fn check_advertised(&self, allowed: &AllowedLocations) -> Result<()> {
        let metadata = self.retrying("fetching the cluster's brokers", || {
            self.consumer.fetch_metadata(None, self.timeout)
        })?;
        check_brokers_in(&metadata, &self.servers, allowed)?;
        *self.fresh_topics.lock().unwrap_or_else(|e| e.into_inner()) = Some(topics_in(&metadata));
        Ok(())
    }

    fn retrying<T>(&self, what: &str, call: impl Fn() -> Result<T, KafkaError>) -> Result<T> {
        let attempts = self.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = call();
            if result.is_err() {
                drain_events(&self.consumer);
            }
            if result.is_err()
                && let Some(refused) = self
                    .consumer
                    .context()
                    .watch
                    .refused_error(&self.servers, &self.params)
            {
                return Err(refused);
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) if is_users_fault(&e) => {
                    return Err(Error::user(format!(
                        "Kafka brokers at '{}': {what}: {e}",
                        self.servers
                    )));
                }
                Err(e) if attempt >= attempts => {
                    let said = self
                        .consumer
                        .context()
                        .watch
                        .last_error()
                        .map(|reason| format!(" (librdkafka: {reason})"))
                        .unwrap_or_default();
                    return Err(Error::external(format!(
                        "Kafka brokers at '{}' did not answer: {what} failed {attempt} time(s), each within {} ms: {e}{said}",
                        self.servers,
                        self.timeout.as_millis()
                    )));
                }
                Err(e) => {
                    tracing::debug!(servers = %self.servers, attempt, error = %e, "{what}: retrying");
                    std::thread::sleep(self.interval);
                }
            }
        }
    }

    /// Every topic and its partition count (internal topics, `__…`, left out).
    /// (The list fetched when the client connected, the first time: it is that recent.)
    fn topics(&self) -> Result<BTreeMap<String, Vec<i32>>> {
        if let Some(topics) = self
            .fresh_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Ok(topics);
        }
        let metadata = self.retrying("fetching the topic list", || {
            self.consumer.fetch_metadata(None, self.timeout)
        })?;
        Ok(topics_in(&metadata))
    }

    /// The error for `topic`, absent from the topic list: not authorized (brokers leave such
    /// topics out of the list; asked by name they say so), or missing.
    fn missing_topic(&self, topic: &str, topics: &BTreeMap<String, Vec<i32>>) -> Error {
        let named = self.consumer.fetch_metadata(Some(topic), self.timeout);
        let refused = named.ok().is_some_and(|metadata| {
            metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error()
                        == Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
            })
        });
        if refused {
            return Error::user(format!(
                "Kafka topic '{topic}' at '{}' may not be read by {} (TOPIC_AUTHORIZATION_FAILED): ask for read access to the topic (a Kafka ACL), or log in as a user who has it",
                self.servers,
                security::principal(&self.params)
            ));
        }
        let mut known: Vec<&str> = topics.keys().map(String::as_str).take(20).collect();
        if known.is_empty() {
            known.push("none");
        }
        Error::user(format!(
            "Kafka topic '{topic}' does not exist at '{}' (topics there: {})",
            self.servers,
            known.join(", ")
        ))
    }
}

impl OffsetSource for Broker {
    fn partitions(&self, subscription: &Subscription) -> Result<Vec<TopicPartition>> {
        let topics = self.topics()?;
        let mut out = Vec::new();
        let mut add = |topic: &str, ps: &[i32]| {
            out.extend(ps.iter().map(|p| TopicPartition {
                topic: topic.to_string(),
                partition: *p,
            }))
        };
        match subscription {
            Subscription::Topics(names) => {
                for name in names {
                    let ps = topics
                        .get(name)
                        .ok_or_else(|| self.missing_topic(name, &topics))?;
                    add(name, ps);
                }
            }
            Subscription::Pattern(pattern) => {
                let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| Error::user(format!("Kafka option 'subscribePattern': {e}")))?;
                for (name, ps) in topics.iter().filter(|(n, _)| re.is_match(n)) {
                    add(name, ps);
                }
            }
            Subscription::Assign(assigned) => {
                for (name, wanted) in assigned {
                    let ps = topics
                        .get(name)
                        .ok_or_else(|| self.missing_topic(name, &topics))?;
                    if let Some(p) = wanted.iter().find(|p| !ps.contains(p)) {
                        return Err(Error::user(format!(
                            "Kafka option 'assign' names partition {p} of topic '{name}', which has partitions 0..{}",
                            ps.len()
                        )));
                    }
                    add(name, wanted);
                }
            }
        }
        Ok(out)
    }

    fn bounds(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, PartitionBounds>> {
        let mut out = BTreeMap::new();
        for tp in partitions {
            let (earliest, latest) =
                self.retrying(&format!("fetching the offsets of {tp}"), || {
                    self.consumer
                        .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
                })?;
            out.insert(tp.clone(), PartitionBounds { earliest, latest });
        }
        Ok(out)
    }

    fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let mut tpl = TopicPartitionList::with_capacity(query.len());
        for (tp, ms) in query {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*ms))
                .map_err(|e| Error::internal(format!("{tp}: {e}")))?;
        }
        let found = self.retrying("looking up offsets by timestamp", || {
            self.consumer.offsets_for_times(tpl.clone(), self.timeout)
        })?;
        let mut out = BTreeMap::new();
        for elem in found.elements() {
            let tp = TopicPartition {
                topic: elem.topic().to_string(),
                partition: elem.partition(),
            };
            elem.error().map_err(|e| {
                Error::external(format!(
                    "Kafka brokers at '{}': looking up {tp} by timestamp: {e}",
                    self.servers
                ))
            })?;
            let offset = match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            out.insert(tp, offset);
        }
        Ok(out)
    }
}

/// How long a failed planning call waits for librdkafka to queue the error event that says
/// why (a refused login arrives as an event, shortly after the call's own error).
const ERROR_EVENT_WAIT: Duration = Duration::from_millis(300);

/// Hand the client's pending error events to its context (and so its watch): a consumer's
/// refused login is an event its `poll` dispatches, not the error of the call that failed
/// because of it.
fn drain_events(consumer: &BaseConsumer<PlanningContext>) {
    let mut wait = ERROR_EVENT_WAIT;
    // Bounded: a planning client reads no records, so only errors are queued.
    for _ in 0..64 {
        if consumer.poll(wait).is_none() {
            break;
        }
        wait = Duration::ZERO;
    }
}

/// Every topic of `metadata` and its partitions (internal topics, `__…`, left out).
fn topics_in(metadata: &rdkafka::metadata::Metadata) -> BTreeMap<String, Vec<i32>> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
        .map(|t| {
            let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ps.sort_unstable();
            (t.name().to_string(), ps)
        })
        .collect()
}

/// Refuse the brokers `metadata` advertises (reached through `servers`) that `allowed` does
/// not allow, as `kafka://host:port` and by their resolved addresses.
fn check_brokers_in(
    metadata: &rdkafka::metadata::Metadata,
    servers: &str,
    allowed: &AllowedLocations,
) -> Result<()> {
    for broker in metadata.brokers() {
        let address = if broker.host().contains(':') {
            format!("[{}]:{}", broker.host(), broker.port())
        } else {
            format!("{}:{}", broker.host(), broker.port())
        };
        let what = format!("Kafka broker {} (advertised by '{servers}')", broker.id());
        allowed
            .check_brokers(&address)
            .map_err(|e| Error::user(format!("{what}: {e}")))?;
        allowed.resolve_and_check(&address, &format!("kafka://{address}"), &what)?;
    }
    Ok(())
}

/// Before a Kafka write runs (blocking: run it off the async runtime): refuse a cluster whose
/// named or advertised brokers `allowed` does not allow, or that refuses the write's login.
/// A cluster that cannot be reached within `timeout` is left to the write's tasks, which fail
/// naming it.
pub fn check_write_cluster(
    params: &BTreeMap<String, String>,
    timeout: Duration,
    allowed: &AllowedLocations,
) -> Result<()> {
    let servers = params.get("bootstrap.servers").cloned().unwrap_or_default();
    allowed.resolve_and_check_brokers(&servers)?;
    // The connection's settings only (a consumer ignores, and warns about, producer ones).
    let connection: BTreeMap<String, String> = params
        .iter()
        .filter(|(k, _)| {
            [
                "bootstrap.",
                "security.",
                "sasl.",
                "ssl.",
                "broker.address.",
                "client.",
                "socket.",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut config = security::client_config(&connection)?;
    config
        .set("group.id", "faisca-write-check")
        .set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer<PlanningContext> =
        client::create(&config, PlanningContext::new(allowed)).map_err(|e| {
            Error::user(format!("cannot create a Kafka client for '{servers}': {e}"))
        })?;
    match consumer.fetch_metadata(None, timeout) {
        Ok(metadata) => check_brokers_in(&metadata, &servers, allowed),
        Err(_) => {
            drain_events(&consumer);
            match consumer.context().watch.refused_error(&servers, params) {
                Some(refused) => Err(refused),
                None => Ok(()),
            }
        }
    }
}

/// After a successful run, commit its end offsets to the consumer group `kafka.group.id` (for lag
/// monitoring; the checkpoint stays the source of truth). Nothing without a group.
pub fn commit_to_group(
    read: &ReadOptions,
    ranges: &[OffsetRange],
    timeout: Duration,
    allowed: &AllowedLocations,
) -> Result<()> {
    let Some(group) = read.kafka_params.get("group.id") else {
        return Ok(());
    };
    if ranges.is_empty() {
        return Ok(());
    }
    let servers = read
        .kafka_params
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let mut config = consumer_config(read)?;
    config.set("socket.timeout.ms", timeout.as_millis().max(10).to_string());
    let consumer: BaseConsumer<PlanningContext> =
        client::create(&config, PlanningContext::new(allowed)).map_err(|e| {
            Error::user(format!("cannot create a Kafka client for '{servers}': {e}"))
        })?;
    let mut tpl = TopicPartitionList::with_capacity(ranges.len());
    for r in ranges {
        tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.end))
            .map_err(|e| Error::internal(format!("{r}: {e}")))?;
    }
    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
        if let Some(refused) = consumer
            .context()
            .watch
            .refused_error(&servers, &read.kafka_params)
        {
            return refused;
        }
        Error::external(format!(
            "committing offsets to Kafka consumer group '{group}' at '{servers}': {e}"
        ))
    })
}
