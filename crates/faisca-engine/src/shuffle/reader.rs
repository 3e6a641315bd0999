//! `ShuffleReaderExec`: the leaf that replaces a cut exchange.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use faisca_common::Error;
use faisca_proto::{ShuffleTicket, ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{MapOutputLocation, ShuffleEnv, ShuffleFiles, read_local_partition};

/// Reads partitions of a finished stage's shuffle output.
///
/// With `hash_partitioned`, reduce partition `q` is partition `q` of every map output of the stage
/// (a hash exchange); otherwise reduce partition `q` is the whole output of map task `q` (what a
/// single-partition merge, a sort-preserving merge or a broadcast build side reads).
#[derive(Debug)]
pub struct ShuffleReaderExec {
    stage_id: u32,
    hash_partitioned: bool,
    properties: Arc<PlanProperties>,
}

impl ShuffleReaderExec {
    /// A reader of `partitions` partitions of stage `stage_id`, whose rows have `schema`.
    pub fn new(
        stage_id: u32,
        schema: SchemaRef,
        partitions: usize,
        hash_partitioned: bool,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ShuffleReaderExec {
            stage_id,
            hash_partitioned,
            properties: Arc::new(properties),
        }
    }

    /// This reader of a hash exchange, declaring the exchange's partitioning: its partition `q`
    /// holds exactly the rows whose `exprs` hash to `q` (so that operators which need
    /// co-partitioned inputs, such as an interleaving union, accept it).
    pub fn with_hash_partitioning(mut self, exprs: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        let n = self.partitions();
        let properties = self
            .properties
            .as_ref()
            .clone()
            .with_partitioning(Partitioning::Hash(exprs, n));
        self.properties = Arc::new(properties);
        self
    }

    /// This reader, promising what `equivalences` says of the rows it reads (over its schema):
    /// what the exchange it replaces promised, or what the stage it reads one task per
    /// partition promised of each task's output.
    pub fn with_equivalences(mut self, equivalences: EquivalenceProperties) -> Self {
        let properties = self
            .properties
            .as_ref()
            .clone()
            .with_eq_properties(equivalences);
        self.properties = Arc::new(properties);
        self
    }

    /// The stage this reader reads.
    pub fn stage_id(&self) -> u32 {
        self.stage_id
    }

    /// Whether reduce partitions are hash partitions of every map output.
    pub fn hash_partitioned(&self) -> bool {
        self.hash_partitioned
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = if self.hash_partitioned {
            "hash"
        } else {
            "per-map"
        };
        write!(
            f,
            "ShuffleReaderExec: stage={}, partitions={}, mode={mode}",
            self.stage_id,
            self.partitions()
        )
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &str {
        "ShuffleReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ShuffleReaderExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let env = context
            .session_config()
            .get_extension::<ShuffleEnv>()
            .ok_or_else(|| {
                DataFusionError::Internal(
                    "ShuffleReaderExec executed without a ShuffleEnv in its TaskContext".into(),
                )
            })?;
        let outputs = env.inputs.get(&self.stage_id).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "no map output locations for input stage {}",
                self.stage_id
            ))
        })?;
        let sources: Vec<(MapOutputLocation, u32)> = if self.hash_partitioned {
            outputs
                .iter()
                .map(|o| (o.clone(), partition as u32))
                .collect()
        } else {
            outputs
                .iter()
                .filter(|o| o.map_partition as usize == partition)
                .map(|o| (o.clone(), 0))
                .collect()
        };
        let stage = self.stage_id;
        let concurrency = env.fetch_concurrency.max(1);
        let metrics = crate::task_metrics::TaskMetrics::of(&context);
        let stream = futures::stream::iter(sources)
            .map(move |(output, reduce)| {
                read_source(env.clone(), stage, output, reduce, metrics.clone())
            })
            .flatten_unordered(concurrency);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// The batches of one (map output, reduce partition): from disk when this executor wrote it,
