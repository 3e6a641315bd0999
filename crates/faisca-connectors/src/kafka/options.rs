//! The Kafka source's options, with Spark's names, parsed and checked once (at `CREATE EXTERNAL
//! TABLE` or `load()`), so that a bad option fails before any broker is contacted.
//!
//! Options are normalised once, where they enter ([`SourceOptions::normalize`]: SQL `OPTIONS` or a
//! DataFrame reader's `.option`): names match case-insensitively, as in Spark, and DataFusion's
//! `format.` prefix (its SQL planner adds it to dot-less `OPTIONS` keys) is taken off. Parsing
//! then goes piece by piece (what to read, where to start and end, the tunables), and errors name
//! the option as Spark spells it.

use std::collections::BTreeMap;
use std::time::Duration;

use faisca_common::{Error, Redaction, Result};
use serde_json::Value;

/// The options this source knows, as Spark spells them.
pub const OPTION_NAMES: &[&str] = &[
    "subscribe",
    "subscribePattern",
    "assign",
    "startingOffsets",
    "endingOffsets",
    "startingTimestamp",
    "endingTimestamp",
    "startingOffsetsByTimestamp",
    "endingOffsetsByTimestamp",
    "startingOffsetsByTimestampStrategy",
    "failOnDataLoss",
    "minPartitions",
    "maxRecordsPerPartition",
    "includeHeaders",
    "checkpointLocation",
    "fetchOffset.numRetries",
    "fetchOffset.retryIntervalMs",
    "kafkaConsumer.pollTimeoutMs",
    "readAheadRanges",
    "asTable",
];

/// Ranges a task assigns ahead of the one it reads, unless `readAheadRanges` says otherwise.
pub const DEFAULT_READ_AHEAD: usize = 3;
/// The most `readAheadRanges` can ask for (each range ahead holds a consumer and what it fetched).
pub const MAX_READ_AHEAD: u64 = 64;

/// librdkafka properties the source sets itself: a user value would break exact ranges.
const RESERVED_KAFKA_PARAMS: &[(&str, &str)] = &[
    (
        "auto.offset.reset",
        "set the source option 'startingOffsets' instead",
    ),
    (
        "enable.auto.commit",
        "offsets are recorded in 'checkpointLocation' (and committed to 'kafka.group.id' after a successful run)",
    ),
    (
        "enable.auto.offset.store",
        "offsets are recorded in 'checkpointLocation'",
    ),
    (
        "enable.partition.eof",
        "the source needs partition-end events to finish ranges",
    ),
    ("key.deserializer", "keys are always read as binary"),
    ("value.deserializer", "values are always read as binary"),
];

/// Which topic-partitions to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every partition of these topics.
    Topics(Vec<String>),
    /// Every partition of every topic whose whole name matches this regular expression.
    Pattern(String),
    /// These partitions.
    Assign(BTreeMap<String, Vec<i32>>),
}

/// Offsets per topic and partition, from an option's JSON.
pub type PartitionOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Spark's `-2` in offset JSON: a partition's first offset.
pub const EARLIEST: i64 = -2;
/// Spark's `-1` in offset JSON: a partition's current end.
pub const LATEST: i64 = -1;

/// Where a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    /// Each partition's first offset, every run.
    Earliest,
    /// Where the last successful run (recorded in `checkpointLocation`) stopped; the first offset
    /// on a first run.
    Latest,
    /// These offsets (`-2` earliest, `-1` latest); every partition must be named.
    Specific(PartitionOffsets),
    /// The first record at or after this time (ms since the epoch) in every partition.
    Timestamp(i64),
    /// The first record at or after these times, per partition; every partition must be named.
    TimestampByPartition(PartitionOffsets),
}

/// Where a run ends (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndingOffsets {
    /// Each partition's end when the run is planned.
    Latest,
    /// These offsets (`-1` latest); every partition must be named.
    Specific(PartitionOffsets),
    /// The first record at or after this time (ms since the epoch) in every partition.
    Timestamp(i64),
    /// The first record at or after these times, per partition.
    TimestampByPartition(PartitionOffsets),
}

