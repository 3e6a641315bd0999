//! The executor's Flight service: `DoGet(shuffle ticket)` streams one partition of one map output.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::{FlightData, Ticket};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use faisca_common::Error;
use faisca_common::FaiscaConfig;
use faisca_engine::shuffle::frames::ipc_to_flight_data;
use faisca_engine::shuffle::memory::MemoryShuffleStore;
use faisca_engine::shuffle::writer::ShuffleWriteOptions;
use faisca_engine::shuffle::{ShuffleFiles, read_local_partition};
use faisca_proto::rpc::{BoxedStream, DoGetHandler};
use faisca_proto::{status_from_error, ticket};
use futures::TryStreamExt;
use tonic::Status;

/// Serves shuffle partitions from `shuffle_root`.
pub struct ExecutorFlightService {
    shuffle_root: PathBuf,
    memory: Arc<MemoryShuffleStore>,
    ipc: IpcWriteOptions,
}

impl ExecutorFlightService {
    /// A service over `shuffle_root`.
    pub fn new(
        shuffle_root: PathBuf,
        memory: Arc<MemoryShuffleStore>,
        config: &FaiscaConfig,
    ) -> Self {
        let compression = ShuffleWriteOptions::from_config(config).compression;
        let ipc = IpcWriteOptions::default()
            .try_with_compression(compression)
            .unwrap_or_default();
        ExecutorFlightService {
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

#[tonic::async_trait]
impl DoGetHandler for ExecutorFlightService {
    async fn do_get(&self, ticket: Ticket) -> Result<BoxedStream<FlightData>, Status> {
        let kind =
            faisca_proto::decode_ticket(&ticket.ticket).map_err(|e| status_from_error(&e))?;
        let ticket::Kind::Shuffle(t) = kind else {
            return Err(Status::invalid_argument(
                "executors serve only shuffle tickets; result tickets go to the driver",
            ));
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
