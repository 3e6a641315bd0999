//! Arrow Flight on the driver: `DoGet(result ticket)` streams a job's rows to the client.
//!
//! The driver waits for the job, then reads the result stage's outputs from the executors in task
//! order and forwards their Flight messages as they are (no decoding), after one schema message of
//! its own. When the stream ends or the client drops it, the job's shuffle data is released.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use faisca_common::JobId;
use faisca_engine::shuffle::FlightClients;
use faisca_proto::{ShuffleTicket, status_from_error, ticket};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::actor::{DriverHandle, JobResult, Message};

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The driver's Flight service.
pub struct DriverFlightService {
    handle: DriverHandle,
    clients: Arc<FlightClients>,
}

impl DriverFlightService {
    /// A service reading results through `clients`.
    pub fn new(handle: DriverHandle, clients: Arc<FlightClients>) -> Self {
        DriverFlightService { handle, clients }
    }
}

/// Tells the actor the job's result was consumed (or abandoned) when dropped.
struct JobDoneGuard {
    handle: DriverHandle,
    job: JobId,
}

impl Drop for JobDoneGuard {
    fn drop(&mut self) {
        self.handle.send(Message::JobDone {
            id: self.job.clone(),
        });
    }
}

fn is_schema_message(data: &FlightData) -> bool {
    datafusion::arrow::ipc::root_as_message(&data.data_header)
        .map(|m| m.header_type() == datafusion::arrow::ipc::MessageHeader::Schema)
        .unwrap_or(false)
}

fn result_stream(
    result: JobResult,
    job: JobId,
    clients: Arc<FlightClients>,
    guard: JobDoneGuard,
) -> BoxedStream<FlightData> {
    let schema_message: FlightData =
        SchemaAsIpc::new(&result.schema, &IpcWriteOptions::default()).into();
    let stage = result.stage_id;
    let parts =
        futures::stream::iter(result.outputs).then(move |(executor, address, map, attempt)| {
            let clients = clients.clone();
            let job = job.clone();
            async move {
                let what = format!(
                    "result partition {map} of job {job} from executor {executor} at {address}"
                );
                let mut client = clients
                    .client(&address)
                    .map_err(|e| status_from_error(&e))?;
                let ticket = faisca_proto::encode_ticket(ticket::Kind::Shuffle(ShuffleTicket {
                    job_id: job.0.clone(),
                    stage_id: stage,
                    map_partition: map,
                    attempt,
                    reduce_partition: 0,
                }));
                let response = client
                    .do_get(Ticket { ticket })
                    .await
                    .map_err(|s| status_from_error(&faisca_proto::error_from_status(&s, &what)))?;
                Ok::<_, Status>(response.into_inner())
            }
        });
    let body = parts
        .try_flatten()
        .try_filter(|d| futures::future::ready(!is_schema_message(d)));
    let stream = futures::stream::once(async move { Ok(schema_message) })
        .chain(body)
        .map(move |item| {
            let _keep_until_the_stream_is_dropped = &guard;
            item
        });
    Box::pin(stream)
}

#[tonic::async_trait]
impl FlightService for DriverFlightService {
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
        let ticket::Kind::Result(result) = kind else {
            return Err(Status::invalid_argument(
                "the driver serves only result tickets; shuffle tickets go to executors",
            ));
        };
        let job = JobId(result.job_id);
        let guard = JobDoneGuard {
            handle: self.handle.clone(),
            job: job.clone(),
        };
        let id = job.clone();
        let outcome = self
            .handle
            .ask(|reply| Message::AwaitJob { id, reply })
            .await
            .map_err(|e| status_from_error(&e))?;
        match outcome {
            Ok(result) => Ok(Response::new(result_stream(
                result,
                job,
                self.clients.clone(),
                guard,
            ))),
            Err(error) => Err(status_from_error(&error)),
        }
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "handshake is not needed: Faísca has no authentication yet",
        ))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented(
            "list_flights: submit SQL through DriverService.ExecuteSql",
        ))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "get_flight_info: submit SQL through DriverService.ExecuteSql",
        ))
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
        Err(Status::unimplemented(
            "get_schema: ExecuteSql returns the schema",
        ))
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
