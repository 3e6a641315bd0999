//! The driver actor: one owner of all driver state, driven by messages.
//!
//! `receive` is synchronous and never waits: it updates state, sends `DriverMessage`s to executors
//! over unbounded channels, and answers requests on oneshot channels. Callers reach it through a
//! [`DriverHandle`]. Executors and sessions are handled here; jobs (scheduling, failures, status,
//! cancellation) in `jobs.rs`.

mod executors;
mod jobs;
mod queries;
mod ui;

pub use ui::application_start;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, FaiscaConfig, JobId, Result};
use faisca_proto::{
    ClusterInfoResponse, DriverMessage, ExecutorInfo, JobInfo, TaskStatus, driver_message,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::allocation::DynamicAllocator;
use crate::launcher::{LauncherEvent, LauncherHandle};
use crate::scheduler::{JobState, PlannedJob};
use crate::session::Session;

/// Sends `DriverMessage`s down one executor's stream.
pub type ExecutorSender = mpsc::UnboundedSender<Result<DriverMessage, tonic::Status>>;

/// A registered executor as the driver sees it.
#[derive(Debug)]
pub struct ExecutorEntry {
    /// Flight address for shuffle reads.
    pub flight_address: String,
    /// Task slots.
    pub cores: u32,
    /// Memory the executor's pool may use.
    pub memory_bytes: u64,
    /// Tasks running there now.
    pub running: u32,
    /// When the executor was last heard from (registration, heartbeat, task status).
    last_seen: Instant,
    sender: ExecutorSender,
    /// Set once the executor said it is leaving.
    decommission: Option<Decommission>,
}

/// A decommissioning executor: it gets no new tasks and is released once no job needs it.
#[derive(Debug)]
struct Decommission {
    /// Whether the driver told it that it may go.
    released: bool,
}

impl ExecutorEntry {
    /// Whether new tasks may go to this executor.
    fn takes_tasks(&self) -> bool {
        self.decommission.is_none() && self.running < self.cores
    }
}

/// What a client reads when a job succeeded: the result stage's outputs in task order.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// The result stage's id.
    pub stage_id: u32,
    /// `(executor id, flight address, map partition, attempt)` per result task, in task order.
    pub outputs: Vec<(String, String, u32, u32)>,
    /// Rows computed by the driver instead (a write job's `count`).
    pub inline: Option<Vec<datafusion::arrow::array::RecordBatch>>,
    /// Kafka runs to commit once the whole result was streamed (none for a write job: its
    /// commit records them).
    pub kafka: Vec<Arc<faisca_connectors::kafka::run::KafkaRun>>,
    /// The executor of each stage's tasks' outputs (where a streaming query's state partitions
    /// now live in memory).
    pub task_executors: Vec<Vec<Option<ExecutorId>>>,
}

/// Where the answer to an [`Message::AwaitJob`] goes.
pub type JobWaiter = oneshot::Sender<Result<JobResult, Arc<Error>>>;

