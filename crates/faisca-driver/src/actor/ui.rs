//! What the actor tells the web UI: an [`Event`] for each job, stage, task, executor and
//! streaming query change, posted on the UI's [`EventBus`] when there is one. Posting never
//! waits; without a UI nothing is built.

use faisca_common::{ExecutorId, JobId};
use faisca_proto::{LaunchTask, StreamingQueryProgress, TaskState, TaskStatus};
use faisca_ui::events::{
    self, Event, ExecutorAdded, ExecutorHeartbeat, ExecutorRemoved, JobEnd, JobOutcome, JobStart,
    QueryEvent, StagePlan, TaskEnd, TaskOutcome, TaskStart, now_ms,
};

use super::DriverState;
use crate::scheduler::{JobState, JobStatus};

impl DriverState {
    /// Post the event `build` makes, if a UI listens.
    pub(super) fn post(&self, build: impl FnOnce() -> Event) {
        if let Some(bus) = &self.events {
            bus.post(build());
        }
    }

    pub(super) fn post_job_start(&self, job: &JobState) {
        self.post(|| {
            // The statement as `faisca status` shows it: secrets masked when it was planned.
            let description = if job.planned.sql.is_empty() {
                job.planned.name.clone()
            } else {
                job.planned.sql.clone()
            };
            Event::JobStart(JobStart {
                job: job.seq,
                job_uuid: job.id.0.clone(),
                name: job.planned.name.clone(),
                description,
                session: job.planned.session.0.clone(),
                user: job.planned.user.clone().unwrap_or_default(),
                time: now_ms(),
                stages: job
                    .planned
                    .stages
                    .iter()
                    .map(|s| StagePlan {
                        stage: s.id,
                        tasks: s.tasks,
                        inputs: s.inputs.clone(),
                        output: s.output_description.clone(),
                        operators: s.operators.clone(),
                    })
                    .collect(),
            })
        });
    }

    pub(super) fn post_task_start(&self, job: u64, task: &LaunchTask, executor: &ExecutorId) {
        self.post(|| {
            Event::TaskStart(TaskStart {
                job,
                stage: task.stage_id,
                partition: task.partition,
                attempt: task.attempt,
                executor: executor.0.clone(),
                time: now_ms(),
            })
        });
    }

    pub(super) fn post_task_end(&self, job: u64, executor: &ExecutorId, status: &TaskStatus) {
        self.post(|| {
            let succeeded = status.state == TaskState::Succeeded as i32;
            Event::TaskEnd(TaskEnd {
                job,
                stage: status.stage_id,
                partition: status.partition,
                attempt: status.attempt,
                executor: executor.0.clone(),
                time: now_ms(),
                outcome: if succeeded {
                    TaskOutcome::Success
                } else {
                    TaskOutcome::Failed
                },
                duration_ms: status.elapsed_micros as f64 / 1000.0,
                rows_written: status.rows_produced(),
                bytes_written: status.bytes_produced(),
                metrics: status.metrics.clone().into_iter().collect(),
                error: status
                    .error
                    .as_ref()
                    .map(|e| faisca_proto::error_from_task_error(e).message())
                    .unwrap_or_default(),
            })
        });
    }

    /// Attempts stopped by the driver (their job ended, their executor left): each ends as
    /// killed, or failed when `failed` (a lost executor's attempts count as failures).
    pub(super) fn post_tasks_stopped(
        &self,
        job: u64,
        executor: &ExecutorId,
        stopped: &[(u32, u32, u32)],
        failed: bool,
        reason: &str,
    ) {
        for (stage, partition, attempt) in stopped {
            self.post(|| {
                Event::TaskEnd(TaskEnd {
                    job,
                    stage: *stage,
                    partition: *partition,
                    attempt: *attempt,
                    executor: executor.0.clone(),
                    time: now_ms(),
                    outcome: if failed {
                        TaskOutcome::Failed
                    } else {
                        TaskOutcome::Killed
                    },
                    duration_ms: 0.0,
                    rows_written: 0,
                    bytes_written: 0,
                    metrics: Default::default(),
                    error: reason.to_string(),
                })
            });
        }
    }

