//! Starting a streaming query: from the client's `write_stream()…start()` request to a
//! [`QueryRun`] — the plan checked against Spark's rules for its output mode, the sink and the
//! trigger parsed, the checkpoint opened (its id, and where the query resumes).

use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::logical_expr::LogicalPlan;
use faisca_common::ids::SessionId;
use faisca_common::{Error, Result};
use faisca_engine::shuffle::FlightClients;
use faisca_proto::StartStreamingQueryRequest;

use super::check::{OutputMode, check};
use super::checkpoint::StreamCheckpoint;
use super::file_sink_log::FileSinkLog;
use super::plan::{is_streaming_scan, shape};
use super::runner::{QueryRun, Sink, Trigger};
use crate::session::Session;

/// Sink formats of a query: the driver's, and the client's (`console`; `foreachBatch`, which
/// the client library sends for `foreach_batch`).
pub const SINK_FORMATS: &[&str] = &[
    "memory",
    "parquet",
    "csv",
    "json",
    "console",
    "foreachBatch",
];

/// The trigger a request names.
pub fn parse_trigger(name: &str, interval_ms: u64) -> Result<Trigger> {
    match name.trim().to_ascii_lowercase().as_str() {
        "" | "processingtime" => Ok(Trigger::ProcessingTime(Duration::from_millis(interval_ms))),
        "availablenow" => Ok(Trigger::AvailableNow),
        "once" => Ok(Trigger::Once),
        other => Err(Error::user(format!(
            "unknown trigger '{other}': expected processingTime, availableNow or once"
        ))),
    }
}

fn option<'a>(request: &'a StartStreamingQueryRequest, name: &str) -> Option<&'a str> {
    request
        .options
        .iter()
        .rev()
        .find(|o| o.key.trim().eq_ignore_ascii_case(name))
        .map(|o| o.value.as_str())
}

/// A query ready to run from `request` on `plan` of `session`.
pub async fn prepare(
    session: &Session,
    session_id: &SessionId,
    request: &StartStreamingQueryRequest,
    plan: LogicalPlan,
    clients: Arc<FlightClients>,
) -> Result<QueryRun> {
    let mode = if request.output_mode.trim().is_empty() {
        OutputMode::Append
    } else {
        OutputMode::parse(&request.output_mode)?
    };
    check(&plan, mode, &is_streaming_scan)?;
    let shape = shape(&plan)?;
    let trigger = parse_trigger(&request.trigger, request.trigger_interval_ms)?;
    let format = request.format.trim().to_ascii_lowercase();
    let format = if format.is_empty() {
        "parquet".to_string()
    } else {
        format
    };
    let name = request.query_name.trim().to_string();
    let state = session.ctx.state();
    let sink = match format.as_str() {
        "memory" => {
            if name.is_empty() {
                return Err(Error::user(
                    "queryName must be specified for memory sink: call query_name(..) on write_stream()",
                ));
            }
            if !request.partition_by.is_empty() {
                return Err(Error::user(
                    "the memory sink cannot be partitioned: remove partition_by(..)",
                ));
            }
            Sink::Memory { name: name.clone() }
        }
        "parquet" | "csv" | "json" => {
            if mode != OutputMode::Append {
                return Err(Error::user(format!(
                    "Data source {format} does not support {} output mode; file sinks write in append mode",
                    request.output_mode.trim().to_ascii_lowercase()
                )));
            }
            let path = option(request, "path").ok_or_else(|| {
                Error::user(format!(
                    "the {format} sink needs a 'path' option: the directory to write to"
                ))
            })?;
            session.allowed.check(path, "streaming sink path")?;
            let destination = faisca_engine::sink::Destination::resolve(path, state.runtime_env())?;
            let log = FileSinkLog::new(path, destination.store.clone(), &destination.root);
            let options = request
                .options
                .iter()
                .filter(|o| {
                    let key = o.key.trim().to_ascii_lowercase();
                    key != "path" && key != "checkpointlocation"
                })
                .map(|o| (o.key.clone(), o.value.clone()))
                .collect();
            Sink::Files {
                request: crate::write::WriteRequest {
                    url: path.to_string(),
                    format: format.clone(),
                    mode: Some("append".to_string()),
                    partition_by: request.partition_by.clone(),
                    options,
                    copy: false,
                    insert: false,
                },
                log,
            }
        }
        "console" | "foreachbatch" => {
            if !request.partition_by.is_empty() {
                return Err(Error::user(format!(
                    "the {format} sink cannot be partitioned: remove partition_by(..)"
                )));
            }
            Sink::Client {
                kind: if format == "console" {
                    "console".to_string()
                } else {
                    "foreachBatch".to_string()
                },
            }
        }
        other => {
            return Err(Error::user(format!(
                "unknown streaming sink format '{other}': expected one of memory, parquet, csv, json, console (or foreach_batch(..))"
            )));
        }
    };
    let checkpoint_url = match option(request, "checkpointLocation") {
        Some(url) => {
            session.allowed.check(url, "checkpointLocation")?;
            url.to_string()
        }
        None if matches!(sink, Sink::Memory { .. } | Sink::Client { .. }) => {
            // As Spark: a memory, console or foreachBatch sink without a checkpoint gets a
            // temporary one.
            let dir = std::env::temp_dir()
                .join("faisca-checkpoints")
                .join(uuid::Uuid::new_v4().to_string());
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::external(format!(
                    "creating a temporary checkpoint directory {}: {e}",
                    dir.display()
                ))
            })?;
            dir.display().to_string()
        }
        None => {
            return Err(Error::user(
                "checkpointLocation must be specified either through option(\"checkpointLocation\", ...) on write_stream() or faisca.streaming.checkpointLocation",
            ));
        }
    };
    let url = ListingTableUrl::parse(&checkpoint_url).map_err(|e| {
        Error::user(format!(
            "checkpointLocation '{checkpoint_url}': {e}; expected a directory URL such as s3://bucket/checkpoints/query or a local path"
        ))
    })?;
    let store = state
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| Error::from(e).context(format!("checkpointLocation '{checkpoint_url}'")))?;
    let checkpoint = StreamCheckpoint::new(&checkpoint_url, store, url.prefix().clone());
    let identities: Vec<String> = shape.sources.iter().map(|s| s.source.identity()).collect();
    let state_partitions = session.config.streaming_state_partitions();
    let resume = checkpoint.open(&identities, state_partitions).await?;
    if let Some(schema) = &shape.state_schema {
        checkpoint.check_state_schema(schema).await?;
    }
    Ok(QueryRun {
        id: resume.metadata.id.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        name,
        session: session.clone(),
        session_id: session_id.clone(),
        plan,
        shape,
        mode,
        trigger,
        sink,
        checkpoint,
        resume,
        state_partitions,
        clients,
        acks: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_by_spark_name() {
        assert_eq!(
            parse_trigger("processingTime", 500).unwrap(),
            Trigger::ProcessingTime(Duration::from_millis(500))
        );
        assert_eq!(
            parse_trigger("", 0).unwrap(),
            Trigger::ProcessingTime(Duration::ZERO)
        );
        assert_eq!(
            parse_trigger("AvailableNow", 0).unwrap(),
            Trigger::AvailableNow
        );
        assert_eq!(parse_trigger("once", 0).unwrap(), Trigger::Once);
        assert!(
            parse_trigger("continuous", 0)
                .unwrap_err()
                .to_string()
                .contains("expected processingTime")
        );
    }
}
