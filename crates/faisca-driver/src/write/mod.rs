//! Writes: `COPY … TO`, `INSERT INTO` a file table, and DataFrame writers become a job whose last
//! stage writes files ([`faisca_engine::sink`]) and which the driver commits.
//!
//! A SQL `COPY` to a file path (an extension, no trailing `/`) writes one file there, as
//! DataFusion does: the job's last stage is one task, which writes under the parent directory's
//! `_temporary/`, and the commit renames the file into place (no `_SUCCESS`). DataFrame writes
//! and `INSERT`s keep Spark's layout, a directory of part files.
//!
//! Planning a write resolves the destination with the session's stores, finishes any commit that an
//! earlier driver left half-done there, applies the save mode (`error` fails on a destination that
//! holds data, `ignore` skips the job), and checks the format options, so that a bad option fails
//! before any task runs. The job's result is one row, `count`: the rows written.

use std::collections::HashMap;
use std::sync::Arc;

use crate::commit::{self, CommitOptions};
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use faisca_common::{Error, JobId, Result};
use faisca_engine::sink::{Destination, FileSinkSpec, SaveMode, WriteFormat};

pub use crate::commit::TaskFile;

use crate::session::Session;
use crate::sources::option_key;

pub mod kafka;

/// What the driver needs to finish a write job.
#[derive(Debug)]
pub enum JobWrite {
    /// Files, which the driver commits after the tasks.
    Files(Box<FileWrite>),
    /// Kafka records, which the tasks deliver (nothing to commit but the job's sources).
    Kafka(faisca_proto::KafkaSink),
}

impl JobWrite {
    /// What the tasks of the last stage are told: a file sink, or a Kafka sink.
    pub fn task_sinks(
        &self,
    ) -> (
        Option<faisca_proto::FileSink>,
        Option<faisca_proto::KafkaSink>,
    ) {
        match self {
            JobWrite::Files(files) => (Some(files.sink.clone()), None),
            JobWrite::Kafka(sink) => (None, Some(sink.clone())),
        }
    }

    /// Whether the write is one file (a SQL `COPY` to a file path): its last stage is one task.
    pub fn single_file(&self) -> bool {
        matches!(self, JobWrite::Files(f) if !f.sink.single_file.is_empty())
    }
}

/// What the driver needs to commit a write of files.
#[derive(Debug, Clone)]
pub struct FileWrite {
    /// Where the files go.
    pub destination: Destination,
    /// The save mode.
    pub mode: SaveMode,
    /// What the write tasks are told.
    pub sink: faisca_proto::FileSink,
    /// How the commit runs.
    pub commit: CommitOptions,
    /// A streaming file sink's micro-batch: after the files are published, the batch and its
    /// files are recorded in the sink's log (`_faisca_metadata/<batch>`).
    pub sink_log: Option<(crate::streaming::file_sink_log::FileSinkLog, u64)>,
}

/// A write as a statement or a DataFrame asks for it.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    /// Destination URL or path.
    pub url: String,
    /// `parquet`, `csv` or `json`.
    pub format: String,
    /// Save mode (Spark's names); `None` means `error`, or what an `OPTIONS ('mode' …)` says.
    pub mode: Option<String>,
    /// Hive-style partition columns.
    pub partition_by: Vec<String>,
    /// Options: Faísca's (`mode`, `maxRecordsPerFile`, `partitionOverwriteMode`), Spark's
    /// format names (`header`, `sep`, `compression`) or DataFusion's (`format.*`).
    pub options: HashMap<String, String>,
    /// A SQL `COPY` (DataFusion's layout: one file at a file path); `false` for DataFrame
    /// writes and `INSERT`s (Spark's: a directory of part files).
    pub copy: bool,
    /// An `INSERT INTO` a table (whose location is `url`).
    pub insert: bool,
}

/// A planned write.
#[derive(Debug)]
pub enum PlannedWrite {
    /// Nothing to do (`ignore` and the destination holds data).
    Skip,
    /// Run `input` as a job whose last stage writes.
    Job {
        /// The rows to write.
        input: LogicalPlan,
        /// The write.
        write: Arc<JobWrite>,
    },
}

/// The result schema of a write: `count`, the rows written.
pub fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// The one-row result of a write of `rows` rows.
pub fn count_batch(rows: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?)
}

