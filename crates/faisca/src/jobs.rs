//! What the driver says about its jobs ([`crate::client::DriverClient::job`], `list_jobs`,
//! `kill_job`) and executors (`executors`), as plain Rust values: the protocol's messages stay
//! inside the client.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use faisca_common::{Error, Result};
use faisca_proto as proto;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Tasks are running or waiting for slots.
    Running,
    /// Every task succeeded (and a write job's files are published).
    Succeeded,
    /// A task failed for good, or planning or the commit failed.
    Failed,
    /// Cancelled by a client (`faisca kill`, a dropped result stream).
    Cancelled,
    /// Every task succeeded; the driver is publishing the written files (write jobs only).
    Committing,
}

impl JobState {
    /// The upper-case name `faisca status` shows (`RUNNING`, `SUCCEEDED`, …).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Committing => "COMMITTING",
        }
    }

    /// Whether the job has ended (succeeded, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One job as the driver sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job's id (what `faisca status` and `faisca kill` take).
    pub job_id: String,
    /// The session that submitted it.
    pub session_id: String,
    /// The name given with `faisca submit --name` (empty if none).
    pub name: String,
    /// The statement, shortened to 200 characters, secrets masked.
    pub sql: String,
    /// Where the job is.
    pub state: JobState,
    /// Why the job failed or was cancelled (empty otherwise).
    pub error: String,
    /// When the driver accepted the job, in milliseconds since the Unix epoch.
    pub submitted_unix_ms: u64,
    /// Time since submission for a running job, until it ended otherwise.
    pub elapsed: Duration,
    /// The job's stages, in id order.
    pub stages: Vec<StageInfo>,
    /// The most recent failed task attempts (at most 20), oldest first.
    pub failures: Vec<TaskFailure>,
    /// The job's counters by name, summed over each task's successful attempt, e.g.
    /// `kafka.nullKeyRecordsSkipped` (records a topic read as a table skipped for a null key).
    pub metrics: BTreeMap<String, u64>,
    /// The user whose session submitted it (empty: the cluster, or authentication off).
    pub user: String,
}

/// One stage of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    /// The stage's id within its job.
    pub stage_id: u32,
    /// Tasks of the stage (one per output partition of its plan).
    pub tasks: u32,
    /// Tasks whose output is available now.
    pub done: u32,
    /// Tasks running now.
    pub running: u32,
    /// Task attempts launched in all (re-runs and retries included).
    pub attempts: u32,
    /// Attempts that failed (executor lost, task error, shuffle input lost).
    pub failed_attempts: u32,
    /// Finished tasks run again because their output was lost with an executor.
    pub rerun_tasks: u32,
    /// Times the stage found shuffle input missing.
    pub fetch_failures: u32,
    /// What the stage produces (a shuffle, the job's result, files).
    pub output: String,
    /// The stages whose output this one reads.
    pub inputs: Vec<u32>,
}

/// A failed task attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The attempt's stage.
    pub stage_id: u32,
    /// The attempt's task (its partition of the stage).
    pub partition: u32,
    /// The attempt's number for that task, from 0.
    pub attempt: u32,
    /// The executor it ran on.
    pub executor_id: String,
    /// Why it failed.
    pub message: String,
}

impl JobInfo {
    /// All of the job's task attempts that failed, summed over its stages.
    pub fn failed_attempts(&self) -> u32 {
        self.stages.iter().map(|s| s.failed_attempts).sum()
    }
}

impl TryFrom<proto::JobInfo> for JobInfo {
    type Error = Error;

    fn try_from(info: proto::JobInfo) -> Result<Self> {
        let state = match proto::JobState::try_from(info.state) {
            Ok(proto::JobState::Running) => JobState::Running,
            Ok(proto::JobState::Succeeded) => JobState::Succeeded,
            Ok(proto::JobState::Failed) => JobState::Failed,
            Ok(proto::JobState::Cancelled) => JobState::Cancelled,
            Ok(proto::JobState::Committing) => JobState::Committing,
            Err(_) => {
                return Err(Error::external_final(format!(
                    "the driver reported job {} in state {}, which this client does not know: expected a driver of the same protocol version",
                    info.job_id, info.state
                )));
            }
        };
        Ok(JobInfo {
            job_id: info.job_id,
            session_id: info.session_id,
            name: info.name,
            sql: info.sql,
            state,
            error: info.error,
            submitted_unix_ms: info.submitted_unix_ms,
            elapsed: Duration::from_millis(info.elapsed_ms),
            stages: info.stages.into_iter().map(StageInfo::from).collect(),
            failures: info.failures.into_iter().map(TaskFailure::from).collect(),
            metrics: info.metrics.into_iter().collect(),
            user: info.user,
        })
    }
}

impl From<proto::StageInfo> for StageInfo {
    fn from(s: proto::StageInfo) -> Self {
        StageInfo {
            stage_id: s.stage_id,
            tasks: s.tasks,
            done: s.done,
            running: s.running,
            attempts: s.attempts,
            failed_attempts: s.failed_attempts,
            rerun_tasks: s.rerun_tasks,
            fetch_failures: s.fetch_failures,
            output: s.output,
            inputs: s.inputs,
        }
    }
}

impl From<proto::TaskFailure> for TaskFailure {
    fn from(f: proto::TaskFailure) -> Self {
        TaskFailure {
            stage_id: f.stage_id,
            partition: f.partition,
            attempt: f.attempt,
            executor_id: f.executor_id,
            message: f.message,
        }
    }
}

/// One executor registered with the driver ([`crate::client::DriverClient::executors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorStatus {
    /// Its id.
    pub executor_id: String,
    /// Where it serves shuffle data (Arrow Flight).
    pub address: String,
    /// Task slots.
    pub cores: u32,
    /// Its memory pool, in bytes.
    pub memory_bytes: u64,
    /// Tasks running there now.
    pub running_tasks: u32,
    /// `active`, or `decommissioning` (no new tasks; it leaves once no running job needs its
    /// shuffle output, or when its grace period ends); of a departed executor `lost` (it
    /// failed) or `exited` (it left on purpose).
    pub state: String,
    /// Why a departed executor left (a lost stream, a missed heartbeat, what its launcher saw:
    /// an exit status, `OOMKilled`, `Evicted`); empty for a registered one.
    pub reason: String,
}

impl ExecutorStatus {
    /// Whether the executor is registered now (`active` or `decommissioning`).
    pub fn is_registered(&self) -> bool {
        self.state == "active" || self.state == "decommissioning"
    }
}

impl From<proto::ExecutorInfo> for ExecutorStatus {
    fn from(e: proto::ExecutorInfo) -> Self {
        ExecutorStatus {
            executor_id: e.executor_id,
            address: e.address,
            cores: e.cores,
            memory_bytes: e.memory_bytes,
            running_tasks: e.running_tasks,
            state: e.state,
            reason: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_state_converts_and_an_unknown_one_is_an_error() {
        let info = proto::JobInfo {
            job_id: "j".into(),
            state: proto::JobState::Committing as i32,
            elapsed_ms: 1500,
            stages: vec![proto::StageInfo {
                failed_attempts: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let converted = JobInfo::try_from(info.clone()).unwrap();
        assert_eq!(converted.state, JobState::Committing);
        assert!(!converted.state.is_finished());
        assert_eq!(converted.elapsed, Duration::from_millis(1500));
        assert_eq!(converted.failed_attempts(), 2);
        let unknown = proto::JobInfo { state: 99, ..info };
        let err = JobInfo::try_from(unknown).unwrap_err().to_string();
        assert!(err.contains("job j in state 99"), "{err}");
    }
}
