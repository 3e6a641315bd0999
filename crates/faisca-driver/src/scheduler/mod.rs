//! Job → stage → task bookkeeping. Plain data, no I/O: the actor asks it what to launch and
//! tells it what happened.
//!
//! A task is *runnable* when it is pending, every stage it reads has all its outputs, and its own
//! output is still needed (it is the result stage, or a stage reading it is not complete). Runnable
//! tasks wait in the job's ready queue; entries are checked again when taken, because a stage's
//! inputs can become incomplete again when an executor holding some of their outputs is lost.
//!
//! Failures:
//! * an ordinary failed attempt counts against `faisca.task.maxAttempts` (a non-retryable error
//!   fails the job at once), and the next attempt avoids the executor it failed on;
//! * a *fetch failure* (the task could not read a map output) is not the reader's fault: the map
//!   outputs of the executor that held the output are marked lost, their tasks run again, and the
//!   reader waits for them; it counts against the reader stage's `faisca.stage.maxAttempts`;
//! * a lost executor fails its running attempts and loses its outputs the same way;
//! * an executor that *departed* (decommissioned: it left on purpose) hands its running attempts
//!   back without counting a failure, and loses its outputs the same way.
//!
//! Lost outputs are re-run only when they are needed: a stage's output is needed while a stage
//! that reads it is incomplete *and needed itself* (the result stage always is). A lost output in
//! a stage nobody needs is only marked lost (it still counts as done); it is re-run if a later loss
//! makes its stage needed again.

mod info;

pub use info::shorten_sql;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, JobId, Result};
use faisca_proto::{
    ConfigEntry, LaunchTask, MapOutput, PartitionStats, ShuffleOutputSpec, StageInput,
    StageSummary, TaskFailure,
};

/// A stage ready to be scheduled: its encoded plan and shape.
#[derive(Debug, Clone)]
pub struct PlannedStage {
    /// Stage id (index in the job).
    pub id: u32,
    /// The encoded task plan.
    pub plan: Bytes,
    /// Whether the plan's root is the `RepartitionExec` deciding output partitions.
    pub hash_partitioned: bool,
    /// Partitions each task writes.
    pub output_partitions: u32,
    /// Number of tasks.
    pub tasks: u32,
    /// Stages this one reads.
    pub inputs: Vec<u32>,
    /// `hash(N)`, `per-task` or `result`.
    pub output_description: String,
    /// Whether the stage runs a streaming stateful operator (its tasks prefer the executors
    /// holding their partitions' state).
    pub stateful: bool,
    /// Whether the stage scans Kafka (a streaming query's tasks then prefer the executors whose
    /// consumers stand where their partitions' ranges start).
    pub reads_kafka: bool,
    /// The executor each task prefers (empty: none), when it has a free slot.
    pub preferred: Vec<Option<ExecutorId>>,
    /// Its operators as DataFusion displays them, one per line (the UI's stage boxes).
    pub operators: String,
}

/// Everything the actor needs to run a job.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The session that submitted it.
    pub session: SessionId,
    /// The user whose session it is (`None`: the cluster, or authentication off).
    pub user: Option<String>,
    /// Stages, inputs first; the last one produces the result.
    pub stages: Vec<PlannedStage>,
    /// Schema of the result rows.
    pub schema: SchemaRef,
    /// Configuration tasks run with.
    pub task_config: Arc<Vec<ConfigEntry>>,
    /// `faisca.task.maxAttempts` of the session.
    pub max_attempts: u32,
    /// `faisca.stage.maxAttempts` of the session.
    pub stage_max_attempts: u32,
    /// A name for `faisca status` (may be empty).
    pub name: String,
    /// The statement (shortened) for `faisca status`.
    pub sql: String,
    /// Set for a write job: its last stage writes files, which the driver commits, or sends
    /// Kafka records.
    pub write: Option<Arc<crate::write::JobWrite>>,
    /// `faisca.test.stopBeforeSourceCommit`: the write fails before its sources commit.
    pub stop_before_source_commit: bool,
    /// The Kafka runs the job reads: committed in their checkpoints once its output is delivered.
    pub kafka: Vec<Arc<faisca_connectors::kafka::run::KafkaRun>>,
}

