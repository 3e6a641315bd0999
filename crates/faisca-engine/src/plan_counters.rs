//! What one task's scans read and its operators spilled, from the DataFusion metrics of its
//! stage plan: `scan.<kind>.rows` and `scan.<kind>.bytes` per kind of source (`parquet`, `csv`,
//! `json`, `arrow`, `avro`, `memory`), and `spill.bytes`.
//!
//! A stage's plan is shared by the tasks of the stage on one executor, and its nodes' metrics
//! accumulate over them. Every metric here is one of the task's own partition, and the task
//! takes the difference of a [`PlanCounters`] read before it runs and one read after, so what
//! an earlier run of the same partition counted is not counted again (a failed attempt's
//! stage is prepared afresh anyway). A scan's
//! bytes are Parquet's `bytes_scanned` (what was read, after pruning); other file formats have
//! no such metric and count the byte ranges of the files the partition was given.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::scan_files::file_scan_config;
use crate::task_metrics::SPILL_BYTES;

/// Counter values by name, for one partition of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanCounters(BTreeMap<String, u64>);

impl PlanCounters {
    /// The counters of partition `partition` of `plan` now.
    pub fn read(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> Self {
        let mut counters = BTreeMap::new();
        let _ = plan.apply(|node| {
            add_node(node, partition, &mut counters);
            Ok(TreeNodeRecursion::Continue)
        });
        PlanCounters(counters)
    }

    /// What grew from `before` to `self`, without the counters that did not move; the file
    /// range bytes of the partition's non-Parquet scans are added whole (they are no metric).
    pub fn since(
        &self,
        before: &PlanCounters,
        plan: &Arc<dyn ExecutionPlan>,
        partition: usize,
    ) -> BTreeMap<String, u64> {
        let mut grown: BTreeMap<String, u64> = self
            .0
            .iter()
            .filter_map(|(name, now)| {
                let delta = now.saturating_sub(before.0.get(name).copied().unwrap_or(0));
                (delta > 0).then(|| (name.clone(), delta))
            })
            .collect();
        for (kind, bytes) in assigned_file_bytes(plan, partition) {
            *grown.entry(format!("scan.{kind}.bytes")).or_default() += bytes;
        }
        grown
    }
}

/// The kind of source `node` reads, when it is a scan.
fn source_kind(node: &Arc<dyn ExecutionPlan>) -> Option<String> {
    if let Some(config) = file_scan_config(node) {
        return Some(config.file_source().file_type().to_ascii_lowercase());
    }
    let scan = node.downcast_ref::<DataSourceExec>()?;
    if scan
        .data_source()
        .as_ref()
        .downcast_ref::<MemorySourceConfig>()
        .is_some()
    {
        return Some("memory".to_string());
    }
    None
}

fn add_node(node: &Arc<dyn ExecutionPlan>, partition: usize, counters: &mut BTreeMap<String, u64>) {
    let Some(metrics) = node.metrics() else {
        return;
    };
    let kind = source_kind(node);
    for metric in metrics.iter() {
        if metric.partition() != Some(partition) {
            continue;
        }
        let value = metric.value();
        let name = match (value.name(), &kind) {
            ("spilled_bytes", _) => SPILL_BYTES.to_string(),
            ("output_rows", Some(kind)) => format!("scan.{kind}.rows"),
            ("bytes_scanned", Some(kind)) => format!("scan.{kind}.bytes"),
            _ => continue,
        };
        *counters.entry(name).or_default() += value.as_usize() as u64;
    }
}

/// Bytes of the file ranges partition `partition` of each non-Parquet file scan was given.
fn assigned_file_bytes(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(config) = file_scan_config(node)
            && let Some(group) = config.file_groups.get(partition)
        {
            let kind = config.file_source().file_type().to_ascii_lowercase();
            if kind != "parquet" {
                let bytes: u64 = group
                    .iter()
                    .map(|file| match &file.range {
                        Some(range) => (range.end - range.start).max(0) as u64,
                        None => file.object_meta.size,
                    })
                    .sum();
                found.push((kind, bytes));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::ExecutionPlanProperties;
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    use futures::TryStreamExt;

    #[tokio::test]
    async fn a_partitions_scan_rows_and_bytes_are_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let text: String = std::iter::once("a,b\n".to_string())
            .chain((0..100).map(|i| format!("{i},{}\n", i * 2)))
            .collect();
        std::fs::write(&path, &text).unwrap();
        // One partition: no repartitioning above the scan.
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(1),
        );
        ctx.register_csv("t", path.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let plan = ctx
            .sql("SELECT a FROM t WHERE b >= 0")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        assert_eq!(plan.output_partitioning().partition_count(), 1);
        let before = PlanCounters::read(&plan, 0);
        let batches: Vec<_> = plan
            .execute(0, ctx.task_ctx())
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100);
        let after = PlanCounters::read(&plan, 0);
        let grown = after.since(&before, &plan, 0);
        assert_eq!(grown.get("scan.csv.rows"), Some(&100));
        assert_eq!(grown.get("scan.csv.bytes"), Some(&(text.len() as u64)));
        // Nothing ran since: no rows grew (the file bytes are the partition's, not a metric).
        let again = PlanCounters::read(&plan, 0).since(&after, &plan, 0);
        assert_eq!(again.get("scan.csv.rows"), None);
        // Another partition's counters are not this one's.
        assert_eq!(PlanCounters::read(&plan, 1), PlanCounters::default());
    }
}
