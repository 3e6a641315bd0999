//! The DataFusion configuration shared by driver sessions and executor tasks.

use datafusion::prelude::SessionConfig;
use faisca_common::{Error, FaiscaConfig, Result};

/// DataFusion settings every session and task runs with: the driver cuts stages at exchanges and
/// sizes scans itself, so DataFusion must not add round-robin exchanges, must not re-split files,
/// must not share state between partitions of one scan, and must not push run-time filters across
/// what become stage boundaries. (Uncorrelated scalar subqueries stay DataFusion's
/// `ScalarSubqueryExec`: the planner gives every stage that reads a subquery's value its own, over
/// the subquery's stages; see `faisca_planner::stages`.)
pub const FORCED_DATAFUSION_OPTIONS: &[(&str, &str)] = &[
    (
        "datafusion.optimizer.enable_round_robin_repartition",
        "false",
    ),
    ("datafusion.optimizer.repartition_file_scans", "false"),
    (
        "datafusion.execution.enable_file_stream_work_stealing",
        "false",
    ),
    (
        "datafusion.optimizer.enable_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_aggregate_dynamic_filter_pushdown",
        "false",
    ),
];

/// Build the DataFusion configuration of a session (or a task) from a Faísca configuration. It
/// carries the session's [`faisca_common::Redaction`] ([`redaction`]) and the configuration
/// itself ([`faisca_config`]) as extensions.
pub fn datafusion_config(config: &FaiscaConfig) -> Result<SessionConfig> {
    let mut df = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(config.batch_size())
        .with_extension(std::sync::Arc::new(config.redaction()))
        .with_extension(std::sync::Arc::new(config.clone()));
    for (key, value) in config.other_pairs() {
        df.options_mut()
            .set(key, value)
            .map_err(|e| Error::user(format!("invalid configuration '{key}' = '{value}': {e}")))?;
    }
    for (key, value) in FORCED_DATAFUSION_OPTIONS {
        df.options_mut()
            .set(key, value)
            .map_err(|e| Error::internal(format!("{key}: {e}")))?;
    }
    Ok(df)
}

/// The [`faisca_common::Redaction`] of the session `config` belongs to (the default where a
/// configuration was not built by [`datafusion_config`]).
pub fn redaction(config: &SessionConfig) -> faisca_common::Redaction {
    config
        .get_extension::<faisca_common::Redaction>()
        .map(|r| r.as_ref().clone())
        .unwrap_or_default()
}

/// The Faísca configuration `config` was built from (the defaults where it was not built by
/// [`datafusion_config`]): what operators read their `faisca.*` limits from in a task.
pub fn faisca_config(config: &SessionConfig) -> std::sync::Arc<FaiscaConfig> {
    config
        .get_extension::<FaiscaConfig>()
        .unwrap_or_else(|| std::sync::Arc::new(FaiscaConfig::default()))
}

/// The `faisca.store.*` pairs of a configuration.
type StoreKeys = Vec<(String, String)>;

/// Runtimes by object-store options: tasks of sessions with the same `faisca.store.*` keys share
/// one runtime (and so their store clients and connections); every runtime shares the memory
/// pool, disk manager and caches of `base`.
#[derive(Debug, Default)]
pub struct RuntimesByStores {
    runtimes: std::sync::Mutex<
        std::collections::HashMap<
            StoreKeys,
            std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>,
        >,
    >,
}

impl RuntimesByStores {
    /// The runtime for tasks run with `config`.
    pub fn runtime(
        &self,
        base: &datafusion::execution::runtime_env::RuntimeEnv,
        config: &FaiscaConfig,
    ) -> Result<std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
        let key: StoreKeys = config
            .pairs()
            .filter(|(k, _)| k.starts_with("faisca.store."))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut runtimes = self
            .runtimes
            .lock()
            .map_err(|_| Error::internal("runtime cache lock poisoned"))?;
        if let Some(runtime) = runtimes.get(&key) {
            return Ok(runtime.clone());
        }
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(base)
            .with_object_store_registry(std::sync::Arc::new(
                faisca_connectors::stores::StoreRegistry::new(config),
            ))
            .build_arc()?;
        runtimes.insert(key, runtime.clone());
        Ok(runtime)
    }
}

/// DataFusion's logical optimizer rules that Faísca leaves out: the leaf-expression pushdown
/// pair moves `get_field(f(x), 'a')` below a filter when `f(x)` comes from an inner projection,
/// so a fallible function such as `from_avro` runs on rows the filter removes (and fails the
/// query on them); see apache/datafusion#25459 for the family of bugs.
pub const LEFT_OUT_OPTIMIZER_RULES: &[&str] =
    &["extract_leaf_expressions", "push_down_leaf_projections"];

/// DataFusion's default logical optimizer rules less [`LEFT_OUT_OPTIMIZER_RULES`], then Faísca's
/// rewrite of window aggregates' filters into arguments ([`crate::window_filter`]).
pub fn optimizer_rules()
-> Vec<std::sync::Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> {
    let mut rules: Vec<std::sync::Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> =
        datafusion::optimizer::Optimizer::new()
            .rules
            .into_iter()
            .filter(|r| !LEFT_OUT_OPTIMIZER_RULES.contains(&r.name()))
            .collect();
    rules.push(std::sync::Arc::new(
        crate::window_filter::FilterWindowAggregates,
    ));
    rules
}
