//! Operator fusion: each maximal chain of filters and projections in a stage plan, with the
//! partial aggregate on top of it if there is one, becomes one [`PipelineExec`] over the
//! chain's input.
//!
//! A chain is read bottom-up; each operator contributes its steps (a `FilterExec` with an
//! embedded projection contributes a filter and a column pick). A step joins the current
//! pipeline only if the executor's compiler accepts it ([`CompiledPipeline::compile`]); an
//! operator it refuses stays a plain DataFusion operator between two pipelines, so fusion never
//! changes an answer. A pipeline made only of column picks is not worth a node and is left as
//! it was.

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode, Partitioning};
use faisca_common::Result;
use faisca_pipeline::aggregate::{AggregateFunction, AggregateKind, AggregateStep};
use faisca_pipeline::exec::PipelineExec;
use faisca_pipeline::partition::PartitionStep;
use faisca_pipeline::{CompiledPipeline, PipelineSpec, Step};

use crate::stages::{StageGraph, StageOutput};

/// Fuses every stage plan of `graph`; a hash-partitioned stage whose plan is a pipeline also
/// gets its partitioning as the pipeline's last step.
pub fn fuse_stages(graph: &mut StageGraph) -> Result<()> {
    for stage in &mut graph.stages {
        let fused = fuse(stage.plan.clone())?;
        stage.plan = match &stage.output {
            StageOutput::Repartition(Partitioning::Hash(keys, count)) => {
                with_partition_step(fused, keys, *count)?
            }
            _ => fused,
        };
    }
    Ok(())
}

/// `plan` with a hash partitioning by `keys` into `count` partitions as its last step, when
/// `plan` is a pipeline and the keys are columns of its output (otherwise as it is: the shuffle
/// writer partitions its output).
fn with_partition_step(
    plan: Arc<dyn ExecutionPlan>,
    keys: &[Arc<dyn PhysicalExpr>],
    count: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(pipeline) = plan.downcast_ref::<PipelineExec>() else {
        return Ok(plan);
    };
    let columns: Option<Vec<Column>> = keys
        .iter()
        .map(|k| k.downcast_ref::<Column>().cloned())
        .collect();
    let Some(columns) = columns else {
        return Ok(plan);
    };
    let mut spec = pipeline.spec().as_ref().clone();
    spec.steps
        .push(Step::Partition(PartitionStep { columns, count }));
    let Ok(program) = CompiledPipeline::compile(&spec) else {
        return Ok(plan);
    };
    Ok(Arc::new(PipelineExec::new(
        pipeline.input().clone(),
        Arc::new(spec),
        Arc::new(program),
        pipeline.properties().clone(),
    )))
}

/// `plan` with its chains of narrow operators fused.
pub fn fuse(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if steps_of(&plan).is_some() {
        // Collect the chain from the top down.
        let mut chain = vec![plan.clone()];
        let mut below = plan.children()[0].clone();
        while steps_of(&below).is_some() && !is_partial_aggregate(&below) {
            chain.push(below.clone());
            below = below.children()[0].clone();
        }
        chain.reverse();
        return fuse_chain(&chain, fuse(below)?);
    }
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    if children.is_empty() {
        return Ok(plan);
    }
    let fused: Vec<Arc<dyn ExecutionPlan>> =
        children.iter().cloned().map(fuse).collect::<Result<_>>()?;
    if children.iter().zip(&fused).all(|(a, b)| Arc::ptr_eq(a, b)) {
        return Ok(plan);
    }
    #[allow(deprecated)]
    Ok(plan.with_new_children(fused)?)
}

/// The steps an operator contributes, or `None` if it is not a fusable operator.
fn steps_of(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<Step>> {
    if plan.fetch().is_some() {
        return None;
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let mut steps = vec![Step::Filter {
            predicate: filter.predicate().clone(),
        }];
        if let Some(indices) = filter.projection() {
            let input = filter.input().schema();
            let exprs = indices
                .iter()
                .map(|i| Arc::new(Column::new(input.field(*i).name(), *i)) as Arc<dyn PhysicalExpr>)
                .collect();
            steps.push(Step::Project {
                exprs,
                schema: plan.schema(),
            });
        }
        return Some(steps);
    }
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        return aggregate_step(aggregate).map(|step| vec![step]);
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        return Some(vec![Step::Project {
            exprs: projection.expr().iter().map(|p| p.expr.clone()).collect(),
            schema: plan.schema(),
        }]);
    }
    None
}

fn is_partial_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>()
        .is_some_and(|a| *a.mode() == AggregateMode::Partial)
}