/// What to do when no record is at or after a starting timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampStrategy {
    /// Fail the query (Spark's default).
    Error,
    /// Start at the partition's end.
    Latest,
}

/// What an executor needs to read ranges of this source. Its `Debug` masks secret values
/// (by the default [`Redaction`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// librdkafka properties (the `kafka.*` options without their prefix).
    pub kafka_params: BTreeMap<String, String>,
    /// Add the `headers` column.
    pub include_headers: bool,
    /// Fail when records of a range are gone (true), or skip them (false).
    pub fail_on_data_loss: bool,
    /// Longest wait for the next record of a range before the task fails.
    pub poll_timeout: Duration,
    /// Ranges of a task assigned (and so fetching) ahead of the one being read, each with its
    /// own consumer (`readAheadRanges`).
    pub read_ahead: usize,
}

impl std::fmt::Debug for ReadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redaction = Redaction::default();
        let params: BTreeMap<&str, std::borrow::Cow<'_, str>> = self
            .kafka_params
            .iter()
            .map(|(k, v)| (k.as_str(), redaction.value(&format!("kafka.{k}"), v)))
            .collect();
        f.debug_struct("ReadOptions")
            .field("kafka_params", &params)
            .field("include_headers", &self.include_headers)
            .field("fail_on_data_loss", &self.fail_on_data_loss)
            .field("poll_timeout", &self.poll_timeout)
            .field("read_ahead", &self.read_ahead)
            .finish()
    }
}

/// Every option of one Kafka source, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// The topic-partitions to read.
    pub subscription: Subscription,
    /// Where each run starts.
    pub starting: StartingOffsets,
    /// Where each run ends.
    pub ending: EndingOffsets,
    /// No record at or after a starting timestamp: fail or start at the end.
    pub timestamp_strategy: TimestampStrategy,
    /// At least this many tasks (ranges are split to get there).
    pub min_partitions: Option<usize>,
    /// At most this many offsets per task.
    pub max_records_per_partition: Option<u64>,
    /// Object-store URL of the offset log (`offsets/`, `commits/`).
    pub checkpoint_location: Option<String>,
    /// Attempts of each offset lookup against the brokers.
    pub fetch_retries: u32,
    /// Wait between those attempts.
    pub fetch_retry_interval: Duration,
    /// Read the topic as the table its records describe (the latest value per key).
    pub as_table: bool,
    /// What executors need.
    pub read: ReadOptions,
    /// Identifies the source within a query: its location and options, normalized.
    pub key: String,
}

/// A source's options as they entered, keys normalised once: trimmed, lower case, without
/// DataFusion's `format.` prefix. Built where options enter (a table factory, a DataFrame reader);
/// [`KafkaOptions::parse`] reads nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    options: BTreeMap<String, String>,
}

impl SourceOptions {
    /// Normalise `pairs`; two spellings of one option (`subscribe` and `SUBSCRIBE`) are an error.
    pub fn normalize<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut options = BTreeMap::new();
        for (key, value) in pairs {
            let lower = key.as_ref().trim().to_ascii_lowercase();
            let key = match lower.strip_prefix("format.") {
                Some(rest) => rest.to_string(),
                None => lower,
            };
            if options.insert(key.clone(), value.into()).is_some() {
                return Err(Error::user(format!(
                    "Kafka option '{}' is given twice (option names ignore case): give it once",
                    spelled(&key)
                )));
            }
        }
        Ok(SourceOptions { options })
    }

    /// Every option, normalised name first, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Spark's spelling of a normalized key (for messages).
fn spelled(normalized: &str) -> String {
    if let Some(param) = normalized.strip_prefix("kafka.") {
        return format!("kafka.{param}");
    }
    OPTION_NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(normalized))
        .map(|n| n.to_string())
        .unwrap_or_else(|| normalized.to_string())
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::user(format!(
            "Kafka option '{name}' is '{value}': expected true or false"
        ))),
    }
}

