//! Stage cutting.
//!
//! The plan is cut at every exchange: a hash or round-robin repartition becomes a stage whose
//! tasks write hash partitions, a merge into one partition (or a sort-preserving merge) reads the
//! per-task outputs of a stage below it, and a join that collects its left side in every task
//! reads that side from a stage of its own. Two kinds of plan need more:
//!
//! * **Scalar subqueries.** DataFusion runs a `ScalarSubqueryExec`'s subqueries before its input
//!   and hands their values to the `ScalarSubqueryExpr`s of the input through memory shared
//!   in-process. Here each subquery becomes stages of its own ending in one task (its at most one
//!   row), and every stage whose plan reads a subquery's value gets its own `ScalarSubqueryExec`
//!   over readers of those stages: each task runs the subqueries' readers, then its plan, and
//!   DataFusion's check that a subquery returns at most one row runs where it always does.
//! * **Recursive queries.** A `RecursiveQueryExec` and its recursive term share the work table in
//!   memory, so no exchange between them and the term's `WorkTableExec` is cut: that part runs
//!   in one task, the way DataFusion runs it. Exchanges whose inputs do not read the work table
//!   (the static term, tables the recursion joins) are cut as usual.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::physical_planning_context::ScalarSubqueryResults;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::{ScalarSubqueryExec, ScalarSubqueryLink};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use faisca_common::Result;
use faisca_engine::shuffle::reader::ShuffleReaderExec;

/// How a stage's tasks lay out their output.
#[derive(Debug, Clone)]
pub enum StageOutput {
    /// Rows are repartitioned (hash or round-robin) into N partitions; consumers read partition `q`
    /// of every task.
    Repartition(Partitioning),
    /// Each task's output is one partition; consumer partition `q` is task `q`'s output.
    PerTask,
    /// The job's result, streamed to the client in task order.
    Result,
}

impl StageOutput {
    /// Partitions each task writes.
    pub fn partitions(&self) -> usize {
        match self {
            StageOutput::Repartition(p) => p.partition_count(),
            StageOutput::PerTask | StageOutput::Result => 1,
        }
    }

    /// Short description: `hash(8)`, `round-robin(4)`, `per-task`, `result`.
    pub fn describe(&self) -> String {
        match self {
            StageOutput::Repartition(Partitioning::Hash(_, n)) => format!("hash({n})"),
            StageOutput::Repartition(Partitioning::RoundRobinBatch(n)) => {
                format!("round-robin({n})")
            }
            StageOutput::Repartition(p) => format!("{p}"),
            StageOutput::PerTask => "per-task".into(),
            StageOutput::Result => "result".into(),
        }
    }
}

/// One stage: the plan its tasks run (task `i` executes partition `i`), and its output.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Id, unique in the job; inputs have smaller ids than their consumers.
    pub id: u32,
    /// The plan each task executes, with `ShuffleReaderExec` leaves for its inputs.
    pub plan: Arc<dyn ExecutionPlan>,
    /// How the output is partitioned.
    pub output: StageOutput,
    /// Ids of the stages this one reads.
    pub inputs: Vec<u32>,
}

impl Stage {
    /// Number of tasks.
    pub fn tasks(&self) -> usize {
        self.plan.output_partitioning().partition_count()
    }
}

/// The stages of a job in dependency order; the last one produces the result.
#[derive(Debug, Clone)]
pub struct StageGraph {
    /// Stages, inputs first.
    pub stages: Vec<Stage>,
}

impl StageGraph {
    /// The stage producing the job's result.
    pub fn result_stage(&self) -> &Stage {
        self.stages
            .last()
            .expect("a stage graph has at least the result stage")
    }
}

/// Cut `plan` into stages.
pub fn cut_stages(plan: Arc<dyn ExecutionPlan>) -> Result<StageGraph> {
    let plan = rebuilt(plan)?;
    let plan = crate::distributable::make_distributable(plan)?;
    let mut cutter = Cutter {
        stages: Vec::new(),
        subqueries: Vec::new(),
    };
    let root = cutter.visit(plan)?;
    cutter.add_stage(root, StageOutput::Result)?;
    Ok(StageGraph {
        stages: cutter.stages,
    })
}

/// The scalar subqueries of an enclosing `ScalarSubqueryExec`, as readers of their stages.
struct SubqueryScope {
    results: ScalarSubqueryResults,
    links: Vec<ScalarSubqueryLink>,
}

struct Cutter {
    stages: Vec<Stage>,
    /// Scalar subqueries whose values the plans being cut may read, innermost last.
    subqueries: Vec<SubqueryScope>,
}

impl Cutter {
    fn add_stage(&mut self, plan: Arc<dyn ExecutionPlan>, output: StageOutput) -> Result<u32> {
        let plan = self.with_subqueries(plan)?;
        let id = self.stages.len() as u32;
        let mut inputs = Vec::new();
        collect_readers(&plan, &mut inputs);
        inputs.sort_unstable();
        inputs.dedup();
        self.stages.push(Stage {
            id,
            plan,
            output,
            inputs,
        });
        Ok(id)
    }