/// The step for a partial aggregate the pipeline can compute: one set of group keys, no
/// `FILTER`, `DISTINCT` or ordered aggregates, no limit or dynamic filter, and groups emitted
/// at the end (no input order to stream on).
fn aggregate_step(aggregate: &AggregateExec) -> Option<Step> {
    let group_by = aggregate.group_expr();
    let plain = *aggregate.mode() == AggregateMode::Partial
        && !group_by.has_grouping_set()
        && group_by.null_expr().is_empty()
        && aggregate.filter_expr().iter().all(Option::is_none)
        && aggregate.limit_options().is_none()
        && aggregate.dynamic_expressions_produced().is_empty()
        && *aggregate.input_order_mode() == InputOrderMode::Linear;
    if !plain {
        return None;
    }
    let functions = aggregate
        .aggr_expr()
        .iter()
        .map(|f| {
            let arguments = f.expressions();
            if f.is_distinct() || !f.order_bys().is_empty() || arguments.len() != 1 {
                return None;
            }
            Some(AggregateFunction {
                kind: AggregateKind::from_name(f.fun().name())?,
                argument: arguments[0].clone(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Step::Aggregate(AggregateStep {
        keys: group_by.expr().iter().map(|(e, _)| e.clone()).collect(),
        functions,
        schema: aggregate.schema(),
    }))
}

/// Whether `steps` do more than pick columns.
fn worth_a_pipeline(steps: &[Step]) -> bool {
    steps.iter().any(|s| match s {
        Step::Filter { .. } | Step::Aggregate(_) => true,
        Step::Project { exprs, .. } => exprs.iter().any(|e| e.downcast_ref::<Column>().is_none()),
        Step::Partition(_) => false,
    })
}

/// A pipeline being gathered: its input, the operators it replaces and their steps.
struct Group {
    input: Arc<dyn ExecutionPlan>,
    operators: Vec<Arc<dyn ExecutionPlan>>,
    steps: Vec<Step>,
}

impl Group {
    fn new(input: Arc<dyn ExecutionPlan>) -> Group {
        Group {
            input,
            operators: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn spec_with(&self, more: &[Step]) -> PipelineSpec {
        let mut steps = self.steps.clone();
        steps.extend_from_slice(more);
        PipelineSpec {
            input_schema: self.input.schema(),
            steps,
        }
    }

    /// The plan this group stands for: a pipeline, or its operators as they were.
    fn finish(self) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(top) = self.operators.last().cloned() else {
            return Ok(self.input);
        };
        if !worth_a_pipeline(&self.steps) {
            let mut plan = self.input;
            for op in self.operators {
                #[allow(deprecated)]
                {
                    plan = op.with_new_children(vec![plan])?;
                }
            }
            return Ok(plan);
        }
        let spec = Arc::new(PipelineSpec {
            input_schema: self.input.schema(),
            steps: self.steps,
        });
        let program = CompiledPipeline::compile(&spec)
            .map_err(|why| faisca_common::Error::internal(format!("fusing {why}")))?;
        Ok(Arc::new(PipelineExec::new(
            self.input,
            spec,
            Arc::new(program),
            top.properties().clone(),
        )))
    }
}

fn fuse_chain(
    chain: &[Arc<dyn ExecutionPlan>],
    input: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut group = Group::new(input);
    for op in chain {
        let steps = steps_of(op).expect("chains hold fusable operators only");
        if CompiledPipeline::compile(&group.spec_with(&steps)).is_ok() {
            group.operators.push(op.clone());
            group.steps.extend(steps);
        } else {
            let below = group.finish()?;
            #[allow(deprecated)]
            let kept = op.clone().with_new_children(vec![below])?;
            group = Group::new(kept);
        }
    }
    group.finish()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
    use datafusion::physical_plan::displayable;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::projection::ProjectionExpr;

    use super::*;

    fn show(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(false).to_string()
    }

    fn col(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, i))
    }

    fn bin(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    #[test]
    fn chains_fuse_and_split_where_the_compiler_refuses() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let scan: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(schema));
        let one = Arc::new(Literal::new(ScalarValue::Int64(Some(1))));
        let filter: Arc<dyn ExecutionPlan> = Arc::new(
            FilterExec::try_new(bin(col("a", 0), Operator::Gt, one.clone()), scan.clone()).unwrap(),
        );
        let sum = ProjectionExpr::new(bin(col("a", 0), Operator::Plus, col("b", 1)), "s");
        let project: Arc<dyn ExecutionPlan> =
            Arc::new(ProjectionExec::try_new(vec![sum], filter).unwrap());
        // Division has no kernel: this filter stays DataFusion's, between two pipelines.
        let divided: Arc<dyn ExecutionPlan> = Arc::new(
            FilterExec::try_new(
                bin(
                    bin(col("s", 0), Operator::Divide, one.clone()),
                    Operator::Gt,
                    one.clone(),
                ),
                project,
            )
            .unwrap(),
        );
        let on_top: Arc<dyn ExecutionPlan> = Arc::new(
            FilterExec::try_new(bin(col("s", 0), Operator::Lt, one.clone()), divided).unwrap(),
        );
        let fused = show(&fuse(on_top).unwrap());
        assert_eq!(
            fused.lines().map(str::trim).collect::<Vec<_>>(),
            [
                "PipelineExec: steps=[filter(s@0 < 1)]",
                "FilterExec: s@0 / 1 > 1",
                "PipelineExec: steps=[filter(a@0 > 1), project(a@0 + b@1 as s)]",
                "EmptyExec",
            ],
            "{fused}"
        );
        // Column picks alone are not worth a pipeline.
        let picks: Arc<dyn ExecutionPlan> = Arc::new(
            ProjectionExec::try_new(vec![ProjectionExpr::new(col("b", 1), "b")], scan).unwrap(),
        );
        assert_eq!(show(&fuse(picks.clone()).unwrap()), show(&picks));
    }
}

#[cfg(test)]
#[path = "fusion_aggregate_tests.rs"]
mod aggregate_tests;
