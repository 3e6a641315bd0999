//! Running one task: decode the stage plan, execute one partition (with the task's own counters,
//! [`faisca_engine::task_metrics`]), write shuffle output, files or Kafka records.

use std::sync::Arc;
use std::time::Instant;

use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_plan::{ExecutionPlanProperties, Partitioning};
use faisca_common::config::InjectedFailure;
use faisca_common::{Error, Result};
use faisca_engine::plan_counters::PlanCounters;
use faisca_engine::shuffle::ShuffleFiles;
use faisca_engine::shuffle::writer::{
    MemoryTarget, OutputPartitioning, write_shuffle, write_split_shuffle,
};
use faisca_engine::sink::writer::{TaskAttempt, write_task};
use faisca_engine::sink::{Destination, FileSinkSpec};
use faisca_engine::task_metrics::{TaskMetrics, for_task};
use faisca_pipeline::exec::PipelineExec;
use faisca_proto::{LaunchTask, PartitionStats, TaskState, TaskStatus, WrittenFile};

use crate::ExecutorContext;
use crate::stage_cache::PreparedStage;

/// Identifies a task attempt on this executor.
pub type TaskKey = (String, u32, u32, u32);

/// The status of a task whose future panicked.
pub fn panicked(key: &TaskKey, message: &str) -> TaskStatus {
    TaskStatus {
        job_id: key.0.clone(),
        stage_id: key.1,
        partition: key.2,
        attempt: key.3,
        state: TaskState::Failed as i32,
        // A panic is a bug in the plan's code: the same task would panic again.
        error: Some(faisca_proto::task_error(
            &faisca_common::Error::internal_final(format!("task panicked: {message}")),
        )),
        partitions: vec![],
        elapsed_micros: 0,
        written: vec![],
        records_sent: 0,
        metrics: Default::default(),
    }
}

/// The key of a launch.
pub fn task_key(t: &LaunchTask) -> TaskKey {
    (t.job_id.clone(), t.stage_id, t.partition, t.attempt)
}

/// Run `launch` to completion and describe the outcome.
pub async fn run_task(context: Arc<ExecutorContext>, launch: LaunchTask) -> TaskStatus {
    let start = Instant::now();
    tracing::info!("task started");
    let metrics = Arc::new(TaskMetrics::default());
    let result = execute(&context, &launch, metrics.clone()).await;
    let mut status = TaskStatus {
        job_id: launch.job_id.clone(),
        stage_id: launch.stage_id,
        partition: launch.partition,
        attempt: launch.attempt,
        state: TaskState::Succeeded as i32,
        error: None,
        partitions: vec![],
        elapsed_micros: start.elapsed().as_micros() as u64,
        written: vec![],
        records_sent: 0,
        metrics: metrics.snapshot().into_iter().collect(),
    };
    match result {
        Ok(TaskOutput::Shuffle(stats)) => status.partitions = stats,
        Ok(TaskOutput::Files(files)) => status.written = files,
        Ok(TaskOutput::Records(sent)) => status.records_sent = sent,
        Err(e) => {
            let e = with_files(&context, &launch, e);
            // A retry must not reuse state of this run (e.g. a failed broadcast build).
            context.stages.evict_stage(&launch.job_id, launch.stage_id);
            tracing::info!(
                elapsed_ms = status.elapsed_micros / 1000,
                "task failed: {e}"
            );
            status.state = TaskState::Failed as i32;
            status.error = Some(faisca_proto::task_error(&e));
            status.metrics.clear();
            return status;
        }
    }
    tracing::info!(
        elapsed_ms = status.elapsed_micros / 1000,
        rows = status.rows_produced(),
        bytes = status.bytes_produced(),
        counters = ?status.metrics,
        "task finished"
    );
    status
}

/// What a successful task produced.
enum TaskOutput {
    /// Shuffle output: rows and bytes per output partition.
    Shuffle(Vec<PartitionStats>),
    /// Files left in the attempt's directory of a write.
    Files(Vec<WrittenFile>),
    /// Records a Kafka write sent, every one confirmed.
    Records(u64),
}

async fn execute(
    context: &ExecutorContext,
    launch: &LaunchTask,
    metrics: Arc<TaskMetrics>,
) -> Result<TaskOutput> {
    let stage = context.stages.get_or_prepare(context, launch)?;
    inject_faults(&stage, launch).await?;
    // What the partition's scans read and its operators spilled: the plan's metrics grow by it.
    let partition = launch.partition as usize;
    let before = PlanCounters::read(&stage.plan, partition);
    let output = execute_stage(context, launch, &stage, metrics.clone()).await?;
    let grown = PlanCounters::read(&stage.plan, partition).since(&before, &stage.plan, partition);
    for (name, n) in grown {
        metrics.add_named(name.into(), n);
    }
    Ok(output)
}

