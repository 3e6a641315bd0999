//! What the driver tells the UI: one [`Event`] per thing that happened to the application, its
//! jobs, stages, tasks, executors and streaming queries.
//!
//! Events are self-contained and carry their own times (milliseconds since the Unix epoch), so
//! the [`crate::store::AppStore`] they build is the same whether they arrive live or are read
//! back from a log. They serialize as one JSON object each, tagged by `"event"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new application id in Spark's form, `app-20261203175620-1a2b`: the start time (UTC) and
/// four hex digits of `random`.
pub fn app_id(time_ms: u64, random: u16) -> String {
    let digits: String = crate::format::spark_time(time_ms)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect();
    format!("app-{digits}-{random:04x}")
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The driver started.
    ApplicationStart(ApplicationStart),
    /// The driver stopped.
    ApplicationEnd {
        /// When.
        time: u64,
    },
    /// A job was submitted: its stages as planned.
    JobStart(JobStart),
    /// A task attempt was launched.
    TaskStart(TaskStart),
    /// A task attempt ended.
    TaskEnd(TaskEnd),
    /// A job ended.
    JobEnd(JobEnd),
    /// An executor registered.
    ExecutorAdded(ExecutorAdded),
    /// An executor reported how it is doing.
    ExecutorHeartbeat(ExecutorHeartbeat),
    /// An executor left or was lost.
    ExecutorRemoved(ExecutorRemoved),
    /// A streaming query started, reported progress or ended.
    Query(QueryEvent),
}

/// The application: one driver run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStart {
    /// Its id (`app-<start time>-<random>`, as Spark's).
    pub app_id: String,
    /// Its name.
    pub app_name: String,
    /// When the driver started.
    pub time: u64,
    /// Where clients reach the driver.
    pub driver_address: String,
    /// The driver's configuration, secrets already redacted, sorted by key.
    pub config: Vec<(String, String)>,
    /// Facts about the runtime (version, cores, host).
    pub runtime: Vec<(String, String)>,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStart {
    /// The job's number in this application (Spark's `jobId`), from 0.
    pub job: u64,
    /// The driver's id of the job (what `faisca status` and `faisca kill` take).
    pub job_uuid: String,
    /// The job's name (set by the client).
    pub name: String,
    /// The SQL text, secrets redacted, or a description of the DataFrame plan.
    pub description: String,
    /// The session that submitted it.
    pub session: String,
    /// The user it belongs to (empty: the cluster, or authentication off); only they, and the
    /// cluster secret, see it in the UI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// When it was submitted.
    pub time: u64,
    /// Its stages, in the job's stage order (inputs before the stages that read them).
    pub stages: Vec<StagePlan>,
}

/// One stage of a job, as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagePlan {
    /// The stage's number within its job (as `EXPLAIN` shows it).
    pub stage: u32,
    /// Its tasks.
    pub tasks: u32,
    /// The stages whose shuffle output it reads.
    pub inputs: Vec<u32>,
    /// Where its output goes (`hash(8)`, `single`, `result`, …).
    pub output: String,
    /// Its operators, one per line, indented by depth (DataFusion's plan display).
    pub operators: String,
}

/// A launched task attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStart {
    /// The job's number.
    pub job: u64,
    /// The stage within the job.
    pub stage: u32,
    /// The task (its partition).
    pub partition: u32,
    /// The attempt, from 0.
    pub attempt: u32,
    /// Where it runs.
    pub executor: String,
    /// When it was launched.
    pub time: u64,
}

/// How a task attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskOutcome {
    /// It produced its output.
    Success,
    /// It failed.
    Failed,
    /// It was stopped (its job ended, its executor left).
    Killed,
}