    /// `plan` under a `ScalarSubqueryExec` of every enclosing scope whose subquery values it reads.
    fn with_subqueries(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let mut plan = plan;
        for scope in self.subqueries.iter().rev() {
            if reads_subqueries(&plan, &scope.results)? {
                plan = Arc::new(ScalarSubqueryExec::new(
                    plan,
                    scope.links.clone(),
                    scope.results.clone(),
                ));
            }
        }
        Ok(plan)
    }

    /// Make `plan` a stage of its own whose tasks' outputs are read one per consumer partition.
    fn cut_per_task(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = plan.schema();
        let partitions = plan.output_partitioning().partition_count();
        // Partition `q` of the reader is task `q`'s output as it was written: the reader promises
        // all that `plan` promised of its partitions.
        let equivalences = without_subqueries(plan.equivalence_properties())?;
        let id = self.add_stage(plan, StageOutput::PerTask)?;
        Ok(Arc::new(
            ShuffleReaderExec::new(id, schema, partitions, false).with_equivalences(equivalences),
        ))
    }

    /// Cut a `ScalarSubqueryExec`: each subquery becomes stages ending in one task, and the
    /// input's stages that read their values get them from those tasks' outputs.
    fn visit_scalar_subqueries(
        &mut self,
        exec: &ScalarSubqueryExec,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut links = Vec::with_capacity(exec.subqueries().len());
        for link in exec.subqueries() {
            let subquery = self.visit(Arc::clone(&link.plan))?;
            let subquery = if subquery.output_partitioning().partition_count() > 1 {
                let reader = self.cut_per_task(subquery)?;
                Arc::new(CoalescePartitionsExec::new(reader)) as Arc<dyn ExecutionPlan>
            } else {
                subquery
            };
            let schema = subquery.schema();
            let id = self.add_stage(subquery, StageOutput::PerTask)?;
            links.push(ScalarSubqueryLink {
                plan: Arc::new(ShuffleReaderExec::new(id, schema, 1, false)),
                index: link.index,
            });
        }
        self.subqueries.push(SubqueryScope {
            results: exec.results().clone(),
            links,
        });
        let input = self.visit(Arc::clone(exec.input()));
        let scope = self.subqueries.pop();
        let input = input?;
        match scope {
            Some(scope) if reads_subqueries(&input, &scope.results)? => Ok(Arc::new(
                ScalarSubqueryExec::new(input, scope.links, scope.results),
            )),
            _ => Ok(input),
        }
    }

    fn visit(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(exec) = plan.downcast_ref::<ScalarSubqueryExec>() {
            return self.visit_scalar_subqueries(exec);
        }
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        let mut new_children = Vec::with_capacity(children.len());
        for child in &children {
            new_children.push(self.visit(child.clone())?);
        }
        let changed = children
            .iter()
            .zip(&new_children)
            .any(|(a, b)| !Arc::ptr_eq(a, b));
        #[allow(deprecated)]
        let plan = if changed {
            plan.with_new_children(new_children)?
        } else {
            plan
        };

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let partitioning = repartition.partitioning().clone();
            if matches!(
                partitioning,
                Partitioning::Hash(..) | Partitioning::RoundRobinBatch(_)
            ) && !reads_work_table(repartition.input())
            {
                let schema = plan.schema();
                let n = partitioning.partition_count();
                // A reduce partition holds, in order, the rows each map task sent it, one map
                // task after another in no particular order: the reader promises what the
                // exchange promised of its rows, and their order only when there is one map
                // task. With several, an exchange that kept its input's order gets it back by a
                // sort of each partition.
                let map_tasks = repartition.input().output_partitioning().partition_count();
                let ordering = plan
                    .equivalence_properties()
                    .output_ordering()
                    .filter(|_| map_tasks > 1);
                let mut equivalences = without_subqueries(plan.equivalence_properties())?;
                if map_tasks > 1 {
                    equivalences.clear_orderings();
                }
                let id = self.add_stage(
                    repartition.input().clone(),
                    StageOutput::Repartition(partitioning.clone()),
                )?;
                let reader = ShuffleReaderExec::new(id, schema, n, true);
                let reader = match partitioning {
                    Partitioning::Hash(exprs, _) => reader.with_hash_partitioning(exprs),
                    _ => reader,
                }
                .with_equivalences(equivalences);
                let reader: Arc<dyn ExecutionPlan> = Arc::new(reader);
                return Ok(match ordering {
                    Some(ordering) => {
                        Arc::new(SortExec::new(ordering, reader).with_preserve_partitioning(true))
                    }
                    None => reader,
                });
            }
            return Ok(plan);
        }
        if plan.downcast_ref::<CoalescePartitionsExec>().is_some()
            || plan.downcast_ref::<SortPreservingMergeExec>().is_some()
        {
            let child = plan.children()[0].clone();
            if child.output_partitioning().partition_count() <= 1
                || child.downcast_ref::<ShuffleReaderExec>().is_some()
                || reads_work_table(&child)
            {
                return Ok(plan);
            }
            let reader = self.cut_per_task(child)?;
            #[allow(deprecated)]
            return Ok(plan.with_new_children(vec![reader])?);
        }
        if collects_left_side(&plan) && plan.output_partitioning().partition_count() > 1 {
            // Every task of this stage builds the left side; if that side reads source data, make
            // it a stage of its own so it is computed once and broadcast through the shuffle.
            let children: Vec<Arc<dyn ExecutionPlan>> =
                plan.children().into_iter().cloned().collect();
            if !contains_reader(&children[0]) && !reads_work_table(&children[0]) {
                let mut children = children;
                children[0] = self.cut_per_task(children[0].clone())?;
                #[allow(deprecated)]
                return Ok(plan.with_new_children(children)?);
            }
        }
        Ok(plan)
    }
}