/// Messages the actor understands.
pub enum Message {
    /// An executor connected and registered.
    ExecutorRegistered {
        /// Its id.
        id: ExecutorId,
        /// Its Flight address.
        flight_address: String,
        /// Its cores.
        cores: u32,
        /// Its memory.
        memory_bytes: u64,
        /// Where to send it messages.
        sender: ExecutorSender,
        /// Answered once registered.
        reply: oneshot::Sender<Result<()>>,
    },
    /// An executor's stream ended.
    ExecutorLost {
        /// Its id.
        id: ExecutorId,
        /// Why.
        reason: String,
    },
    /// An executor is leaving (SIGTERM, a launcher's scale-down): no new tasks for it; it is
    /// released once no job needs its running tasks or shuffle output.
    ExecutorDecommissioning {
        /// Its id.
        id: ExecutorId,
        /// Why, for the log.
        reason: String,
    },
    /// An executor sent a heartbeat.
    Heartbeat {
        /// Its id.
        executor: ExecutorId,
        /// Memory its tasks hold.
        memory_used_bytes: u64,
        /// Shuffle output it holds in memory.
        shuffle_memory_bytes: u64,
    },
    /// Drop executors not heard from for longer than the heartbeat timeout, as of `now`.
    CheckHeartbeats {
        /// The time to judge silence against.
        now: Instant,
    },
    /// A task finished or failed.
    TaskStatus {
        /// The reporting executor.
        executor: ExecutorId,
        /// The report.
        status: TaskStatus,
    },
    /// Open a session.
    CreateSession {
        /// Its configuration.
        config: FaiscaConfig,
        /// The user opening it (`None`: the cluster, or authentication off).
        owner: Option<String>,
        /// The new session's id.
        reply: oneshot::Sender<Result<SessionId>>,
    },
    /// Close a session.
    CloseSession {
        /// The session.
        id: SessionId,
    },
    /// Look up a session (for planning) together with the cluster's total cores.
    GetSession {
        /// The session.
        id: SessionId,
        /// The session and the total cores of registered executors.
        reply: oneshot::Sender<Result<(Session, usize)>>,
    },
    /// Set a configuration key of a session.
    SetSessionConfig {
        /// The session.
        id: SessionId,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Done (or the error naming the key).
        reply: oneshot::Sender<Result<()>>,
    },
    /// Run a planned job.
    SubmitJob {
        /// The plan.
        job: PlannedJob,
        /// The new job's id.
        reply: oneshot::Sender<Result<JobId>>,
    },
    /// Wait for a job's result.
    AwaitJob {
        /// The job.
        id: JobId,
        /// The result locations or the job's error.
        reply: JobWaiter,
    },
    /// The client has read a job's result (or gave up): its shuffle data can go.
    JobDone {
        /// The job.
        id: JobId,
    },
    /// Running jobs and the retained finished ones, in submission order.
    ListJobs {
        /// The jobs.
        reply: oneshot::Sender<Vec<JobInfo>>,
    },
    /// One job's status.
    GetJob {
        /// The job.
        id: JobId,
        /// Its status, or an error naming the unknown job.
        reply: oneshot::Sender<Result<JobInfo>>,
    },
    /// Cancel a running job.
    KillJob {
        /// The job.
        id: JobId,
        /// Its status after the cancellation, or why it could not be cancelled.
        reply: oneshot::Sender<Result<JobInfo>>,
    },
    /// The commit of a write job ended.
    CommitEnded {
        /// The job.
        id: JobId,
        /// Rows written, or why the commit failed.
        result: Result<u64>,
    },
    /// Let dynamic allocation decide, as of `now` (sent periodically when it is enabled).
    AllocationTick {
        /// The time to judge backlogs and idleness against.
        now: Instant,
    },
    /// Ask the launcher for this many executors in all (fewer: the newest decommission and
    /// leave). Ignored without a launcher.
    RequestExecutors {
        /// Executors wanted.
        total: usize,
    },
    /// The registered executors, once at least `min_executors` are registered, and the
    /// recently departed ones.
    ClusterInfo {
        /// How many executors to wait for.
        min_executors: usize,
        /// The executors.
        reply: oneshot::Sender<ClusterInfoResponse>,
    },
    /// The launcher reported something (an executor it started is gone).
    Launcher(LauncherEvent),
    /// Start a streaming query's runner.
    StartQuery {
        /// The query, ready to run.
        query: Box<crate::streaming::runner::QueryRun>,
        /// Its status, or why it cannot start (another run of it is active).
        reply: oneshot::Sender<Result<faisca_proto::StreamingQueryInfo>>,
    },
    /// A streaming query's runner reports its status or a batch's progress.
    QueryUpdate {
        /// The run.
        run_id: String,
        /// What it reports.
        update: crate::streaming::runner::QueryUpdate,
    },
    /// A streaming query's runner ended.
    QueryEnded {
        /// The run.
        run_id: String,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Streaming queries: active ones, and the recently ended ones unless `active_only`.
    ListQueries {
        /// Only active ones.
        active_only: bool,
        /// The queries.
        reply: oneshot::Sender<Vec<faisca_proto::StreamingQueryInfo>>,
    },
    /// One streaming query, by id or run id.
    GetQuery {
        /// The id.
        id: String,
        /// Its status.
        reply: oneshot::Sender<Result<faisca_proto::StreamingQueryInfo>>,
    },
    /// A client sink handled (or failed on) a streaming query's pending batch.
    AckQueryBatch {
        /// The run.
        run_id: String,
        /// The batch.
        batch: u64,
        /// The client's error, if its function failed.
        error: Option<String>,
        /// Whether the run is known.
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stop a streaming query; answered when it stopped.
    StopQuery {
        /// The id or run id.
        id: String,
        /// Its status after it stopped.
        reply: queries::StopWaiter,
    },
}

/// Driver-level settings of the actor.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// Executors silent for longer than this are dropped (`faisca.executor.heartbeatTimeout`).
    pub heartbeat_timeout: Duration,
    /// Finished jobs remembered for status queries (`faisca.driver.retainedJobs`).
    pub retained_jobs: usize,
    /// Failed task attempts each job remembers (`faisca.driver.retainedTaskFailures`).
    pub retained_task_failures: usize,
    /// Executors a launcher starts (`faisca.executor.instances`).
    pub executor_instances: usize,
    /// Task slots of a launched executor (`faisca.executor.cores`).
    pub executor_cores: u32,
    /// `faisca.dynamicAllocation.*`.
    pub dynamic_allocation: faisca_common::config::DynamicAllocation,
    /// The web UI's URL, when the driver serves one (shown by `faisca status`).
    pub ui_url: Option<String>,
    /// Where sessions may read and write (`faisca.sql.allowedLocations` of the driver).
    pub allowed_locations: faisca_common::locations::AllowedLocations,
    /// How deep a session's plans may nest (`faisca.plan.maxDepth` of the driver).
    pub max_plan_depth: usize,
}

impl DriverSettings {
    /// The settings a driver configuration asks for.
    pub fn from_config(config: &FaiscaConfig) -> Self {
        DriverSettings {
            heartbeat_timeout: config.heartbeat_timeout(),
            retained_jobs: config.retained_jobs(),
            retained_task_failures: config.retained_task_failures(),
            executor_instances: config.executor_instances(),
            executor_cores: config.executor_cores(),
            dynamic_allocation: config.dynamic_allocation(),
            ui_url: None,
            allowed_locations: config.allowed_locations(false),
            max_plan_depth: config.plan_max_depth(),
        }
    }
}

/// A job that ended, as status queries see it.
struct FinishedJob {
    info: JobInfo,
    /// The error of a failed or cancelled job.
    error: Option<Arc<Error>>,
}

/// The driver's state. See the module docs.
pub struct DriverState {
    settings: DriverSettings,
    executors: HashMap<ExecutorId, ExecutorEntry>,
    sessions: HashMap<SessionId, Session>,
    /// Running jobs, and succeeded jobs whose result the client has not finished reading.
    jobs: HashMap<JobId, JobState>,
    /// Ended jobs, oldest first, at most `retained_jobs`.
    finished: VecDeque<(JobId, FinishedJob)>,
    next_job_seq: u64,
    job_waiters: HashMap<JobId, Vec<JobWaiter>>,
    cluster_waiters: Vec<(usize, oneshot::Sender<ClusterInfoResponse>)>,
    /// Executors that left, oldest first, at most `retained_jobs` (state `lost` or `exited`).
    departed: VecDeque<ExecutorInfo>,
    /// Where spawned work (a write's commit) reports back; weak, so the actor still ends when
    /// every handle is dropped.
    myself: Option<mpsc::WeakUnboundedSender<Message>>,
    /// What starts executors for this driver, if anything does. Dropped with the actor, which
    /// makes the launcher stop its executors.
    launcher: Option<LauncherHandle>,
    /// Dynamic allocation, when enabled and there is a launcher.
    dynamic: Option<DynamicAllocator>,
    /// The total last asked of the launcher.
    requested_total: Option<usize>,
    /// Streaming queries.
    queries: queries::Queries,
    /// Where the web UI hears what happens, when there is one.
    events: Option<faisca_ui::EventBus>,
}

impl DriverState {
    /// An empty driver.
    pub fn new(settings: DriverSettings) -> Self {
        DriverState {
            settings,
            executors: HashMap::new(),
            sessions: HashMap::new(),
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            next_job_seq: 0,
            job_waiters: HashMap::new(),
            cluster_waiters: Vec::new(),
            departed: VecDeque::new(),
            myself: None,
            launcher: None,
            dynamic: None,
            requested_total: None,
            queries: queries::Queries::default(),
            events: None,
        }
    }

