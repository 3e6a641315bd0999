//! [`AppStore`]: the application as the UI shows it, built from [`Event`]s only.
//!
//! Stages get application-wide ids (Spark's `stageId`) in the order jobs are submitted, so a
//! store built live and one built from the same events read back from a log agree. What a store
//! keeps is bounded: finished jobs, finished stages, task attempts per stage and departed
//! executors each have a limit ([`StoreLimits`]); running jobs and their stages are always kept.
//! Counters for `/metrics` are kept apart and never forgotten.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use faisca_common::config::UiSettings;

use crate::events::{
    ApplicationStart, Event, ExecutorAdded, ExecutorRemoved, JobEnd, JobOutcome, JobStart,
    QueryEvent, StagePlan, TaskEnd, TaskOutcome, TaskStart,
};
use crate::metrics::Counters;

/// How much a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Finished jobs.
    pub jobs: usize,
    /// Finished stages.
    pub stages: usize,
    /// Task attempts per stage.
    pub tasks: usize,
    /// Departed executors.
    pub dead_executors: usize,
    /// Ended streaming query runs.
    pub ended_queries: usize,
}

impl StoreLimits {
    /// The limits `settings` ask for.
    pub fn from_settings(settings: &UiSettings) -> Self {
        StoreLimits {
            jobs: settings.retained_jobs,
            stages: settings.retained_stages,
            tasks: settings.retained_tasks,
            dead_executors: settings.retained_dead_executors,
            ended_queries: settings.retained_jobs.min(100),
        }
    }
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits::from_settings(&faisca_common::FaiscaConfig::default().ui_settings())
    }
}

/// A job's state (Spark's `JobExecutionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Running.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed or cancelled.
    Failed,
}

impl JobStatus {
    /// Spark's name.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }
}

/// A stage's state (Spark's `StageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    /// No task launched yet.
    Pending,
    /// Tasks launched, not every task done.
    Active,
    /// Every task succeeded.
    Complete,
    /// Its job failed while it was active.
    Failed,
    /// Its job ended before it ran.
    Skipped,
}

impl StageStatus {
    /// Spark's name.
    pub fn name(self) -> &'static str {
        match self {
            StageStatus::Pending => "PENDING",
            StageStatus::Active => "ACTIVE",
            StageStatus::Complete => "COMPLETE",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "SKIPPED",
        }
    }

    fn ended(self) -> bool {
        matches!(
            self,
            StageStatus::Complete | StageStatus::Failed | StageStatus::Skipped
        )
    }
}

/// A job.
#[derive(Debug, Clone)]
pub struct JobView {
    /// As submitted.
    pub start: JobStart,
    /// Its stages' application-wide ids, in the job's stage order.
    pub stage_ids: Vec<u32>,
    /// How it ended, once it did.
    pub end: Option<JobEnd>,
    /// Task counts over its stages.
    pub tasks: TaskCounts,
}

impl JobView {
    /// Its state.
    pub fn status(&self) -> JobStatus {
        match &self.end {
            None => JobStatus::Running,
            Some(end) if end.outcome == JobOutcome::Succeeded => JobStatus::Succeeded,
            Some(_) => JobStatus::Failed,
        }
    }

    /// Tasks in all of its stages.
    pub fn num_tasks(&self) -> u64 {
        self.start.stages.iter().map(|s| s.tasks as u64).sum()
    }
}

/// Counts of task attempts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Running now.
    pub active: u64,
    /// Succeeded.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Stopped.
    pub killed: u64,
}

impl TaskCounts {
    fn started(&mut self) {
        self.active += 1;
    }

    fn ended(&mut self, outcome: TaskOutcome) {
        self.active = self.active.saturating_sub(1);
        match outcome {
            TaskOutcome::Success => self.completed += 1,
            TaskOutcome::Failed => self.failed += 1,
            TaskOutcome::Killed => self.killed += 1,
        }
    }
}

