//! The driver actor: one owner of all driver state, driven by messages.
//!
//! `receive` is synchronous and never waits: it updates state, sends `DriverMessage`s to executors
//! over unbounded channels, and answers requests on oneshot channels. Callers reach it through a
//! [`DriverHandle`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, FaiscaConfig, JobId, Result};
use faisca_proto::{
    CancelTask, DriverMessage, ExecutorInfo, RemoveJob, TaskState, TaskStatus, driver_message,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::scheduler::{JobState, JobStatus, PlannedJob, TaskOutcome, TaskOutput};
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
    /// An executor sent a heartbeat.
    Heartbeat {
        /// Its id.
        executor: ExecutorId,
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
    /// The registered executors, once at least `min_executors` are registered.
    ClusterInfo {
        /// How many executors to wait for.
        min_executors: usize,
        /// The executors.
        reply: oneshot::Sender<Vec<ExecutorInfo>>,
    },
}

/// The driver's state. See the module docs.
pub struct DriverState {
    heartbeat_timeout: Duration,
    executors: HashMap<ExecutorId, ExecutorEntry>,
    sessions: HashMap<SessionId, Session>,
    jobs: HashMap<JobId, JobState>,
    /// Tasks waiting for a slot, FIFO across jobs: `(job, stage, partition)`.
    queue: VecDeque<(JobId, u32, u32)>,
    job_waiters: HashMap<JobId, Vec<JobWaiter>>,
    cluster_waiters: Vec<(usize, oneshot::Sender<Vec<ExecutorInfo>>)>,
}

impl DriverState {
    /// An empty driver that drops executors silent for longer than `heartbeat_timeout`.
    pub fn new(heartbeat_timeout: Duration) -> Self {
        DriverState {
            heartbeat_timeout,
            executors: HashMap::new(),
            sessions: HashMap::new(),
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            job_waiters: HashMap::new(),
            cluster_waiters: Vec::new(),
        }
    }

    /// Handle one message.
    pub fn receive(&mut self, message: Message) {
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
                self.executors.insert(
                    id,
                    ExecutorEntry {
                        flight_address,
                        cores,
                        memory_bytes,
                        running: 0,
                        last_seen: Instant::now(),
                        sender,
                    },
                );
                let _ = reply.send(Ok(()));
                self.answer_cluster_waiters();
                self.schedule();
            }
            Message::ExecutorLost { id, reason } => self.executor_lost(&id, &reason),
            Message::Heartbeat { executor } => {
                if let Some(e) = self.executors.get_mut(&executor) {
                    e.last_seen = Instant::now();
                }
            }
            Message::CheckHeartbeats { now } => {
                let timeout = self.heartbeat_timeout;
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
            Message::CreateSession { config, reply } => {
                let result = Session::new(config).map(|session| {
                    let id = SessionId::random();
                    self.sessions.insert(id.clone(), session);
                    id
                });
                let _ = reply.send(result);
            }
            Message::CloseSession { id } => {
                self.sessions.remove(&id);
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
                    Some(session) => session.config.set(&key, &value),
                    None => Err(unknown_session(&id)),
                };
                let _ = reply.send(result);
            }
            Message::SubmitJob { job, reply } => {
                if !self.sessions.contains_key(&job.session) {
                    let _ = reply.send(Err(unknown_session(&job.session)));
                    return;
                }
                let id = JobId::random();
                let mut state = JobState::new(id.clone(), job);
                let ready = state.take_ready_tasks();
                debug!(job = %id, stages = state.planned.stages.len(), "job submitted");
                self.queue
                    .extend(ready.into_iter().map(|(s, p)| (id.clone(), s, p)));
                self.jobs.insert(id.clone(), state);
                let _ = reply.send(Ok(id.clone()));
                self.after_job_change(&id);
                self.schedule();
            }
            Message::AwaitJob { id, reply } => match self.jobs.get(&id) {
                None => {
                    let _ = reply.send(Err(Arc::new(Error::user(format!("unknown job '{id}' (finished jobs are forgotten once their result was read)")))));
                }
                Some(job) => match &job.status {
                    JobStatus::Running => self.job_waiters.entry(id).or_default().push(reply),
                    JobStatus::Succeeded => {
                        let _ = reply.send(Ok(job_result(job)));
                    }
                    JobStatus::Failed(e) => {
                        let _ = reply.send(Err(e.clone()));
                    }
                },
            },
            Message::JobDone { id } => {
                self.stop_job_tasks(&id);
                if let Some(job) = self.jobs.remove(&id) {
                    self.broadcast(driver_message::Message::RemoveJob(RemoveJob {
                        job_id: id.0.clone(),
                    }));
                    debug!(job = %id, elapsed_ms = job.started.elapsed().as_millis() as u64, "job done");
                }
                self.job_waiters.remove(&id);
                self.schedule();
            }
            Message::ClusterInfo {
                min_executors,
                reply,
            } => {
                if self.executors.len() >= min_executors {
                    let _ = reply.send(self.executor_infos());
                } else {
                    self.cluster_waiters.push((min_executors, reply));
                }
            }
        }
    }

    fn total_cores(&self) -> usize {
        self.executors.values().map(|e| e.cores as usize).sum()
    }

    fn executor_infos(&self) -> Vec<ExecutorInfo> {
        let mut infos: Vec<ExecutorInfo> = self
            .executors
            .iter()
            .map(|(id, e)| ExecutorInfo {
                executor_id: id.0.clone(),
                address: e.flight_address.clone(),
                cores: e.cores,
                memory_bytes: e.memory_bytes,
                running_tasks: e.running,
            })
            .collect();
        infos.sort_by(|a, b| a.executor_id.cmp(&b.executor_id));
        infos
    }

    fn answer_cluster_waiters(&mut self) {
        let count = self.executors.len();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cluster_waiters)
            .into_iter()
            .partition(|(min, _)| *min <= count);
        self.cluster_waiters = waiting;
        for (_, reply) in ready {
            let _ = reply.send(self.executor_infos());
        }
    }

    fn broadcast(&self, message: driver_message::Message) {
        for e in self.executors.values() {
            let _ = e.sender.send(Ok(DriverMessage {
                message: Some(message.clone()),
            }));
        }
    }

    /// Stop what a job still runs: cancel its running tasks on their executors and free their
    /// slots (once: the job forgets the tasks it stops), and drop its queued tasks.
    fn stop_job_tasks(&mut self, id: &JobId) {
        self.queue.retain(|(j, _, _)| j != id);
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        for (executor, stage, partition, attempt) in job.take_running_tasks() {
            if let Some(e) = self.executors.get_mut(&executor) {
                e.running = e.running.saturating_sub(1);
                let cancel = CancelTask {
                    job_id: id.0.clone(),
                    stage_id: stage,
                    partition,
                    attempt,
                };
                let _ = e.sender.send(Ok(DriverMessage {
                    message: Some(driver_message::Message::CancelTask(cancel)),
                }));
            }
        }
    }

    /// Launch queued tasks on free slots, spreading them over the executors with most free slots.
    fn schedule(&mut self) {
        while !self.queue.is_empty() {
            let Some(executor) = self
                .executors
                .iter()
                .filter(|(_, e)| e.running < e.cores)
                .max_by_key(|(id, e)| (e.cores - e.running, std::cmp::Reverse((*id).clone())))
                .map(|(id, _)| id.clone())
            else {
                return;
            };
            let (job_id, stage, partition) = self.queue.pop_front().expect("checked non-empty");
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            if !matches!(job.status, JobStatus::Running) {
                continue;
            }
            match job.launch(stage, partition, &executor) {
                Ok(task) => {
                    let entry = self.executors.get_mut(&executor).expect("chosen above");
                    entry.running += 1;
                    let message = DriverMessage {
                        message: Some(driver_message::Message::LaunchTask(task)),
                    };
                    if entry.sender.send(Ok(message)).is_err() {
                        // The stream is gone; ExecutorLost will follow and requeue the task.
                        warn!(executor = %executor, "executor stream closed while launching a task");
                    }
                }
                Err(e) => warn!(job = %job_id, "cannot launch task {stage}/{partition}: {e}"),
            }
        }
    }

    fn task_status(&mut self, executor: ExecutorId, status: TaskStatus) {
        if let Some(e) = self.executors.get_mut(&executor) {
            e.last_seen = Instant::now();
        }
        let job_id = JobId(status.job_id.clone());
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return; // a task of a job that already ended
        };
        let (stage, partition, attempt) = (status.stage_id, status.partition, status.attempt);
        debug!(
            job = %job_id,
            stage,
            partition,
            attempt,
            executor = %executor,
            elapsed_ms = status.elapsed_micros as f64 / 1000.0,
            rows = status.partitions.iter().map(|p| p.rows).sum::<u64>(),
            bytes = status.partitions.iter().map(|p| p.bytes).sum::<u64>(),
            "task finished"
        );
        let outcome = if status.state == TaskState::Succeeded as i32 {
            let Some(entry) = self.executors.get(&executor) else {
                return;
            };
            let output = TaskOutput {
                executor: executor.clone(),
                flight_address: entry.flight_address.clone(),
                attempt,
                stats: status.partitions.clone(),
            };
            job.task_succeeded(stage, partition, attempt, output)
        } else {
            let error = status
                .error
                .as_ref()
                .map(faisca_proto::error_from_task_error)
                .unwrap_or_else(|| Error::internal("task failed without an error"));
            debug!(job = %job_id, stage, partition, attempt, "task failed: {error}");
            job.task_failed(stage, partition, attempt, error)
        };
        if outcome != TaskOutcome::Ignored
            && let Some(entry) = self.executors.get_mut(&executor)
        {
            entry.running = entry.running.saturating_sub(1);
        }
        match outcome {
            TaskOutcome::Ignored => {}
            TaskOutcome::Retry => self.queue.push_front((job_id.clone(), stage, partition)),
            TaskOutcome::Finished => {
                let ready = job.take_ready_tasks();
                self.queue
                    .extend(ready.into_iter().map(|(s, p)| (job_id.clone(), s, p)));
            }
            TaskOutcome::JobFailed => {}
        }
        self.after_job_change(&job_id);
        self.schedule();
    }

    /// Answer waiters of a job that ended; stop what a failed job still runs.
    fn after_job_change(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get(id) else { return };
        match &job.status {
            JobStatus::Running => {}
            JobStatus::Succeeded => {
                let result = job_result(job);
                for w in self.job_waiters.remove(id).unwrap_or_default() {
                    let _ = w.send(Ok(result.clone()));
                }
            }
            JobStatus::Failed(e) => {
                let e = e.clone();
                for w in self.job_waiters.remove(id).unwrap_or_default() {
                    let _ = w.send(Err(e.clone()));
                }
                self.stop_job_tasks(id);
            }
        }
    }

    fn executor_lost(&mut self, id: &ExecutorId, reason: &str) {
        if self.executors.remove(id).is_none() {
            return;
        }
        if reason == "stream closed" {
            info!(executor = %id, "executor disconnected");
        } else {
            warn!(executor = %id, "executor lost: {reason}");
        }
        let job_ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        for job_id in job_ids {
            let job = self.jobs.get_mut(&job_id).expect("listed above");
            for (stage, partition, attempt) in job.running_on(id) {
                let error = Error::external(format!("executor {id} was lost ({reason})"));
                if job.task_failed(stage, partition, attempt, error) == TaskOutcome::Retry {
                    self.queue.push_front((job_id.clone(), stage, partition));
                }
            }
            self.after_job_change(&job_id);
        }
        self.schedule();
    }
}

