//! Kafka: the source (offsets planned once per query on the driver, exact ranges read on
//! executors) and the sink.
//!
//! * [`options`]: Spark's option names (`subscribe`, `startingOffsets`, `kafka.*`, …),
//!   normalised where they enter and parsed and checked when the table is created.
//! * [`resolve`]: pure planning of one run's half-open `[start, end)` range per topic-partition
//!   from the options, the brokers' offsets and the previous run's checkpoint; data-loss rules.
//! * [`splits`]: ranges cut into tasks (`maxRecordsPerPartition`, `minPartitions`, the default
//!   records per task).
//! * [`broker`]: the [`resolve::OffsetSource`] backed by librdkafka (metadata, watermarks,
//!   offsets by time), with bounded retries; committing offsets to a consumer group.
//! * [`checkpoint`]: Spark's `offsets/` and `commits/` logs in any object store: a run records its
//!   ranges before it starts and a commit after its output is delivered, so a run that died in
//!   between is redone with the same ranges.
//! * [`run`]: one query's run of a source on the driver: plan its ranges (or redo the batch a
//!   failed run left), record them before the job starts, record the commit after.
//! * [`reader`]: reads a task's ranges with `assign()` (no consumer group) into Arrow batches of
//!   Spark's row schema ([`schema`]).
//! * [`stream`]: the source in a streaming query: its options (streaming's rules) and each
//!   micro-batch's ranges.
//! * [`trigger`]: how much a streaming micro-batch reads (`maxOffsetsPerTrigger` split by
//!   backlog, `minOffsetsPerTrigger` and `maxTriggerDelay`), as Spark's source decides it.
//! * [`client`]: every Kafka client is made there: each connection librdkafka makes, to a
//!   bootstrap broker or to one the metadata advertised later, is checked against the allowed
//!   locations on the address it connects to; refused logins and brokers are kept for the
//!   client's owner to fail with.
//! * [`security`]: Spark's security options (`kafka.sasl.jaas.config`, Java key stores)
//!   translated to librdkafka's, secrets read from files, refused logins recognised.
//! * [`sink`]: the Kafka sink: a write's options (durable producer defaults) and the producer a
//!   task sends its rows with, every delivery confirmed before the task succeeds.

pub mod broker;
pub mod checkpoint;
pub mod client;
pub mod consumer_pool;
pub mod options;
pub mod reader;
pub mod resolve;
pub mod run;
pub mod schema;
pub mod security;
pub mod sink;
pub mod splits;
pub mod stream;
pub mod trigger;

use serde::{Deserialize, Serialize};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where partitions ended (their next offset) when a streaming micro-batch was planned: a range
/// reader keeps its consumer positioned past a range only where records are known to follow
/// (see [`consumer_pool`]). Empty for batch reads.
pub type KnownEnds = std::collections::BTreeMap<TopicPartition, i64>;

/// The records of one topic-partition with offsets in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// First offset not read.
    pub end: i64,
}

impl OffsetRange {
    /// Offsets in the range (records, unless some are transaction markers or aborted).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).max(0) as u64
    }

    /// Whether the range holds no offset.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Its topic-partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

impl std::fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{} [{}, {})",
            self.topic, self.partition, self.start, self.end
        )
    }
}