/// The write a `COPY` statement asks for (save mode `error` unless its options say otherwise).
pub fn copy_request(copy: &CopyTo) -> WriteRequest {
    WriteRequest {
        url: copy.output_url.clone(),
        format: copy.file_type.get_ext(),
        mode: None,
        partition_by: copy.partition_by.clone(),
        options: copy.options.clone(),
        copy: true,
        insert: false,
    }
}

/// Whether a `COPY` to `url` writes one file, as DataFusion decides: its `single_file_output`
/// option if given, else whether the path names a file (has an extension and no trailing `/`).
fn copies_to_one_file(url: &str, options: &mut HashMap<String, String>) -> Result<bool> {
    let key = options
        .keys()
        .find(|k| {
            k.trim().to_ascii_lowercase().trim_start_matches("format.") == "single_file_output"
        })
        .cloned();
    if let Some(key) = key {
        let value = options.remove(&key).unwrap_or_default();
        return match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Error::user(format!(
                "invalid COPY option single_file_output = '{value}': expected true or false"
            ))),
        };
    }
    let last = url.trim_end().rsplit('/').next().unwrap_or("");
    Ok(!url.trim_end().ends_with('/')
        && last.contains('.')
        && !last.ends_with('.')
        && !last.starts_with('.'))
}

/// `url` split into its parent directory (with a trailing `/`) and its last segment.
fn parent_and_name(url: &str) -> Result<(String, String)> {
    let url = url.trim_end();
    match url.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() => Ok((format!("{parent}/"), name.to_string())),
        None if !url.is_empty() => Ok(("./".to_string(), url.to_string())),
        _ => Err(Error::user(format!(
            "invalid COPY destination '{url}': expected a file path or a directory"
        ))),
    }
}

/// The write an `INSERT INTO` / `INSERT OVERWRITE` of a file table asks for, or `None` when the
/// table is not a file table (an in-memory table of the driver).
pub fn insert_request(dml: &DmlStatement) -> Result<Option<WriteRequest>> {
    let WriteOp::Insert(op) = dml.op else {
        return Err(Error::user(format!(
            "{} is not supported: Faísca writes files, and files are not updated in place; rewrite the table with INSERT OVERWRITE",
            dml.op.name()
        )));
    };
    let provider = source_as_provider(&dml.target)?;
    if let Some(table) = provider.downcast_ref::<faisca_engine::kafka::KafkaTable>() {
        return Ok(Some(kafka::insert_request(table, op)));
    }
    let Some(table) = provider.downcast_ref::<ListingTable>() else {
        return Ok(None);
    };
    let mode = match op {
        InsertOp::Append => "append",
        InsertOp::Overwrite => "overwrite",
        InsertOp::Replace => {
            return Err(Error::user(format!(
                "REPLACE INTO {} is not supported: file tables have no keys; use INSERT INTO or INSERT OVERWRITE",
                dml.table_name
            )));
        }
    };
    let url = table
        .table_paths()
        .first()
        .ok_or_else(|| Error::internal(format!("table {} has no location", dml.table_name)))?
        .as_str()
        .to_string();
    let listing = table.options();
    let mut options = HashMap::new();
    if let Some(csv) = listing.format.downcast_ref::<CsvFormat>() {
        let csv = csv.options();
        if let Some(header) = csv.has_header {
            options.insert("format.has_header".into(), header.to_string());
        }
        options.insert(
            "format.delimiter".into(),
            (csv.delimiter as char).to_string(),
        );
    }
    Ok(Some(WriteRequest {
        copy: false,
        insert: true,
        url,
        format: listing.format.get_ext(),
        mode: Some(mode.into()),
        partition_by: listing
            .table_partition_cols
            .iter()
            .map(|(name, _)| name.clone())
            .collect(),
        options,
    }))
}

/// Faísca's own write options, taken out of `options`: save mode, rows per file, and whether an
/// overwrite replaces only the partitions written.
fn take_write_options(
    options: &mut HashMap<String, String>,
) -> Result<(Option<String>, u64, bool)> {
    let mut mode = None;
    let mut max_records = 0;
    let mut dynamic = false;
    for (key, value) in std::mem::take(options) {
        let name = key.trim().to_ascii_lowercase();
        let name = name.strip_prefix("format.").unwrap_or(&name).to_string();
        match name.as_str() {
            "mode" => mode = Some(value),
            "maxrecordsperfile" => {
                max_records = value.trim().parse::<i64>().map_err(|_| {
                    Error::user(format!(
                        "invalid write option maxRecordsPerFile = '{value}': expected a whole number (0 or less: no limit)"
                    ))
                })?.max(0) as u64
            }
            "partitionoverwritemode" => {
                dynamic = match value.trim().to_ascii_lowercase().as_str() {
                    "dynamic" => true,
                    "static" => false,
                    _ => {
                        return Err(Error::user(format!(
                            "invalid write option partitionOverwriteMode = '{value}': expected static or dynamic"
                        )));
                    }
                }
            }
            _ => {
                options.insert(option_key(&key), value);
            }
        }
    }
    Ok((mode, max_records, dynamic))
}