/// An ended task attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEnd {
    /// The job's number.
    pub job: u64,
    /// The stage within the job.
    pub stage: u32,
    /// The task.
    pub partition: u32,
    /// The attempt.
    pub attempt: u32,
    /// Where it ran.
    pub executor: String,
    /// When the driver heard of its end.
    pub time: u64,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// How long it ran on the executor, in milliseconds.
    pub duration_ms: f64,
    /// Rows it produced.
    pub rows_written: u64,
    /// Bytes it produced (shuffle output, files).
    pub bytes_written: u64,
    /// Its named counters (`kafka.recordsRead`, `shuffle.bytesFetched`, …).
    pub metrics: BTreeMap<String, u64>,
    /// Why it failed or was stopped.
    pub error: String,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobOutcome {
    /// Its result was produced (and its commit, if it writes, succeeded).
    Succeeded,
    /// It failed, or was cancelled.
    Failed,
}

/// An ended job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEnd {
    /// The job's number.
    pub job: u64,
    /// When.
    pub time: u64,
    /// How.
    pub outcome: JobOutcome,
    /// Why it failed.
    pub error: String,
}

/// A registered executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorAdded {
    /// Its id.
    pub id: String,
    /// Its Flight address.
    pub address: String,
    /// Task slots.
    pub cores: u32,
    /// Memory its tasks may use, in bytes.
    pub memory_bytes: u64,
    /// When.
    pub time: u64,
}

/// What an executor's heartbeat said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorHeartbeat {
    /// Its id.
    pub id: String,
    /// When.
    pub time: u64,
    /// Memory its tasks hold now, in bytes.
    pub memory_used_bytes: u64,
    /// Shuffle output it holds (memory and files), in bytes.
    pub shuffle_bytes_held: u64,
}

/// An executor that left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorRemoved {
    /// Its id.
    pub id: String,
    /// When.
    pub time: u64,
    /// Why.
    pub reason: String,
    /// Whether it left on purpose (decommissioned) rather than being lost.
    pub expected: bool,
}

/// Something about a streaming query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum QueryEvent {
    /// A run started.
    Started {
        /// The query's id (stable across restarts).
        id: String,
        /// This run's id.
        run_id: String,
        /// Its name.
        name: String,
        /// Its sink.
        sink: String,
        /// The user it belongs to (empty: the cluster, or authentication off).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        user: String,
        /// When.
        time: u64,
    },
    /// A micro-batch ended: Spark's `StreamingQueryProgress` JSON.
    Progress {
        /// The run.
        run_id: String,
        /// The progress.
        progress: serde_json::Value,
    },
    /// A run ended.
    Ended {
        /// The run.
        run_id: String,
        /// When.
        time: u64,
        /// Why it failed; empty when it stopped cleanly.
        exception: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_ids_look_like_sparks() {
        assert_eq!(app_id(1_796_320_580_123, 0x1a2b), "app-20261203175620-1a2b");
    }

    #[test]
    fn events_read_back_as_they_were_written() {
        let events = vec![
            Event::JobStart(JobStart {
                job: 3,
                job_uuid: "j".into(),
                name: "n".into(),
                description: "SELECT 1".into(),
                session: "s".into(),
                user: String::new(),
                time: 5,
                stages: vec![StagePlan {
                    stage: 0,
                    tasks: 2,
                    inputs: vec![],
                    output: "result".into(),
                    operators: "ProjectionExec\n  EmptyExec".into(),
                }],
            }),
            Event::TaskEnd(TaskEnd {
                job: 3,
                stage: 0,
                partition: 1,
                attempt: 0,
                executor: "e".into(),
                time: 9,
                outcome: TaskOutcome::Failed,
                duration_ms: 1.5,
                rows_written: 0,
                bytes_written: 0,
                metrics: BTreeMap::from([("kafka.recordsRead".into(), 4)]),
                error: "boom".into(),
            }),
            Event::Query(QueryEvent::Ended {
                run_id: "r".into(),
                time: 1,
                exception: String::new(),
            }),
        ];
        for event in events {
            let line = serde_json::to_string(&event).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), event);
        }
    }
}
