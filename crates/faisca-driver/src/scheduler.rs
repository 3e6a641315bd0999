//! Job → stage → task bookkeeping. Plain data, no I/O: the actor asks it what to launch and
//! tells it what happened.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use faisca_common::ids::SessionId;
use faisca_common::{Error, ExecutorId, JobId, Result};
use faisca_proto::{
    ConfigEntry, LaunchTask, MapOutput, PartitionStats, ShuffleOutputSpec, StageInput, StageSummary,
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
}

/// Everything the actor needs to run a job.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The session that submitted it.
    pub session: SessionId,
    /// Stages, inputs first; the last one produces the result.
    pub stages: Vec<PlannedStage>,
    /// Schema of the result rows.
    pub schema: SchemaRef,
    /// Configuration tasks run with.
    pub task_config: Arc<Vec<ConfigEntry>>,
    /// `faisca.task.maxAttempts` of the session.
    pub max_attempts: u32,
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
    /// Executor holding the files.
    pub executor: ExecutorId,
    /// Its Flight address.
    pub flight_address: String,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// Rows and bytes per output partition.
    pub stats: Vec<PartitionStats>,
}

#[derive(Debug, Clone)]
enum TaskSlot {
    Pending { attempts: u32 },
    Running { executor: ExecutorId, attempt: u32 },
    Done(TaskOutput),
}

#[derive(Debug)]
struct StageProgress {
    tasks: Vec<TaskSlot>,
    remaining: usize,
    queued: bool,
}

/// The state of a job.
#[derive(Debug)]
pub enum JobStatus {
    /// Tasks are being run.
    Running,
    /// Every stage finished.
    Succeeded,
    /// The job failed with this error.
    Failed(Arc<Error>),
}

/// One job's progress.
#[derive(Debug)]
pub struct JobState {
    /// The job's id.
    pub id: JobId,
    /// What was planned.
    pub planned: PlannedJob,
    stages: Vec<StageProgress>,
    /// Where the job is.
    pub status: JobStatus,
    /// When the job was submitted.
    pub started: Instant,
}

/// What a task status means for the job.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Nothing changed for scheduling (a stale or duplicate report).
    Ignored,
    /// The task finished; its stage may have finished too.
    Finished,
    /// The task failed and goes back to the queue.
    Retry,
    /// The job failed.
    JobFailed,
}

impl JobState {
    /// A job that has not started any stage yet.
    pub fn new(id: JobId, planned: PlannedJob) -> Self {
        let stages = planned
            .stages
            .iter()
            .map(|s| StageProgress {
                tasks: vec![TaskSlot::Pending { attempts: 0 }; s.tasks as usize],
                remaining: s.tasks as usize,
                queued: false,
            })
            .collect();
        JobState {
            id,
            planned,
            stages,
            status: JobStatus::Running,
            started: Instant::now(),
        }
    }

    fn stage_done(&self, stage: u32) -> bool {
        self.stages[stage as usize].remaining == 0
    }

    /// Stages whose inputs are all done and that were not queued yet: marks them queued and returns
    /// their tasks as `(stage, partition)`. Stages with no tasks finish at once (and may make
    /// others ready), so this loops until nothing changes.
    pub fn take_ready_tasks(&mut self) -> Vec<(u32, u32)> {
        let mut ready = Vec::new();
        loop {
            let mut progressed = false;
            for i in 0..self.stages.len() {
                if self.stages[i].queued
                    || !self.planned.stages[i]
                        .inputs
                        .iter()
                        .all(|&s| self.stage_done(s))
                {
                    continue;
                }
                self.stages[i].queued = true;
                progressed = true;
                let n = self.planned.stages[i].tasks;
                ready.extend((0..n).map(|p| (i as u32, p)));
            }
            if !progressed {
                break;
            }
        }
        if self.stage_done(self.result_stage_id()) && matches!(self.status, JobStatus::Running) {
            self.status = JobStatus::Succeeded;
        }
        ready
    }

    fn result_stage_id(&self) -> u32 {
        (self.stages.len() - 1) as u32
    }