/// Plan a write of `input` as `request` says: resolve and check the destination.
pub async fn plan_write(
    session: &Session,
    mut request: WriteRequest,
    input: LogicalPlan,
) -> Result<PlannedWrite> {
    if kafka::is_kafka(&request.format) {
        session.allowed.check_kafka_options(
            request
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        return kafka::plan_kafka_write(session, request, input).await;
    }
    session.allowed.check(&request.url, "write destination")?;
    let format = WriteFormat::parse(&request.format)?;
    let single_file = request.copy && copies_to_one_file(&request.url, &mut request.options)?;
    let (option_mode, max_records_per_file, dynamic_overwrite) =
        take_write_options(&mut request.options)?;
    let (url, single_file) = if single_file {
        if !request.partition_by.is_empty() {
            return Err(Error::user(format!(
                "COPY to the file {} cannot be partitioned by {}: a partitioned COPY writes a directory (a path ending in /)",
                request.url,
                request.partition_by.join(", ")
            )));
        }
        if max_records_per_file > 0 {
            return Err(Error::user(format!(
                "COPY to the file {} cannot split it with maxRecordsPerFile: COPY to a directory (a path ending in /) instead",
                request.url
            )));
        }
        let (parent, name) = parent_and_name(&request.url)?;
        (parent, Some(name))
    } else {
        (request.url.clone(), None)
    };
    let mode = SaveMode::parse(
        request
            .mode
            .as_deref()
            .or(option_mode.as_deref())
            .unwrap_or("error"),
    )?;
    let spec = FileSinkSpec {
        url: url.clone(),
        format,
        partition_by: request.partition_by.clone(),
        max_records_per_file,
        options: request.options.clone(),
        single_file: single_file.clone(),
    };
    let state = session.ctx.state();
    let table_options = spec.table_options(state.config_options())?;
    let schema = Arc::new(input.schema().as_arrow().clone());
    faisca_engine::sink::writer::check(&spec, &table_options, &schema)?;
    let destination = Destination::resolve(&url, state.runtime_env())?;
    let concurrency = session.config.write_commit_concurrency();
    let resumed = commit::resume_pending(&destination, concurrency).await?;
    if !resumed.is_empty() {
        tracing::info!(destination = %url, jobs = ?resumed, "finished interrupted commits");
    }
    let runs = match &single_file {
        Some(name) => commit::check_file_destination(&destination, name, mode).await?,
        None => commit::check_destination(&destination, mode).await?,
    };
    if !runs {
        return Ok(PlannedWrite::Skip);
    }
    Ok(PlannedWrite::Job {
        input,
        write: Arc::new(JobWrite::Files(Box::new(FileWrite {
            destination,
            mode,
            sink: spec.to_proto(),
            commit: CommitOptions {
                dynamic_overwrite,
                concurrency,
                stop_after_manifest: session.config.test_stop_commit_after_manifest(),
            },
            sink_log: None,
        }))),
    })
}

/// The files of `scan` that readers may see: not under `_temporary/`, not hidden by a commit
/// in progress in the directory tree they belong to (see [`commit::uncommitted_files`]), and,
/// in a streaming file sink's directory, only those its log lists
/// ([`crate::streaming::file_sink_log`]).
pub async fn committed_files(
    state: &datafusion::execution::SessionState,
    scan: &faisca_planner::scans::FileScan,
) -> Result<Vec<datafusion::datasource::listing::PartitionedFile>> {
    use std::collections::BTreeSet;
    let files: Vec<_> = scan
        .files
        .iter()
        .filter(|f| !faisca_engine::sink::is_temporary(f.object_meta.location.as_ref()))
        .cloned()
        .collect();
    let roots: BTreeSet<String> = files
        .iter()
        .map(|f| table_root(f.object_meta.location.as_ref()))
        .collect();
    let store = state.runtime_env().object_store(&scan.object_store_url)?;
    let mut hidden = std::collections::HashSet::new();
    // A streaming file sink's directory: only the files its log lists are its data.
    let mut logged_roots = std::collections::HashSet::new();
    let mut listed = std::collections::HashSet::new();
    for root in &roots {
        let root_path = object_store::path::Path::from(root.as_str());
        let has_log =
            crate::streaming::file_sink_log::FileSinkLog::exists(store.as_ref(), &root_path)
                .await
                .unwrap_or(false);
        if has_log {
            let log = crate::streaming::file_sink_log::FileSinkLog::new(
                &format!("{}{root}", scan.object_store_url.as_str()),
                store.clone(),
                &root_path,
            );
            for file in log.files().await? {
                listed.insert(faisca_engine::sink::join(&root_path, &file.path)?.to_string());
            }
            logged_roots.insert(root.clone());
        }
    }
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| {
            let path = f.object_meta.location.as_ref();
            !logged_roots.contains(&table_root(path)) || listed.contains(path)
        })
        .collect();
    for root in roots {
        let destination = Destination {
            url: format!("{}{root}", scan.object_store_url.as_str()),
            store: store.clone(),
            root: object_store::path::Path::from(root.as_str()),
        };
        // A store that cannot list (a plain HTTP server) holds no Faísca commits: nothing to hide.
        let pending = match commit::uncommitted_files(&destination).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::debug!(location = %destination.url, "no commit check: {e}");
                continue;
            }
        };
        for relative in pending {
            hidden.insert(faisca_engine::sink::join(&destination.root, &relative)?.to_string());
        }
    }
    if hidden.is_empty() {
        return Ok(files);
    }
    Ok(files
        .into_iter()
        .filter(|f| !hidden.contains(f.object_meta.location.as_ref()))
        .collect())
}