fn parse_positive(name: &str, value: &str) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::user(format!(
            "Kafka option '{name}' is '{value}': expected a positive whole number"
        ))),
    }
}

fn parse_non_negative(name: &str, value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        Error::user(format!(
            "Kafka option '{name}' is '{value}': expected a whole number, 0 or more"
        ))
    })
}

fn parse_timestamp(name: &str, value: &str) -> Result<i64> {
    match value.trim().parse::<i64>() {
        Ok(t) if t >= 0 => Ok(t),
        _ => Err(Error::user(format!(
            "Kafka option '{name}' is '{value}': expected milliseconds since 1970-01-01 UTC, e.g. 1700000000000"
        ))),
    }
}

/// `{"topic": {"0": 23, "1": -2}}` with values checked by `valid` (described by `expected`).
fn parse_partition_offsets(
    name: &str,
    value: &str,
    expected: &str,
    valid: impl Fn(i64) -> bool,
) -> Result<PartitionOffsets> {
    let bad = |why: &str| {
        Error::user(format!(
            "Kafka option '{name}' is '{value}': {why}; expected JSON like {{\"topic\":{{\"0\":23,\"1\":-2}}}} with {expected}"
        ))
    };
    let json: Value = serde_json::from_str(value.trim()).map_err(|e| bad(&e.to_string()))?;
    let topics = json.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut out = PartitionOffsets::new();
    for (topic, partitions) in topics {
        let partitions = partitions
            .as_object()
            .ok_or_else(|| bad(&format!("the value of topic '{topic}' is not an object")))?;
        let entry = out.entry(topic.clone()).or_default();
        for (partition, offset) in partitions {
            let p: i32 = partition
                .parse()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| bad(&format!("'{partition}' is not a partition number")))?;
            let o = offset
                .as_i64()
                .filter(|o| valid(*o))
                .ok_or_else(|| bad(&format!("{offset} is not allowed for {topic}-{p}")))?;
            entry.insert(p, o);
        }
    }
    if out.is_empty() {
        return Err(bad("no topic named"));
    }
    Ok(out)
}

fn parse_assign(value: &str) -> Result<BTreeMap<String, Vec<i32>>> {
    let bad = |why: &str| {
        Error::user(format!(
            "Kafka option 'assign' is '{value}': {why}; expected JSON like {{\"topicA\":[0,1],\"topicB\":[2]}}"
        ))
    };
    let json: Value = serde_json::from_str(value.trim()).map_err(|e| bad(&e.to_string()))?;
    let topics = json.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut out = BTreeMap::new();
    for (topic, partitions) in topics {
        let list = partitions
            .as_array()
            .ok_or_else(|| bad(&format!("the value of topic '{topic}' is not an array")))?;
        let mut ps = Vec::with_capacity(list.len());
        for p in list {
            let p = p
                .as_i64()
                .filter(|p| (0..=i32::MAX as i64).contains(p))
                .ok_or_else(|| bad(&format!("{p} is not a partition number")))?;
            ps.push(p as i32);
        }
        ps.sort_unstable();
        ps.dedup();
        if ps.is_empty() {
            return Err(bad(&format!("no partition of topic '{topic}'")));
        }
        out.insert(topic.clone(), ps);
    }
    if out.is_empty() {
        return Err(bad("no topic named"));
    }
    Ok(out)
}

fn topic_list(name: &str, value: &str) -> Result<Vec<String>> {
    let topics: Vec<String> = value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        return Err(Error::user(format!(
            "Kafka option '{name}' is '{value}': expected a topic name or a comma-separated list of them"
        )));
    }
    Ok(topics)
}

