//! Kafka consumers kept between tasks of one process, as Spark's executors keep theirs
//! (`spark.kafka.consumer.cache.*`): a range reader takes an idle consumer of the same settings,
//! or makes one, and gives it back when it read its range without error. Starting a consumer
//! (connections, metadata) costs far more than reading a micro-batch's few records.
//!
//! A consumer comes back in one of two ways:
//!
//! * **positioned**: still assigned to the partition it read, every record before its next
//!   offset taken and none at or after it. Whatever it prefetched stays queued, so the reader of
//!   the partition's next range — the next micro-batch starts where the last one ended — goes on
//!   without a new assignment and without fetching again what was already fetched. (A broker that
//!   answers a fetch with the partition's whole remaining log, as noida-db does, would otherwise
//!   send the rest of the log once per micro-batch.)
//! * **unassigned**: whatever it had fetched is dropped; the next reader assigns its own range.
//!
//! A reader asks for its partition at its start offset and gets, in this order: the consumer
//! positioned there, an unassigned one, one positioned elsewhere in the same partition (to be
//! assigned again), or none (it makes one). A consumer that saw an error is dropped, not kept.
//! At most [`CAPACITY`] consumers wait, none longer than [`IDLE_TIMEOUT`]: a positioned one keeps
//! fetching in librdkafka's background threads until its queue is full, so [`expire`] is also
//! called by whoever owns the process's clock (an executor's heartbeat).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};

use faisca_common::locations::AllowedLocations;

use super::options::ReadOptions;
use super::reader::ReaderContext;

/// Most idle consumers kept (Spark's `spark.kafka.consumer.cache.capacity`).
pub const CAPACITY: usize = 64;
/// Longest an idle consumer is kept (Spark's `spark.kafka.consumer.cache.timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A consumer of the range reader.
pub type PooledConsumer = Arc<StreamConsumer<ReaderContext>>;

/// Where a positioned consumer stands: assigned to this partition alone, every record before
/// `next` taken and none at or after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset its next record would have.
    pub next: i64,
}

impl Position {
    fn same_partition(&self, other: &Position) -> bool {
        self.partition == other.partition && self.topic == other.topic
    }
}

/// How a taken consumer stands.
pub enum Taken {
    /// Positioned at the offset asked for: read on without assigning.
    Positioned(PooledConsumer),
    /// Unassigned, or assigned elsewhere: assign the range first.
    ToAssign(PooledConsumer),
}

struct Idle {
    since: Instant,
    consumer: PooledConsumer,
    at: Option<Position>,
}

#[derive(Default)]
struct Pool {
    /// Idle consumers by their settings ([`key`]).
    idle: HashMap<String, Vec<Idle>>,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Default::default);

/// What identifies consumers that can stand in for each other: their settings, and where they
/// may connect.
fn key(read: &ReadOptions, allowed: &AllowedLocations) -> String {
    let mut params: Vec<(&String, &String)> = read.kafka_params.iter().collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(std::iter::once(format!(
            "allowed={}",
            allowed.to_config_value()
        )))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Pool {
    /// Takes out the consumers idle past [`IDLE_TIMEOUT`] (closed by the caller, once the pool
    /// is unlocked: closing a client waits for its threads).
    fn expire(&mut self, now: Instant) -> Vec<Idle> {
        let mut expired = Vec::new();
        for consumers in self.idle.values_mut() {
            let (keep, gone) = std::mem::take(consumers)
                .into_iter()
                .partition(|c| now.saturating_duration_since(c.since) < IDLE_TIMEOUT);
            *consumers = keep;
            expired.extend::<Vec<Idle>>(gone);
        }
        self.idle.retain(|_, consumers| !consumers.is_empty());
        expired
    }

    fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    /// Makes room for one more: the longest idle consumer goes (to be closed by the caller).
    fn make_room(&mut self) -> Option<Idle> {
        if self.len() < CAPACITY {
            return None;
        }
        let oldest = self
            .idle
            .iter()
            .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, c)| (k, i, c.since)))
            .min_by_key(|(_, _, since)| *since)
            .map(|(k, i, _)| (k.clone(), i));
        let (key, index) = oldest?;
        Some(self.idle.get_mut(&key)?.remove(index))
    }
}

/// An idle consumer with `read`'s settings, held to `allowed`, for reading `want`'s partition
/// from `want.next`, if one is kept (see the module's overview for which one).
pub fn take(read: &ReadOptions, allowed: &AllowedLocations, want: &Position) -> Option<Taken> {
    let mut pool = POOL.lock().ok()?;
    let expired = pool.expire(Instant::now());
    if !expired.is_empty() {
        drop(pool);
        drop(expired);
        pool = POOL.lock().ok()?;
    }
    let consumers = pool.idle.get_mut(&key(read, allowed))?;
    let exact = consumers.iter().position(|c| c.at.as_ref() == Some(want));
    if let Some(index) = exact {
        return Some(Taken::Positioned(consumers.swap_remove(index).consumer));
    }
    let other = consumers.iter().rposition(|c| c.at.is_none()).or_else(|| {
        consumers
            .iter()
            .position(|c| c.at.as_ref().is_some_and(|at| at.same_partition(want)))
    })?;
    Some(Taken::ToAssign(consumers.swap_remove(other).consumer))
}