/// A stage.
#[derive(Debug, Clone)]
pub struct StageView {
    /// Its application-wide id.
    pub id: u32,
    /// Its job's number.
    pub job: u64,
    /// As planned.
    pub plan: StagePlan,
    /// Its state.
    pub status: StageStatus,
    /// When its first task was launched.
    pub submission_time: Option<u64>,
    /// When it completed, failed or was skipped.
    pub completion_time: Option<u64>,
    /// Task attempt counts.
    pub tasks: TaskCounts,
    /// Partitions with a successful attempt.
    pub succeeded: BTreeSet<u32>,
    /// Task attempts kept, by (partition, attempt).
    pub attempts: BTreeMap<(u32, u32), TaskView>,
    /// Ended attempts in the order they ended (the oldest are forgotten first).
    ended_order: VecDeque<(u32, u32)>,
    /// Attempts forgotten to stay within the limit.
    pub attempts_forgotten: u64,
    /// Sums over its successful attempts.
    pub totals: StageTotals,
    /// The first error of a failed attempt.
    pub failure_reason: String,
}

/// Sums over a stage's successful task attempts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTotals {
    /// Rows written.
    pub rows_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Time the tasks ran, in milliseconds.
    pub run_time_ms: f64,
    /// Named counters.
    pub metrics: BTreeMap<String, u64>,
}

/// One task attempt.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// Its application-wide number (Spark's `taskId`), in launch order.
    pub task_id: u64,
    /// How it started.
    pub start: TaskStart,
    /// How it ended, once it did.
    pub end: Option<TaskEnd>,
}

/// An executor, present or departed.
#[derive(Debug, Clone)]
pub struct ExecutorView {
    /// As registered.
    pub added: ExecutorAdded,
    /// Why it left, once it did.
    pub removed: Option<ExecutorRemoved>,
    /// Its task attempts.
    pub tasks: TaskCounts,
    /// Time its tasks ran, in milliseconds.
    pub task_time_ms: f64,
    /// When the driver last heard from it (registration or heartbeat).
    pub last_heartbeat: u64,
    /// Memory its tasks held at the last heartbeat.
    pub memory_used_bytes: u64,
    /// Shuffle output it held at the last heartbeat.
    pub shuffle_bytes_held: u64,
}

/// A streaming query run.
#[derive(Debug, Clone)]
pub struct QueryView {
    /// The query's id.
    pub id: String,
    /// This run's id.
    pub run_id: String,
    /// Its name.
    pub name: String,
    /// Its sink.
    pub sink: String,
    /// The user it belongs to (empty: the cluster, or authentication off).
    pub user: String,
    /// When it started.
    pub start_time: u64,
    /// When it ended, and why it failed (empty: stopped cleanly).
    pub ended: Option<(u64, String)>,
    /// The last batches' progress (Spark's JSON), oldest first.
    pub recent_progress: VecDeque<serde_json::Value>,
}

/// Progress entries kept per query run.
const RECENT_PROGRESS: usize = 100;

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub struct AppStore {
    limits: StoreLimits,
    /// The application, once it started.
    pub app: Option<ApplicationStart>,
    /// When it ended, if it did.
    pub app_end: Option<u64>,
    /// Jobs kept, by number.
    pub jobs: BTreeMap<u64, JobView>,
    /// Stages kept, by id.
    pub stages: BTreeMap<u32, StageView>,
    next_stage_id: u32,
    next_task_id: u64,
    /// Finished jobs, in the order they ended.
    finished_jobs: VecDeque<u64>,
    /// Ended stages, in the order they ended.
    finished_stages: VecDeque<u32>,
    /// Executors, present and departed, by id.
    pub executors: BTreeMap<String, ExecutorView>,
    departed: VecDeque<String>,
    /// Streaming query runs, by run id.
    pub queries: BTreeMap<String, QueryView>,
    ended_queries: VecDeque<String>,
    /// Counters for `/metrics`.
    pub counters: Counters,
}

