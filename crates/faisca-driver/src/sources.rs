//! DataFrame sources the driver resolves for its clients (files of a format at a URL) and
//! temporary views made from DataFrames.
//!
//! A source is what `CREATE EXTERNAL TABLE` would make, without a name in the catalog: for files, the
//! format's table factory infers the schema and discovers Hive-style partition directories
//! (`year=2024/month=1/`). Options take DataFusion's names (`format.has_header`) or Spark's
//! (`header`, `sep`, …).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::logical_expr::{CreateExternalTable, LogicalPlan, LogicalPlanBuilder};
use faisca_common::{Error, Result};
use faisca_connectors::kafka::options::SourceOptions;
use faisca_engine::kafka::KafkaTable;
use faisca_proto::ResolveSourceRequest;

use crate::session::Session;

/// Formats a DataFrame reader accepts.
pub const FORMATS: &[&str] = &["parquet", "csv", "json", "arrow", "kafka"];

/// Spark's reader option names and DataFusion's equivalents.
const SPARK_OPTIONS: &[(&str, &str)] = &[
    ("header", "format.has_header"),
    ("sep", "format.delimiter"),
    ("delimiter", "format.delimiter"),
    ("quote", "format.quote"),
    ("escape", "format.escape"),
    ("comment", "format.comment"),
    ("nullvalue", "format.null_value"),
    ("dateformat", "format.date_format"),
    ("timestampformat", "format.timestamp_format"),
    ("compression", "format.compression"),
    ("newlinesinvalue", "format.newlines_in_values"),
];

/// A reader option as DataFusion's table factories name it.
pub fn option_key(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase();
    if let Some((_, ours)) = SPARK_OPTIONS.iter().find(|(spark, _)| *spark == lower) {
        return ours.to_string();
    }
    if lower.contains('.') {
        lower
    } else {
        format!("format.{lower}")
    }
}

/// The scan of the files at `request.location` in `request.format`.
pub async fn file_source(session: &Session, request: &ResolveSourceRequest) -> Result<LogicalPlan> {
    let format = request.format.trim().to_ascii_lowercase();
    if !FORMATS.contains(&format.as_str()) {
        return Err(Error::user(format!(
            "unknown data source format '{}': expected one of {}",
            request.format,
            FORMATS.join(", ")
        )));
    }
    let kafka = format == "kafka";
    if request.location.trim().is_empty() && !kafka {
        return Err(Error::user(format!(
            "no location given for the {format} source: expected a URL or path"
        )));
    }
    // A name of its own, so that columns of two sources joined together stay distinguishable.
    let stem: String = request
        .location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let stem = if stem.is_empty() {
        format.clone()
    } else {
        stem
    };
    let name = TableReference::bare(format!("{stem}_{}", session.sources.next_id()));
    let state = session.ctx.state();
    if kafka {
        // Kafka options go to the source as given; it normalises them where they enter.
        let options = SourceOptions::normalize(
            request
                .options
                .iter()
                .map(|o| (o.key.as_str(), o.value.as_str())),
        )?;
        let redaction = faisca_engine::session_config::redaction(state.config());
        let table = KafkaTable::from_options(&request.location, &options, &redaction)?;
        return Ok(
            LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(table)), None)?.build()?,
        );
    }
    // File formats take DataFusion's option names (`format.has_header`) or Spark's (`header`).
    let options: HashMap<String, String> = request
        .options
        .iter()
        .map(|o| (option_key(&o.key), o.value.clone()))
        .collect();
    let factory = state
        .table_factories()
        .get(&format.to_ascii_uppercase())
        .cloned()
        .ok_or_else(|| Error::internal(format!("no table factory for format {format}")))?;
    let command = CreateExternalTable::builder(
        name.clone(),
        request.location.clone(),
        format.to_ascii_uppercase(),
        Arc::new(DFSchema::empty()),
    )
    .with_options(options)
    .build();
    let provider = match factory.create(&state, &command).await {
        Ok(provider) => provider,
        Err(e) => {
            let e = crate::diagnose::name_mismatched_files(
                session,
                std::slice::from_ref(&request.location),
                e.into(),
            )
            .await;
            return Err(e.context(format!("reading {format} at '{}'", request.location)));
        }
    };
    Ok(LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?.build()?)
}

/// Formats `read_stream()` accepts.
pub const STREAM_FORMATS: &[&str] = &["kafka", "rate", "parquet", "csv", "json"];

