//! The gRPC side of a session: control calls and Flight result streams.

use std::pin::Pin;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use faisca_common::{Error, FaiscaConfig, Result};
use faisca_engine::codec::{batches_from_ipc, schema_from_ipc};
use faisca_proto::driver_service_client::DriverServiceClient;
use faisca_proto::rpc::{ClientTransport, RpcChannel};
use faisca_proto::{
    CreateViewRequest, ExecuteMode, ExecutePlanRequest, ExecuteSqlRequest, ExecuteSqlResponse,
    GetJobRequest, KillJobRequest, ListJobsRequest, ResolveSourceRequest, ResultTicket,
    StageSummary, execute_sql_response, ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::jobs::{ExecutorStatus, JobInfo};

/// A stream of result batches.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// Clients for one driver, sharing one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct DriverClient {
    address: String,
    control: DriverServiceClient<RpcChannel>,
    flight: FlightServiceClient<RpcChannel>,
}

/// The outcome of one statement.
pub struct StatementResult {
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: BatchStream,
    /// The job's stages, when the statement ran as a job.
    pub stages: Option<Vec<StageSummary>>,
    /// The job id, when it ran as a job.
    pub job_id: Option<String>,
    /// The statement is a query that was only analyzed (nothing ran).
    pub planned_only: bool,
    /// For an analyzed query: its logical plan as the driver encoded it.
    pub logical_plan: Vec<u8>,
}

impl DriverClient {
    /// Connect to `address` (`faisca://host:port`, `faisca+tls://host:port`, `http://…`,
    /// `https://…` or `host:port`) as `config` says (`faisca.rpc.*`, `faisca.ssl.*`).
    pub async fn connect(address: &str, config: &FaiscaConfig) -> Result<Self> {
        let transport =
            ClientTransport::from_config(config, faisca_proto::address_says_tls(address))?;
        let max_message_size = config.max_message_size();
        let channel = transport.connect(address).await.map_err(|e| match e {
            Error::External { message, retryable } => {
                let unreachable = ["refused", "timed out", "lookup", "resolve"]
                    .iter()
                    .any(|word| message.contains(word));
                let hint = if unreachable {
                    " (is `faisca driver` running there?)"
                } else {
                    ""
                };
                Error::External {
                    message: format!("cannot connect to the driver at {address}: {message}{hint}"),
                    retryable,
                }
            }
            other => other,
        })?;
        Ok(DriverClient {
            address: address.to_string(),
            control: DriverServiceClient::new(channel.clone())
                .max_decoding_message_size(max_message_size)
                .max_encoding_message_size(max_message_size),
            flight: FlightServiceClient::new(channel)
                .max_decoding_message_size(max_message_size)
                .max_encoding_message_size(max_message_size),
        })
    }

    /// The control client.
    pub(crate) fn control(&self) -> DriverServiceClient<RpcChannel> {
        self.control.clone()
    }