/// Run the partition of `stage` that `launch` asks for, with `metrics` as its counters.
async fn execute_stage(
    context: &ExecutorContext,
    launch: &LaunchTask,
    stage: &PreparedStage,
    metrics: Arc<TaskMetrics>,
) -> Result<TaskOutput> {
    // The stage's context, with this task's own counters.
    let task_context = for_task(&stage.task_context, metrics.clone());
    if let Some(sink) = &launch.sink {
        return write_files(stage, &task_context, launch, sink)
            .await
            .map(TaskOutput::Files);
    }
    if let Some(sink) = &launch.kafka_sink {
        let stream = stage
            .plan
            .execute(launch.partition as usize, task_context.clone())?;
        // The driver's rule, which it puts in every task's configuration.
        let allowed = faisca_engine::session_config::faisca_config(task_context.session_config())
            .allowed_locations(false);
        return faisca_engine::sink::kafka::send_task(stream, sink, &allowed)
            .await
            .map(TaskOutput::Records);
    }
    let plan = stage.plan.clone();
    let input_partitions = plan.output_partitioning().partition_count();
    let files = ShuffleFiles::new(
        &context.shuffle_root,
        &launch.job_id,
        launch.stage_id,
        launch.partition,
        launch.attempt,
    );
    let memory = stage.in_memory.then(|| MemoryTarget {
        store: &context.shuffle_memory,
        key: (
            launch.job_id.clone(),
            launch.stage_id,
            launch.partition,
            launch.attempt,
        ),
        reservation: MemoryConsumer::new(format!(
            "shuffle output {}/{}/{}",
            launch.job_id, launch.stage_id, launch.partition
        ))
        .register(&stage.task_context.runtime_env().memory_pool),
    });
    let partition = launch.partition as usize;
    let mut options = stage.write_options.clone();
    options.task_metrics = Some(metrics);
    // A pipeline that computes the stage's hash partitioning splits its rows itself.
    let fused_split = match (&stage.partitioning, plan.downcast_ref::<PipelineExec>()) {
        (Some(Partitioning::Hash(keys, count)), Some(pipeline))
            if pipeline.splits_like(keys, *count) =>
        {
            Some((pipeline, *count))
        }
        _ => None,
    };
    let stats = match fused_split {
        Some((pipeline, count)) => {
            let split = pipeline.execute_split(partition, task_context.clone())?;
            write_split_shuffle(plan.schema(), split, count, &files, options, memory).await?
        }
        None => {
            let stream = plan.execute(partition, task_context.clone())?;
            let output_partitioning = match stage.partitioning.clone() {
                Some(p) => OutputPartitioning::Repartition(p),
                None => OutputPartitioning::Single,
            };
            write_shuffle(
                stream,
                output_partitioning,
                partition,
                input_partitions,
                &files,
                options,
                memory,
            )
            .await?
        }
    };
    Ok(TaskOutput::Shuffle(
        stats
            .into_iter()
            .map(|s| PartitionStats {
                rows: s.rows,
                bytes: s.bytes,
            })
            .collect(),
    ))
}

/// A write task: its partition's rows → files under its attempt directory.
async fn write_files(
    stage: &PreparedStage,
    context: &Arc<TaskContext>,
    launch: &LaunchTask,
    sink: &faisca_proto::FileSink,
) -> Result<Vec<WrittenFile>> {
    let spec = FileSinkSpec::from_proto(sink)?;
    let options = spec.table_options(context.session_config().options())?;
    let destination = Destination::resolve(&spec.url, context.runtime_env().as_ref())?;
    let stream = stage
        .plan
        .execute(launch.partition as usize, context.clone())?;
    let attempt = TaskAttempt {
        job: launch.job_id.clone(),
        partition: launch.partition,
        attempt: launch.attempt,
    };
    write_task(stream, &spec, &options, &destination, &attempt).await
}

/// A data error (a corrupt page, a value that does not fit) raised while the task read files
/// says which files those were: DataFusion's readers do not name them.
fn with_files(context: &ExecutorContext, launch: &LaunchTask, error: Error) -> Error {
    let message = error.to_string();
    let reading = ["Parquet error", "Arrow error", "Csv error", "Json error"];
    if error.fault() != faisca_common::Fault::User
        || !reading.iter().any(|r| message.contains(r))
        || message.contains("://")
    {
        return error;
    }
    let Ok(stage) = context.stages.get_or_prepare(context, launch) else {
        return error;
    };
    let files = faisca_engine::scan_files::task_files(&stage.plan, launch.partition as usize);
    match files.len() {
        0 => error,
        1 => error.context(format!("reading {}", files[0])),
        n => error.context(format!(
            "reading one of {n} files: {}",
            files.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Apply the test-only `faisca.test.taskDelay` and `faisca.test.failTasks` rules to this attempt.
async fn inject_faults(stage: &PreparedStage, launch: &LaunchTask) -> Result<()> {
    if let Some(delay) = stage.injected_delay
        && delay.stages.matches(launch.stage_id)
    {
        tokio::time::sleep(delay.delay).await;
    }
    if let Some((stages, path)) = &stage.injected_gate
        && stages.matches(launch.stage_id)
    {
        // Until the test opens the gate; a cancelled task stops waiting with it.
        tracing::info!(
            "waiting until {} exists (faisca.test.taskGate)",
            path.display()
        );
        while !tokio::fs::try_exists(path).await.unwrap_or(false) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    match stage.injected_failures {
        Some(rule) if rule.stages.matches(launch.stage_id) && launch.attempt < rule.attempts => {
            let message = format!(
                "injected failure of attempt {} of task {}/{} (faisca.test.failTasks)",
                launch.attempt, launch.stage_id, launch.partition
            );
            Err(match rule.kind {
                InjectedFailure::Retryable => Error::external(message),
                InjectedFailure::User => Error::user(message),
                InjectedFailure::Plan => Error::internal_final(message),
            })
        }
        _ => Ok(()),
    }
}
