//! The actor's job handling: submission, scheduling (fair between sessions, FIFO within one),
//! task reports, lost executors, cancellation, and the status of running and finished jobs.

use std::collections::HashMap;
use std::sync::Arc;

use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, JobId, Result};
use faisca_proto::{
    CancelTask, DriverMessage, JobInfo, RemoveJob, TaskState, TaskStatus, driver_message,
};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{DriverState, ExecutorEntry, FinishedJob, JobResult, JobWaiter};
use crate::scheduler::{JobState, JobStatus, PlannedJob, TaskOutcome, TaskOutput};

impl DriverState {
    pub(super) fn submit_job(&mut self, job: PlannedJob, reply: oneshot::Sender<Result<JobId>>) {
        if !self.sessions.contains_key(&job.session) {
            let _ = reply.send(Err(super::unknown_session(&job.session)));
            return;
        }
        let id = JobId::random();
        let seq = self.next_job_seq;
        self.next_job_seq += 1;
        let state = JobState::new(id.clone(), seq, job, self.settings.retained_task_failures);
        debug!(job = %id, stages = state.planned.stages.len(), "job submitted");
        self.post_job_start(&state);
        self.jobs.insert(id.clone(), state);
        let _ = reply.send(Ok(id.clone()));
        self.after_job_change(&id);
        self.schedule();
    }