/// Keeps `consumer` (which read without error, and which nothing else will use: its reader is
/// done with it) for a later reader with `read`'s settings held to `allowed`: positioned at
/// `at`, or unassigned when `at` is `None`.
pub fn give_back(
    read: &ReadOptions,
    allowed: &AllowedLocations,
    consumer: PooledConsumer,
    at: Option<Position>,
) {
    // Nothing it fetched may reach a reader of another range.
    if at.is_none() && consumer.unassign().is_err() {
        return;
    }
    let Ok(mut pool) = POOL.lock() else {
        return;
    };
    let now = Instant::now();
    // Closed once the pool is unlocked.
    let mut closing = pool.expire(now);
    if let Some(at) = &at
        && let Some(consumers) = pool.idle.get_mut(&key(read, allowed))
    {
        // One consumer positioned in a partition at a time: an older one is behind this one.
        let (behind, keep) = std::mem::take(consumers)
            .into_iter()
            .partition(|c| c.at.as_ref().is_some_and(|a| a.same_partition(at)));
        *consumers = keep;
        closing.extend::<Vec<Idle>>(behind);
    }
    closing.extend(pool.make_room());
    pool.idle.entry(key(read, allowed)).or_default().push(Idle {
        since: now,
        consumer,
        at,
    });
    drop(pool);
    drop(closing);
}

/// Drops consumers idle longer than [`IDLE_TIMEOUT`] (positioned ones keep fetching until then).
pub fn expire() {
    let expired = match POOL.lock() {
        Ok(mut pool) => pool.expire(Instant::now()),
        Err(_) => return,
    };
    drop(expired);
}

/// Idle consumers kept now (for tests).
pub fn idle() -> usize {
    POOL.lock().map(|p| p.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::broker::consumer_config;

    fn read(servers: &str) -> ReadOptions {
        ReadOptions {
            kafka_params: [("bootstrap.servers".to_string(), servers.to_string())]
                .into_iter()
                .collect(),
            include_headers: false,
            fail_on_data_loss: true,
            poll_timeout: Duration::from_secs(1),
            read_ahead: 0,
        }
    }

    fn at(partition: i32, next: i64) -> Position {
        Position {
            topic: "t".into(),
            partition,
            next,
        }
    }

    fn consumer(read: &ReadOptions) -> PooledConsumer {
        // Creating a consumer connects to nothing yet.
        Arc::new(
            super::super::client::create(
                &consumer_config(read).unwrap(),
                ReaderContext::new(&AllowedLocations::default()),
            )
            .unwrap(),
        )
    }

    fn pointer(taken: Option<Taken>) -> (bool, *const StreamConsumer<ReaderContext>) {
        match taken.expect("a consumer") {
            Taken::Positioned(c) => (true, Arc::as_ptr(&c)),
            Taken::ToAssign(c) => (false, Arc::as_ptr(&c)),
        }
    }

    // One test: the pool is the process's.
    #[tokio::test]
    async fn consumers_serve_readers_of_the_same_settings_positioned_ones_only_where_they_stand() {
        let a = read("127.0.0.1:1");
        let all = AllowedLocations::default();
        let unassigned = consumer(&a);
        let unassigned_ptr = Arc::as_ptr(&unassigned);
        give_back(&a, &all, unassigned, None);
        assert!(take(&read("127.0.0.1:2"), &all, &at(0, 0)).is_none());
        let narrower = AllowedLocations::parse("kafka://127.0.0.1:1");
        assert!(take(&a, &narrower, &at(0, 0)).is_none(), "another rule");
        assert_eq!(pointer(take(&a, &all, &at(0, 0))), (false, unassigned_ptr));
        assert!(take(&a, &all, &at(0, 0)).is_none());

        // Positioned at partition 3, offset 10: taken as such only there.
        let positioned = consumer(&a);
        let positioned_ptr = Arc::as_ptr(&positioned);
        give_back(&a, &all, positioned, Some(at(3, 10)));
        assert!(take(&a, &all, &at(4, 10)).is_none(), "another partition");
        assert_eq!(pointer(take(&a, &all, &at(3, 10))), (true, positioned_ptr));

        // Elsewhere in its partition: assigned again rather than made anew.
        give_back(&a, &all, consumer(&a), Some(at(3, 10)));
        assert!(!pointer(take(&a, &all, &at(3, 12))).0);

        // A newer position in a partition replaces the older one.
        give_back(&a, &all, consumer(&a), Some(at(5, 10)));
        let newer = consumer(&a);
        let newer_ptr = Arc::as_ptr(&newer);
        give_back(&a, &all, newer, Some(at(5, 20)));
        assert_eq!(idle(), 1);
        assert_eq!(pointer(take(&a, &all, &at(5, 20))), (true, newer_ptr));
        assert_eq!(idle(), 0);
    }
}
