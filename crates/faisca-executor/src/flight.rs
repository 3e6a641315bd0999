//! The executor's Flight service: `DoGet(shuffle ticket)` streams one partition of one map output.

use std::path::PathBuf;
use std::pin::Pin;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use faisca_common::Error;
use faisca_engine::shuffle::frames::ipc_to_flight_data;
use faisca_engine::shuffle::{ShuffleFiles, read_local_partition};
use faisca_proto::{status_from_error, ticket};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

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
impl FlightService for ExecutorFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let kind = faisca_proto::decode_ticket(&request.get_ref().ticket)
            .map_err(|e| status_from_error(&e))?;
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
        Ok(Response::new(Box::pin(futures::stream::iter(
            frames.into_iter().map(Ok),
        ))))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not supported"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights is not supported"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info is not supported"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not supported"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema is not supported"))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put is not supported"))
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action is not supported"))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not supported"))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not supported"))
    }
}