impl PlannedJob {
    /// Summaries for the client.
    pub fn summaries(&self) -> Vec<StageSummary> {
        self.stages
            .iter()
            .map(|s| StageSummary {
                stage_id: s.id,
                tasks: s.tasks,
                output: s.output_description.clone(),
                inputs: s.inputs.clone(),
            })
            .collect()
    }
}

/// Where a finished task's output is.
#[derive(Debug, Clone)]
pub struct TaskOutput {
    /// Executor holding the output.
    pub executor: ExecutorId,
    /// Its Flight address.
    pub flight_address: String,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// Rows and bytes per output partition.
    pub stats: Vec<PartitionStats>,
    /// Files a write task left in its attempt directory.
    pub written: Vec<faisca_proto::WrittenFile>,
    /// Records a Kafka write task sent.
    pub records_sent: u64,
    /// The attempt's named counters ([`faisca_engine::task_metrics`]).
    pub metrics: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
enum TaskSlot {
    Pending,
    Running {
        executor: ExecutorId,
        attempt: u32,
    },
    Done(TaskOutput),
    /// Finished, but its output went with its executor; not needed now (else it would be
    /// pending again).
    Lost,
}

#[derive(Debug, Clone)]
struct TaskProgress {
    slot: TaskSlot,
    /// Attempts launched so far: the next attempt's number (unique, so outputs never clash).
    launched: u32,
    /// Failed attempts that count against `faisca.task.maxAttempts`.
    failures: u32,
    /// Whether the task is in the job's ready queue.
    queued: bool,
    /// The executor the last counted failure happened on: the next attempt prefers another.
    avoid: Option<ExecutorId>,
    /// The counters of the task's last successful attempt, kept when its output is lost (the
    /// work was done) and replaced when it runs again.
    metrics: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct StageProgress {
    tasks: Vec<TaskProgress>,
    /// Tasks whose output is not available.
    remaining: usize,
    running: u32,
    failed_attempts: u32,
    rerun_tasks: u32,
    fetch_failures: u32,
    /// Stages reading this one.
    consumers: Vec<u32>,
}

/// The state of a job.
#[derive(Debug, Clone)]
pub enum JobStatus {
    /// Tasks are being run.
    Running,
    /// Every task of a write job finished; the driver is publishing the files.
    Committing,
    /// Every stage finished (and a write job's files are committed).
    Succeeded,
    /// The job failed with this error.
    Failed(Arc<Error>),
    /// The job was cancelled (`faisca kill`, or its client went away).
    Cancelled(Arc<Error>),
}

impl JobStatus {
    /// The error of a failed or cancelled job.
    pub fn error(&self) -> Option<&Arc<Error>> {
        match self {
            JobStatus::Failed(e) | JobStatus::Cancelled(e) => Some(e),
            _ => None,
        }
    }
}

/// One job's progress.
#[derive(Debug)]
pub struct JobState {
    /// The job's id.
    pub id: JobId,
    /// Submission order among the driver's jobs.
    pub seq: u64,
    /// What was planned.
    pub planned: PlannedJob,
    stages: Vec<StageProgress>,
    ready: VecDeque<(u32, u32)>,
    running: u32,
    failures: VecDeque<TaskFailure>,
    /// How many failed attempts `failures` keeps (`faisca.driver.retainedTaskFailures`).
    retained_failures: usize,
    /// Where the job is.
    pub status: JobStatus,
    /// When the job was submitted.
    pub started: Instant,
    submitted: SystemTime,
    ended: Option<Instant>,
    written_rows: Option<u64>,
    /// Whether the actor started the commit of this write job.
    pub commit_started: bool,
    /// Whether the client stopped waiting while the job was committing (retire it when done).
    pub abandoned: bool,
    /// Whether the UI was told the job ended.
    pub end_posted: bool,
}

/// What a task status means for the job.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Nothing changed for scheduling (a stale or duplicate report).
    Ignored,
    /// The task finished; its stage may have finished too.
    Finished,
    /// The task failed and will run again.
    Retry,
    /// The job failed.
    JobFailed,
}

impl JobState {
    /// A job that has not started any task yet; its first stages' tasks are ready. It remembers
    /// its last `retained_failures` failed attempts.
    pub fn new(id: JobId, seq: u64, planned: PlannedJob, retained_failures: usize) -> Self {
        let task = TaskProgress {
            slot: TaskSlot::Pending,
            launched: 0,
            failures: 0,
            queued: false,
            avoid: None,
            metrics: BTreeMap::new(),
        };
        let mut stages: Vec<StageProgress> = planned
            .stages
            .iter()
            .map(|s| StageProgress {
                tasks: vec![task.clone(); s.tasks as usize],
                remaining: s.tasks as usize,
                running: 0,
                failed_attempts: 0,
                rerun_tasks: 0,
                fetch_failures: 0,
                consumers: Vec::new(),
            })
            .collect();
        for s in &planned.stages {
            for &input in &s.inputs {
                if let Some(stage) = stages.get_mut(input as usize) {
                    stage.consumers.push(s.id);
                }
            }
        }
        let mut job = JobState {
            id,
            seq,
            planned,
            stages,
            ready: VecDeque::new(),
            running: 0,
            failures: VecDeque::new(),
            retained_failures,
            status: JobStatus::Running,
            started: Instant::now(),
            submitted: SystemTime::now(),
            ended: None,
            written_rows: None,
            commit_started: false,
            abandoned: false,
            end_posted: false,
        };
        job.refresh_ready();
        job
    }

