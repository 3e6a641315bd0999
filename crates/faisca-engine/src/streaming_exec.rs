//! The physical operators of a streaming query's micro-batch.
//!
//! * [`WatermarkExec`] is what `with_watermark` plans to: rows pass unchanged, and the largest
//!   event time the task saw goes to its counters ([`crate::task_metrics::MAX_EVENT_TIME`]);
//!   the driver takes the job's largest after the batch and moves the watermark.
//! * [`StatefulAggregateExec`] stands where a batch query's final aggregate would: for each
//!   shuffle partition (a *state partition*) it loads the state at the batch's version — from
//!   this executor's memory when it ran that partition's previous batch, otherwise rebuilt from
//!   the checkpoint's files — merges the batch's partial aggregates in
//!   ([`crate::streaming_aggregate`]), writes the next version and emits the rows of the output
//!   mode. A re-run task (a retry, a batch redone after a restart) finds its version in memory
//!   or on file and computes the same rows again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use faisca_common::{Error, Result};
use futures::{StreamExt, TryStreamExt};

use crate::state_store::{PartitionState, StateLocation};
use crate::streaming_aggregate::{Emit, StreamingAggregate};
use crate::task_metrics::{self, TaskMetrics};

/// Passes its input through and counts the largest event time of `column` (see the module docs).
#[derive(Debug)]
pub struct WatermarkExec {
    input: Arc<dyn ExecutionPlan>,
    column: String,
    index: usize,
}

impl WatermarkExec {
    /// Over `input`, watching its column `column`.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, column: &str) -> DfResult<Self> {
        let index = input.schema().index_of(column)?;
        Ok(WatermarkExec {
            input,
            column: column.to_string(),
            index,
        })
    }

    /// The event-time column.
    pub fn column(&self) -> &str {
        &self.column
    }
}

/// The largest value of a timestamp column, in microseconds since the epoch.
fn max_micros(column: &dyn Array) -> DfResult<Option<i64>> {
    let micros = cast(
        &cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
        &DataType::Int64,
    )?;
    Ok(datafusion::arrow::compute::max(
        micros.as_primitive::<Int64Type>(),
    ))
}

impl DisplayAs for WatermarkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WatermarkExec: column={}", self.column)
    }
}