    /// Tell the web UI (or anything else listening on `bus`) what happens from now on.
    pub fn set_event_bus(&mut self, bus: faisca_ui::EventBus) {
        self.events = Some(bus);
    }

    /// Let spawned work report back through `sender`.
    pub fn set_reply_address(&mut self, sender: mpsc::WeakUnboundedSender<Message>) {
        self.myself = Some(sender);
    }

    /// Handle one message.
    pub fn receive(&mut self, message: Message) {
        self.handle(message);
        self.release_decommissioned();
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::ExecutorRegistered {
                id,
                flight_address,
                cores,
                memory_bytes,
                sender,
                reply,
            } => {
                if self.executors.contains_key(&id) {
                    let _ = reply.send(Err(Error::user(format!(
                        "executor id '{id}' is already registered"
                    ))));
                    return;
                }
                info!(executor = %id, %flight_address, cores, "executor registered");
                let welcome = DriverMessage {
                    message: Some(driver_message::Message::Registered(
                        faisca_proto::Registered {
                            executor_id: id.0.clone(),
                        },
                    )),
                };
                let _ = sender.send(Ok(welcome));
                self.post_executor_added(&id, &flight_address, cores, memory_bytes);
                self.executors.insert(
                    id,
                    ExecutorEntry {
                        flight_address,
                        cores,
                        memory_bytes,
                        running: 0,
                        last_seen: Instant::now(),
                        sender,
                        decommission: None,
                    },
                );
                let _ = reply.send(Ok(()));
                self.answer_cluster_waiters();
                self.schedule();
            }
            Message::ExecutorLost { id, reason } => self.executor_lost(&id, &reason),
            Message::ExecutorDecommissioning { id, reason } => {
                if let Some(e) = self.executors.get_mut(&id)
                    && e.decommission.is_none()
                {
                    info!(executor = %id, running = e.running, "executor decommissioning: {reason}");
                    e.decommission = Some(Decommission { released: false });
                }
            }
            Message::Heartbeat {
                executor,
                memory_used_bytes,
                shuffle_memory_bytes,
            } => {
                if let Some(e) = self.executors.get_mut(&executor) {
                    e.last_seen = Instant::now();
                    self.post_heartbeat(&executor, memory_used_bytes, shuffle_memory_bytes);
                }
            }
            Message::CheckHeartbeats { now } => {
                let timeout = self.settings.heartbeat_timeout;
                let silent: Vec<ExecutorId> = self
                    .executors
                    .iter()
                    .filter(|(_, e)| now.saturating_duration_since(e.last_seen) > timeout)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in silent {
                    let reason = format!(
                        "no heartbeat for more than {timeout:?} (faisca.executor.heartbeatTimeout)"
                    );
                    self.executor_lost(&id, &reason);
                }
            }
            Message::TaskStatus { executor, status } => self.task_status(executor, status),
            Message::CreateSession {
                config,
                owner,
                reply,
            } => {
                let allowed = self.settings.allowed_locations.clone();
                let max_plan_depth = self.settings.max_plan_depth;
                let result = Session::new(config, allowed).map(|mut session| {
                    session.owner = owner;
                    session.max_plan_depth = max_plan_depth;
                    let id = SessionId::random();
                    self.sessions.insert(id.clone(), session);
                    id
                });
                let _ = reply.send(result);
            }
            Message::CloseSession { id } => {
                self.sessions.remove(&id);
                self.session_closed(&id);
            }
            Message::GetSession { id, reply } => {
                let result = self
                    .sessions
                    .get(&id)
                    .cloned()
                    .map(|s| (s, self.total_cores()))
                    .ok_or_else(|| unknown_session(&id));
                let _ = reply.send(result);
            }
            Message::SetSessionConfig {
                id,
                key,
                value,
                reply,
            } => {
                let result = match self.sessions.get_mut(&id) {
                    Some(session) => session.config.set(&key, &value).map(|()| {
                        let lower = key.to_ascii_lowercase();
                        if lower.starts_with("faisca.store.") {
                            session.stores.reconfigure(&session.config);
                        }
                        if lower == "faisca.redaction.regex" {
                            // Table factories (Kafka) read it from DataFusion's configuration.
                            session
                                .ctx
                                .state_ref()
                                .write()
                                .config_mut()
                                .set_extension(std::sync::Arc::new(session.config.redaction()));
                        }
                    }),
                    None => Err(unknown_session(&id)),
                };
                let _ = reply.send(result);
            }
            Message::SubmitJob { job, reply } => self.submit_job(job, reply),
            Message::AwaitJob { id, reply } => self.await_job(id, reply),
            Message::JobDone { id } => self.job_done(&id),
            Message::ListJobs { reply } => {
                let _ = reply.send(self.list_jobs());
            }
            Message::GetJob { id, reply } => {
                let _ = reply.send(self.job_info(&id));
            }
            Message::KillJob { id, reply } => {
                let _ = reply.send(self.kill_job(&id));
            }
            Message::CommitEnded { id, result } => self.commit_ended(&id, result),
            Message::AllocationTick { now } => self.allocation_tick(now),
            Message::RequestExecutors { total } => match &self.launcher {
                Some(_) if self.dynamic.is_some() => {
                    warn!("{total} executors requested, but dynamic allocation decides the number")
                }
                Some(_) => self.request_total(total),
                None => warn!("{total} executors requested, but this driver launches none"),
            },
            Message::Launcher(LauncherEvent::ExecutorExited {
                id,
                reason,
                expected,
            }) => self.launcher_saw_exit(&id, &reason, expected),
            Message::ClusterInfo {
                min_executors,
                reply,
            } => {
                if self.executors.len() >= min_executors {
                    let _ = reply.send(self.cluster_info());
                } else {
                    self.cluster_waiters.push((min_executors, reply));
                }
            }
            message @ (Message::StartQuery { .. }
            | Message::QueryUpdate { .. }
            | Message::QueryEnded { .. }
            | Message::ListQueries { .. }
            | Message::GetQuery { .. }
            | Message::StopQuery { .. }
            | Message::AckQueryBatch { .. }) => self.query_message(message),
        }
    }