    /// Mark `(stage, partition)` as launched on `executor` and build its `LaunchTask`.
    pub fn launch(
        &mut self,
        stage: u32,
        partition: u32,
        executor: &ExecutorId,
    ) -> Result<LaunchTask> {
        let slot = self
            .stages
            .get_mut(stage as usize)
            .and_then(|s| s.tasks.get_mut(partition as usize))
            .ok_or_else(|| {
                Error::internal(format!("job {} has no task {stage}/{partition}", self.id))
            })?;
        let TaskSlot::Pending { attempts } = *slot else {
            return Err(Error::internal(format!(
                "task {stage}/{partition} of job {} is not pending",
                self.id
            )));
        };
        *slot = TaskSlot::Running {
            executor: executor.clone(),
            attempt: attempts,
        };
        let planned = &self.planned.stages[stage as usize];
        let inputs = planned
            .inputs
            .iter()
            .map(|&input| StageInput {
                stage_id: input,
                outputs: self.stages[input as usize]
                    .tasks
                    .iter()
                    .enumerate()
                    .filter_map(|(map, slot)| match slot {
                        TaskSlot::Done(out) => Some(MapOutput {
                            map_partition: map as u32,
                            attempt: out.attempt,
                            executor_id: out.executor.0.clone(),
                            flight_address: out.flight_address.clone(),
                        }),
                        _ => None,
                    })
                    .collect(),
            })
            .collect();
        Ok(LaunchTask {
            job_id: self.id.0.clone(),
            stage_id: stage,
            partition,
            attempt: attempts,
            plan: planned.plan.clone(),
            output: Some(ShuffleOutputSpec {
                partitions: planned.output_partitions,
                hash_partitioned: planned.hash_partitioned,
            }),
            inputs,
            config: self.planned.task_config.as_ref().clone(),
        })
    }

    fn running_slot(&mut self, stage: u32, partition: u32, attempt: u32) -> Option<&mut TaskSlot> {
        let slot = self
            .stages
            .get_mut(stage as usize)?
            .tasks
            .get_mut(partition as usize)?;
        match slot {
            TaskSlot::Running { attempt: a, .. } if *a == attempt => Some(slot),
            _ => None,
        }
    }

    /// A task attempt succeeded.
    pub fn task_succeeded(
        &mut self,
        stage: u32,
        partition: u32,
        attempt: u32,
        output: TaskOutput,
    ) -> TaskOutcome {
        let Some(slot) = self.running_slot(stage, partition, attempt) else {
            return TaskOutcome::Ignored;
        };
        *slot = TaskSlot::Done(output);
        self.stages[stage as usize].remaining -= 1;
        if self.stage_done(self.result_stage_id()) && matches!(self.status, JobStatus::Running) {
            self.status = JobStatus::Succeeded;
        }
        TaskOutcome::Finished
    }

    /// A task attempt failed with `error`: retried while attempts remain and the error allows it,
    /// otherwise the job fails.
    pub fn task_failed(
        &mut self,
        stage: u32,
        partition: u32,
        attempt: u32,
        error: Error,
    ) -> TaskOutcome {
        let max_attempts = self.planned.max_attempts;
        let job = self.id.clone();
        let Some(slot) = self.running_slot(stage, partition, attempt) else {
            return TaskOutcome::Ignored;
        };
        let attempts = attempt + 1;
        if error.is_retryable() && attempts < max_attempts {
            *slot = TaskSlot::Pending { attempts };
            return TaskOutcome::Retry;
        }
        let error = if error.is_retryable() {
            error.context(format!(
                "job {job} stage {stage} task {partition} failed {attempts} times; last error"
            ))
        } else {
            error
        };
        self.status = JobStatus::Failed(Arc::new(error));
        TaskOutcome::JobFailed
    }

