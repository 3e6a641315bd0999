//! `PipelineExec`: the plan node that runs a fused chain of operators.

use std::fmt;
use std::sync::Arc;

use arrow::compute::BatchCoalescer;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use super::selection::Selection;
use super::{CompiledPipeline, PipelineSpec, Step};

/// Runs [`PipelineSpec`] steps over its input's batches with a [`CompiledPipeline`].
#[derive(Debug)]
pub struct PipelineExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<PipelineSpec>,
    program: Arc<CompiledPipeline>,
    properties: Arc<PlanProperties>,
}

impl PipelineExec {
    /// A pipeline over `input` whose output has `properties` (those of the operator chain it
    /// replaces, when the planner builds it).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        spec: Arc<PipelineSpec>,
        program: Arc<CompiledPipeline>,
        properties: Arc<PlanProperties>,
    ) -> PipelineExec {
        PipelineExec {
            input,
            spec,
            program,
            properties,
        }
    }

    /// Plan properties for a pipeline known only by its spec (as decoded on an executor):
    /// the input's partition count, nothing known about ordering or partitioning by columns.
    pub fn plain_properties(input: &Arc<dyn ExecutionPlan>, spec: &PipelineSpec) -> PlanProperties {
        PlanProperties::new(
            EquivalenceProperties::new(spec.output_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        )
    }

    /// The steps.
    pub fn spec(&self) -> &Arc<PipelineSpec> {
        &self.spec
    }

    /// The input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for PipelineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let steps: Vec<String> = self.spec.steps.iter().map(Step::describe).collect();
        write!(f, "PipelineExec: steps=[{}]", steps.join(", "))
    }
}

impl ExecutionPlan for PipelineExec {
    fn name(&self) -> &str {
        "PipelineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for step in &self.spec.steps {
            let exprs: Vec<&Arc<dyn PhysicalExpr>> = match step {
                Step::Filter { predicate } => vec![predicate],
                Step::Project { exprs, .. } => exprs.iter().collect(),
            };
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[Arc<dyn ExecutionPlan>; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("PipelineExec has exactly one child".into()))?;
        Ok(Arc::new(PipelineExec {
            input,
            spec: self.spec.clone(),
            program: self.program.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size().max(1);
        let input = self.input.execute(partition, context)?;
        let schema = self.program.output_schema();
        // Only filters shrink batches: a pipeline without one passes its batches on as they
        // come (as DataFusion's ProjectionExec does), with no copy.
        let filters = self
            .spec
            .steps
            .iter()
            .any(|s| matches!(s, Step::Filter { .. }));
        let state = Coalescing {
            input,
            program: self.program.clone(),
            filters,
            coalescer: BatchCoalescer::new(schema, batch_size)
                .with_biggest_coalesce_batch_size(Some(batch_size / 2)),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let next = state.next().await;
            next.map(|item| (item, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.program.output_schema(),
            stream,
        )))
    }
}

/// The pipeline's output stream: input batches run through the program, gathered into
/// full-sized batches.
struct Coalescing {
    input: SendableRecordBatchStream,
    program: Arc<CompiledPipeline>,
    /// Whether the pipeline filters (otherwise its batches are not coalesced).
    filters: bool,
    coalescer: BatchCoalescer,
    done: bool,
}

impl Coalescing {
    async fn next(&mut self) -> Option<DfResult<RecordBatch>> {
        loop {
            if let Some(batch) = self.coalescer.next_completed_batch() {
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            match self.input.next().await {
                Some(Ok(batch)) if !self.filters => match self.program.run(&batch) {
                    Ok(Some(out)) => return Some(Ok(out)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                },
                Some(Ok(batch)) => {
                    let pushed = match self.program.run_parts(&batch) {
                        Ok(None) => Ok(()),
                        Ok(Some((out, Selection::All(_)))) => self.coalescer.push_batch(out),
                        Ok(Some((out, sel))) => {
                            let mask = sel.mask(out.num_rows());
                            self.coalescer.push_batch_with_filter(out, &mask)
                        }
                        Err(e) => return Some(Err(e)),
                    };
                    if let Err(e) = pushed {
                        return Some(Err(e.into()));
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.done = true;
                    if let Err(e) = self.coalescer.finish_buffered_batch() {
                        return Some(Err(e.into()));
                    }
                }
            }
        }
    }
}