/// A streaming file source: its schema given (IPC in `request.schema`) or inferred from the
/// files at `request.location` now, as Spark's `spark.sql.streaming.schemaInference`.
async fn file_stream_source(
    session: &Session,
    request: &ResolveSourceRequest,
    format: &str,
) -> Result<faisca_engine::streaming_source::FileSource> {
    if request.location.trim().is_empty() {
        return Err(Error::user(format!(
            "no path given for the streaming {format} source: expected the directory it watches (option \"path\" or load_path)"
        )));
    }
    let batches = faisca_connectors::file_stream::FileStreamOptions::parse(
        request
            .options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str())),
    )?;
    let format_options: HashMap<String, String> = request
        .options
        .iter()
        .filter(|o| {
            !matches!(
                o.key.trim().to_ascii_lowercase().as_str(),
                "maxfilespertrigger" | "latestfirst" | "maxfileage"
            )
        })
        .map(|o| (option_key(&o.key), o.value.clone()))
        .collect();
    let schema = if request.schema.is_empty() {
        let batch_request = ResolveSourceRequest {
            options: request
                .options
                .iter()
                .filter(|o| format_options.contains_key(&option_key(&o.key)))
                .cloned()
                .collect(),
            streaming: false,
            ..request.clone()
        };
        let missing = || {
            Error::user(format!(
                "Schema must be specified when creating a streaming source DataFrame: no {format} files at '{}' to infer it from; give one with read_stream().schema(..)",
                request.location
            ))
        };
        let plan = file_source(session, &batch_request)
            .await
            .map_err(|_| missing())?;
        let LogicalPlan::TableScan(scan) = &plan else {
            return Err(Error::internal("a file source is not a scan"));
        };
        let provider = datafusion::datasource::source_as_provider(&scan.source)?;
        if let Some(listing) =
            provider.downcast_ref::<datafusion::datasource::listing::ListingTable>()
            && !listing.options().table_partition_cols.is_empty()
        {
            return Err(Error::user(format!(
                "the streaming {format} source at '{}' has Hive partition directories ({}): not supported yet in streaming reads; read the files without partition directories",
                request.location,
                listing
                    .options()
                    .table_partition_cols
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let schema = provider.schema();
        if schema.fields().is_empty() {
            return Err(missing());
        }
        schema
    } else {
        faisca_engine::codec::schema_from_ipc(&request.schema)?
    };
    Ok(faisca_engine::streaming_source::FileSource {
        format: format.to_string(),
        path: request.location.clone(),
        format_options,
        batches,
        schema,
    })
}

/// The scan of the streaming source `request` names (`read_stream()`); `cores` is the
/// cluster's size (the rate source's default partitions).
pub async fn stream_source(
    session: &Session,
    request: &ResolveSourceRequest,
    cores: usize,
) -> Result<LogicalPlan> {
    use faisca_engine::streaming_source::{StreamSource, StreamSourceTable};
    let format = request.format.trim().to_ascii_lowercase();
    let state = session.ctx.state();
    let redaction = faisca_engine::session_config::redaction(state.config());
    let source = match format.as_str() {
        "kafka" => {
            session.allowed.check_kafka_options(
                request
                    .options
                    .iter()
                    .map(|o| (o.key.as_str(), o.value.as_str())),
            )?;
            let options = SourceOptions::normalize(
                request
                    .options
                    .iter()
                    .map(|o| (o.key.as_str(), o.value.as_str())),
            )?;
            StreamSource::Kafka(Arc::new(
                faisca_connectors::kafka::stream::StreamOptions::parse(
                    &request.location,
                    &options,
                    &redaction,
                )?,
            ))
        }
        "rate" => StreamSource::Rate(faisca_connectors::rate::RateOptions::parse(
            request
                .options
                .iter()
                .map(|o| (o.key.as_str(), o.value.as_str())),
            u32::try_from(cores.max(1)).unwrap_or(u32::MAX),
        )?),
        "parquet" | "csv" | "json" => {
            session
                .allowed
                .check(&request.location, "streaming source location")?;
            StreamSource::Files(Arc::new(
                file_stream_source(session, request, &format).await?,
            ))
        }
        _ => {
            return Err(Error::user(format!(
                "unknown streaming source format '{}': expected one of {}",
                request.format,
                STREAM_FORMATS.join(", ")
            )));
        }
    };
    let name = TableReference::bare(format!("{format}_stream_{}", session.sources.next_id()));
    let table = StreamSourceTable::new(source)?;
    Ok(LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(table)), None)?.build()?)
}

/// Register `plan` as the temporary view `name`; an existing table or view of that name is
/// replaced when `replace`, and an error otherwise.
pub fn register_view(
    session: &Session,
    name: &str,
    plan: LogicalPlan,
    replace: bool,
) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::user("a view needs a name"));
    }
    let exists = session.ctx.table_exist(name)?;
    if exists && !replace {
        return Err(Error::user(format!(
            "a table or view named '{name}' already exists: use create_or_replace_temp_view to replace it"
        )));
    }
    if exists {
        session.ctx.deregister_table(name)?;
    }
    session
        .ctx
        .register_table(name, Arc::new(ViewTable::new(plan, None)))?;
    Ok(())
}