fn unknown_session(id: &SessionId) -> Error {
    Error::user(format!(
        "unknown session '{id}': it was closed or the driver restarted; open a new session"
    ))
}

fn job_result(job: &JobState) -> JobResult {
    JobResult {
        schema: job.planned.schema.clone(),
        stage_id: (job.planned.stages.len() - 1) as u32,
        outputs: job
            .result_outputs()
            .into_iter()
            .map(|(p, out)| (out.executor.0, out.flight_address, p, out.attempt))
            .collect(),
    }
}

/// A cheap, cloneable way to talk to the actor.
#[derive(Clone)]
pub struct DriverHandle {
    sender: mpsc::UnboundedSender<Message>,
}

impl DriverHandle {
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
/// executors is checked four times per `heartbeat_timeout`.
pub fn spawn_actor(heartbeat_timeout: Duration) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut state = DriverState::new(heartbeat_timeout);
        let mut check =
            tokio::time::interval((heartbeat_timeout / 4).max(Duration::from_millis(10)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(message) => state.receive(message),
                    None => break,
                },
                _ = check.tick() => state.receive(Message::CheckHeartbeats { now: Instant::now() }),
            }
        }
    });
    (DriverHandle { sender }, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(
        state: &mut DriverState,
        id: &str,
    ) -> mpsc::UnboundedReceiver<Result<DriverMessage, tonic::Status>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (reply, _) = oneshot::channel();
        state.receive(Message::ExecutorRegistered {
            id: ExecutorId(id.into()),
            flight_address: "127.0.0.1:1".into(),
            cores: 1,
            memory_bytes: 1 << 30,
            sender,
            reply,
        });
        receiver
    }

    fn executors(state: &mut DriverState) -> Vec<String> {
        let (reply, mut answer) = oneshot::channel();
        state.receive(Message::ClusterInfo {
            min_executors: 0,
            reply,
        });
        answer
            .try_recv()
            .unwrap()
            .into_iter()
            .map(|e| e.executor_id)
            .collect()
    }

    #[test]
    fn silent_executors_are_dropped_and_their_stream_closed() {
        let mut state = DriverState::new(Duration::from_secs(10));
        let mut quiet = register(&mut state, "quiet");
        let _chatty = register(&mut state, "chatty");
        state.receive(Message::CheckHeartbeats {
            now: Instant::now() + Duration::from_secs(5),
        });
        assert_eq!(executors(&mut state), vec!["chatty", "quiet"]);
        // Both were last heard from 20 s ago; only "chatty" sends a heartbeat now.
        for e in state.executors.values_mut() {
            e.last_seen = Instant::now() - Duration::from_secs(20);
        }
        state.receive(Message::Heartbeat {
            executor: ExecutorId("chatty".into()),
        });
        state.receive(Message::CheckHeartbeats {
            now: Instant::now() + Duration::from_secs(1),
        });
        assert_eq!(executors(&mut state), vec!["chatty"]);
        // The dropped executor's stream ends after the welcome message.
        assert!(matches!(quiet.try_recv(), Ok(Ok(_))));
        assert!(matches!(
            quiet.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