    /// Tell the UI a job ended, once, when it did.
    pub(super) fn post_job_end_if_ended(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let (outcome, error) = match &job.status {
            JobStatus::Running | JobStatus::Committing => return,
            JobStatus::Succeeded => (JobOutcome::Succeeded, String::new()),
            JobStatus::Failed(e) | JobStatus::Cancelled(e) => (JobOutcome::Failed, e.message()),
        };
        if job.end_posted {
            return;
        }
        job.end_posted = true;
        let job = job.seq;
        self.post(|| {
            Event::JobEnd(JobEnd {
                job,
                time: now_ms(),
                outcome,
                error,
            })
        });
    }

    pub(super) fn post_executor_added(
        &self,
        id: &ExecutorId,
        address: &str,
        cores: u32,
        memory_bytes: u64,
    ) {
        self.post(|| {
            Event::ExecutorAdded(ExecutorAdded {
                id: id.0.clone(),
                address: address.to_string(),
                cores,
                memory_bytes,
                time: now_ms(),
            })
        });
    }

    pub(super) fn post_heartbeat(&self, id: &ExecutorId, memory_used: u64, shuffle_memory: u64) {
        self.post(|| {
            Event::ExecutorHeartbeat(ExecutorHeartbeat {
                id: id.0.clone(),
                time: now_ms(),
                memory_used_bytes: memory_used,
                shuffle_bytes_held: shuffle_memory,
            })
        });
    }

    pub(super) fn post_executor_removed(&self, id: &ExecutorId, reason: &str, expected: bool) {
        self.post(|| {
            Event::ExecutorRemoved(ExecutorRemoved {
                id: id.0.clone(),
                time: now_ms(),
                reason: reason.to_string(),
                expected,
            })
        });
    }

    pub(super) fn post_query(&self, build: impl FnOnce() -> QueryEvent) {
        self.post(|| Event::Query(build()));
    }
}

/// A batch's progress as Spark's `StreamingQueryProgress` JSON.
pub(super) fn progress_json(p: &StreamingQueryProgress) -> serde_json::Value {
    let offset = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
    };
    serde_json::json!({
        "id": p.id,
        "runId": p.run_id,
        "name": p.name,
        "timestamp": p.timestamp,
        "batchId": p.batch_id,
        "numInputRows": p.num_input_rows,
        "inputRowsPerSecond": p.input_rows_per_second,
        "processedRowsPerSecond": p.processed_rows_per_second,
        "durationMs": p.duration_ms,
        "eventTime": p.event_time,
        "stateOperators": p.state_operators.iter().map(|s| serde_json::json!({
            "operatorName": s.operator_name,
            "numRowsTotal": s.num_rows_total,
            "numRowsUpdated": s.num_rows_updated,
            "numRowsRemoved": s.num_rows_removed,
            "numRowsDroppedByWatermark": s.num_rows_dropped_by_watermark,
            "memoryUsedBytes": s.memory_used_bytes,
            "numShufflePartitions": s.num_state_partitions,
        })).collect::<Vec<_>>(),
        "sources": p.sources.iter().map(|s| serde_json::json!({
            "description": s.description,
            "startOffset": offset(&s.start_offset),
            "endOffset": offset(&s.end_offset),
            "latestOffset": offset(&s.latest_offset),
            "numInputRows": s.num_input_rows,
            "inputRowsPerSecond": s.input_rows_per_second,
            "processedRowsPerSecond": s.processed_rows_per_second,
        })).collect::<Vec<_>>(),
        "sink": { "description": p.sink, "numOutputRows": p.sink_num_output_rows },
    })
}

/// The application's start, with `config` redacted.
pub fn application_start(
    app_id: &str,
    driver_address: &str,
    config: &faisca_common::FaiscaConfig,
) -> Event {
    let redaction = config.redaction();
    let mut pairs: Vec<(String, String)> = config
        .pairs()
        .map(|(k, v)| (k.to_string(), redaction.value(k, v).into_owned()))
        .collect();
    pairs.sort();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Event::ApplicationStart(events::ApplicationStart {
        app_id: app_id.to_string(),
        app_name: "faisca".to_string(),
        time: now_ms(),
        driver_address: driver_address.to_string(),
        config: pairs,
        runtime: vec![
            ("faiscaVersion".into(), env!("CARGO_PKG_VERSION").into()),
            ("driverAddress".into(), driver_address.to_string()),
            ("driverHostCores".into(), cores.to_string()),
            ("os".into(), std::env::consts::OS.into()),
            ("arch".into(), std::env::consts::ARCH.into()),
        ],
    })
}
