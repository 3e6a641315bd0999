//! Kafka consumers kept between tasks of one process, as Spark's executors keep theirs
//! (`spark.kafka.consumer.cache.*`): a task's range reader takes an idle consumer of the same
//! settings, or makes one, and gives it back when it read its ranges without error. Starting a
//! consumer (connections, metadata) costs far more than reading a micro-batch's few records.
//!
//! A consumer is unassigned before it is kept, which drops whatever it had fetched; a reader then
//! assigns its own ranges. A consumer that saw an error is dropped, not kept. At most
//! [`CAPACITY`] consumers wait, none longer than [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};

use super::options::ReadOptions;
use super::reader::ReaderContext;

/// Most idle consumers kept (Spark's `spark.kafka.consumer.cache.capacity`).
pub const CAPACITY: usize = 64;
/// Longest an idle consumer is kept (Spark's `spark.kafka.consumer.cache.timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A consumer of the range reader.
pub type PooledConsumer = Arc<StreamConsumer<ReaderContext>>;

#[derive(Default)]
struct Pool {
    idle: HashMap<String, Vec<(Instant, PooledConsumer)>>,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Default::default);

/// What identifies consumers that can stand in for each other: their settings.
fn key(read: &ReadOptions) -> String {
    let mut params: Vec<(&String, &String)> = read.kafka_params.iter().collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Pool {
    fn expire(&mut self, now: Instant) {
        for consumers in self.idle.values_mut() {
            consumers.retain(|(since, _)| now.saturating_duration_since(*since) < IDLE_TIMEOUT);
        }
        self.idle.retain(|_, consumers| !consumers.is_empty());
    }

    fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }
}

/// An idle consumer with `read`'s settings, if one is kept.
pub fn take(read: &ReadOptions) -> Option<PooledConsumer> {
    let mut pool = POOL.lock().ok()?;
    pool.expire(Instant::now());
    let consumers = pool.idle.get_mut(&key(read))?;
    consumers.pop().map(|(_, consumer)| consumer)
}

/// Keeps `consumer` (which read without error, and which nothing else will use: its reader is
/// being dropped) for a later task with `read`'s settings.
pub fn give_back(read: &ReadOptions, consumer: PooledConsumer) {
    // Nothing it fetched may reach the next reader.
    if consumer.unassign().is_err() {
        return;
    }
    let Ok(mut pool) = POOL.lock() else {
        return;
    };
    let now = Instant::now();
    pool.expire(now);
    if pool.len() >= CAPACITY {
        // The longest idle one goes.
        if let Some((key, index)) = pool
            .idle
            .iter()
            .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, (t, _))| (k, i, *t)))
            .min_by_key(|(_, _, t)| *t)
            .map(|(k, i, _)| (k.clone(), i))
            && let Some(consumers) = pool.idle.get_mut(&key)
        {
            consumers.remove(index);
        }
    }
    pool.idle
        .entry(key(read))
        .or_default()
        .push((now, consumer));
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
        }
    }

    #[tokio::test]
    async fn a_consumer_given_back_serves_the_next_reader_of_the_same_settings_only() {
        // Creating a consumer connects to nothing yet.
        let a = read("127.0.0.1:1");
        let consumer: PooledConsumer = Arc::new(
            consumer_config(&a)
                .create_with_context(ReaderContext)
                .unwrap(),
        );
        let pointer = Arc::as_ptr(&consumer);
        give_back(&a, consumer);
        assert!(take(&read("127.0.0.1:2")).is_none());
        let again = take(&a).expect("the consumer given back");
        assert_eq!(Arc::as_ptr(&again), pointer);
        assert!(take(&a).is_none());
    }
}