/// otherwise over Flight. Lazy: nothing is read until the stream is polled.
fn read_source(
    env: Arc<ShuffleEnv>,
    stage: u32,
    output: MapOutputLocation,
    reduce: u32,
    metrics: Option<Arc<crate::task_metrics::TaskMetrics>>,
) -> BoxStream<'static, DfResult<RecordBatch>> {
    use crate::task_metrics::{
        SHUFFLE_BYTES_FETCHED, SHUFFLE_FETCH_WAIT_MICROS, SHUFFLE_LOCAL_BYTES_READ,
    };
    let count = move |name: &'static str, n: u64| {
        if let Some(m) = &metrics {
            m.add(name, n);
        }
    };
    let what = format!(
        "shuffle partition {reduce} of stage {stage} map task {} from executor {} at {}",
        output.map_partition, output.executor_id, output.flight_address
    );
    // Any failure to read the output is a fetch failure: the map task's output is gone or
    // unreadable, so the scheduler re-runs the map task rather than blaming this task.
    let output_id = (output.map_partition, output.executor_id.clone());
    if output.executor_id == env.executor_id {
        let key = (
            env.job_id.clone(),
            stage,
            output.map_partition,
            output.attempt,
        );
        if let Some(stored) = env.memory.get(&key) {
            // Kept in memory by a task of this executor: the batches as they are.
            let batches = stored
                .partitions
                .get(reduce as usize)
                .cloned()
                .unwrap_or_default();
            let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
            count(SHUFFLE_LOCAL_BYTES_READ, bytes as u64);
            return futures::stream::iter(batches.into_iter().map(Ok)).boxed();
        }
        let files = ShuffleFiles::new(
            &env.shuffle_root,
            &env.job_id,
            stage,
            output.map_partition,
            output.attempt,
        );
        let fut = async move {
            let bytes = tokio::task::spawn_blocking(move || read_local_partition(&files, reduce))
                .await
                .map_err(|e| {
                    DataFusionError::External(Box::new(Error::internal(format!(
                        "local shuffle read panicked: {e}"
                    ))))
                })?
                .map_err(|e| fetch_failed(stage, &output_id, e.context(&what)))?;
            count(SHUFFLE_LOCAL_BYTES_READ, bytes.len() as u64);
            let batches: Box<dyn Iterator<Item = DfResult<RecordBatch>> + Send> =
                if bytes.is_empty() {
                    Box::new(std::iter::empty())
                } else {
                    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
                    Box::new(reader.map(|b| b.map_err(DataFusionError::from)))
                };
            Ok::<_, DataFusionError>(futures::stream::iter(batches))
        };
        return futures::stream::once(fut).try_flatten().boxed();
    }
    let fut = async move {
        let mut client = env
            .clients
            .client(&output.flight_address)
            .map_err(|e| fetch_failed(stage, &output_id, e.context(&what)))?;
        let ticket = faisca_proto::encode_ticket(ticket::Kind::Shuffle(ShuffleTicket {
            job_id: env.job_id.clone(),
            stage_id: stage,
            map_partition: output.map_partition,
            attempt: output.attempt,
            reduce_partition: reduce,
            uncompressed: !env.compress_loopback && super::is_loopback(&output.flight_address),
        }));
        let asked = std::time::Instant::now();
        let response = client
            .do_get(arrow_flight::Ticket { ticket })
            .await
            .map_err(|s| {
                fetch_failed(
                    stage,
                    &output_id,
                    faisca_proto::error_from_status(&s, &what),
                )
            })?;
        count(
            SHUFFLE_FETCH_WAIT_MICROS,
            asked.elapsed().as_micros() as u64,
        );
        let messages = response.into_inner().map_ok(move |data| {
            count(
                SHUFFLE_BYTES_FETCHED,
                (data.data_header.len() + data.data_body.len()) as u64,
            );
            data
        });
        let stream =
            FlightRecordBatchStream::new_from_flight_data(messages.map_err(FlightError::from))
                .map_err(move |e| fetch_failed(stage, &output_id, flight_error(e, &what)));
        Ok::<_, DataFusionError>(stream)
    };
    futures::stream::once(fut).try_flatten().boxed()
}

/// `error` as a fetch failure of map task `output.0` of `stage` held by executor `output.1`.
fn fetch_failed(stage: u32, output: &(u32, String), error: Error) -> DataFusionError {
    let message = error.to_string();
    DataFusionError::from(Error::fetch_failed(
        stage,
        output.0,
        output.1.clone(),
        message,
    ))
}

fn flight_error(e: FlightError, what: &str) -> Error {
    match e {
        FlightError::Tonic(status) => faisca_proto::error_from_status(&status, what),
        other => Error::external(format!("{what}: {other}")),
    }
}