    /// The driver's address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn status(&self, s: tonic::Status) -> Error {
        faisca_proto::error_from_status(&s, &format!("driver at {}", self.address))
    }

    /// Run one statement in `session_id` with `mode`; a job it starts is called `job_name` in
    /// `faisca status` (may be empty).
    pub(crate) async fn execute(
        &self,
        session_id: &str,
        sql: &str,
        mode: ExecuteMode,
        job_name: &str,
    ) -> Result<StatementResult> {
        let request = ExecuteSqlRequest {
            session_id: session_id.to_string(),
            sql: sql.to_string(),
            mode: mode as i32,
            job_name: job_name.to_string(),
        };
        let response = self
            .control
            .clone()
            .execute_sql(request)
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        self.statement_result(response).await
    }

    /// Run a DataFrame's logical plan (encoded with the client codec) in `session_id`; with
    /// `write`, write its rows instead of returning them.
    pub(crate) async fn execute_plan(
        &self,
        session_id: &str,
        logical_plan: Vec<u8>,
        mode: ExecuteMode,
        job_name: &str,
        write: Option<faisca_proto::WriteRequest>,
    ) -> Result<StatementResult> {
        let request = ExecutePlanRequest {
            session_id: session_id.to_string(),
            logical_plan,
            mode: mode as i32,
            job_name: job_name.to_string(),
            write,
        };
        let response = self
            .control
            .clone()
            .execute_plan(request)
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        self.statement_result(response).await
    }

    /// Ask the driver to resolve a DataFrame source; returns the scan's encoded logical plan.
    pub(crate) async fn resolve_source(&self, request: ResolveSourceRequest) -> Result<Vec<u8>> {
        let what = if request.table.is_empty() {
            format!("{} source at '{}'", request.format, request.location)
        } else {
            format!("table '{}'", request.table)
        };
        let response = self
            .control
            .clone()
            .resolve_source(request)
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, &format!("resolving the {what}")))?;
        Ok(response.into_inner().logical_plan)
    }

    /// Register an encoded logical plan as a temporary view of `session_id`.
    pub(crate) async fn create_view(
        &self,
        session_id: &str,
        name: &str,
        logical_plan: Vec<u8>,
        replace: bool,
    ) -> Result<()> {
        let request = CreateViewRequest {
            session_id: session_id.to_string(),
            name: name.to_string(),
            logical_plan,
            replace,
        };
        self.control
            .clone()
            .create_view(request)
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, &format!("creating view '{name}'")))?;
        Ok(())
    }

    async fn statement_result(&self, response: ExecuteSqlResponse) -> Result<StatementResult> {
        let schema = schema_from_ipc(&response.schema)?;
        match response.result {
            Some(execute_sql_response::Result::InlineRows(bytes)) => {
                let (_, batches) = batches_from_ipc(&bytes)?;
                Ok(StatementResult {
                    schema,
                    batches: Box::pin(futures::stream::iter(batches.into_iter().map(Ok))),
                    stages: None,
                    job_id: None,
                    planned_only: false,
                    logical_plan: Vec::new(),
                })
            }
            Some(execute_sql_response::Result::PlannedOnly(_)) => Ok(StatementResult {
                schema,
                batches: Box::pin(futures::stream::empty()),
                stages: None,
                job_id: None,
                planned_only: true,
                logical_plan: response.logical_plan,
            }),
            Some(execute_sql_response::Result::Job(job)) => {
                let batches = self.job_rows(&job.job_id).await?;
                Ok(StatementResult {
                    schema,
                    batches,
                    stages: Some(job.stages),
                    job_id: Some(job.job_id),
                    planned_only: false,
                    logical_plan: Vec::new(),
                })
            }
            None => Err(Error::internal(
                "the driver answered ExecuteSql without a result",
            )),
        }
    }

    /// Running jobs and the driver's recent finished ones, oldest first.
    pub async fn list_jobs(&self) -> Result<Vec<JobInfo>> {
        let response = self
            .control
            .clone()
            .list_jobs(ListJobsRequest {})
            .await
            .map_err(|s| self.status(s))?;
        response
            .into_inner()
            .jobs
            .into_iter()
            .map(JobInfo::try_from)
            .collect()
    }

    /// The driver's streaming queries: the active ones, then (unless `active_only`) the recently
    /// ended ones.
    pub async fn streaming_queries(
        &self,
        active_only: bool,
    ) -> Result<Vec<crate::streaming::StreamingQuerySummary>> {
        let response = self
            .control
            .clone()
            .list_streaming_queries(faisca_proto::ListStreamingQueriesRequest { active_only })
            .await
            .map_err(|s| self.status(s))?;
        Ok(response
            .into_inner()
            .queries
            .into_iter()
            .map(crate::streaming::StreamingQuerySummary::from_proto)
            .collect())
    }

    /// One streaming query, by id or run id.
    pub async fn streaming_query(
        &self,
        id: &str,
    ) -> Result<crate::streaming::StreamingQuerySummary> {
        let response = self
            .control
            .clone()
            .get_streaming_query(faisca_proto::GetStreamingQueryRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?;
        Ok(crate::streaming::StreamingQuerySummary::from_proto(
            response.into_inner(),
        ))
    }

    /// Stops a streaming query (by id or run id) and waits until it stopped.
    pub async fn stop_streaming_query(
        &self,
        id: &str,
    ) -> Result<crate::streaming::StreamingQuerySummary> {
        let response = self
            .control
            .clone()
            .stop_streaming_query(faisca_proto::StopStreamingQueryRequest { id: id.to_string() })
            .await
            .map_err(|s| self.status(s))?;
        Ok(crate::streaming::StreamingQuerySummary::from_proto(
            response.into_inner(),
        ))
    }

    /// The executors registered now, by id (decommissioning ones included), then those that
    /// left recently, oldest first, with why.
    pub async fn executors(&self) -> Result<Vec<ExecutorStatus>> {
        let response = self.cluster_info().await?;
        Ok(response
            .executors
            .into_iter()
            .chain(response.departed)
            .map(ExecutorStatus::from)
            .collect())
    }

    /// The driver's web UI (`http://127.0.0.1:4040`), when it serves one.
    pub async fn ui_url(&self) -> Result<Option<String>> {
        let response = self.cluster_info().await?;
        Ok(Some(response.ui_url).filter(|url| !url.is_empty()))
    }

    /// The driver's executors and web UI, as it answers now.
    async fn cluster_info(&self) -> Result<faisca_proto::ClusterInfoResponse> {
        Ok(self
            .control
            .clone()
            .cluster_info(faisca_proto::ClusterInfoRequest { min_executors: 0 })
            .await
            .map_err(|s| self.status(s))?
            .into_inner())
    }

    /// One job's status: stages, task attempts, failures.
    pub async fn job(&self, job_id: &str) -> Result<JobInfo> {
        let request = GetJobRequest {
            job_id: job_id.to_string(),
        };
        let response = self
            .control
            .clone()
            .get_job(request)
            .await
            .map_err(|s| self.status(s))?;
        JobInfo::try_from(response.into_inner())
    }

    /// Cancel a running job: its tasks stop and its shuffle data is removed.
    pub async fn kill_job(&self, job_id: &str) -> Result<JobInfo> {
        let request = KillJobRequest {
            job_id: job_id.to_string(),
        };
        let response = self
            .control
            .clone()
            .kill_job(request)
            .await
            .map_err(|s| self.status(s))?;
        JobInfo::try_from(response.into_inner())
    }

    /// The rows of a job, streamed from the driver with Flight `DoGet`. The request is sent now
    /// (the driver answers at once and streams once the job is done); dropping the stream, read or
    /// not, releases the job on the driver, and cancels it if it is still running.
    pub async fn job_rows(&self, job_id: &str) -> Result<BatchStream> {
        let ticket = faisca_proto::encode_ticket(ticket::Kind::Result(ResultTicket {
            job_id: job_id.to_string(),
        }));
        let what = format!("job {job_id} on the driver at {}", self.address);
        let response = self
            .flight
            .clone()
            .do_get(arrow_flight::Ticket { ticket })
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, &what))?;
        let stream = FlightRecordBatchStream::new_from_flight_data(
            response.into_inner().map_err(FlightError::from),
        )
        .map_err(move |e| match e {
            FlightError::Tonic(s) => faisca_proto::error_from_status(&s, &what),
            other => Error::external(format!("{what}: {other}")),
        });
        Ok(Box::pin(stream))
    }
}

/// Collect a batch stream.
pub async fn collect(mut stream: BatchStream) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.push(batch?);
    }
    Ok(out)
}