fn collects_left_side(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        return *join.partition_mode() == PartitionMode::CollectLeft;
    }
    plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<CrossJoinExec>().is_some()
}

/// `plan` with every operator built again from its parts, as executors build it when they
/// decode it. Some of DataFusion's optimizer rules replace a child and keep the parents' cached
/// properties (an aggregate answered from statistics leaves its nullable schema above a literal
/// that is not null); a stage plan must promise what its decoded self computes.
fn rebuilt(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let rebuilt = plan.transform_up(|node| {
        let children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
        if children.is_empty() {
            return Ok(Transformed::no(node));
        }
        #[allow(deprecated)]
        let node = node.with_new_children(children)?;
        Ok(Transformed::yes(node))
    })?;
    Ok(rebuilt.data)
}

/// Whether `plan` reads a recursive query's work table (which lives in the memory of the task
/// running the recursive query).
fn reads_work_table(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<WorkTableExec>().is_some()
        || plan.children().into_iter().any(reads_work_table)
}

/// `properties` without what refers to a scalar subquery's value (known only in the stages that
/// run the subquery's `ScalarSubqueryExec`): such orderings, equal expressions and constants.
fn without_subqueries(properties: &EquivalenceProperties) -> Result<EquivalenceProperties> {
    let reads_subquery = |expr: &Arc<dyn PhysicalExpr>| {
        expr.exists(|e| Ok(e.downcast_ref::<ScalarSubqueryExpr>().is_some()))
            .unwrap_or(true)
    };
    let orderings: Vec<_> = properties.oeq_class().iter().cloned().collect();
    let classes: Vec<Vec<Arc<dyn PhysicalExpr>>> = properties
        .eq_group()
        .iter()
        .map(|class| class.iter().cloned().collect())
        .collect();
    let constants = properties.constants();
    let touched = orderings
        .iter()
        .any(|o| o.iter().any(|s| reads_subquery(&s.expr)))
        || classes.iter().flatten().any(reads_subquery)
        || constants.iter().any(|c| reads_subquery(&c.expr));
    if !touched {
        return Ok(properties.clone());
    }
    let mut clean = EquivalenceProperties::new(Arc::clone(properties.schema()));
    clean.add_orderings(orderings.into_iter().map(|ordering| {
        ordering
            .into_iter()
            .take_while(|s| !reads_subquery(&s.expr))
            .collect::<Vec<_>>()
    }));
    for class in classes {
        let kept: Vec<_> = class.into_iter().filter(|e| !reads_subquery(e)).collect();
        if let Some((first, rest)) = kept.split_first() {
            for other in rest {
                clean.add_equal_conditions(Arc::clone(first), Arc::clone(other))?;
            }
        }
    }
    clean.add_constants(constants.into_iter().filter(|c| !reads_subquery(&c.expr)))?;
    Ok(clean)
}

/// Whether an expression of `plan` reads a value of the scalar subqueries behind `results`.
fn reads_subqueries(
    plan: &Arc<dyn ExecutionPlan>,
    results: &ScalarSubqueryResults,
) -> Result<bool> {
    let mut found = false;
    plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            expr.apply(|e| {
                if let Some(subquery) = e.downcast_ref::<ScalarSubqueryExpr>()
                    && ScalarSubqueryResults::ptr_eq(subquery.results(), results)
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(found)
}

fn contains_reader(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<ShuffleReaderExec>().is_some()
        || plan.children().into_iter().any(contains_reader)
}

fn collect_readers(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<u32>) {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        out.push(reader.stage_id());
    }
    for child in plan.children() {
        collect_readers(child, out);
    }
}

#[cfg(test)]
mod tests;