impl KafkaOptions {
    /// Parse a source's options. `location` is the table's `LOCATION` (a topic or a comma list;
    /// empty for a DataFrame source): `subscribe`, `subscribePattern` or `assign` override it.
    pub fn parse(
        location: &str,
        options: &SourceOptions,
        redaction: &Redaction,
    ) -> Result<KafkaOptions> {
        let kafka_params = kafka_params(options, redaction)?;
        let subscription = subscription(location, options)?;
        let checkpoint_location = options
            .get("checkpointLocation")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let starting = starting_offsets(options)?;
        if starting == StartingOffsets::Latest && checkpoint_location.is_none() {
            return Err(Error::user(
                "Kafka option 'startingOffsets' is 'latest', which reads from where the last successful run stopped: set 'checkpointLocation' (a URL where runs record their offsets), or use 'earliest'",
            ));
        }
        let ending = ending_offsets(options)?;
        let timestamp_strategy = timestamp_strategy(options)?;
        let tunables = Tunables::parse(options)?;
        Ok(KafkaOptions {
            subscription,
            starting,
            ending,
            timestamp_strategy,
            min_partitions: tunables.min_partitions,
            max_records_per_partition: tunables.max_records_per_partition,
            checkpoint_location,
            fetch_retries: tunables.fetch_retries,
            fetch_retry_interval: tunables.fetch_retry_interval,
            as_table: match options.get("asTable") {
                Some(v) => parse_bool("asTable", v)?,
                None => false,
            },
            key: source_key(location, options, redaction),
            read: ReadOptions {
                kafka_params,
                include_headers: tunables.include_headers,
                fail_on_data_loss: tunables.fail_on_data_loss,
                poll_timeout: tunables.poll_timeout,
                read_ahead: tunables.read_ahead,
            },
        })
    }

    /// What the source reads, as its checkpoint records it: `subscribe=a,b`,
    /// `subscribePattern=…` or `assign={…}`. Neither brokers (a reordered list or another name
    /// of the same cluster reads the same log) nor credentials.
    pub fn source_identity(&self) -> String {
        match &self.subscription {
            Subscription::Topics(topics) => format!("subscribe={}", topics.join(",")),
            Subscription::Pattern(pattern) => format!("subscribePattern={pattern}"),
            Subscription::Assign(partitions) => format!(
                "assign={}",
                serde_json::to_string(partitions).unwrap_or_else(|_| format!("{partitions:?}"))
            ),
        }
    }

    /// The brokers, for messages.
    pub fn bootstrap_servers(&self) -> &str {
        self.read
            .kafka_params
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The `kafka.*` options without their prefix, checked by librdkafka; any other name must be
/// one of [`OPTION_NAMES`].
fn kafka_params(
    options: &SourceOptions,
    redaction: &Redaction,
) -> Result<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for (key, value) in &options.options {
        if let Some(param) = key.strip_prefix("kafka.") {
            if let Some((_, instead)) = RESERVED_KAFKA_PARAMS.iter().find(|(p, _)| *p == param) {
                return Err(Error::user(format!(
                    "Kafka option 'kafka.{param}' is not supported: {instead}"
                )));
            }
            params.insert(param.to_string(), value.clone());
        } else if !OPTION_NAMES.iter().any(|n| n.eq_ignore_ascii_case(key)) {
            return Err(Error::user(format!(
                "unknown Kafka option '{key}': expected one of {}, or a librdkafka property prefixed with 'kafka.' (e.g. 'kafka.bootstrap.servers')",
                OPTION_NAMES.join(", ")
            )));
        }
    }
    if params
        .get("bootstrap.servers")
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(Error::user(
            "Kafka option 'kafka.bootstrap.servers' must be set: expected host:port[,host:port…] of the brokers",
        ));
    }
    check_kafka_params(&params, redaction)?;
    Ok(params)
}

