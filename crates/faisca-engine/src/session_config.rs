//! The DataFusion configuration shared by driver sessions and executor tasks.

use datafusion::prelude::SessionConfig;
use faisca_common::{Error, FaiscaConfig, Result};

/// DataFusion settings every session and task runs with: the driver cuts stages at exchanges and
/// sizes scans itself, so DataFusion must not add round-robin exchanges, must not re-split files,
/// must not share state between partitions of one scan, and must not push run-time filters across
/// what become stage boundaries. Uncorrelated scalar subqueries become joins: DataFusion's physical
/// `ScalarSubqueryExec` fills a result container shared in memory with expressions that may end up
/// in other stages (and so in other processes).
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
    (
        "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
        "false",
    ),
];

/// Build the DataFusion configuration of a session (or a task) from a Faísca configuration.
pub fn datafusion_config(config: &FaiscaConfig) -> Result<SessionConfig> {
    let mut df = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(config.batch_size());
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
