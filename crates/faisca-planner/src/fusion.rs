//! Operator fusion: each maximal chain of filters and projections in a stage plan becomes one
//! [`PipelineExec`] over the chain's input.
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
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use faisca_common::Result;
use faisca_engine::pipeline::exec::PipelineExec;
use faisca_engine::pipeline::{CompiledPipeline, PipelineSpec, Step};

use crate::stages::StageGraph;

/// Fuses every stage plan of `graph`.
pub fn fuse_stages(graph: &mut StageGraph) -> Result<()> {
    for stage in &mut graph.stages {
        stage.plan = fuse(stage.plan.clone())?;
    }
    Ok(())
}

/// `plan` with its chains of narrow operators fused.
pub fn fuse(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if steps_of(&plan).is_some() {
        // Collect the chain from the top down.
        let mut chain = vec![plan.clone()];
        let mut below = plan.children()[0].clone();
        while steps_of(&below).is_some() {
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
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        return Some(vec![Step::Project {
            exprs: projection.expr().iter().map(|p| p.expr.clone()).collect(),
            schema: plan.schema(),
        }]);
    }
    None
}

/// Whether `steps` do more than pick columns.
fn worth_a_pipeline(steps: &[Step]) -> bool {
    steps.iter().any(|s| match s {
        Step::Filter { .. } => true,
        Step::Project { exprs, .. } => exprs.iter().any(|e| e.downcast_ref::<Column>().is_none()),
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
