//! The executor's Flight service: `DoGet(shuffle ticket)` streams one partition of one map output.

use std::path::PathBuf;

use arrow_flight::{FlightData, Ticket};
use faisca_common::Error;
use faisca_engine::rpc::{BoxedStream, DoGetHandler};
use faisca_engine::shuffle::frames::ipc_to_flight_data;
use faisca_engine::shuffle::{ShuffleFiles, read_local_partition};
use faisca_proto::{status_from_error, ticket};
use tonic::Status;

/// Serves shuffle partitions from `shuffle_root`.
pub struct ExecutorFlightService {
    shuffle_root: PathBuf,
}

impl ExecutorFlightService {
    /// A service over `shuffle_root`.
    pub fn new(shuffle_root: PathBuf) -> Self {
        ExecutorFlightService { shuffle_root }
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
