//! `PipelineExec`: the plan node that runs a fused chain of operators.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::compute::BatchCoalescer;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::aggregate::{Aggregator, SkipProbe};
use super::partition::{HashSplitter, Pieces};
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

    /// Whether the pipeline's partition step hashes exactly `keys` (column expressions over
    /// its output) into `count` partitions: then [`PipelineExec::execute_split`] splits rows
    /// as a shuffle writer partitioning by `Hash(keys, count)` would.
    pub fn splits_like(&self, keys: &[Arc<dyn PhysicalExpr>], count: usize) -> bool {
        let Some(step) = self.program.partition() else {
            return false;
        };
        step.count == count
            && step.columns.len() == keys.len()
            && step.columns.iter().zip(keys).all(|(c, k)| {
                k.downcast_ref::<datafusion::physical_expr::expressions::Column>() == Some(c)
            })
    }

    /// Runs partition `partition` like [`ExecutionPlan::execute`], handing its rows on split
    /// by the pipeline's partition step: one item of pieces per input batch (or per batch of
    /// aggregate states). `Err` if the pipeline has no partition step.
    pub fn execute_split(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<BoxStream<'static, DfResult<Pieces>>> {
        let step = self.program.partition().ok_or_else(|| {
            DataFusionError::Internal("execute_split of a pipeline with no partition step".into())
        })?;
        let mut splitter = HashSplitter::new(step);
        if self.program.aggregate().is_some() {
            let states = self.execute(partition, context)?;
            return Ok(states
                .map(move |batch| {
                    let batch = batch?;
                    let all = Selection::All(batch.num_rows());
                    splitter.split(&batch, &all)
                })
                .boxed());
        }
        let input = self.input.execute(partition, context)?;
        let program = self.program.clone();
        let state = (input, program, splitter);
        Ok(
            futures::stream::unfold(state, |(mut input, program, mut splitter)| async move {
                loop {
                    let pieces = match input.next().await? {
                        Ok(batch) => match program.run_parts(&batch) {
                            Ok(None) => continue,
                            Ok(Some((batch, sel))) => splitter.split(&batch, &sel),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    return Some((pieces, (input, program, splitter)));
                }
            })
            .boxed(),
        )
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
                Step::Aggregate(a) => a
                    .keys
                    .iter()
                    .chain(a.functions.iter().map(|f| &f.argument))
                    .collect(),
                Step::Partition(_) => vec![],
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
        if let Some(program) = self.program.aggregate() {
            let options = &context.session_config().options().execution;
            let probe = SkipProbe {
                rows_threshold: options.skip_partial_aggregation_probe_rows_threshold,
                ratio_threshold: options.skip_partial_aggregation_probe_ratio_threshold,
            };
            let aggregator = Aggregator::new(program.clone(), probe)?;
            let reservation = MemoryConsumer::new(format!("PipelineExec[{partition}]"))
                .with_can_spill(true)
                .register(context.memory_pool());
            let input = self.input.execute(partition, context)?;
            let state = Aggregating {
                input,
                program: self.program.clone(),
                aggregator,
                reservation,
                batch_size,
                pending: VecDeque::new(),
                done: false,
            };
            let stream = futures::stream::unfold(state, |mut state| async move {
                let next = state.next().await;
                next.map(|item| (item, state))
            });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.program.output_schema(),
                stream,
            )));
        }
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

/// The stream of a pipeline that ends in a partial aggregate: every input batch runs through
/// the steps into the aggregator; the states come out at the end (or earlier, when grouping is
/// given up or memory runs short), in batches of at most `batch_size` rows.
struct Aggregating {
    input: SendableRecordBatchStream,
    program: Arc<CompiledPipeline>,
    aggregator: Aggregator,
    reservation: MemoryReservation,
    batch_size: usize,
    pending: VecDeque<RecordBatch>,
    done: bool,
}

impl Aggregating {
    async fn next(&mut self) -> Option<DfResult<RecordBatch>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            let emitted = match self.input.next().await {
                Some(Ok(batch)) => match self.add(&batch) {
                    Ok(emitted) => emitted,
                    Err(e) => return Some(Err(e)),
                },
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.done = true;
                    let out = self.aggregator.emit();
                    self.reservation.free();
                    match out {
                        Ok(out) => out,
                        Err(e) => return Some(Err(e)),
                    }
                }
            };
            if let Some(out) = emitted {
                self.split(out);
            }
        }
    }

    /// Runs `batch` into the aggregator; states to send on now, if any.
    fn add(&mut self, batch: &RecordBatch) -> DfResult<Option<RecordBatch>> {
        let Some((batch, sel)) = self.program.run_parts(batch)? else {
            return Ok(None);
        };
        let emitted = self.aggregator.update(&batch, &sel)?;
        if self.reservation.try_resize(self.aggregator.size()).is_ok() {
            return Ok(emitted);
        }
        // The pool is short: send the groups on now (the final aggregate merges them) and
        // start again with none, as DataFusion's partial aggregate does.
        let early = self.aggregator.emit()?;
        self.reservation.try_resize(self.aggregator.size())?;
        if let Some(e) = emitted {
            self.split(e);
        }
        Ok(early)
    }

    /// Queues `batch` in pieces of at most `batch_size` rows.
    fn split(&mut self, batch: RecordBatch) {
        let rows = batch.num_rows();
        let mut offset = 0;
        while offset < rows {
            let len = self.batch_size.min(rows - offset);
            self.pending.push_back(batch.slice(offset, len));
            offset += len;
        }
    }
}
