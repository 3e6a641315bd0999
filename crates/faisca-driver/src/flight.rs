//! Arrow Flight on the driver: `DoGet(result ticket)` streams a job's rows to the client.
//!
//! `DoGet` answers at once; its stream waits for the job (and a write job's commit), then sends
//! the rows the driver computed (a write's `count`) or reads the result stage's outputs from the executors in task
//! order and forwards their Flight messages as they are (no decoding), after one schema message of
//! its own. When the stream ends or the client drops it, the job's shuffle data is released.

use std::sync::Arc;

use arrow_flight::{FlightData, SchemaAsIpc, Ticket};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use faisca_common::JobId;
use faisca_common::auth::Principal;
use faisca_engine::shuffle::FlightClients;
use faisca_proto::rpc::{BoxedStream, DoGetHandler};
use faisca_proto::{ShuffleTicket, status_from_error, ticket};
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::actor::{DriverHandle, JobResult, Message};

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
    if let Some(batches) = result.inline {
        let data = arrow_flight::utils::batches_to_flight_data(&result.schema, batches)
            .map_err(|e| Status::internal(format!("encoding a job's result: {e}")));
        let items: Vec<Result<FlightData, Status>> = match data {
            Ok(data) => data.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        return Box::pin(futures::stream::iter(items).map(move |item| {
            let _keep_until_the_stream_is_dropped = &guard;
            item
        }));
    }
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
                    // The frames go on to the client as they are: compressed, whatever the
                    // executor's address.
                    uncompressed: false,
                }));
                let response = client
                    .do_get(Ticket { ticket })
                    .await
                    .map_err(|s| status_from_error(&faisca_proto::error_from_status(&s, &what)))?;
                Ok::<_, Status>(response.into_inner())
            }
        });
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = failed.clone();
    let body = parts
        .try_flatten()
        .try_filter(|d| futures::future::ready(!is_schema_message(d)))
        .inspect(move |item| {
            if item.is_err() {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    // Once every row was streamed, the Kafka runs the job read are committed, and only then
    // does the stream end: a client's next query sees the checkpoint moved on.
    let kafka = result.kafka;
    let commit = futures::stream::once(async move {
        if kafka.is_empty() || failed.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        faisca_connectors::kafka::run::record_done(&kafka).await.err().map(|e| {
            Err(status_from_error(&e.context(
                "every row was sent, but the Kafka checkpoint was not committed: the next run reads this batch again",
            )))
        })
    })
    .filter_map(futures::future::ready);
    let stream = futures::stream::once(async move { Ok(schema_message) })
        .chain(body)
        .chain(commit)
        .map(move |item| {
            let _keep_until_the_stream_is_dropped = &guard;
            item
        });
    Box::pin(stream)
}

/// The rows of a succeeded job, read on the driver (a streaming query's memory sink); the job
/// is released when they were read (or reading failed).
pub async fn collect_result(
    handle: DriverHandle,
    clients: Arc<FlightClients>,
    job: JobId,
    result: JobResult,
) -> faisca_common::Result<Vec<datafusion::arrow::array::RecordBatch>> {
    if let Some(batches) = result.inline.clone() {
        handle.send(Message::JobDone { id: job });
        return Ok(batches);
    }
    let guard = JobDoneGuard {
        handle,
        job: job.clone(),
    };
    let frames = result_stream(result, job.clone(), clients, guard)
        .map_err(|status| arrow_flight::error::FlightError::Tonic(Box::new(status)));
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(frames)
        .try_collect()
        .await
        .map_err(|e| {
            faisca_common::Error::external(format!("reading the result of job {job}: {e}"))
        })
}

#[tonic::async_trait]
impl DoGetHandler for DriverFlightService {
    async fn do_get(
        &self,
        ticket: Ticket,
        caller: Principal,
    ) -> Result<BoxedStream<FlightData>, Status> {
        let kind =
            faisca_proto::decode_ticket(&ticket.ticket).map_err(|e| status_from_error(&e))?;
        let ticket::Kind::Result(result) = kind else {
            return Err(Status::invalid_argument(
                "the driver serves only result tickets; shuffle tickets go to executors",
            ));
        };
        let job = JobId(result.job_id);
        // A user reads only their own jobs' results (checked before the guard exists: dropping
        // it releases the job).
        if let Principal::User(_) = &caller {
            let id = job.clone();
            let info = self
                .handle
                .ask(|reply| Message::GetJob { id, reply })
                .await
                .and_then(|r| r)
                .map_err(|e| status_from_error(&e))?;
            let owner = (!info.user.is_empty()).then_some(info.user.as_str());
            caller
                .check_access(owner, &format!("job {}", info.job_id))
                .map_err(|e| Status::permission_denied(e.to_string()))?;
        }
        // The stream is returned at once and waits for the job inside, so that a client can open
        // it as soon as the job starts: dropping it at any point releases (or cancels) the job.
        let guard = JobDoneGuard {
            handle: self.handle.clone(),
            job: job.clone(),
        };
        let handle = self.handle.clone();
        let clients = self.clients.clone();
        let stream = futures::stream::once(async move {
            let id = job.clone();
            let outcome = handle
                .ask(|reply| Message::AwaitJob { id, reply })
                .await
                .map_err(|e| status_from_error(&e))?;
            match outcome {
                Ok(result) => Ok(result_stream(result, job, clients, guard)),
                Err(error) => Err(status_from_error(&error)),
            }
        })
        .try_flatten();
        Ok(Box::pin(stream))
    }
}
