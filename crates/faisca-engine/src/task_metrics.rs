//! A task's named counters: what its operators count beside the rows they produce (e.g. the
//! records a topic read as a table skips for having no key), reported with the task's status
//! and summed per job by the driver.
//!
//! Stage plans are shared by the tasks of a stage on one executor, so the counters cannot live
//! in the plan's nodes: each task runs with a [`TaskContext`] of its own that carries its
//! [`TaskMetrics`] as a session-config extension ([`for_task`]), and a node that counts finds
//! them there ([`TaskMetrics::of`]). A node run without them (a single-process DataFusion
//! session, a unit test) counts nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::execution::TaskContext;

/// Records a Kafka topic read as a table (`asTable`) skipped because their key is null.
pub const KAFKA_NULL_KEYS_SKIPPED: &str = "kafka.nullKeyRecordsSkipped";

/// One task's counters by name.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    counters: Mutex<BTreeMap<&'static str, u64>>,
}

impl TaskMetrics {
    /// The counters of the task `context` runs, if it has them.
    pub fn of(context: &TaskContext) -> Option<Arc<TaskMetrics>> {
        context.session_config().get_extension::<TaskMetrics>()
    }

    /// Adds `n` to the counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        *self
            .counters
            .lock()
            .expect("task metrics")
            .entry(name)
            .or_default() += n;
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
