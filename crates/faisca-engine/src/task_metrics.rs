//! A task's named counters: what its operators count beside the rows they produce (e.g. the
//! records a topic read as a table skips for having no key), reported with the task's status
//! and summed per job by the driver.
//!
//! Stage plans are shared by the tasks of a stage on one executor, so the counters cannot live
//! in the plan's nodes: each task runs with a [`TaskContext`] of its own that carries its
//! [`TaskMetrics`] as a session-config extension ([`for_task`]), and a node that counts finds
//! them there ([`TaskMetrics::of`]). A node run without them (a single-process DataFusion
//! session, a unit test) counts nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::execution::TaskContext;

/// Records a Kafka topic read as a table (`asTable`) skipped because their key is null.
pub const KAFKA_NULL_KEYS_SKIPPED: &str = "kafka.nullKeyRecordsSkipped";

/// Records a Kafka scan read.
pub const KAFKA_RECORDS_READ: &str = "kafka.recordsRead";
/// Kafka ranges read by a kept consumer already positioned at their start (the previous
/// micro-batch's reader of the partition left it there).
pub const KAFKA_RANGES_CONTINUED: &str = "kafka.rangesContinued";

/// Shuffle bytes a task fetched from other executors (Flight message bytes, as sent).
pub const SHUFFLE_BYTES_FETCHED: &str = "shuffle.bytesFetched";
/// Shuffle bytes a task read from its own executor (files or memory).
pub const SHUFFLE_LOCAL_BYTES_READ: &str = "shuffle.localBytesRead";
/// Microseconds a task's shuffle fetches waited for their answers to start.
pub const SHUFFLE_FETCH_WAIT_MICROS: &str = "shuffle.fetchWaitMicros";
/// Shuffle output bytes a task moved to its spill file.
pub const SPILL_BYTES: &str = "spill.bytes";

/// The largest event time (microseconds since the epoch) a streaming query's watermark node saw.
pub const MAX_EVENT_TIME: &str = "watermark.maxEventTimeMicros.max";
/// State rows a streaming stateful operator holds after the batch (summed over partitions).
pub const STATE_ROWS_TOTAL: &str = "state.numRowsTotal";
/// State rows the batch changed.
pub const STATE_ROWS_UPDATED: &str = "state.numRowsUpdated";
/// State rows the batch removed (evicted behind the watermark).
pub const STATE_ROWS_REMOVED: &str = "state.numRowsRemoved";
/// Input rows a stateful operator dropped as late.
pub const STATE_ROWS_DROPPED_BY_WATERMARK: &str = "state.numRowsDroppedByWatermark";
/// Memory the state holds, in bytes.
pub const STATE_MEMORY_USED_BYTES: &str = "state.memoryUsedBytes";

/// How two values of the counter `name` combine, within a task and across a job's tasks: a
/// counter whose name ends in `.max` keeps the largest, every other one is a sum.
pub fn combine(name: &str, a: u64, b: u64) -> u64 {
    if name.ends_with(".max") {
        a.max(b)
    } else {
        a.saturating_add(b)
    }
}

/// One task's counters by name.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    counters: Mutex<BTreeMap<Cow<'static, str>, u64>>,
}

impl TaskMetrics {
    /// The counters of the task `context` runs, if it has them.
    pub fn of(context: &TaskContext) -> Option<Arc<TaskMetrics>> {
        context.session_config().get_extension::<TaskMetrics>()
    }

    /// Adds `n` to the counter `name` (keeps the larger for a `.max` counter, see [`combine`]).
    pub fn add(&self, name: &'static str, n: u64) {
        self.add_named(Cow::Borrowed(name), n);
    }

    /// [`TaskMetrics::add`] for a name made at run time (`scan.parquet.rows`).
    pub fn add_named(&self, name: Cow<'static, str>, n: u64) {
        let mut counters = self.counters.lock().expect("task metrics");
        let value = counters.entry(name.clone()).or_default();
        *value = combine(&name, *value, n);
    }

    /// Every counter, by name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .expect("task metrics")
            .iter()
            .map(|(name, n)| (name.to_string(), *n))
            .collect()
    }
}

/// A context for one task: `stage`'s with `metrics` attached.
pub fn for_task(stage: &TaskContext, metrics: Arc<TaskMetrics>) -> Arc<TaskContext> {
    let config = stage.session_config().clone().with_extension(metrics);
    Arc::new(TaskContext::new(
        stage.task_id(),
        stage.session_id(),
        config,
        stage.scalar_functions().clone(),
        stage.higher_order_functions().clone(),
        stage.aggregate_functions().clone(),
        stage.window_functions().clone(),
        stage.runtime_env(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_context_has_its_own_counters() {
        let stage = TaskContext::default();
        assert!(TaskMetrics::of(&stage).is_none());
        let (a, b) = (
            Arc::new(TaskMetrics::default()),
            Arc::new(TaskMetrics::default()),
        );
        let (task_a, task_b) = (for_task(&stage, a.clone()), for_task(&stage, b.clone()));
        TaskMetrics::of(&task_a)
            .unwrap()
            .add(KAFKA_NULL_KEYS_SKIPPED, 2);
        TaskMetrics::of(&task_a)
            .unwrap()
            .add(KAFKA_NULL_KEYS_SKIPPED, 3);
        TaskMetrics::of(&task_b).unwrap().add("other", 1);
        assert_eq!(
            a.snapshot(),
            BTreeMap::from([(KAFKA_NULL_KEYS_SKIPPED.to_string(), 5)])
        );
        assert_eq!(b.snapshot(), BTreeMap::from([("other".to_string(), 1)]));
        assert!(TaskMetrics::of(&stage).is_none());
    }
}