    pub(super) fn await_job(&mut self, id: JobId, reply: JobWaiter) {
        if let Some(job) = self.jobs.get(&id) {
            match &job.status {
                JobStatus::Running | JobStatus::Committing => {
                    self.job_waiters.entry(id).or_default().push(reply)
                }
                JobStatus::Succeeded => {
                    let _ = reply.send(Ok(job_result(job)));
                }
                JobStatus::Failed(e) | JobStatus::Cancelled(e) => {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            return;
        }
        let answer = match self.finished_job(&id) {
            Some(FinishedJob {
                error: Some(error), ..
            }) => error.clone(),
            Some(_) => Arc::new(Error::user(format!(
                "the result of job '{id}' was already read; a job's result can be read once"
            ))),
            None => Arc::new(unknown_job(&id)),
        };
        let _ = reply.send(Err(answer));
    }

    /// The client finished reading a job's result, or stopped: a running job is cancelled, a
    /// succeeded one released.
    pub(super) fn job_done(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if matches!(job.status, JobStatus::Committing) {
            // The commit finishes regardless; the job is retired when it ends.
            job.abandoned = true;
            return;
        }
        if job.cancel(Error::user(format!(
            "job {id} was cancelled: its client stopped reading the result"
        ))) {
            self.after_job_change(id);
        } else {
            self.retire(id);
        }
        self.schedule();
    }

    pub(super) fn kill_job(&mut self, id: &JobId) -> Result<JobInfo> {
        let Some(job) = self.jobs.get_mut(id) else {
            return match self.finished_job(id) {
                Some(f) => Err(Error::user(format!(
                    "job '{id}' cannot be killed: it already ended ({})",
                    state_name(f.info.state)
                ))),
                None => Err(unknown_job(id)),
            };
        };
        if matches!(job.status, JobStatus::Committing) {
            return Err(Error::user(format!(
                "job '{id}' cannot be killed: every task finished and its files are being committed"
            )));
        }
        if !job.cancel(Error::user(format!("job {id} was cancelled (faisca kill)"))) {
            return Err(Error::user(format!(
                "job '{id}' cannot be killed: it already succeeded and its result is being read"
            )));
        }
        let info = job.info();
        self.after_job_change(id);
        self.schedule();
        Ok(info)
    }

    pub(super) fn list_jobs(&self) -> Vec<JobInfo> {
        let mut running: Vec<&JobState> = self.jobs.values().collect();
        running.sort_by_key(|j| j.seq);
        self.finished
            .iter()
            .map(|(_, f)| f.info.clone())
            .chain(running.into_iter().map(JobState::info))
            .collect()
    }

    pub(super) fn job_info(&self, id: &JobId) -> Result<JobInfo> {
        if let Some(job) = self.jobs.get(id) {
            return Ok(job.info());
        }
        self.finished_job(id)
            .map(|f| f.info.clone())
            .ok_or_else(|| unknown_job(id))
    }

    fn finished_job(&self, id: &JobId) -> Option<&FinishedJob> {
        self.finished.iter().find(|(j, _)| j == id).map(|(_, f)| f)
    }

    /// Forget a job: its executors drop its shuffle data, status queries see its final state.
    fn retire(&mut self, id: &JobId) {
        self.stop_job_tasks(id);
        let Some(job) = self.jobs.remove(id) else {
            return;
        };
        self.broadcast(driver_message::Message::RemoveJob(RemoveJob {
            job_id: id.0.clone(),
        }));
        self.job_waiters.remove(id);
        if let Some(write) = &job.planned.write
            && job.status.error().is_some()
        {
            let write = write.clone();
            let job_id = id.clone();
            tokio::spawn(async move { crate::write::abort_job(&write, &job_id).await });
        }
        debug!(job = %id, elapsed_ms = job.started.elapsed().as_millis() as u64, "job retired");
        if self.settings.retained_jobs == 0 {
            return;
        }
        while self.finished.len() >= self.settings.retained_jobs {
            self.finished.pop_front();
        }
        let finished = FinishedJob {
            info: job.info(),
            error: job.status.error().cloned(),
        };
        self.finished.push_back((id.clone(), finished));
    }

    /// Cancel the job's running tasks on their executors and free their slots (once: the job
    /// forgets the tasks it stops).
    fn stop_job_tasks(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let seq = job.seq;
        let running = job.take_running_tasks();
        for (executor, stage, partition, attempt) in &running {
            let reason = format!("job {id} ended");
            self.post_tasks_stopped(
                seq,
                executor,
                &[(*stage, *partition, *attempt)],
                false,
                &reason,
            );
        }
        for (executor, stage, partition, attempt) in running {
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

    /// Launch runnable tasks on free slots until either runs out.
    pub(super) fn schedule(&mut self) {
        while self.executors.values().any(ExecutorEntry::takes_tasks) {
            let Some(job_id) = self.pick_job() else {
                return;
            };
            let job = self.jobs.get_mut(&job_id).expect("picked among the jobs");
            let Some((stage, partition, avoid)) = job.next_task() else {
                return;
            };
            let preferred = job.preferred_executor(stage, partition).cloned();
            let executor = self.pick_executor(avoid.as_ref(), preferred.as_ref());
            let job = self.jobs.get_mut(&job_id).expect("picked among the jobs");
            let seq = job.seq;
            match job.launch(stage, partition, &executor) {
                Ok(task) => {
                    self.post_task_start(seq, &task, &executor);
                    let entry = self.executors.get_mut(&executor).expect("has a free slot");
                    entry.running += 1;
                    let message = DriverMessage {
                        message: Some(driver_message::Message::LaunchTask(task)),
                    };
                    if entry.sender.send(Ok(message)).is_err() {
                        // The stream is gone; ExecutorLost follows and reschedules the task.
                        warn!(executor = %executor, "executor stream closed while launching a task");
                    }
                }
                Err(e) => {
                    warn!(job = %job_id, "cannot launch task {stage}/{partition}: {e}");
                    return;
                }
            }
        }
    }

    /// The job whose task runs next: among jobs with a runnable task, one of the session running
    /// the fewest tasks now (fair between sessions), the oldest of that session (FIFO within one).
    fn pick_job(&mut self) -> Option<JobId> {
        let ready: Vec<JobId> = self
            .jobs
            .iter_mut()
            .filter_map(|(id, job)| job.has_ready().then(|| id.clone()))
            .collect();
        if ready.is_empty() {
            return None;
        }
        let mut running_per_session: HashMap<&SessionId, u32> = HashMap::new();
        for job in self.jobs.values() {
            *running_per_session.entry(&job.planned.session).or_default() += job.running();
        }
        ready
            .into_iter()
            .map(|id| {
                let job = &self.jobs[&id];
                (running_per_session[&job.planned.session], job.seq, id)
            })
            .min()
            .map(|(_, _, id)| id)
    }

    /// `preferred` when it has a free slot (and is not `avoid`); otherwise the executor with the
    /// most free slots, other than `avoid` when another has a free slot.
    fn pick_executor(
        &self,
        avoid: Option<&ExecutorId>,
        preferred: Option<&ExecutorId>,
    ) -> ExecutorId {
        if let Some(preferred) = preferred
            && Some(preferred) != avoid
            && self
                .executors
                .get(preferred)
                .is_some_and(|e| e.takes_tasks())
        {
            return preferred.clone();
        }
        let free = |(id, e): &(&ExecutorId, &super::ExecutorEntry)| {
            (e.cores - e.running, std::cmp::Reverse((*id).clone()))
        };
        let candidates = self.executors.iter().filter(|(_, e)| e.takes_tasks());
        candidates
            .clone()
            .filter(|(id, _)| Some(*id) != avoid)
            .max_by_key(free)
            .or_else(|| candidates.max_by_key(free))
            .map(|(id, _)| id.clone())
            .expect("schedule checked for a free slot")
    }

    pub(super) fn task_status(&mut self, executor: ExecutorId, status: TaskStatus) {
        if let Some(e) = self.executors.get_mut(&executor) {
            e.last_seen = std::time::Instant::now();
        }
        let job_id = JobId(status.job_id.clone());
        let flight_address = self
            .executors
            .get(&executor)
            .map(|e| e.flight_address.clone());
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return; // a task of a job that already ended
        };
        let (stage, partition, attempt) = (status.stage_id, status.partition, status.attempt);
        let seq = job.seq;
        debug!(
            job = %job_id,
            stage,
            partition,
            attempt,
            executor = %executor,
            elapsed_ms = status.elapsed_micros as f64 / 1000.0,
            rows = status.partitions.iter().map(|p| p.rows).sum::<u64>(),
            "task ended"
        );
        let outcome = if status.state == TaskState::Succeeded as i32 {
            let Some(flight_address) = flight_address else {
                return; // reported by an executor that was dropped meanwhile
            };
            let output = TaskOutput {
                executor: executor.clone(),
                flight_address,
                attempt,
                stats: status.partitions.clone(),
                written: status.written.clone(),
                records_sent: status.records_sent,
                metrics: status.metrics.clone().into_iter().collect(),
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
        if outcome != TaskOutcome::Ignored {
            self.post_task_end(seq, &executor, &status);
            if let Some(entry) = self.executors.get_mut(&executor) {
                entry.running = entry.running.saturating_sub(1);
            }
        }
        self.after_job_change(&job_id);
        self.schedule();
    }

    /// An executor is gone: fail its running attempts and lose its outputs in every job.
    pub(super) fn jobs_lost_executor(&mut self, id: &ExecutorId, reason: &str) {
        let job_ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        for job_id in job_ids {
            let job = self.jobs.get_mut(&job_id).expect("listed above");
            let stopped = job.executor_lost(id, reason);
            let seq = job.seq;
            let why = format!("executor {id} was lost ({reason})");
            self.post_tasks_stopped(seq, id, &stopped, true, &why);
            if !stopped.is_empty() {
                debug!(job = %job_id, executor = %id, tasks = stopped.len(), "rescheduling tasks of a lost executor");
            }
            self.after_job_change(&job_id);
        }
        self.schedule();
    }

    /// A decommissioned executor left: its running attempts run elsewhere and the outputs
    /// still needed run again, none of it counted as a failure.
    pub(super) fn jobs_departed_executor(&mut self, id: &ExecutorId) {
        let job_ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        for job_id in job_ids {
            let job = self.jobs.get_mut(&job_id).expect("listed above");
            let stopped = job.executor_departed(id);
            let seq = job.seq;
            let why = format!("executor {id} left (decommissioned)");
            self.post_tasks_stopped(seq, id, &stopped, false, &why);
            if !stopped.is_empty() {
                debug!(job = %job_id, executor = %id, tasks = stopped.len(), "rescheduling tasks of a decommissioned executor");
            }
            self.after_job_change(&job_id);
        }
        self.schedule();
    }

    /// Answer waiters of a job that ended; retire a failed or cancelled job at once.
    pub(super) fn after_job_change(&mut self, id: &JobId) {
        self.post_job_end_if_ended(id);
        let Some(job) = self.jobs.get(id) else { return };
        match &job.status {
            JobStatus::Running => {}
            JobStatus::Committing => self.start_commit(id),
            JobStatus::Succeeded => {
                let result = job_result(job);
                for w in self.job_waiters.remove(id).unwrap_or_default() {
                    let _ = w.send(Ok(result.clone()));
                }
                if job.abandoned {
                    self.retire(id);
                }
            }
            JobStatus::Failed(e) | JobStatus::Cancelled(e) => {
                let e = e.clone();
                for w in self.job_waiters.remove(id).unwrap_or_default() {
                    let _ = w.send(Err(e.clone()));
                }
                self.retire(id);
            }
        }
    }
}

impl DriverState {
    /// Every task of a write job succeeded: publish its files off the actor; the outcome comes
    /// back as [`super::Message::CommitEnded`].
    fn start_commit(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if job.commit_started {
            return;
        }
        job.commit_started = true;
        let Some(write) = job.planned.write.clone() else {
            return;
        };
        let files = job.written_files();
        let records = job.records_sent();
        let Some(reply) = self.myself.clone() else {
            job.commit_ended(Err(Error::internal(
                "this driver state cannot run work off the actor (no reply address)",
            )));
            self.after_job_change(id);
            return;
        };
        let job_id = id.clone();
        let kafka = job.planned.kafka.clone();
        let stop = job.planned.stop_before_source_commit;
        debug!(job = %id, files = files.len(), "committing");
        tokio::spawn(async move {
            let mut result = crate::write::commit_job(&write, &job_id, &files, records).await;
            if result.is_ok() && stop {
                result = Err(Error::external(
                    "the write stopped before its Kafka sources recorded their commit (faisca.test.stopBeforeSourceCommit)",
                ));
            } else if result.is_ok()
                && let Err(e) = faisca_connectors::kafka::run::record_done(&kafka).await
            {
                result = Err(e.context(
                    "the files were committed, but not the Kafka checkpoint: the next run reads this batch again",
                ));
            }
            if let Some(sender) = reply.upgrade() {
                let _ = sender.send(super::Message::CommitEnded { id: job_id, result });
            }
        });
    }

    pub(super) fn commit_ended(&mut self, id: &JobId, result: Result<u64>) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if let Err(e) = &result {
            warn!(job = %id, "commit failed: {e}");
        }
        job.commit_ended(result);
        self.after_job_change(id);
    }
}

fn unknown_job(id: &JobId) -> Error {
    Error::user(format!(
        "unknown job '{id}': expected the id of a running job or of a recent finished one (faisca.driver.retainedJobs)"
    ))
}

fn state_name(state: i32) -> &'static str {
    match faisca_proto::JobState::try_from(state) {
        Ok(faisca_proto::JobState::Running) => "running",
        Ok(faisca_proto::JobState::Succeeded) => "succeeded",
        Ok(faisca_proto::JobState::Failed) => "failed",
        Ok(faisca_proto::JobState::Cancelled) => "cancelled",
        Ok(faisca_proto::JobState::Committing) => "committing",
        Err(_) => "unknown",
    }
}

fn job_result(job: &JobState) -> JobResult {
    let kafka = if job.planned.write.is_some() {
        Vec::new()
    } else {
        job.planned.kafka.clone()
    };
    JobResult {
        kafka,
        schema: job.planned.schema.clone(),
        stage_id: (job.planned.stages.len() - 1) as u32,
        outputs: job
            .result_outputs()
            .into_iter()
            .map(|(p, out)| (out.executor.0, out.flight_address, p, out.attempt))
            .collect(),
        task_executors: job.task_executors(),
        inline: job
            .written_rows()
            .map(|rows| crate::write::count_batch(rows).map(|b| vec![b]))
            .transpose()
            .unwrap_or_default(),
    }
}
