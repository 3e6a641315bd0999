//! The executor's stream to the driver: registration, then the loop that launches tasks and
//! reports their results.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faisca_common::{Error, PROTOCOL_VERSION, Result};
use faisca_proto::driver_service_client::DriverServiceClient;
use faisca_proto::{
    Decommission, DriverMessage, ExecutorMessage, Heartbeat, RegisterExecutor, driver_message,
    executor_message,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;
use tracing::{info, warn};

use crate::metrics::MetricsMessage;
use crate::task::{TaskKey, run_task, task_key};
use crate::{ExecutorContext, ExecutorOptions};

/// A registered executor's open stream.
pub struct Connection {
    from_driver: Streaming<DriverMessage>,
    to_driver: mpsc::UnboundedSender<ExecutorMessage>,
}

/// Connect to the driver and register, retrying while the driver is not reachable yet.
pub async fn register(
    options: &ExecutorOptions,
    context: &ExecutorContext,
    flight_address: &str,
) -> Result<Connection> {
    let deadline = Instant::now() + options.config.registration_timeout();
    let limit = options.config.max_message_size();
    let mut delay = Duration::from_millis(50);
    let channel = loop {
        match context.clients.transport().connect(&options.driver).await {
            Ok(channel) => break channel,
            Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                tracing::debug!(
                    "driver at {} not reachable yet ({e}); retrying",
                    options.driver
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => {
                return Err(Error::external(format!(
                    "cannot reach the driver at {} within faisca.executor.registrationTimeout ({:?}): {e}",
                    options.driver,
                    options.config.registration_timeout()
                )));
            }
        }
    };
    let mut client = DriverServiceClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let (to_driver, outgoing) = mpsc::unbounded_channel();
    let register = RegisterExecutor {
        protocol_version: PROTOCOL_VERSION,
        executor_id: context.id.0.clone(),
        flight_address: flight_address.to_string(),
        cores: options.cores,
        memory_bytes: options.memory_bytes,
    };
    to_driver
        .send(ExecutorMessage {
            message: Some(executor_message::Message::Register(register)),
        })
        .map_err(|_| Error::internal("executor outgoing stream closed"))?;
    let mut from_driver = client
        .executor_connect(UnboundedReceiverStream::new(outgoing))
        .await
        .map_err(|s| {
            faisca_proto::error_from_status(
                &s,
                &format!("registering with the driver at {}", options.driver),
            )
        })?
        .into_inner();
    match from_driver.next().await {
        Some(Ok(DriverMessage {
            message: Some(driver_message::Message::Registered(_)),
        })) => {
            info!(executor = %context.id, driver = %options.driver, %flight_address, "registered");
            Ok(Connection {
                from_driver,
                to_driver,
            })
        }
        Some(Err(s)) => Err(faisca_proto::error_from_status(
            &s,
            "registering with the driver",
        )),
        _ => Err(Error::external(format!(
            "the driver at {} closed the stream during registration",
            options.driver
        ))),
    }
}

impl Connection {
    /// Take tasks until `shutdown` fires (`Ok`) or the driver's stream breaks (`Err`).
    ///
    /// A reason arriving on `decommission` starts a decommission: the driver is told and sends
    /// no new tasks, running ones finish, and the shuffle output stays served until the driver
    /// releases the executor or `faisca.executor.decommission.gracePeriod` ends (both `Ok`).
    pub async fn run(
        mut self,
        context: Arc<ExecutorContext>,
        mut shutdown: oneshot::Receiver<()>,
        mut decommission: mpsc::UnboundedReceiver<String>,
    ) -> Result<()> {
        let mut tasks: JoinSet<faisca_proto::TaskStatus> = JoinSet::new();
        let mut running: HashMap<TaskKey, tokio::task::AbortHandle> = HashMap::new();
        let mut by_id: HashMap<tokio::task::Id, TaskKey> = HashMap::new();
        // Jobs removed recently: a task of one that still ends (it was mid-poll when aborted, or
        // finished just before) must not leave output behind.
        let mut removed_jobs: VecDeque<String> = VecDeque::new();
        let mut heartbeat = tokio::time::interval(context.config.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let grace_period = context.config.decommission_grace_period();
        // Set while decommissioning: when the grace period ends.
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let result = loop {
            tokio::select! {
                message = self.from_driver.next() => match message {
                    Some(Ok(DriverMessage { message: Some(m) })) => match m {
                        driver_message::Message::LaunchTask(launch) => {
                            let key = task_key(&launch);
                            // Every log line of the task carries its job, stage, partition and attempt.
                            // At error level so that it exists whatever the log level: a task's
                            // warnings carry it too, and its log lines are kept by it.
                            let span = tracing::error_span!(
                                "task",
                                executor = %context.id,
                                job = %launch.job_id,
                                stage = launch.stage_id,
                                partition = launch.partition,
                                attempt = launch.attempt,
                            );
                            let task = tracing::Instrument::instrument(run_task(context.clone(), launch), span);
                            context.metrics.send(MetricsMessage::TaskStarted);
                            let handle = tasks.spawn(task);
                            by_id.insert(handle.id(), key.clone());
                            running.insert(key, handle);
                        }
                        driver_message::Message::CancelTask(c) => {
                            if let Some(h) = running.remove(&(c.job_id, c.stage_id, c.partition, c.attempt)) {
                                h.abort();
                            }
                        }
                        driver_message::Message::RemoveJob(r) => {
                            running.retain(|key, h| {
                                let keep = key.0 != r.job_id;
                                if !keep {
                                    h.abort();
                                }
                                keep
                            });
                            // Aborted tasks may still be inside a synchronous step (a shuffle
                            // file being written): the job's files go once its last task ended.
                            if by_id.values().any(|key| key.0 == r.job_id) {
                                forget_job_memory(&context, &r.job_id);
                            } else {
                                forget_job(&context, &r.job_id);
                            }
                            if removed_jobs.len() == REMEMBERED_REMOVED_JOBS {
                                removed_jobs.pop_front();
                            }
                            removed_jobs.push_back(r.job_id);
                        }
                        driver_message::Message::Registered(_) => {}
                        driver_message::Message::Release(_) => {
                            if grace.is_some() {
                                info!(executor = %context.id, "released by the driver: no running job needs this executor");
                                break Ok(());
                            }
                            warn!("the driver released this executor, which is not decommissioning; ignored");
                        }
                    },
                    Some(Ok(DriverMessage { message: None })) => {}
                    Some(Err(status)) => break Err(Error::external(format!("lost the driver connection: {}", status.message()))),
                    None => break Err(Error::external("the driver closed the connection")),
                },
                Some(done) = tasks.join_next_with_id() => {
                    let status = match done {
                        Ok((id, status)) => {
                            if let Some(key) = by_id.remove(&id) {
                                running.remove(&key);
                                if removed_jobs.contains(&key.0) {
                                    forget_removed_job_after_task(&context, &by_id, &key.0);
                                    context.metrics.send(MetricsMessage::TaskEnded(None));
                                    continue;
                                }
                            }
                            status
                        }
                        Err(e) if e.is_cancelled() => {
                            context.metrics.send(MetricsMessage::TaskEnded(None));
                            if let Some(key) = by_id.remove(&e.id()) {
                                running.remove(&key);
                                if removed_jobs.contains(&key.0) {
                                    forget_removed_job_after_task(&context, &by_id, &key.0);
                                }
                            }
                            continue;
                        }
                        Err(e) => {
                            let Some(key) = by_id.remove(&e.id()) else { continue };
                            running.remove(&key);
                            warn!("task {key:?} panicked: {e}");
                            crate::task::panicked(&key, &e.to_string())
                        }
                    };
                    if context.metrics.is_active() {
                        context.metrics.send(MetricsMessage::TaskEnded(Some(Box::new(status.clone()))));
                    }
                    if self.to_driver.send(ExecutorMessage { message: Some(executor_message::Message::TaskStatus(status)) }).is_err() {
                        break Err(Error::external("the driver connection closed"));
                    }
                }
                _ = heartbeat.tick() => {
                    faisca_engine::kafka::expire_idle_consumers();
                    let beat = Heartbeat {
                        running_tasks: running.len() as u32,
                        memory_used_bytes: context.base_task_context.runtime_env().memory_pool.reserved() as u64,
                        shuffle_memory_bytes: context.shuffle_memory.held_bytes(),
                    };
                    let _ = self.to_driver.send(ExecutorMessage { message: Some(executor_message::Message::Heartbeat(beat)) });
                }
                Some(reason) = decommission.recv(), if grace.is_none() => {
                    info!(executor = %context.id, running = running.len(), "decommissioning ({reason}): no new tasks; serving shuffle output until released or {grace_period:?} (faisca.executor.decommission.gracePeriod)");
                    let message = executor_message::Message::Decommission(Decommission { reason });
                    if self.to_driver.send(ExecutorMessage { message: Some(message) }).is_err() {
                        break Err(Error::external("the driver connection closed"));
                    }
                    grace = Some(Box::pin(tokio::time::sleep(grace_period)));
                }
                _ = async { grace.as_mut().expect("guarded").await }, if grace.is_some() => {
                    warn!(executor = %context.id, running = running.len(), "the decommission grace period ({grace_period:?}) ended before the driver released this executor; leaving");
                    break Ok(());
                }
                _ = &mut shutdown => break Ok(()),
            }
        };
        tasks.abort_all();
        result
    }
}

/// How many removed jobs the loop remembers, to clean up after their late-ending tasks.
const REMEMBERED_REMOVED_JOBS: usize = 256;

/// Drop everything this executor holds for a job: prepared stages, in-memory and file outputs.
fn forget_job(context: &ExecutorContext, job_id: &str) {
    forget_job_memory(context, job_id);
    remove_job_files(context, job_id);
}

/// Drop a job's prepared stages and in-memory outputs (its files stay).
fn forget_job_memory(context: &ExecutorContext, job_id: &str) {
    context.stages.evict_job(job_id);
    context.shuffle_memory.remove_job(job_id);
}

/// A task of a removed job ended: once it was the job's last, nothing can write the job's
/// output any more, so all of it goes (once, so that no two removals race each other).
fn forget_removed_job_after_task(
    context: &ExecutorContext,
    tasks: &HashMap<tokio::task::Id, TaskKey>,
    job_id: &str,
) {
    if tasks.values().any(|key| key.0 == job_id) {
        forget_job_memory(context, job_id);
    } else {
        forget_job(context, job_id);
    }
}

fn remove_job_files(context: &ExecutorContext, job_id: &str) {
    if job_id.is_empty()
        || !job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return;
    }
    let dir = context.shuffle_root.join(job_id);
    // Deleting can take a moment for big jobs; do it off the loop.
    tokio::task::spawn_blocking(move || {
        // A failed attempt (a file vanished or appeared mid-walk) is retried while the
        // directory is still there.
        for attempt in 1..=3 {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => return,
                Err(_) if !dir.exists() => return,
                Err(e) if attempt == 3 => {
                    warn!("cannot remove shuffle files {}: {e}", dir.display());
                }
                Err(_) => {}
            }
        }
    });
}