    /// Tasks running on `executor`, as `(stage, partition, attempt)`.
    pub fn running_on(&self, executor: &ExecutorId) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            for (p, slot) in stage.tasks.iter().enumerate() {
                if let TaskSlot::Running {
                    executor: e,
                    attempt,
                } = slot
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
            for (p, slot) in stage.tasks.iter_mut().enumerate() {
                if let TaskSlot::Running { executor, attempt } = slot {
                    out.push((executor.clone(), s as u32, p as u32, *attempt));
                    *slot = TaskSlot::Pending {
                        attempts: *attempt + 1,
                    };
                }
            }
        }
        out
    }

    /// Outputs of the result stage, in task order (only meaningful once the job succeeded).
    pub fn result_outputs(&self) -> Vec<(u32, TaskOutput)> {
        self.stages[self.result_stage_id() as usize]
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(p, slot)| match slot {
                TaskSlot::Done(out) => Some((p as u32, out.clone())),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;

    fn job(max_attempts: u32) -> JobState {
        let stage = |id: u32, tasks: u32, inputs: Vec<u32>| PlannedStage {
            id,
            plan: Bytes::new(),
            hash_partitioned: false,
            output_partitions: 1,
            tasks,
            inputs,
            output_description: String::new(),
        };
        let planned = PlannedJob {
            session: SessionId("s".into()),
            stages: vec![
                stage(0, 2, vec![]),
                stage(1, 0, vec![]),
                stage(2, 1, vec![0, 1]),
            ],
            schema: Arc::new(Schema::empty()),
            task_config: Arc::new(vec![]),
            max_attempts,
        };
        JobState::new(JobId("j".into()), planned)
    }

    fn output(e: &ExecutorId) -> TaskOutput {
        TaskOutput {
            executor: e.clone(),
            flight_address: "h:1".into(),
            attempt: 0,
            stats: vec![],
        }
    }

    #[test]
    fn stages_run_in_dependency_order() {
        let e = ExecutorId("e".into());
        let mut job = job(4);
        // Stage 1 has no tasks: it is done at once; stage 2 waits for stage 0.
        assert_eq!(job.take_ready_tasks(), vec![(0, 0), (0, 1)]);
        job.launch(0, 0, &e).unwrap();
        job.launch(0, 1, &e).unwrap();
        assert_eq!(
            job.task_succeeded(0, 0, 0, output(&e)),
            TaskOutcome::Finished
        );
        assert!(job.take_ready_tasks().is_empty());
        assert_eq!(
            job.task_succeeded(0, 1, 0, output(&e)),
            TaskOutcome::Finished
        );
        assert_eq!(job.take_ready_tasks(), vec![(2, 0)]);
        let launch = job.launch(2, 0, &e).unwrap();
        assert_eq!(launch.inputs.len(), 2);
        assert_eq!(launch.inputs[0].outputs.len(), 2);
        assert!(launch.inputs[1].outputs.is_empty());
        job.task_succeeded(2, 0, 0, output(&e));
        assert!(matches!(job.status, JobStatus::Succeeded));
        assert_eq!(job.result_outputs().len(), 1);
    }

    #[test]
    fn retries_then_fails() {
        let e = ExecutorId("e".into());
        let mut job = job(2);
        job.take_ready_tasks();
        job.launch(0, 0, &e).unwrap();
        assert_eq!(
            job.task_failed(0, 0, 0, Error::external("flaky")),
            TaskOutcome::Retry
        );
        // A stale report of the old attempt changes nothing.
        assert_eq!(
            job.task_failed(0, 0, 0, Error::external("flaky")),
            TaskOutcome::Ignored
        );
        let launch = job.launch(0, 0, &e).unwrap();
        assert_eq!(launch.attempt, 1);
        assert_eq!(
            job.task_failed(0, 0, 1, Error::external("flaky")),
            TaskOutcome::JobFailed
        );
        let JobStatus::Failed(err) = &job.status else {
            panic!("job should have failed")
        };
        assert!(err.to_string().contains("failed 2 times"), "{err}");
    }

    #[test]
    fn taken_running_tasks_are_stopped_once() {
        let e = ExecutorId("e".into());
        let mut job = job(4);
        job.take_ready_tasks();
        job.launch(0, 0, &e).unwrap();
        job.launch(0, 1, &e).unwrap();
        assert_eq!(job.take_running_tasks().len(), 2);
        assert!(job.take_running_tasks().is_empty());
        // A report from a stopped attempt changes nothing.
        assert_eq!(
            job.task_succeeded(0, 0, 0, output(&e)),
            TaskOutcome::Ignored
        );
    }

    #[test]
    fn user_errors_fail_at_once() {
        let e = ExecutorId("e".into());
        let mut job = job(4);
        job.take_ready_tasks();
        job.launch(0, 1, &e).unwrap();
        assert_eq!(
            job.task_failed(0, 1, 0, Error::user("corrupt file x")),
            TaskOutcome::JobFailed
        );
    }
}