    fn result_stage_id(&self) -> u32 {
        (self.stages.len() - 1) as u32
    }

    fn stage_complete(&self, stage: u32) -> bool {
        self.stages[stage as usize].remaining == 0
    }

    fn inputs_complete(&self, stage: u32) -> bool {
        self.planned.stages[stage as usize]
            .inputs
            .iter()
            .all(|&s| self.stage_complete(s))
    }

    /// Whether a stage's output is still needed: it is the result, or a stage reading it is
    /// incomplete and needed itself.
    fn needed(&self, stage: u32) -> bool {
        stage == self.result_stage_id()
            || self.stages[stage as usize]
                .consumers
                .iter()
                .any(|&c| !self.stage_complete(c) && self.needed(c))
    }

    fn runnable(&self, stage: u32, partition: u32) -> bool {
        matches!(
            self.stages[stage as usize].tasks[partition as usize].slot,
            TaskSlot::Pending
        ) && self.inputs_complete(stage)
            && self.needed(stage)
    }

    /// Queue every runnable task that is not queued yet, and notice success.
    fn refresh_ready(&mut self) {
        if !matches!(self.status, JobStatus::Running) {
            return;
        }
        self.reclaim_lost_outputs();
        for s in 0..self.stages.len() as u32 {
            if !self.inputs_complete(s) || !self.needed(s) {
                continue;
            }
            for (p, task) in self.stages[s as usize].tasks.iter_mut().enumerate() {
                if matches!(task.slot, TaskSlot::Pending) && !task.queued {
                    task.queued = true;
                    self.ready.push_back((s, p as u32));
                }
            }
        }
        if self.stage_complete(self.result_stage_id()) {
            if self.planned.write.is_some() {
                self.status = JobStatus::Committing;
            } else {
                self.status = JobStatus::Succeeded;
                self.ended = Some(Instant::now());
            }
        }
    }

    /// Put a task that failed back at the front of the queue (if it can run now; otherwise
    /// [`Self::refresh_ready`] queues it once its inputs are back).
    fn requeue_front(&mut self, stage: u32, partition: u32) {
        if self.runnable(stage, partition) {
            let task = &mut self.stages[stage as usize].tasks[partition as usize];
            if !task.queued {
                task.queued = true;
                self.ready.push_front((stage, partition));
            }
        }
    }

    /// Whether a task can be launched now. Drops queue entries that stopped being runnable.
    pub fn has_ready(&mut self) -> bool {
        while let Some(&(s, p)) = self.ready.front() {
            if matches!(self.status, JobStatus::Running) && self.runnable(s, p) {
                return true;
            }
            self.ready.pop_front();
            self.stages[s as usize].tasks[p as usize].queued = false;
        }
        false
    }

