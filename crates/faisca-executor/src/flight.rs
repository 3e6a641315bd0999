//! The executor's Flight service: `DoGet(shuffle ticket)` streams one partition of one map
//! output; `DoGet(task log ticket)` answers the lines this executor kept of one task attempt
//! (see [`crate::task_logs`]) as one batch of a Utf8 column `line`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::{FlightData, Ticket};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use faisca_common::Error;
use faisca_common::FaiscaConfig;
use faisca_engine::shuffle::frames::ipc_to_flight_data;
use faisca_engine::shuffle::memory::MemoryShuffleStore;
use faisca_engine::shuffle::writer::ShuffleWriteOptions;
use faisca_engine::shuffle::{ShuffleFiles, read_local_partition};
use faisca_proto::rpc::{BoxedStream, DoGetHandler};
use faisca_proto::{TaskLogTicket, status_from_error, ticket};

use crate::task_logs::{self, TaskAttemptId};
use futures::TryStreamExt;
use tonic::Status;

/// Serves shuffle partitions from `shuffle_root`, and task logs.
pub struct ExecutorFlightService {
    executor: String,
    shuffle_root: PathBuf,
    memory: Arc<MemoryShuffleStore>,
    ipc: IpcWriteOptions,
}

impl ExecutorFlightService {
    /// A service of executor `executor` over `shuffle_root`.
    pub fn new(
        executor: String,
        shuffle_root: PathBuf,
        memory: Arc<MemoryShuffleStore>,
        config: &FaiscaConfig,
    ) -> Self {
        let compression = ShuffleWriteOptions::from_config(config).compression;
        let ipc = IpcWriteOptions::default()
            .try_with_compression(compression)
            .unwrap_or_default();
        ExecutorFlightService {
            executor,
            shuffle_root,
            memory,
            ipc,
        }
    }
}

fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl ExecutorFlightService {
    /// The lines kept of one attempt, oldest first (none when none were kept).
    fn task_log(&self, t: TaskLogTicket) -> Result<BoxedStream<FlightData>, Status> {
        let attempt = TaskAttemptId {
            job: t.job_id,
            stage: t.stage_id,
            partition: t.partition,
            attempt: t.attempt,
        };
        let log = task_logs::lines(&self.executor, &attempt).unwrap_or_default();
        let metadata = HashMap::from([(
            faisca_proto::TASK_LOG_LINES_DROPPED.to_string(),
            log.dropped.to_string(),
        )]);
        let schema = Arc::new(
            Schema::new(vec![Field::new("line", DataType::Utf8, false)]).with_metadata(metadata),
        );
        let lines = StringArray::from_iter_values(log.lines.iter());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(lines)])
            .map_err(|e| Status::internal(format!("building the task log batch: {e}")))?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter([Ok(batch)]))
            .map_err(|e| Status::internal(format!("encoding the task log: {e}")));
        Ok(Box::pin(stream))
    }
}

#[tonic::async_trait]
impl DoGetHandler for ExecutorFlightService {
    async fn do_get(
        &self,
        ticket: Ticket,
        // Users never get here: the executor's guard admits the cluster alone.
        _caller: faisca_common::auth::Principal,
    ) -> Result<BoxedStream<FlightData>, Status> {
        let kind =
            faisca_proto::decode_ticket(&ticket.ticket).map_err(|e| status_from_error(&e))?;
        let t = match kind {
            ticket::Kind::Shuffle(t) => t,
            ticket::Kind::TaskLog(t) => return self.task_log(t),
            ticket::Kind::Result(_) => {
                return Err(Status::invalid_argument(
                    "executors serve shuffle and task log tickets; result tickets go to the driver",
                ));
            }
        };
        if !valid_job_id(&t.job_id) {
            return Err(Status::invalid_argument(format!(
                "invalid job id '{}' in shuffle ticket",
                t.job_id
            )));
        }
        let key = (t.job_id.clone(), t.stage_id, t.map_partition, t.attempt);
        if let Some(stored) = self.memory.get(&key) {
            // Encoded now, for this reader; the batches stay in memory for other readers.
            let batches = stored
                .partitions
                .get(t.reduce_partition as usize)
                .cloned()
                .unwrap_or_default();
            // Dictionaries travel as dictionaries: the reader decodes with the stage's schema,
            // which the default (hydrating them to plain arrays) would contradict.
            let stream = FlightDataEncoderBuilder::new()
                .with_dictionary_handling(DictionaryHandling::Resend)
                .with_schema(stored.schema.clone())
                .with_options(if t.uncompressed {
                    IpcWriteOptions::default()
                } else {
                    self.ipc.clone()
                })
                .build(futures::stream::iter(batches.into_iter().map(Ok)))
                .map_err(|e| Status::internal(format!("encoding shuffle output: {e}")));
            return Ok(Box::pin(stream));
        }
        let files = ShuffleFiles::new(
            &self.shuffle_root,
            &t.job_id,
            t.stage_id,
            t.map_partition,
            t.attempt,
        );
        let reduce = t.reduce_partition;
        let bytes = tokio::task::spawn_blocking(move || read_local_partition(&files, reduce))
            .await
            .map_err(|e| Status::internal(format!("shuffle read panicked: {e}")))?
            .map_err(|e| {
                // A missing file means the output is gone (e.g. cleaned up): not the reader's fault.
                status_from_error(&Error::external(format!(
                    "shuffle output of job {} stage {} map {} attempt {} is not available: {}",
                    t.job_id,
                    t.stage_id,
                    t.map_partition,
                    t.attempt,
                    e.message()
                )))
            })?;
        let frames = ipc_to_flight_data(&bytes, || true).map_err(|e| status_from_error(&e))?;
        Ok(Box::pin(futures::stream::iter(frames.into_iter().map(Ok))))
    }
}