/// What to read: exactly one of `subscribe`, `subscribePattern` and `assign`, or the location.
fn subscription(location: &str, options: &SourceOptions) -> Result<Subscription> {
    let given: Vec<&str> = ["subscribe", "subscribePattern", "assign"]
        .into_iter()
        .filter(|n| options.get(n).is_some())
        .collect();
    let value = |name| options.get(name).unwrap_or_default();
    match given.as_slice() {
        [] if location.trim().is_empty() => Err(Error::user(
            "a Kafka source needs its topics: set one of the options 'subscribe', 'subscribePattern' or 'assign' (or the table's LOCATION)",
        )),
        [] => Ok(Subscription::Topics(topic_list("LOCATION", location)?)),
        ["subscribe"] => Ok(Subscription::Topics(topic_list(
            "subscribe",
            value("subscribe"),
        )?)),
        ["subscribePattern"] => {
            let pattern = value("subscribePattern").trim().to_string();
            if pattern.is_empty() {
                return Err(Error::user(
                    "Kafka option 'subscribePattern' is empty: expected a regular expression over topic names",
                ));
            }
            regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                Error::user(format!(
                    "Kafka option 'subscribePattern' is '{pattern}': not a regular expression ({e})"
                ))
            })?;
            Ok(Subscription::Pattern(pattern))
        }
        ["assign"] => Ok(Subscription::Assign(parse_assign(value("assign"))?)),
        several => Err(Error::user(format!(
            "Kafka options {} were all given: set only one of 'subscribe', 'subscribePattern' and 'assign'",
            several
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Where a run starts: a timestamp option wins over `startingOffsets`, as in Spark.
fn starting_offsets(options: &SourceOptions) -> Result<StartingOffsets> {
    if let Some(ts) = options.get("startingTimestamp") {
        return Ok(StartingOffsets::Timestamp(parse_timestamp(
            "startingTimestamp",
            ts,
        )?));
    }
    if let Some(json) = options.get("startingOffsetsByTimestamp") {
        return Ok(StartingOffsets::TimestampByPartition(
            parse_partition_offsets(
                "startingOffsetsByTimestamp",
                json,
                "milliseconds since the epoch",
                |t| t >= 0,
            )?,
        ));
    }
    match options.get("startingOffsets").map(str::trim) {
        None => Ok(StartingOffsets::Earliest),
        Some(v) if v.eq_ignore_ascii_case("earliest") => Ok(StartingOffsets::Earliest),
        Some(v) if v.eq_ignore_ascii_case("latest") => Ok(StartingOffsets::Latest),
        Some(v) if v.starts_with('{') => Ok(StartingOffsets::Specific(parse_partition_offsets(
            "startingOffsets",
            v,
            "offsets ≥ 0, -2 (earliest) or -1 (latest)",
            |o| o >= EARLIEST,
        )?)),
        Some(v) => Err(Error::user(format!(
            "Kafka option 'startingOffsets' is '{v}': expected earliest, latest, or JSON like {{\"topic\":{{\"0\":23,\"1\":-2}}}}"
        ))),
    }
}

/// Where a run ends (exclusive): a timestamp option wins over `endingOffsets`.
fn ending_offsets(options: &SourceOptions) -> Result<EndingOffsets> {
    if let Some(ts) = options.get("endingTimestamp") {
        return Ok(EndingOffsets::Timestamp(parse_timestamp(
            "endingTimestamp",
            ts,
        )?));
    }
    if let Some(json) = options.get("endingOffsetsByTimestamp") {
        return Ok(EndingOffsets::TimestampByPartition(
            parse_partition_offsets(
                "endingOffsetsByTimestamp",
                json,
                "milliseconds since the epoch",
                |t| t >= 0,
            )?,
        ));
    }
    match options.get("endingOffsets").map(str::trim) {
        None => Ok(EndingOffsets::Latest),
        Some(v) if v.eq_ignore_ascii_case("latest") => Ok(EndingOffsets::Latest),
        Some(v) if v.starts_with('{') => Ok(EndingOffsets::Specific(parse_partition_offsets(
            "endingOffsets",
            v,
            "offsets ≥ 0 or -1 (latest); -2 (earliest) cannot end a run",
            |o| o >= LATEST,
        )?)),
        Some(v) => Err(Error::user(format!(
            "Kafka option 'endingOffsets' is '{v}': expected latest or JSON like {{\"topic\":{{\"0\":23,\"1\":-1}}}} (earliest cannot end a run)"
        ))),
    }
}

fn timestamp_strategy(options: &SourceOptions) -> Result<TimestampStrategy> {
    match options
        .get("startingOffsetsByTimestampStrategy")
        .map(str::trim)
    {
        None => Ok(TimestampStrategy::Error),
        Some(v) if v.eq_ignore_ascii_case("error") => Ok(TimestampStrategy::Error),
        Some(v) if v.eq_ignore_ascii_case("latest") => Ok(TimestampStrategy::Latest),
        Some(v) => Err(Error::user(format!(
            "Kafka option 'startingOffsetsByTimestampStrategy' is '{v}': expected error or latest"
        ))),
    }
}

/// The options that tune a run rather than choose its records, with Spark's defaults.
struct Tunables {
    fail_on_data_loss: bool,
    include_headers: bool,
    min_partitions: Option<usize>,
    max_records_per_partition: Option<u64>,
    fetch_retries: u32,
    fetch_retry_interval: Duration,
    poll_timeout: Duration,
    read_ahead: usize,
}

impl Tunables {
    fn parse(options: &SourceOptions) -> Result<Self> {
        let flag = |name, default| match options.get(name) {
            Some(v) => parse_bool(name, v),
            None => Ok(default),
        };
        let millis = |name, default, parse: fn(&str, &str) -> Result<u64>| match options.get(name) {
            Some(v) => parse(name, v).map(Duration::from_millis),
            None => Ok(Duration::from_millis(default)),
        };
        Ok(Tunables {
            fail_on_data_loss: flag("failOnDataLoss", true)?,
            include_headers: flag("includeHeaders", false)?,
            min_partitions: options
                .get("minPartitions")
                .map(|v| parse_positive("minPartitions", v).map(|n| n as usize))
                .transpose()?,
            max_records_per_partition: options
                .get("maxRecordsPerPartition")
                .map(|v| parse_positive("maxRecordsPerPartition", v))
                .transpose()?,
            fetch_retries: match options.get("fetchOffset.numRetries") {
                Some(v) => {
                    parse_non_negative("fetchOffset.numRetries", v)?.min(u32::MAX as u64) as u32
                }
                None => 3,
            },
            fetch_retry_interval: millis("fetchOffset.retryIntervalMs", 10, parse_non_negative)?,
            poll_timeout: millis("kafkaConsumer.pollTimeoutMs", 120_000, parse_positive)?,
            read_ahead: match options.get("readAheadRanges") {
                Some(v) => match parse_non_negative("readAheadRanges", v)? {
                    n if n <= MAX_READ_AHEAD => n as usize,
                    _ => {
                        return Err(Error::user(format!(
                            "Kafka option 'readAheadRanges' is '{v}': expected at most {MAX_READ_AHEAD} (each range ahead holds a consumer and what it fetched)"
                        )));
                    }
                },
                None => DEFAULT_READ_AHEAD,
            },
        })
    }
}

/// What identifies the source within a query (two scans of one source share a run): its
/// location and options, secret values left out (the key is never stored, but is shown in
/// messages).
fn source_key(location: &str, options: &SourceOptions, redaction: &Redaction) -> String {
    let mut key = format!("kafka:{}", location.trim());
    for (k, v) in &options.options {
        key.push_str(&format!("|{}={}", spelled(k), redaction.value(k, v)));
    }
    key
}

/// librdkafka checks every property when a configuration is built (no connection is made), after
/// Spark's security options are translated (and secret files read).
pub(crate) fn check_kafka_params(
    params: &BTreeMap<String, String>,
    redaction: &Redaction,
) -> Result<()> {
    let config = super::security::client_config(params)?;
    config.create_native_config().map_err(|e| match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            let name = format!("kafka.{key}");
            let value = redaction.value(&name, &value);
            Error::user(format!(
                "Kafka option '{name}' = '{value}' is not accepted by librdkafka: {description}"
            ))
        }
        other => Error::user(format!("invalid Kafka client options: {other}")),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(location: &str, pairs: &[(&str, &str)]) -> Result<KafkaOptions> {
        let options = SourceOptions::normalize(pairs.iter().copied())?;
        KafkaOptions::parse(location, &options, &Redaction::default())
    }

    fn err(location: &str, pairs: &[(&str, &str)]) -> String {
        parse(location, pairs).unwrap_err().to_string()
    }

    const SERVERS: (&str, &str) = ("kafka.bootstrap.servers", "127.0.0.1:9092");

    #[test]
    fn defaults_follow_spark() {
        let o = parse("events", &[SERVERS]).unwrap();
        assert_eq!(o.subscription, Subscription::Topics(vec!["events".into()]));
        assert_eq!(o.starting, StartingOffsets::Earliest);
        assert_eq!(o.ending, EndingOffsets::Latest);
        assert!(o.read.fail_on_data_loss);
        assert!(!o.read.include_headers);
        assert_eq!(o.min_partitions, None);
        assert_eq!(o.fetch_retries, 3);
        assert_eq!(o.read.poll_timeout, Duration::from_secs(120));
        assert_eq!(o.bootstrap_servers(), "127.0.0.1:9092");
    }

    #[test]
    fn names_match_case_insensitively_and_lose_datafusions_prefix() {
        // What DataFusion hands a table factory for OPTIONS ('startingOffsets' 'latest', …).
        let o = parse(
            "a, b",
            &[
                SERVERS,
                ("format.startingoffsets", "LATEST"),
                ("format.checkpointlocation", "file:///tmp/cp"),
                ("format.includeheaders", "TRUE"),
                ("format.minpartitions", "4"),
            ],
        )
        .unwrap();
        assert_eq!(
            o.subscription,
            Subscription::Topics(vec!["a".into(), "b".into()])
        );
        assert_eq!(o.starting, StartingOffsets::Latest);
        assert_eq!(o.checkpoint_location.as_deref(), Some("file:///tmp/cp"));
        assert!(o.read.include_headers);
        assert_eq!(o.min_partitions, Some(4));
    }

    #[test]
    fn options_are_normalised_once_and_a_name_given_twice_is_an_error() {
        let options =
            SourceOptions::normalize([(" Format.StartingOffsets ", "earliest"), ("KAFKA.X", "1")])
                .unwrap();
        assert_eq!(options.get("startingOffsets"), Some("earliest"));
        assert_eq!(options.get("kafka.x"), Some("1"));
        let err = SourceOptions::normalize([("subscribe", "a"), ("SUBSCRIBE", "b")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Kafka option 'subscribe' is given twice"),
            "{err}"
        );
    }

    #[test]
    fn subscriptions() {
        let o = parse("ignored", &[SERVERS, ("subscribePattern", "ev.*")]).unwrap();
        assert_eq!(o.subscription, Subscription::Pattern("ev.*".into()));
        let o = parse("", &[SERVERS, ("assign", r#"{"t":[1,0,1]}"#)]).unwrap();
        assert_eq!(
            o.subscription,
            Subscription::Assign([("t".to_string(), vec![0, 1])].into())
        );
        let e = err(
            "",
            &[SERVERS, ("subscribe", "a"), ("assign", r#"{"t":[0]}"#)],
        );
        assert!(
            e.contains("'subscribe', 'assign'") && e.contains("only one"),
            "{e}"
        );
        let e = err("", &[SERVERS]);
        assert!(
            e.contains("'subscribe', 'subscribePattern' or 'assign'"),
            "{e}"
        );
        let e = err("", &[SERVERS, ("assign", r#"{"t":["x"]}"#)]);
        assert!(e.contains("'assign'") && e.contains("expected JSON"), "{e}");
        let e = err("", &[SERVERS, ("subscribePattern", "(")]);
        assert!(e.contains("'subscribePattern'"), "{e}");
    }

    #[test]
    fn offsets_json() {
        let o = parse(
            "t",
            &[
                SERVERS,
                ("startingOffsets", r#"{"t":{"0":23,"1":-2}}"#),
                ("endingOffsets", r#"{"t":{"0":50,"1":-1}}"#),
            ],
        )
        .unwrap();
        let StartingOffsets::Specific(s) = o.starting else {
            panic!("{:?}", o.starting)
        };
        assert_eq!(s["t"][&0], 23);
        assert_eq!(s["t"][&1], EARLIEST);
        let EndingOffsets::Specific(e) = o.ending else {
            panic!("{:?}", o.ending)
        };
        assert_eq!(e["t"][&1], LATEST);
        let e = err("t", &[SERVERS, ("endingOffsets", r#"{"t":{"0":-2}}"#)]);
        assert!(e.contains("'endingOffsets'") && e.contains("-2"), "{e}");
        let e = err("t", &[SERVERS, ("endingOffsets", "earliest")]);
        assert!(e.contains("'endingOffsets' is 'earliest'"), "{e}");
        let e = err("t", &[SERVERS, ("startingOffsets", "{\"t\":{\"0\":-3}}")]);
        assert!(e.contains("-3 is not allowed for t-0"), "{e}");
        let e = err("t", &[SERVERS, ("startingOffsets", "{oops")]);
        assert!(
            e.contains("'startingOffsets'") && e.contains("expected JSON"),
            "{e}"
        );
        let e = err("t", &[SERVERS, ("startingOffsets", "newest")]);
        assert!(e.contains("expected earliest, latest"), "{e}");
    }

    #[test]
    fn timestamps_take_precedence_as_in_spark() {
        let o = parse(
            "t",
            &[
                SERVERS,
                ("startingOffsets", "earliest"),
                ("startingOffsetsByTimestamp", r#"{"t":{"0":5}}"#),
                ("startingTimestamp", "1000"),
                ("endingOffsetsByTimestamp", r#"{"t":{"0":9000}}"#),
            ],
        )
        .unwrap();
        assert_eq!(o.starting, StartingOffsets::Timestamp(1000));
        assert!(matches!(o.ending, EndingOffsets::TimestampByPartition(_)));
        let e = err("t", &[SERVERS, ("startingTimestamp", "yesterday")]);
        assert!(e.contains("'startingTimestamp' is 'yesterday'"), "{e}");
    }

    #[test]
    fn latest_needs_a_checkpoint() {
        let e = err("t", &[SERVERS, ("startingOffsets", "latest")]);
        assert!(
            e.contains("'startingOffsets' is 'latest'") && e.contains("'checkpointLocation'"),
            "{e}"
        );
    }

    #[test]
    fn bad_options_are_named() {
        let e = err("t", &[SERVERS, ("startingOffset", "earliest")]);
        assert!(e.contains("unknown Kafka option 'startingoffset'"), "{e}");
        let e = err("t", &[]);
        assert!(e.contains("'kafka.bootstrap.servers' must be set"), "{e}");
        let e = err("t", &[SERVERS, ("kafka.auto.offset.reset", "earliest")]);
        assert!(
            e.contains("'kafka.auto.offset.reset' is not supported"),
            "{e}"
        );
        let e = err("t", &[SERVERS, ("kafka.no.such.property", "1")]);
        assert!(e.contains("'kafka.no.such.property'"), "{e}");
        let e = err("t", &[SERVERS, ("failOnDataLoss", "maybe")]);
        assert!(e.contains("'failOnDataLoss' is 'maybe'"), "{e}");
        let e = err("t", &[SERVERS, ("minPartitions", "0")]);
        assert!(e.contains("'minPartitions' is '0'"), "{e}");
        let e = err("t", &[SERVERS, ("maxRecordsPerPartition", "-5")]);
        assert!(e.contains("'maxRecordsPerPartition'"), "{e}");
    }

    #[test]
    fn the_key_identifies_the_source() {
        let a = parse("t", &[SERVERS, ("format.minpartitions", "2")]).unwrap();
        let b = parse("t", &[SERVERS, ("minPartitions", "2")]).unwrap();
        let c = parse("t", &[SERVERS, ("minPartitions", "3")]).unwrap();
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
    }
}