    /// Task slots of the executors that take tasks.
    fn total_cores(&self) -> usize {
        self.executors
            .values()
            .filter(|e| e.decommission.is_none())
            .map(|e| e.cores as usize)
            .sum()
    }

    fn broadcast(&self, message: driver_message::Message) {
        for e in self.executors.values() {
            let _ = e.sender.send(Ok(DriverMessage {
                message: Some(message.clone()),
            }));
        }
    }
}

fn unknown_session(id: &SessionId) -> Error {
    Error::user(format!(
        "unknown session '{id}': it was closed or the driver restarted; open a new session"
    ))
}

/// A cheap, cloneable way to talk to the actor.
#[derive(Clone)]
pub struct DriverHandle {
    sender: mpsc::UnboundedSender<Message>,
}

/// A handle that does not keep the actor alive (for work the actor owns, such as a streaming
/// query's runner: the actor ends when the last [`DriverHandle`] is dropped, and its work with it).
#[derive(Clone)]
pub struct WeakDriverHandle {
    sender: mpsc::WeakUnboundedSender<Message>,
}

impl WeakDriverHandle {
    /// A handle, unless the driver is shutting down.
    pub fn upgrade(&self) -> Result<DriverHandle> {
        self.sender
            .upgrade()
            .map(|sender| DriverHandle { sender })
            .ok_or_else(|| Error::internal("the driver is shutting down"))
    }
}