impl ExecutionPlan for WatermarkExec {
    fn name(&self) -> &str {
        "WatermarkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("WatermarkExec takes one child".into()))?;
        Ok(Arc::new(WatermarkExec::try_new(input, &self.column)?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let schema = input.schema();
        let metrics = TaskMetrics::of(&context);
        let index = self.index;
        let stream = input.and_then(move |batch| {
            let result = match &metrics {
                Some(metrics) => max_micros(batch.column(index).as_ref()).map(|max| {
                    if let Some(max) = max.filter(|m| *m >= 0) {
                        metrics.add(task_metrics::MAX_EVENT_TIME, max as u64);
                    }
                    batch
                }),
                None => Ok(batch),
            };
            futures::future::ready(result)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Where and at which version a stateful operator's state is, and how the batch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSpec {
    /// The query's id (a checkpoint made again at the same place is another query: state an
    /// executor kept for the old one must not serve the new one).
    pub query_id: String,
    /// The query's checkpoint URL.
    pub checkpoint: String,
    /// The operator's number in the query (`state/<operator>/`).
    pub operator: u32,
    /// The batch's version: the state after the previous batch (the batch id).
    pub version: u64,
    /// The batch's watermark in microseconds, if the query has one.
    pub watermark_micros: Option<i64>,
    /// The output mode.
    pub emit: Emit,
    /// The group key holding event time, if any.
    pub event_time_key: Option<usize>,
    /// `faisca.streaming.stateSnapshotInterval`.
    pub snapshot_interval: u64,
    /// `faisca.streaming.minBatchesToRetain`.
    pub min_versions_to_retain: u64,
}

/// Emit modes by name, for plans and the wire.
pub fn emit_name(emit: Emit) -> &'static str {
    match emit {
        Emit::Append => "append",
        Emit::Update => "update",
        Emit::Complete => "complete",
    }
}

/// The emit mode named `name`.
pub fn emit_from_name(name: &str) -> Result<Emit> {
    match name {
        "append" => Ok(Emit::Append),
        "update" => Ok(Emit::Update),
        "complete" => Ok(Emit::Complete),
        other => Err(Error::internal(format!(
            "unknown streaming emit mode '{other}'"
        ))),
    }
}

/// A streaming aggregation's final step with state (see the module docs).
#[derive(Debug)]
pub struct StatefulAggregateExec {
    /// The final aggregate it replaces; its input is this node's input.
    aggregate: Arc<AggregateExec>,
    spec: StatefulSpec,
}

/// State partitions this executor holds in memory, by state directory: the version each is at.
/// Bounded: beyond [`CACHED_PARTITIONS`] the least recently stored partition is dropped (it is
/// rebuilt from the checkpoint when needed again).
static STATE_CACHE: LazyLock<Mutex<StateCache>> = LazyLock::new(Default::default);

/// Most state partitions an executor keeps in memory between batches.
pub const CACHED_PARTITIONS: usize = 1024;

#[derive(Default)]
struct StateCache {
    partitions: HashMap<String, (u64, PartitionState)>,
    next_stamp: u64,
}

impl StateCache {
    fn take(&mut self, key: &str, version: u64) -> Option<PartitionState> {
        match self.partitions.remove(key) {
            Some((_, state)) if state.version() == version => Some(state),
            _ => None,
        }
    }

    fn put(&mut self, key: String, state: PartitionState) {
        self.next_stamp += 1;
        self.partitions.insert(key, (self.next_stamp, state));
        if self.partitions.len() > CACHED_PARTITIONS
            && let Some(oldest) = self
                .partitions
                .iter()
                .min_by_key(|(_, (stamp, _))| *stamp)
                .map(|(k, _)| k.clone())
        {
            self.partitions.remove(&oldest);
        }
    }
}

impl StatefulAggregateExec {
    /// In place of `aggregate` (a final aggregate over partial ones).
    pub fn new(aggregate: Arc<AggregateExec>, spec: StatefulSpec) -> Self {
        StatefulAggregateExec { aggregate, spec }
    }

    /// The final aggregate it stands for.
    pub fn aggregate(&self) -> &Arc<AggregateExec> {
        &self.aggregate
    }

    /// Its state and batch.
    pub fn spec(&self) -> &StatefulSpec {
        &self.spec
    }

    fn core(&self) -> StreamingAggregate {
        StreamingAggregate {
            aggregates: self.aggregate.aggr_expr().to_vec(),
            keys: self.aggregate.group_expr().expr().len(),
            event_time_key: self.spec.event_time_key,
            output_schema: self.aggregate.schema(),
        }
    }

    fn location(&self, context: &TaskContext, partition: usize) -> Result<StateLocation> {
        let url = ListingTableUrl::parse(&self.spec.checkpoint).map_err(|e| {
            Error::user(format!(
                "checkpointLocation '{}': {e}; expected a directory URL",
                self.spec.checkpoint
            ))
        })?;
        let store = context.runtime_env().object_store(url.object_store())?;
        let dir = url
            .prefix()
            .clone()
            .join("state")
            .join(self.spec.operator.to_string())
            .join(partition.to_string());
        Ok(StateLocation {
            url: self.spec.checkpoint.clone(),
            store,
            dir,
            snapshot_interval: self.spec.snapshot_interval,
            min_versions_to_retain: self.spec.min_versions_to_retain,
        })
    }
}

impl DisplayAs for StatefulAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let spec = &self.spec;
        write!(
            f,
            "StatefulAggregateExec: query={}, operator={}, version={}, mode={}, watermark={:?}, event_time_key={:?}, keys={}, aggregates=[{}]",
            spec.query_id,
            spec.operator,
            spec.version,
            emit_name(spec.emit),
            spec.watermark_micros,
            spec.event_time_key,
            self.aggregate.group_expr().expr().len(),
            self.aggregate
                .aggr_expr()
                .iter()
                .map(|a| a.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl ExecutionPlan for StatefulAggregateExec {
    fn name(&self) -> &str {
        "StatefulAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let aggregate: Arc<dyn ExecutionPlan> = self.aggregate.clone();
        let aggregate =
            datafusion::physical_plan::replace_children_if_necessary(aggregate, children)?;
        let aggregate = aggregate
            .downcast_ref::<AggregateExec>()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("not an aggregate".into()))?;
        Ok(Arc::new(StatefulAggregateExec {
            aggregate: Arc::new(aggregate),
            spec: self.spec.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.aggregate.input().execute(partition, context.clone())?;
        let input_schema = input.schema();
        let location = self.location(&context, partition)?;
        let core = self.core();
        let spec = self.spec.clone();
        let output_schema: SchemaRef = self.aggregate.schema();
        let metrics = TaskMetrics::of(&context);
        let run = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let partial = concat_batches(&input_schema, &batches)?;
            let key = format!("{}|{}/{}", spec.query_id, location.url, location.dir);
            let cached = STATE_CACHE
                .lock()
                .map_err(|_| Error::internal("state cache lock poisoned"))?
                .take(&key, spec.version);
            let mut state = match cached {
                Some(state) => state,
                None => {
                    PartitionState::load(location, input_schema.clone(), core.keys, spec.version)
                        .await?
                }
            };
            let outcome = core.run_batch(&mut state, &partial, spec.watermark_micros, spec.emit)?;
            state.commit(spec.version + 1).await?;
            if let Some(metrics) = &metrics {
                metrics.add(task_metrics::STATE_ROWS_TOTAL, state.len() as u64);
                metrics.add(task_metrics::STATE_ROWS_UPDATED, outcome.updated as u64);
                metrics.add(task_metrics::STATE_ROWS_REMOVED, outcome.evicted as u64);
                metrics.add(
                    task_metrics::STATE_ROWS_DROPPED_BY_WATERMARK,
                    outcome.dropped_late as u64,
                );
                metrics.add(
                    task_metrics::STATE_MEMORY_USED_BYTES,
                    state.memory_bytes() as u64,
                );
            }
            STATE_CACHE
                .lock()
                .map_err(|_| Error::internal("state cache lock poisoned"))?
                .put(key, state);
            Ok::<_, DataFusionError>(outcome.output)
        };
        let stream = futures::stream::once(run).boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema,
            stream,
        )))
    }
}