impl AppStore {
    /// What `user` may see: their jobs (and those jobs' stages and tasks) and streaming queries;
    /// the application, its executors and counters as they are. The UI answers a user's request
    /// from this copy.
    pub fn visible_to(&self, user: &str) -> AppStore {
        let jobs: BTreeMap<u64, JobView> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.start.user == user)
            .map(|(n, job)| (*n, job.clone()))
            .collect();
        AppStore {
            stages: self
                .stages
                .iter()
                .filter(|(_, stage)| jobs.contains_key(&stage.job))
                .map(|(id, stage)| (*id, stage.clone()))
                .collect(),
            queries: self
                .queries
                .iter()
                .filter(|(_, query)| query.user == user)
                .map(|(id, query)| (id.clone(), query.clone()))
                .collect(),
            finished_jobs: self
                .finished_jobs
                .iter()
                .filter(|n| jobs.contains_key(n))
                .copied()
                .collect(),
            finished_stages: VecDeque::new(),
            ended_queries: VecDeque::new(),
            jobs,
            limits: self.limits,
            app: self.app.clone(),
            app_end: self.app_end,
            next_stage_id: self.next_stage_id,
            next_task_id: self.next_task_id,
            executors: self.executors.clone(),
            departed: self.departed.clone(),
            counters: self.counters.clone(),
        }
    }

    /// An empty store keeping what `limits` allow.
    pub fn new(limits: StoreLimits) -> Self {
        AppStore {
            limits,
            ..AppStore::default()
        }
    }

    /// The stage with this job number and stage number within the job.
    pub fn stage_of(&self, job: u64, stage: u32) -> Option<&StageView> {
        let id = *self.jobs.get(&job)?.stage_ids.get(stage as usize)?;
        self.stages.get(&id)
    }

    fn stage_mut(&mut self, job: u64, stage: u32) -> Option<&mut StageView> {
        let id = *self.jobs.get(&job)?.stage_ids.get(stage as usize)?;
        self.stages.get_mut(&id)
    }

    /// Take one event into account.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::ApplicationStart(start) => self.app = Some(start.clone()),
            Event::ApplicationEnd { time } => self.app_end = Some(*time),
            Event::JobStart(start) => self.job_started(start),
            Event::TaskStart(start) => self.task_started(start),
            Event::TaskEnd(end) => self.task_ended(end),
            Event::JobEnd(end) => self.job_ended(end),
            Event::ExecutorAdded(added) => {
                self.executors.insert(
                    added.id.clone(),
                    ExecutorView {
                        added: added.clone(),
                        removed: None,
                        tasks: TaskCounts::default(),
                        task_time_ms: 0.0,
                        last_heartbeat: added.time,
                        memory_used_bytes: 0,
                        shuffle_bytes_held: 0,
                    },
                );
                self.counters.executors_added += 1;
            }
            Event::ExecutorHeartbeat(beat) => {
                if let Some(e) = self.executors.get_mut(&beat.id) {
                    e.last_heartbeat = beat.time;
                    e.memory_used_bytes = beat.memory_used_bytes;
                    e.shuffle_bytes_held = beat.shuffle_bytes_held;
                }
            }
            Event::ExecutorRemoved(removed) => self.executor_removed(removed),
            Event::Query(event) => self.query_event(event),
        }
    }

    fn job_started(&mut self, start: &JobStart) {
        let first = self.next_stage_id;
        self.next_stage_id += start.stages.len() as u32;
        let stage_ids: Vec<u32> = (first..self.next_stage_id).collect();
        for (plan, id) in start.stages.iter().zip(&stage_ids) {
            self.stages.insert(
                *id,
                StageView {
                    id: *id,
                    job: start.job,
                    plan: plan.clone(),
                    status: StageStatus::Pending,
                    submission_time: None,
                    completion_time: None,
                    tasks: TaskCounts::default(),
                    succeeded: BTreeSet::new(),
                    attempts: BTreeMap::new(),
                    ended_order: VecDeque::new(),
                    attempts_forgotten: 0,
                    totals: StageTotals::default(),
                    failure_reason: String::new(),
                },
            );
        }
        self.jobs.insert(
            start.job,
            JobView {
                start: start.clone(),
                stage_ids,
                end: None,
                tasks: TaskCounts::default(),
            },
        );
        self.counters.jobs_submitted += 1;
    }

    fn task_started(&mut self, start: &TaskStart) {
        if let Some(job) = self.jobs.get_mut(&start.job) {
            job.tasks.started();
        }
        if let Some(e) = self.executors.get_mut(&start.executor) {
            e.tasks.started();
        }
        self.counters.tasks_started += 1;
        let task_id = self.next_task_id;
        self.next_task_id += 1;
        let Some(stage) = self.stage_mut(start.job, start.stage) else {
            return;
        };
        stage.tasks.started();
        if stage.status == StageStatus::Pending {
            stage.status = StageStatus::Active;
            stage.submission_time = Some(start.time);
        }
        stage.attempts.insert(
            (start.partition, start.attempt),
            TaskView {
                task_id,
                start: start.clone(),
                end: None,
            },
        );
    }

    fn task_ended(&mut self, end: &TaskEnd) {
        self.counters.task_ended(end);
        if let Some(job) = self.jobs.get_mut(&end.job) {
            job.tasks.ended(end.outcome);
        }
        if let Some(e) = self.executors.get_mut(&end.executor) {
            e.tasks.ended(end.outcome);
            e.task_time_ms += end.duration_ms;
        }
        let limit = self.limits.tasks;
        let Some(stage) = self.stage_mut(end.job, end.stage) else {
            return;
        };
        stage.tasks.ended(end.outcome);
        let key = (end.partition, end.attempt);
        if let Some(task) = stage.attempts.get_mut(&key) {
            task.end = Some(end.clone());
            stage.ended_order.push_back(key);
        }
        match end.outcome {
            TaskOutcome::Success => {
                stage.succeeded.insert(end.partition);
                let totals = &mut stage.totals;
                totals.rows_written += end.rows_written;
                totals.bytes_written += end.bytes_written;
                totals.run_time_ms += end.duration_ms;
                for (name, value) in &end.metrics {
                    let total = totals.metrics.entry(name.clone()).or_default();
                    *total = if name.ends_with(".max") {
                        (*total).max(*value)
                    } else {
                        total.saturating_add(*value)
                    };
                }
            }
            TaskOutcome::Failed if stage.failure_reason.is_empty() => {
                stage.failure_reason = end.error.clone();
            }
            _ => {}
        }
        while stage.attempts.len() > limit {
            let Some(oldest) = stage.ended_order.pop_front() else {
                break;
            };
            if stage.attempts.remove(&oldest).is_some() {
                stage.attempts_forgotten += 1;
            }
        }
        if stage.succeeded.len() as u32 >= stage.plan.tasks && stage.status == StageStatus::Active {
            stage.status = StageStatus::Complete;
            stage.completion_time = Some(end.time);
            let id = stage.id;
            self.counters.stages_completed += 1;
            self.stage_finished(id);
        }
    }

    fn job_ended(&mut self, end: &JobEnd) {
        let Some(job) = self.jobs.get_mut(&end.job) else {
            return;
        };
        if job.end.is_some() {
            return;
        }
        job.end = Some(end.clone());
        let stage_ids = job.stage_ids.clone();
        match end.outcome {
            JobOutcome::Succeeded => self.counters.jobs_succeeded += 1,
            JobOutcome::Failed => self.counters.jobs_failed += 1,
        }
        for id in stage_ids {
            let Some(stage) = self.stages.get_mut(&id) else {
                continue;
            };
            let status = match stage.status {
                StageStatus::Pending => StageStatus::Skipped,
                StageStatus::Active => {
                    self.counters.stages_failed += 1;
                    StageStatus::Failed
                }
                done => done,
            };
            if status != stage.status {
                stage.status = status;
                stage.completion_time = Some(end.time);
                if stage.failure_reason.is_empty() && status == StageStatus::Failed {
                    stage.failure_reason = end.error.clone();
                }
                self.stage_finished(id);
            }
        }
        self.finished_jobs.push_back(end.job);
        while self.finished_jobs.len() > self.limits.jobs {
            let Some(oldest) = self.finished_jobs.pop_front() else {
                break;
            };
            if let Some(job) = self.jobs.remove(&oldest) {
                for id in job.stage_ids {
                    self.stages.remove(&id);
                }
            }
        }
    }

    fn stage_finished(&mut self, id: u32) {
        self.finished_stages.push_back(id);
        while self.finished_stages.len() > self.limits.stages {
            let Some(oldest) = self.finished_stages.pop_front() else {
                break;
            };
            if self.stages.get(&oldest).is_some_and(|s| s.status.ended()) {
                self.stages.remove(&oldest);
            }
        }
    }

    fn executor_removed(&mut self, removed: &ExecutorRemoved) {
        let Some(e) = self.executors.get_mut(&removed.id) else {
            return;
        };
        if e.removed.is_some() {
            return;
        }
        e.removed = Some(removed.clone());
        self.counters.executors_removed += 1;
        self.departed.push_back(removed.id.clone());
        while self.departed.len() > self.limits.dead_executors {
            if let Some(oldest) = self.departed.pop_front() {
                self.executors.remove(&oldest);
            }
        }
    }

    fn query_event(&mut self, event: &QueryEvent) {
        match event {
            QueryEvent::Started {
                id,
                run_id,
                name,
                sink,
                user,
                time,
            } => {
                self.queries.insert(
                    run_id.clone(),
                    QueryView {
                        id: id.clone(),
                        run_id: run_id.clone(),
                        name: name.clone(),
                        sink: sink.clone(),
                        user: user.clone(),
                        start_time: *time,
                        ended: None,
                        recent_progress: VecDeque::new(),
                    },
                );
            }
            QueryEvent::Progress { run_id, progress } => {
                if let Some(q) = self.queries.get_mut(run_id) {
                    if q.recent_progress.len() >= RECENT_PROGRESS {
                        q.recent_progress.pop_front();
                    }
                    q.recent_progress.push_back(progress.clone());
                    self.counters.streaming_batches += 1;
                }
            }
            QueryEvent::Ended {
                run_id,
                time,
                exception,
            } => {
                if let Some(q) = self.queries.get_mut(run_id)
                    && q.ended.is_none()
                {
                    q.ended = Some((*time, exception.clone()));
                    self.ended_queries.push_back(run_id.clone());
                    while self.ended_queries.len() > self.limits.ended_queries {
                        if let Some(oldest) = self.ended_queries.pop_front() {
                            self.queries.remove(&oldest);
                        }
                    }
                }
            }
        }
    }

    /// Tasks of running jobs waiting for a slot: of each started stage those neither running
    /// nor done, and every task of a stage whose inputs are all complete but that has not
    /// started.
    pub fn waiting_tasks(&self) -> u64 {
        let running = self.jobs.values().filter(|j| j.end.is_none());
        running
            .flat_map(|j| j.stage_ids.iter())
            .filter_map(|id| self.stages.get(id))
            .map(|s| match s.status {
                StageStatus::Active => (s.plan.tasks as u64)
                    .saturating_sub(s.succeeded.len() as u64)
                    .saturating_sub(s.tasks.active),
                StageStatus::Pending
                    if s.plan.inputs.iter().all(|input| {
                        self.stage_of(s.job, *input)
                            .is_some_and(|p| p.status == StageStatus::Complete)
                    }) =>
                {
                    s.plan.tasks as u64
                }
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests;