impl DriverHandle {
    /// A weak handle to the same actor.
    pub fn downgrade(&self) -> WeakDriverHandle {
        WeakDriverHandle {
            sender: self.sender.downgrade(),
        }
    }

    /// Send a message without waiting for an answer.
    pub fn send(&self, message: Message) {
        let _ = self.sender.send(message);
    }

    /// Send a message built around a oneshot reply and wait for the answer.
    pub async fn ask<T>(&self, build: impl FnOnce(oneshot::Sender<T>) -> Message) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.sender
            .send(build(tx))
            .map_err(|_| Error::internal("the driver is shutting down"))?;
        rx.await
            .map_err(|_| Error::internal("the driver dropped a request"))
    }
}

/// Start the actor on the current runtime. It runs until every handle is dropped. Silence of
/// executors is checked four times per heartbeat timeout.
pub fn spawn_actor(
    settings: DriverSettings,
    launcher: Option<LauncherHandle>,
    events: Option<faisca_ui::EventBus>,
) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let weak = sender.downgrade();
    let heartbeat_timeout = settings.heartbeat_timeout;
    // Dynamic allocation decides ten times per backlog timeout (100 ms for the default 1 s, as
    // Spark; never more often than every 10 ms): a backlog is acted on at most a tenth late.
    let allocation_period = (settings.dynamic_allocation.backlog_timeout / 10)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let task = tokio::spawn(async move {
        let mut state = DriverState::new(settings);
        state.set_reply_address(weak);
        if let Some(bus) = events {
            state.set_event_bus(bus);
        }
        let mut launcher_events = None;
        if let Some(mut launcher) = launcher {
            launcher_events = launcher.take_events();
            state.set_launcher(launcher);
        }
        let mut check =
            tokio::time::interval((heartbeat_timeout / 4).max(Duration::from_millis(10)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut allocation = tokio::time::interval(allocation_period);
        allocation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dynamic = state.dynamic.is_some();
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(message) => state.receive(message),
                    None => break,
                },
                _ = check.tick() => state.receive(Message::CheckHeartbeats { now: Instant::now() }),
                Some(event) = recv_some(&mut launcher_events) => state.receive(Message::Launcher(event)),
                _ = allocation.tick(), if dynamic => state.receive(Message::AllocationTick { now: Instant::now() }),
            }
        }
    });
    (DriverHandle { sender }, task)
}

/// The next item of `receiver`; pending forever when there is none (or it closed).
async fn recv_some<T>(receiver: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match receiver {
        Some(r) => match r.recv().await {
            Some(item) => Some(item),
            None => {
                *receiver = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
