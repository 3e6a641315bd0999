//! Rewrites that make a single-process DataFusion plan correct when its partitions run as
//! separate tasks.
//!
//! A join that collects its left side once and shares it between partitions (`CollectLeft` hash
//! joins, nested-loop joins) emits left-side rows that depend on *every* probe partition — the
//! unmatched rows of `LEFT`/`FULL` joins, the matches of `LEFT SEMI`/`LEFT ANTI`/`LEFT MARK` — from
//! whichever partition of the process finishes last, using a bitmap shared in memory. Tasks in
//! different processes share no such bitmap, so each would see only its own matches. Such joins
//! become partitioned hash joins (both sides hash-repartitioned on the join keys: every key meets its
//! matches in one task), or, where no keys allow that (nested loops, null-aware anti joins whose
//! answer depends on a NULL anywhere on the right), run with their probe side in one partition.
//!
//! One rewrite works around a DataFusion bug rather than a distribution hazard: DataFusion 55's
//! top-k aggregation (a grouped aggregate under `ORDER BY key LIMIT n` that keeps only the groups
//! the limit needs) loses track of a group whose key is NaN (NaN ≠ NaN in its hash table) and
//! panics; over float keys the aggregate keeps every group and the sort above it takes the top.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{
    HashJoinExec, HashJoinExecBuilder, NestedLoopJoinExec, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use faisca_common::Result;

/// Whether the join emits left-side rows only after seeing every probe partition.
fn needs_all_probe_partitions(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
            | JoinType::Full
    )
}

/// The input of a merge into one partition (what a collected left side sits on), which a
/// hash repartition can read directly: merging first would cost a stage of one task.
fn without_merge(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match plan.downcast_ref::<CoalescePartitionsExec>() {
        Some(merge) if merge.fetch().is_none() => merge.input().clone(),
        _ => plan,
    }
}

/// A top-k aggregate over a float key, as a plain aggregate (see the module docs).
fn without_float_top_k(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let aggregate = node.downcast_ref::<AggregateExec>()?;
    aggregate.limit_options()?.descending()?;
    let input_schema = aggregate.input().schema();
    let float_key = aggregate
        .group_expr()
        .expr()
        .iter()
        .any(|(key, _)| key.data_type(&input_schema).is_ok_and(|t| t.is_floating()));
    float_key.then(|| Arc::new(aggregate.with_new_limit_options(None)) as Arc<dyn ExecutionPlan>)
}

/// Apply the rewrites described in the module docs.
pub fn make_distributable(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let rewritten = plan.transform_up(|node| {
        if let Some(plain) = without_float_top_k(&node) {
            return Ok(Transformed::yes(plain));
        }
        if node.output_partitioning().partition_count() <= 1 {
            return Ok(Transformed::no(node));
        }
        if let Some(join) = node.downcast_ref::<HashJoinExec>()
            && *join.partition_mode() == PartitionMode::CollectLeft
            && needs_all_probe_partitions(*join.join_type())
        {
            let partitions = node.output_partitioning().partition_count();
            let (left, right) = (join.left().clone(), join.right().clone());
            let new = if join.null_aware {
                HashJoinExecBuilder::from(join)
                    .with_new_children(vec![left, Arc::new(CoalescePartitionsExec::new(right))])?
                    .build()?
            } else {
                let left_keys = join.on().iter().map(|(l, _)| l.clone()).collect();
                let right_keys = join.on().iter().map(|(_, r)| r.clone()).collect();
                let left = Arc::new(RepartitionExec::try_new(
                    without_merge(left),
                    Partitioning::Hash(left_keys, partitions),
                )?);
                let right = Arc::new(RepartitionExec::try_new(
                    without_merge(right),
                    Partitioning::Hash(right_keys, partitions),
                )?);
                HashJoinExecBuilder::from(join)
                    .with_partition_mode(PartitionMode::Partitioned)
                    .with_new_children(vec![left, right])?
                    .build()?
            };
            return Ok(Transformed::yes(Arc::new(new) as Arc<dyn ExecutionPlan>));
        }
        if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
            && needs_all_probe_partitions(*join.join_type())
        {
            let right: Arc<dyn ExecutionPlan> =
                Arc::new(CoalescePartitionsExec::new(join.right().clone()));
            #[allow(deprecated)]
            let new = node
                .clone()
                .with_new_children(vec![join.left().clone(), right])?;
            return Ok(Transformed::yes(new));
        }
        Ok(Transformed::no(node))
    })?;
    Ok(rewritten.data)
}