/// A table's root: a file's directory above its `column=value` directories.
fn table_root(path: &str) -> String {
    let mut segments: Vec<&str> = path.split('/').collect();
    segments.pop();
    while segments.last().is_some_and(|s| s.contains('=')) {
        segments.pop();
    }
    segments.join("/")
}

/// Finish a write job whose tasks wrote `files` or sent `records`: commit the files. Returns
/// the rows written.
pub async fn commit_job(
    write: &JobWrite,
    job: &JobId,
    files: &[TaskFile],
    records: u64,
) -> Result<u64> {
    let write = match write {
        JobWrite::Files(write) => write,
        // Every record was confirmed before its task succeeded.
        JobWrite::Kafka(_) => return Ok(records),
    };
    let manifest = if write.sink.single_file.is_empty() {
        commit::plan_manifest(&write.destination, &job.0, write.mode, files, &write.commit).await?
    } else {
        commit::plan_single_file_manifest(&job.0, write.mode, files, &write.sink.single_file)?
    };
    let rows = commit::commit(&write.destination, &manifest, &write.commit).await?;
    if let Some((log, batch)) = &write.sink_log {
        let logged: Vec<_> = manifest
            .files
            .iter()
            .map(|f| crate::streaming::file_sink_log::LoggedFile::added(&f.path, f.bytes))
            .collect();
        log.commit(*batch, &logged).await?;
    }
    Ok(rows)
}

/// Remove what a failed or cancelled write job left in its temporary directory. (A Kafka write
/// cannot take back records its tasks sent: it is at-least-once.)
pub async fn abort_job(write: &JobWrite, job: &JobId) {
    let JobWrite::Files(write) = write else {
        return;
    };
    if let Err(e) = commit::abort(&write.destination, &job.0).await {
        tracing::warn!(job = %job, destination = %write.destination.url, "could not remove the temporary files of a failed write: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_options_are_taken_out_and_spark_names_mapped() {
        let mut options: HashMap<String, String> = [
            ("format.mode", "overwrite"),
            ("maxRecordsPerFile", "1000"),
            ("partitionOverwriteMode", "dynamic"),
            ("header", "true"),
            ("format.compression", "zstd"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (mode, max, dynamic) = take_write_options(&mut options).unwrap();
        assert_eq!(mode.as_deref(), Some("overwrite"));
        assert_eq!((max, dynamic), (1000, true));
        assert_eq!(
            options.get("format.has_header").map(String::as_str),
            Some("true")
        );
        assert_eq!(options.len(), 2);
        let mut bad: HashMap<String, String> =
            [("maxRecordsPerFile".to_string(), "lots".to_string())].into();
        assert!(
            take_write_options(&mut bad)
                .unwrap_err()
                .to_string()
                .contains("maxRecordsPerFile")
        );
    }
}
