//! Kafka scans of a plan, and [`ApplyKafkaTasks`], the rule that gives each the tasks of its run.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::options::KafkaOptions;
use faisca_connectors::kafka::{KnownEnds, OffsetRange};
use faisca_engine::kafka::KafkaScanExec;

/// The distinct Kafka sources `plan` scans (by their key), with their options.
pub fn kafka_sources(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<Arc<KafkaOptions>>> {
    let mut sources: Vec<Arc<KafkaOptions>> = Vec::new();
    let mut missing = false;
    plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<KafkaScanExec>() {
            match scan.options() {
                Some(o) if !sources.iter().any(|s| s.key == o.key) => sources.push(o.clone()),
                Some(_) => {}
                None => missing = true,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if missing {
        return Err(Error::internal(
            "a Kafka scan without its options reached the driver's planner",
        ));
    }
    Ok(sources)
}

/// A physical optimizer rule, placed before every other rule, that gives each Kafka scan the
/// tasks planned for its source (by key), so that DataFusion's distribution rules see the real
/// number of partitions.
#[derive(Debug, Default)]
pub struct ApplyKafkaTasks {
    tasks: HashMap<String, Vec<Vec<OffsetRange>>>,
    known_ends: HashMap<String, Arc<KnownEnds>>,
}

impl ApplyKafkaTasks {
    /// A rule applying `tasks` to the scans of the sources with those keys.
    pub fn new(tasks: HashMap<String, Vec<Vec<OffsetRange>>>) -> Self {
        ApplyKafkaTasks {
            tasks,
            known_ends: HashMap::new(),
        }
    }

    /// This rule, also telling the scans where their partitions ended when a streaming
    /// micro-batch's ranges were planned (by source key).
    pub fn with_known_ends(self, known_ends: HashMap<String, Arc<KnownEnds>>) -> Self {
        ApplyKafkaTasks { known_ends, ..self }
    }
}

impl PhysicalOptimizerRule for ApplyKafkaTasks {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rewritten = plan.transform_up(|node| {
            let Some(scan) = node.downcast_ref::<KafkaScanExec>() else {
                return Ok(Transformed::no(node));
            };
            match self.tasks.get(scan.key()) {
                Some(tasks) => {
                    let mut scan = scan.with_tasks(tasks.clone());
                    if let Some(ends) = self.known_ends.get(scan.key()) {
                        scan = scan.with_known_ends(ends.clone());
                    }
                    Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
                }
                None => Ok(Transformed::no(node)),
            }
        })?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "faisca_apply_kafka_tasks"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
