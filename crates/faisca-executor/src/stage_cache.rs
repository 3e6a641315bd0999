//! Stages prepared once per executor: the decoded plan and the task context that every task of a
//! stage on this executor shares.
//!
//! Decoding a plan and building a `TaskContext` cost more than a small task itself. A stage's tasks
//! differ only in the partition they execute, so the first task of a stage prepares it and the
//! others reuse it. Sharing one plan also lets tasks of a stage share what DataFusion computes once
//! per plan (the build side of a broadcast join). An entry is keyed by job, stage and a fingerprint
//! of everything else the launch carries (plan, inputs, configuration), so a stage re-run with new
//! input locations prepares afresh. Entries go when the job is removed, or when a task of the stage
//! fails (a retry must not reuse state of the failed run).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use faisca_common::config::{InjectedDelay, InjectedFailures};
use faisca_common::{Error, Result};
use faisca_engine::codec::decode_stage_plan;
use faisca_engine::session_config::datafusion_config;
use faisca_engine::shuffle::writer::ShuffleWriteOptions;
use faisca_engine::shuffle::{MapOutputLocation, ShuffleEnv};
use faisca_proto::LaunchTask;
use prost::Message;

use crate::ExecutorContext;

/// What the tasks of one stage share.
#[derive(Debug)]
pub struct PreparedStage {
    /// The decoded task plan.
    pub plan: Arc<dyn ExecutionPlan>,
    /// Output partitioning of a hash-partitioned stage.
    pub partitioning: Option<Partitioning>,
    /// Context the tasks execute in (functions, runtime, shuffle inputs, configuration).
    pub task_context: Arc<TaskContext>,
    /// How the tasks write their output.
    pub write_options: ShuffleWriteOptions,
    /// Whether outputs may stay in memory (`faisca.shuffle.inMemory`).
    pub in_memory: bool,
    /// Test-only injected failures (`faisca.test.failTasks`).
    pub injected_failures: Option<InjectedFailures>,
    /// Test-only injected delay (`faisca.test.taskDelay`).
    pub injected_delay: Option<InjectedDelay>,
    /// Test-only gate (`faisca.test.taskGate`): the stages whose tasks wait for the file.
    pub injected_gate: Option<(faisca_common::config::StageSelector, std::path::PathBuf)>,
}

type StageKey = (String, u32, u64);

/// Prepared stages of this executor.
#[derive(Debug, Default)]
pub struct StageCache {
    entries: Mutex<HashMap<StageKey, Arc<PreparedStage>>>,
}

fn fingerprint(launch: &LaunchTask) -> u64 {
    let mut h = DefaultHasher::new();
    launch.plan.hash(&mut h);
    launch
        .output
        .map(|o| (o.partitions, o.hash_partitioned))
        .hash(&mut h);
    for input in &launch.inputs {
        input.encode_to_vec().hash(&mut h);
    }
    launch.sink.as_ref().map(|s| s.encode_to_vec()).hash(&mut h);
    launch
        .kafka_sink
        .as_ref()
        .map(|s| s.encode_to_vec())
        .hash(&mut h);
    for entry in &launch.config {
        (&entry.key, &entry.value).hash(&mut h);
    }
    h.finish()
}

impl StageCache {
    /// The prepared stage of `launch`, preparing it if no task of the stage did yet.
    pub fn get_or_prepare(
        &self,
        context: &ExecutorContext,
        launch: &LaunchTask,
    ) -> Result<Arc<PreparedStage>> {
        let key = (launch.job_id.clone(), launch.stage_id, fingerprint(launch));
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::internal("stage cache lock poisoned"))?;
        if let Some(prepared) = entries.get(&key) {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(prepare(context, launch)?);
        entries.insert(key, prepared.clone());
        Ok(prepared)
    }

    /// Forget a stage (after one of its tasks failed).
    pub fn evict_stage(&self, job: &str, stage: u32) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(j, s, _), _| !(j == job && *s == stage));
        }
    }

    /// Forget every stage of a job.
    pub fn evict_job(&self, job: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(j, _, _), _| j != job);
        }
    }
}

fn prepare(context: &ExecutorContext, launch: &LaunchTask) -> Result<PreparedStage> {
    let config = faisca_proto::config_from_entries(&launch.config)?;
    let inputs: HashMap<u32, Vec<MapOutputLocation>> = launch
        .inputs
        .iter()
        .map(|input| {
            let outputs = input
                .outputs
                .iter()
                .map(|o| MapOutputLocation {
                    map_partition: o.map_partition,
                    attempt: o.attempt,
                    executor_id: o.executor_id.clone(),
                    flight_address: o.flight_address.clone(),
                })
                .collect();
            (input.stage_id, outputs)
        })
        .collect();
    let env = ShuffleEnv {
        job_id: launch.job_id.clone(),
        executor_id: context.id.0.clone(),
        shuffle_root: context.shuffle_root.clone(),
        inputs,
        clients: context.clients.clone(),
        fetch_concurrency: config.shuffle_fetch_concurrency(),
        memory: context.shuffle_memory.clone(),
        compress_loopback: config.shuffle_compress_loopback(),
    };
    let session_config = datafusion_config(&config)?.with_extension(Arc::new(env));
    let base = &context.base_task_context;
    let task_context = Arc::new(TaskContext::new(
        Some(format!("{}/{}", launch.job_id, launch.stage_id)),
        launch.job_id.clone(),
        session_config,
        base.scalar_functions().clone(),
        base.higher_order_functions().clone(),
        base.aggregate_functions().clone(),
        base.window_functions().clone(),
        context
            .runtimes
            .runtime(base.runtime_env().as_ref(), &config)?,
    ));
    let hash_partitioned = launch.output.unwrap_or_default().hash_partitioned;
    let (plan, partitioning) = decode_stage_plan(&launch.plan, hash_partitioned, &task_context)?;
    let plan = faisca_engine::yielding::yield_at_leaves(plan)?;
    Ok(PreparedStage {
        plan,
        partitioning,
        task_context,
        write_options: ShuffleWriteOptions::from_config(&config),
        in_memory: config.shuffle_in_memory(),
        injected_failures: config.injected_failures(),
        injected_delay: config.injected_delay(),
        injected_gate: config.injected_gate(),
    })
}