    /// The next task to launch as `(stage, partition, executor to avoid)`.
    pub fn next_task(&mut self) -> Option<(u32, u32, Option<ExecutorId>)> {
        if !self.has_ready() {
            return None;
        }
        let (s, p) = self.ready.pop_front()?;
        let task = &mut self.stages[s as usize].tasks[p as usize];
        task.queued = false;
        Some((s, p, task.avoid.clone()))
    }

    /// The executor task `(stage, partition)` prefers, if any.
    pub fn preferred_executor(&self, stage: u32, partition: u32) -> Option<&ExecutorId> {
        self.planned
            .stages
            .get(stage as usize)?
            .preferred
            .get(partition as usize)?
            .as_ref()
    }

    /// The executor of each stage's tasks' available outputs (`None` where a task has none).
    pub fn task_executors(&self) -> Vec<Vec<Option<ExecutorId>>> {
        self.stages
            .iter()
            .map(|stage| {
                stage
                    .tasks
                    .iter()
                    .map(|task| match &task.slot {
                        TaskSlot::Done(out) => Some(out.executor.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    /// Tasks that could run now but wait for a free slot (the backlog dynamic allocation
    /// reacts to).
    pub fn waiting_tasks(&self) -> usize {
        if !matches!(self.status, JobStatus::Running) {
            return 0;
        }
        self.ready
            .iter()
            .filter(|(s, p)| self.runnable(*s, *p))
            .count()
    }

    /// Tasks of this job running now.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Mark `(stage, partition)` as launched on `executor` and build its `LaunchTask`.
    pub fn launch(
        &mut self,
        stage: u32,
        partition: u32,
        executor: &ExecutorId,
    ) -> Result<LaunchTask> {
        let id = self.id.clone();
        let progress = self
            .stages
            .get_mut(stage as usize)
            .ok_or_else(|| Error::internal(format!("job {id} has no stage {stage}")))?;
        let task = progress
            .tasks
            .get_mut(partition as usize)
            .ok_or_else(|| Error::internal(format!("job {id} has no task {stage}/{partition}")))?;
        if !matches!(task.slot, TaskSlot::Pending) {
            return Err(Error::internal(format!(
                "task {stage}/{partition} of job {id} is not pending"
            )));
        }
        let attempt = task.launched;
        task.launched += 1;
        task.slot = TaskSlot::Running {
            executor: executor.clone(),
            attempt,
        };
        progress.running += 1;
        self.running += 1;
        let planned = &self.planned.stages[stage as usize];
        let inputs = planned
            .inputs
            .iter()
            .map(|&input| StageInput {
                stage_id: input,
                outputs: self.map_outputs(input),
            })
            .collect();
        let (sink, kafka_sink) = match &self.planned.write {
            Some(write) if stage == self.result_stage_id() => write.task_sinks(),
            _ => (None, None),
        };
        Ok(LaunchTask {
            job_id: id.0,
            stage_id: stage,
            partition,
            attempt,
            plan: planned.plan.clone(),
            output: Some(ShuffleOutputSpec {
                partitions: planned.output_partitions,
                hash_partitioned: planned.hash_partitioned,
            }),
            inputs,
            config: self.planned.task_config.as_ref().clone(),
            sink,
            kafka_sink,
        })
    }

    fn map_outputs(&self, stage: u32) -> Vec<MapOutput> {
        self.stages[stage as usize]
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(map, task)| match &task.slot {
                TaskSlot::Done(out) => Some(MapOutput {
                    map_partition: map as u32,
                    attempt: out.attempt,
                    executor_id: out.executor.0.clone(),
                    flight_address: out.flight_address.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The task `(stage, partition)` if `attempt` is its running attempt; marks it not running.
    fn stop_attempt(&mut self, stage: u32, partition: u32, attempt: u32) -> Option<ExecutorId> {
        let progress = self.stages.get_mut(stage as usize)?;
        let task = progress.tasks.get_mut(partition as usize)?;
        let TaskSlot::Running {
            executor,
            attempt: a,
        } = &task.slot
        else {
            return None;
        };
        if *a != attempt {
            return None;
        }
        let executor = executor.clone();
        task.slot = TaskSlot::Pending;
        progress.running -= 1;
        self.running -= 1;
        Some(executor)
    }

    /// A task attempt succeeded.
    pub fn task_succeeded(
        &mut self,
        stage: u32,
        partition: u32,
        attempt: u32,
        output: TaskOutput,
    ) -> TaskOutcome {
        if !matches!(self.status, JobStatus::Running)
            || self.stop_attempt(stage, partition, attempt).is_none()
        {
            return TaskOutcome::Ignored;
        }
        let progress = &mut self.stages[stage as usize];
        let task = &mut progress.tasks[partition as usize];
        task.metrics = output.metrics.clone();
        task.slot = TaskSlot::Done(output);
        progress.remaining -= 1;
        if progress.remaining == 0 {
            self.refresh_ready();
        }
        TaskOutcome::Finished
    }

    /// A task attempt failed with `error`. See the module docs for what happens.
    pub fn task_failed(
        &mut self,
        stage: u32,
        partition: u32,
        attempt: u32,
        error: Error,
    ) -> TaskOutcome {
        if !matches!(self.status, JobStatus::Running) {
            return TaskOutcome::Ignored;
        }
        let Some(executor) = self.stop_attempt(stage, partition, attempt) else {
            return TaskOutcome::Ignored;
        };
        self.stages[stage as usize].failed_attempts += 1;
        self.remember_failure(stage, partition, attempt, &executor, &error);
        if let Some(fetch) = error.fetch_failure() {
            match self.output_location(fetch.stage_id, fetch.map_partition) {
                // The output is where the reader looked for it: it is gone.
                Some(Some(holder)) if holder.0 == fetch.executor_id => {
                    self.outputs_lost(&holder);
                    let progress = &mut self.stages[stage as usize];
                    progress.fetch_failures += 1;
                    if progress.fetch_failures >= self.planned.stage_max_attempts {
                        let n = progress.fetch_failures;
                        return self.fail(error.context(format!(
                            "job {} stage {stage} failed {n} times because shuffle input it reads was lost (faisca.stage.maxAttempts); last error",
                            self.id
                        )));
                    }
                    self.requeue_front(stage, partition);
                    return TaskOutcome::Retry;
                }
                // Already known to be lost (or re-run since): wait for it.
                Some(_) => {
                    self.requeue_front(stage, partition);
                    return TaskOutcome::Retry;
                }
                // Not an output of this job: an ordinary failure.
                None => {}
            }
        }
        let max_attempts = self.planned.max_attempts;
        let task = &mut self.stages[stage as usize].tasks[partition as usize];
        task.failures += 1;
        let failures = task.failures;
        if error.is_retryable() && failures < max_attempts {
            task.avoid = Some(executor);
            self.requeue_front(stage, partition);
            return TaskOutcome::Retry;
        }
        let error = if error.is_retryable() {
            error.context(format!(
                "job {} stage {stage} task {partition} failed {failures} times (faisca.task.maxAttempts); last error",
                self.id
            ))
        } else {
            error
        };
        self.fail(error)
    }

    /// `Some(Some(executor))` when the output of `(stage, map)` is available on `executor`,
    /// `Some(None)` when the task exists but its output is not available, `None` when there is
    /// no such task.
    fn output_location(&self, stage: u32, map: u32) -> Option<Option<ExecutorId>> {
        let task = self.stages.get(stage as usize)?.tasks.get(map as usize)?;
        Some(match &task.slot {
            TaskSlot::Done(out) => Some(out.executor.clone()),
            _ => None,
        })
    }

    fn fail(&mut self, error: Error) -> TaskOutcome {
        self.status = JobStatus::Failed(Arc::new(error));
        self.ended = Some(Instant::now());
        TaskOutcome::JobFailed
    }

    /// Cancel a running job with `error`. Returns whether it was running.
    pub fn cancel(&mut self, error: Error) -> bool {
        if !matches!(self.status, JobStatus::Running) {
            return false;
        }
        self.status = JobStatus::Cancelled(Arc::new(error));
        self.ended = Some(Instant::now());
        true
    }

    fn remember_failure(
        &mut self,
        stage: u32,
        partition: u32,
        attempt: u32,
        executor: &ExecutorId,
        error: &Error,
    ) {
        if self.retained_failures == 0 {
            return;
        }
        while self.failures.len() >= self.retained_failures {
            self.failures.pop_front();
        }
        self.failures.push_back(TaskFailure {
            stage_id: stage,
            partition,
            attempt,
            executor_id: executor.0.clone(),
            message: error.message(),
        });
    }

    /// Outputs held by `executor` are gone: their tasks run again when their output is needed
    /// (now, or after a later loss). Returns how many are re-run now. A job that already
    /// succeeded keeps its result as it is (its reader then fails with an error naming the
    /// executor).
    pub fn outputs_lost(&mut self, executor: &ExecutorId) -> usize {
        if !matches!(self.status, JobStatus::Running) {
            return 0;
        }
        // A write stage's output is files in the destination's store, not on the executor.
        let durable = self.durable_stage();
        for (s, progress) in self.stages.iter_mut().enumerate() {
            if Some(s) == durable {
                continue;
            }
            for task in &mut progress.tasks {
                if matches!(&task.slot, TaskSlot::Done(out) if &out.executor == executor) {
                    task.slot = TaskSlot::Lost;
                }
            }
        }
        let rerun = self.reclaim_lost_outputs();
        if rerun > 0 {
            self.refresh_ready();
        }
        rerun
    }

    /// The stage whose output is durable files (a write job's last), if any.
    fn durable_stage(&self) -> Option<usize> {
        self.planned
            .write
            .is_some()
            .then(|| self.result_stage_id() as usize)
    }

    /// Make lost outputs of every needed stage pending (again and again: a stage that becomes
    /// incomplete makes the stages it reads needed). Returns how many.
    fn reclaim_lost_outputs(&mut self) -> usize {
        let mut total = 0;
        loop {
            let needed: Vec<bool> = (0..self.stages.len() as u32)
                .map(|s| self.needed(s))
                .collect();
            let mut changed = 0;
            for (s, progress) in self.stages.iter_mut().enumerate() {
                if !needed[s] {
                    continue;
                }
                for task in &mut progress.tasks {
                    if matches!(task.slot, TaskSlot::Lost) {
                        task.slot = TaskSlot::Pending;
                        progress.remaining += 1;
                        progress.rerun_tasks += 1;
                        changed += 1;
                    }
                }
            }
            if changed == 0 {
                return total;
            }
            total += changed;
        }
    }

    /// `executor` left on purpose (decommissioned): its running attempts go back to the queue
    /// without counting a failure, and its outputs are lost. Returns the attempts that were
    /// running there as `(stage, partition, attempt)`.
    pub fn executor_departed(&mut self, executor: &ExecutorId) -> Vec<(u32, u32, u32)> {
        let mut stopped = Vec::new();
        if !matches!(self.status, JobStatus::Running) {
            return stopped;
        }
        for (stage, partition, attempt) in self.running_on(executor) {
            if self.stop_attempt(stage, partition, attempt).is_some() {
                self.requeue_front(stage, partition);
                stopped.push((stage, partition, attempt));
            }
        }
        self.outputs_lost(executor);
        stopped
    }

    /// Whether this job still needs something of `executor`: a running attempt, or an output
    /// that a running stage will read or the client has not read yet.
    pub fn needs_executor(&self, executor: &ExecutorId) -> bool {
        let holds_output = |s: usize| {
            self.stages[s]
                .tasks
                .iter()
                .any(|t| matches!(&t.slot, TaskSlot::Done(out) if &out.executor == executor))
        };
        match self.status {
            JobStatus::Running => {
                !self.running_on(executor).is_empty()
                    || (0..self.stages.len()).any(|s| {
                        Some(s) != self.durable_stage() && self.needed(s as u32) && holds_output(s)
                    })
            }
            JobStatus::Succeeded => {
                self.durable_stage().is_none() && holds_output(self.result_stage_id() as usize)
            }
            _ => false,
        }
    }

    /// `executor` is gone: its running attempts failed with `reason`, its outputs are lost.
    /// Returns the attempts that were running there as `(stage, partition, attempt)`.
    pub fn executor_lost(&mut self, executor: &ExecutorId, reason: &str) -> Vec<(u32, u32, u32)> {
        let mut stopped = Vec::new();
        for (stage, partition, attempt) in self.running_on(executor) {
            let error = Error::external(format!("executor {executor} was lost ({reason})"));
            self.task_failed(stage, partition, attempt, error);
            stopped.push((stage, partition, attempt));
        }
        self.outputs_lost(executor);
        stopped
    }

    /// The launcher explained why `executor` was lost: the failures recorded for it say so.
    pub fn amend_executor_loss(&mut self, executor: &ExecutorId, reason: &str) {
        let lost = format!("executor {executor} was lost (");
        for failure in &mut self.failures {
            if failure.executor_id == executor.0
                && let Some(at) = failure.message.find(&lost)
            {
                failure.message.truncate(at);
                failure.message.push_str(&format!("{lost}{reason})"));
            }
        }
    }

    /// Tasks running on `executor`, as `(stage, partition, attempt)`.
    fn running_on(&self, executor: &ExecutorId) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            for (p, task) in stage.tasks.iter().enumerate() {
                if let TaskSlot::Running {
                    executor: e,
                    attempt,
                } = &task.slot
                    && e == executor
                {
                    out.push((s as u32, p as u32, *attempt));
                }
            }
        }
        out
    }

    /// Stop every running task of the job: returns them as `(executor, stage, partition, attempt)`
    /// and marks them pending again, so that later reports of those attempts are ignored and a
    /// second call returns nothing.
    pub fn take_running_tasks(&mut self) -> Vec<(ExecutorId, u32, u32, u32)> {
        let mut out = Vec::new();
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (p, task) in stage.tasks.iter_mut().enumerate() {
                if let TaskSlot::Running { executor, attempt } = &task.slot {
                    out.push((executor.clone(), s as u32, p as u32, *attempt));
                    task.slot = TaskSlot::Pending;
                    stage.running -= 1;
                }
                task.queued = false;
            }
        }
        self.running = 0;
        self.ready.clear();
        out
    }

    /// The commit of a write job ended: the job succeeded with `rows` written, or failed.
    pub fn commit_ended(&mut self, result: Result<u64>) {
        if !matches!(self.status, JobStatus::Committing) {
            return;
        }
        self.ended = Some(Instant::now());
        match result {
            Ok(rows) => {
                self.written_rows = Some(rows);
                self.status = JobStatus::Succeeded;
            }
            Err(e) => self.status = JobStatus::Failed(Arc::new(e)),
        }
    }

    /// Rows a committed write job wrote.
    pub fn written_rows(&self) -> Option<u64> {
        self.written_rows
    }

    /// Records the successful attempts of a Kafka write's tasks sent.
    pub fn records_sent(&self) -> u64 {
        self.result_outputs()
            .iter()
            .map(|(_, out)| out.records_sent)
            .sum()
    }

    /// The job's counters: each task's last successful attempt's, combined by name (summed,
    /// or the largest for `.max` counters: [`faisca_engine::task_metrics::combine`]).
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for task in self.stages.iter().flat_map(|s| &s.tasks) {
            for (name, n) in &task.metrics {
                let value = sums.entry(name.clone()).or_default();
                *value = faisca_engine::task_metrics::combine(name, *value, *n);
            }
        }
        sums
    }

    /// The files of the successful attempt of each write task.
    pub fn written_files(&self) -> Vec<crate::write::TaskFile> {
        self.result_outputs()
            .into_iter()
            .flat_map(|(partition, out)| {
                out.written
                    .into_iter()
                    .map(move |file| crate::write::TaskFile {
                        partition,
                        attempt: out.attempt,
                        file,
                    })
            })
            .collect()
    }

    /// Outputs of the result stage, in task order (only meaningful once the job succeeded).
    pub fn result_outputs(&self) -> Vec<(u32, TaskOutput)> {
        self.stages[self.result_stage_id() as usize]
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(p, task)| match &task.slot {
                TaskSlot::Done(out) => Some((p as u32, out.clone())),
                _ => None,
            })
            .collect()
    }
}
