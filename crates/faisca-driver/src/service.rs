//! The control service: sessions, SQL, table registration, cluster info, executor streams.

use std::pin::Pin;

use datafusion::datasource::file_format::options::ParquetReadOptions;
use faisca_common::auth::Principal;
use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, JobId, PROTOCOL_VERSION, Result};
use faisca_engine::codec::{batches_to_ipc, schema_to_ipc};
use faisca_proto::driver_service_server::DriverService;
use faisca_proto::*;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::actor::{DriverHandle, Message};
use crate::logical_codec::{decode_logical_plan, encode_logical_plan};
use crate::planning::{Mode, Planned, plan_sql, plan_statement};

/// An `EXPLAIN`'s plan text, and a job's stage plans as the web UI and the event log show them,
/// without the values of the statement's secret options (a `from_avro` registry password shows
/// in a plan as a literal). `secrets` is asked only when there is plan text to scrub.
fn scrub_explain(planned: Planned, secrets: impl FnOnce() -> Vec<String>) -> Result<Planned> {
    use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::record_batch::RecordBatch;
    let (schema, batches) = match planned {
        Planned::Inline { schema, batches } => (schema, batches),
        Planned::Job(mut job) => {
            let secrets = secrets();
            if !secrets.is_empty() {
                for stage in &mut job.stages {
                    stage.operators = faisca_common::redact::scrub(&stage.operators, &secrets);
                }
            }
            return Ok(Planned::Job(job));
        }
        other => return Ok(other),
    };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names != ["plan_type", "plan"] {
        return Ok(Planned::Inline { schema, batches });
    }
    let secrets = secrets();
    if secrets.is_empty() {
        return Ok(Planned::Inline { schema, batches });
    }
    let batches = batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(|column| match column.data_type() {
                    DataType::Utf8 => std::sync::Arc::new(
                        column
                            .as_string::<i32>()
                            .iter()
                            .map(|v| v.map(|text| faisca_common::redact::scrub(text, &secrets)))
                            .collect::<StringArray>(),
                    ) as ArrayRef,
                    _ => column.clone(),
                })
                .collect();
            RecordBatch::try_new(batch.schema(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Planned::Inline { schema, batches })
}

/// Implements `faisca.v1.DriverService`.
pub struct DriverServiceImpl {
    handle: DriverHandle,
    clients: std::sync::Arc<faisca_engine::shuffle::FlightClients>,
}

impl DriverServiceImpl {
    /// A service talking to the actor behind `handle`; streaming queries read results through
    /// `clients`.
    pub fn new(
        handle: DriverHandle,
        clients: std::sync::Arc<faisca_engine::shuffle::FlightClients>,
    ) -> Self {
        DriverServiceImpl { handle, clients }
    }

    async fn start_query(
        &self,
        request: StartStreamingQueryRequest,
        caller: &Principal,
    ) -> Result<StreamingQueryInfo> {
        let session_id = SessionId(request.session_id.clone());
        let (session, _) = self.session(&request.session_id, caller).await?;
        let plan = decode_logical_plan(
            &request.logical_plan,
            &session.ctx.task_ctx(),
            &session.codec(),
            session.max_plan_depth,
        )?;
        let query = crate::streaming::start::prepare(
            &session,
            &session_id,
            &request,
            plan,
            self.clients.clone(),
        )
        .await?;
        let query = Box::new(query);
        self.handle
            .ask(|reply| Message::StartQuery { query, reply })
            .await?
    }

    /// The session `id` and the cluster's cores, when `caller` may use it (its owner, or the
    /// cluster).
    async fn session(
        &self,
        id: &str,
        caller: &Principal,
    ) -> Result<(crate::session::Session, usize)> {
        let session_id = SessionId(id.to_string());
        let (session, cores) = self
            .handle
            .ask(|reply| Message::GetSession {
                id: session_id,
                reply,
            })
            .await??;
        caller.check_access(session.owner.as_deref(), &format!("session {id}"))?;
        Ok((session, cores))
    }

    /// Job `id`, when `caller` may see it (its owner's, or the cluster).
    async fn visible_job(&self, id: JobId, caller: &Principal) -> Result<JobInfo> {
        let job = self
            .handle
            .ask(|reply| Message::GetJob { id, reply })
            .await??;
        caller.check_access(owner(&job.user), &format!("job {}", job.job_id))?;
        Ok(job)
    }

    /// Streaming query `id`, when `caller` may see it.
    async fn visible_query(&self, id: String, caller: &Principal) -> Result<StreamingQueryInfo> {
        let query = self
            .handle
            .ask(|reply| Message::GetQuery { id, reply })
            .await??;
        caller.check_access(owner(&query.user), &format!("streaming query {}", query.id))?;
        Ok(query)
    }

    async fn execute(
        &self,
        request: ExecuteSqlRequest,
        caller: &Principal,
    ) -> Result<ExecuteSqlResponse> {
        let session_id = SessionId(request.session_id.clone());
        let (session, cores) = self.session(&request.session_id, caller).await?;
        let mode = execute_mode(request.mode)?;
        let planned = plan_sql(&session, &session_id, &request.sql, mode, cores).await?;
        let planned = scrub_explain(planned, || {
            session.config.redaction().secret_values(&request.sql)
        })?;
        self.respond(
            &session,
            &session_id,
            planned,
            &request.job_name,
            &request.sql,
        )
        .await
    }

    async fn run_plan(
        &self,
        request: ExecutePlanRequest,
        caller: &Principal,
    ) -> Result<ExecuteSqlResponse> {
        let session_id = SessionId(request.session_id.clone());
        let (session, cores) = self.session(&request.session_id, caller).await?;
        let mode = execute_mode(request.mode)?;
        let plan = decode_logical_plan(
            &request.logical_plan,
            &session.ctx.task_ctx(),
            &session.codec(),
            session.max_plan_depth,
        )?;
        // A DataFrame's text is its plan, whose literals may hold secrets (`MAP(…)` options).
        let secrets = session.config.redaction().secret_values_in_plan(&plan);
        let text =
            faisca_common::redact::scrub(&format!("DataFrame: {}", plan.display()), &secrets);
        let planned = match request.write {
            Some(write) if mode == Mode::Run => {
                let write = crate::write::WriteRequest {
                    url: write.url,
                    format: write.format,
                    mode: (!write.mode.is_empty()).then_some(write.mode),
                    partition_by: write.partition_by,
                    options: write
                        .options
                        .into_iter()
                        .map(|e| (e.key, e.value))
                        .collect(),
                    copy: false,
                    insert: false,
                };
                scrub_explain(
                    crate::planning::plan_write(&session, &session_id, write, plan, cores).await?,
                    || secrets,
                )?
            }
            Some(_) => {
                return Err(Error::user(
                    "a DataFrame write can only be run, not analyzed or explained",
                ));
            }
            None => scrub_explain(
                plan_statement(&session, &session_id, plan, mode, cores).await?,
                || secrets,
            )?,
        };
        self.respond(&session, &session_id, planned, &request.job_name, &text)
            .await
    }

    /// The answer to a planned statement: rows computed here, a schema, or a started job.
    async fn respond(
        &self,
        session: &crate::session::Session,
        session_id: &SessionId,
        planned: Planned,
        job_name: &str,
        text: &str,
    ) -> Result<ExecuteSqlResponse> {
        Ok(match planned {
            Planned::Inline { schema, batches } => ExecuteSqlResponse {
                schema: schema_to_ipc(&schema)?,
                logical_plan: Vec::new(),
                result: Some(execute_sql_response::Result::InlineRows(batches_to_ipc(
                    &schema, &batches,
                )?)),
            },
            Planned::Analyzed { schema, plan } => ExecuteSqlResponse {
                schema: schema_to_ipc(&schema)?,
                logical_plan: encode_logical_plan(&plan, &session.codec())?,
                result: Some(execute_sql_response::Result::PlannedOnly(true)),
            },
            Planned::Set { key, value } => {
                let id = session_id.clone();
                self.handle
                    .ask(|reply| Message::SetSessionConfig {
                        id,
                        key,
                        value,
                        reply,
                    })
                    .await??;
                let schema = datafusion::arrow::datatypes::Schema::empty();
                ExecuteSqlResponse {
                    schema: schema_to_ipc(&schema)?,
                    logical_plan: Vec::new(),
                    result: Some(execute_sql_response::Result::InlineRows(batches_to_ipc(
                        &schema,
                        &[],
                    )?)),
                }
            }
            Planned::Job(mut job) => {
                // What `faisca status` shows and the log keeps: secret values masked.
                let text = session.config.redaction().sql(text);
                job.name = job_name.to_string();
                job.sql = crate::scheduler::shorten_sql(&text);
                let schema = schema_to_ipc(&job.schema)?;
                let stages = job.summaries();
                let job_id = self
                    .handle
                    .ask(|reply| Message::SubmitJob { job, reply })
                    .await??;
                debug!(job = %job_id, "started job for: {text}");
                ExecuteSqlResponse {
                    schema,
                    logical_plan: Vec::new(),
                    result: Some(execute_sql_response::Result::Job(JobStarted {
                        job_id: job_id.0,
                        stages,
                    })),
                }
            }
        })
    }

    async fn resolve(
        &self,
        request: ResolveSourceRequest,
        caller: &Principal,
    ) -> Result<ResolveSourceResponse> {
        let (session, cores) = self.session(&request.session_id, caller).await?;
        let plan = if request.streaming {
            crate::sources::stream_source(&session, &request, cores).await?
        } else if !request.table.is_empty() {
            session
                .ctx
                .table(request.table.as_str())
                .await?
                .into_unoptimized_plan()
        } else {
            crate::sources::file_source(&session, &request).await?
        };
        Ok(ResolveSourceResponse {
            logical_plan: encode_logical_plan(&plan, &session.codec())?,
        })
    }

    async fn view(
        &self,
        request: CreateViewRequest,
        caller: &Principal,
    ) -> Result<CreateViewResponse> {
        let (session, _) = self.session(&request.session_id, caller).await?;
        let plan = decode_logical_plan(
            &request.logical_plan,
            &session.ctx.task_ctx(),
            &session.codec(),
            session.max_plan_depth,
        )?;
        crate::sources::register_view(&session, &request.name, plan, request.replace)?;
        Ok(CreateViewResponse {})
    }
}

fn execute_mode(mode: i32) -> Result<Mode> {
    match ExecuteMode::try_from(mode) {
        Ok(ExecuteMode::Run) => Ok(Mode::Run),
        Ok(ExecuteMode::Analyze) => Ok(Mode::Analyze),
        Ok(ExecuteMode::Explain) => Ok(Mode::Explain),
        Err(_) => Err(Error::user(format!(
            "unknown execute mode {mode}: expected RUN, ANALYZE or EXPLAIN"
        ))),
    }
}

fn to_status(e: Error) -> Status {
    status_from_error(&e)
}

/// A job's or query's owner as the protocol carries it (empty: none).
fn owner(user: &str) -> Option<&str> {
    (!user.is_empty()).then_some(user)
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<DriverMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DriverService for DriverServiceImpl {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionResponse>, Status> {
        let owner = rpc::principal(&request).user().map(str::to_string);
        let config = config_from_entries(&request.get_ref().config).map_err(to_status)?;
        let id = self
            .handle
            .ask(|reply| Message::CreateSession {
                config,
                owner,
                reply,
            })
            .await
            .and_then(|r| r)
            .map_err(to_status)?;
        Ok(Response::new(CreateSessionResponse { session_id: id.0 }))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        let caller = rpc::principal(&request);
        let id = request.into_inner().session_id;
        self.session(&id, &caller).await.map_err(to_status)?;
        self.handle
            .send(Message::CloseSession { id: SessionId(id) });
        Ok(Response::new(CloseSessionResponse {}))
    }

    async fn execute_sql(
        &self,
        request: Request<ExecuteSqlRequest>,
    ) -> Result<Response<ExecuteSqlResponse>, Status> {
        let caller = rpc::principal(&request);
        self.execute(request.into_inner(), &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn resolve_source(
        &self,
        request: Request<ResolveSourceRequest>,
    ) -> Result<Response<ResolveSourceResponse>, Status> {
        let caller = rpc::principal(&request);
        self.resolve(request.into_inner(), &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn execute_plan(
        &self,
        request: Request<ExecutePlanRequest>,
    ) -> Result<Response<ExecuteSqlResponse>, Status> {
        let caller = rpc::principal(&request);
        self.run_plan(request.into_inner(), &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn create_view(
        &self,
        request: Request<CreateViewRequest>,
    ) -> Result<Response<CreateViewResponse>, Status> {
        let caller = rpc::principal(&request);
        self.view(request.into_inner(), &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn register_table(
        &self,
        request: Request<RegisterTableRequest>,
    ) -> Result<Response<RegisterTableResponse>, Status> {
        let caller = rpc::principal(&request);
        let request = request.into_inner();
        let (session, _) = self
            .session(&request.session_id, &caller)
            .await
            .map_err(to_status)?;
        session
            .ctx
            .register_parquet(
                &request.name,
                &request.location,
                ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| {
                to_status(Error::from(e).context(format!(
                    "registering table '{}' at '{}'",
                    request.name, request.location
                )))
            })?;
        Ok(Response::new(RegisterTableResponse {}))
    }

    async fn cluster_info(
        &self,
        request: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        let min_executors = request.get_ref().min_executors as usize;
        let info = self
            .handle
            .ask(|reply| Message::ClusterInfo {
                min_executors,
                reply,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(info))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = rpc::principal(&request);
        let mut jobs = self
            .handle
            .ask(|reply| Message::ListJobs { reply })
            .await
            .map_err(to_status)?;
        jobs.retain(|job| caller.may_access(owner(&job.user)));
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<JobInfo>, Status> {
        let caller = rpc::principal(&request);
        let id = JobId(request.into_inner().job_id);
        self.visible_job(id, &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn kill_job(
        &self,
        request: Request<KillJobRequest>,
    ) -> Result<Response<JobInfo>, Status> {
        let caller = rpc::principal(&request);
        let id = JobId(request.into_inner().job_id);
        self.visible_job(id.clone(), &caller)
            .await
            .map_err(to_status)?;
        self.handle
            .ask(|reply| Message::KillJob { id, reply })
            .await
            .and_then(|r| r)
            .map(Response::new)
            .map_err(to_status)
    }

    async fn start_streaming_query(
        &self,
        request: Request<StartStreamingQueryRequest>,
    ) -> Result<Response<StreamingQueryInfo>, Status> {
        let caller = rpc::principal(&request);
        self.start_query(request.into_inner(), &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_streaming_queries(
        &self,
        request: Request<ListStreamingQueriesRequest>,
    ) -> Result<Response<ListStreamingQueriesResponse>, Status> {
        let caller = rpc::principal(&request);
        let active_only = request.into_inner().active_only;
        let mut queries = self
            .handle
            .ask(|reply| Message::ListQueries { active_only, reply })
            .await
            .map_err(to_status)?;
        queries.retain(|query| caller.may_access(owner(&query.user)));
        Ok(Response::new(ListStreamingQueriesResponse { queries }))
    }

    async fn get_streaming_query(
        &self,
        request: Request<GetStreamingQueryRequest>,
    ) -> Result<Response<StreamingQueryInfo>, Status> {
        let caller = rpc::principal(&request);
        let id = request.into_inner().id;
        self.visible_query(id, &caller)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn stop_streaming_query(
        &self,
        request: Request<StopStreamingQueryRequest>,
    ) -> Result<Response<StreamingQueryInfo>, Status> {
        let caller = rpc::principal(&request);
        let id = request.into_inner().id;
        self.visible_query(id.clone(), &caller)
            .await
            .map_err(to_status)?;
        self.handle
            .ask(|reply| Message::StopQuery { id, reply })
            .await
            .and_then(|r| r)
            .map(Response::new)
            .map_err(to_status)
    }

    async fn ack_streaming_batch(
        &self,
        request: Request<AckStreamingBatchRequest>,
    ) -> Result<Response<AckStreamingBatchResponse>, Status> {
        let caller = rpc::principal(&request);
        let request = request.into_inner();
        // Only the query's owner (its client) may say a batch was handled.
        self.visible_query(request.run_id.clone(), &caller)
            .await
            .map_err(to_status)?;
        let error = (!request.error.is_empty()).then_some(request.error);
        self.handle
            .ask(|reply| Message::AckQueryBatch {
                run_id: request.run_id,
                batch: request.batch_id,
                error,
                reply,
            })
            .await
            .and_then(|r| r)
            .map(|()| Response::new(AckStreamingBatchResponse {}))
            .map_err(to_status)
    }

    type ExecutorConnectStream = MessageStream;

    async fn executor_connect(
        &self,
        request: Request<Streaming<ExecutorMessage>>,
    ) -> Result<Response<Self::ExecutorConnectStream>, Status> {
        if let Principal::User(user) = rpc::principal(&request) {
            return Err(Status::permission_denied(format!(
                "user '{user}' may not register as an executor: executors present the cluster secret (FAISCA_AUTH_SECRET or faisca.authenticate.secret.file)"
            )));
        }
        let mut incoming = request.into_inner();
        let first = incoming.next().await.ok_or_else(|| {
            Status::invalid_argument("executor stream closed before registering")
        })??;
        let Some(executor_message::Message::Register(register)) = first.message else {
            return Err(Status::invalid_argument(
                "the first message of an executor stream must be `register`",
            ));
        };
        if register.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "executor {} speaks protocol version {}, but this driver speaks version {PROTOCOL_VERSION}; run the same Faísca release on driver and executors",
                register.executor_id, register.protocol_version
            )));
        }
        if register.cores == 0 {
            return Err(Status::invalid_argument(format!(
                "executor {} registered with 0 cores; expected at least 1",
                register.executor_id
            )));
        }
        let id = ExecutorId(register.executor_id.clone());
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let reply_id = id.clone();
        self.handle
            .ask(|reply| Message::ExecutorRegistered {
                id: reply_id,
                flight_address: register.flight_address.clone(),
                cores: register.cores,
                memory_bytes: register.memory_bytes,
                sender,
                reply,
            })
            .await
            .and_then(|r| r)
            .map_err(to_status)?;
        // Forward what the executor says to the actor until its stream ends.
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let reason = loop {
                match incoming.next().await {
                    Some(Ok(ExecutorMessage {
                        message: Some(executor_message::Message::TaskStatus(status)),
                    })) => {
                        handle.send(Message::TaskStatus {
                            executor: id.clone(),
                            status,
                        });
                    }
                    Some(Ok(ExecutorMessage {
                        message: Some(executor_message::Message::Heartbeat(beat)),
                    })) => {
                        handle.send(Message::Heartbeat {
                            executor: id.clone(),
                            memory_used_bytes: beat.memory_used_bytes,
                            shuffle_memory_bytes: beat.shuffle_memory_bytes,
                        });
                    }
                    Some(Ok(ExecutorMessage {
                        message: Some(executor_message::Message::Decommission(d)),
                    })) => {
                        handle.send(Message::ExecutorDecommissioning {
                            id: id.clone(),
                            reason: d.reason,
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(status)) => break format!("stream error: {}", status.message()),
                    None => break "stream closed".to_string(),
                }
            };
            handle.send(Message::ExecutorLost { id, reason });
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            receiver,
        ))))
    }
}
