//! Writing files with a commit protocol: parallel writers in the tasks, one publication by the
//! driver.
//!
//! A write job's last stage has a [`FileSinkSpec`] instead of shuffle output. Each task attempt
//! writes its rows with [`writer::write_task`] under its own directory,
//! `<destination>/_temporary/<job>/<partition>-<attempt>/`, and reports the files it left there.
//! Nothing a task writes is visible to readers: DataFusion's listing skips sub-directories that are
//! not `column=value`, and Faísca's scan planning drops any path with a `_temporary` segment.
//!
//! When every task succeeded the driver runs its commit (`faisca_driver::commit`): it records a manifest (the chosen attempt's
//! file for each task, and, for `overwrite`, the files being replaced), moves the files to their final
//! names, marks the manifest committed, deletes the replaced files, writes `_SUCCESS`, and removes
//! the job's temporary directory. Object stores cannot rename a directory atomically, so readers
//! consult pending manifests (the driver's `uncommitted_files`): before the committed mark they ignore
//! the new files, after it the replaced ones. A commit that stopped half-way is finished by
//! the driver's `resume_pending`, which the next write to the same destination runs first. Failed jobs
//! remove their temporary directory (the driver's `abort`); the destination never changes.

pub mod kafka;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::config::{ConfigFileType, ConfigOptions, TableOptions};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use faisca_common::{Error, Result};
use object_store::ObjectStore;
use object_store::path::Path;

/// The directory below a destination where task attempts write.
pub const TEMPORARY_DIR: &str = "_temporary";
/// The marker a committed write leaves in its destination.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// Spark's save modes: what a write does when its destination already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// Fail (Spark's default, `errorifexists`).
    ErrorIfExists,
    /// Replace what is there (all of it, or only the partitions written with
    /// `partitionOverwriteMode=dynamic`).
    Overwrite,
    /// Add files next to the existing ones.
    Append,
    /// Do nothing.
    Ignore,
}

impl SaveMode {
    /// Parse a mode name as Spark spells it (case-insensitive).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "error" | "errorifexists" | "default" => Ok(SaveMode::ErrorIfExists),
            "overwrite" => Ok(SaveMode::Overwrite),
            "append" => Ok(SaveMode::Append),
            "ignore" => Ok(SaveMode::Ignore),
            other => Err(Error::user(format!(
                "unknown save mode '{other}': expected error (errorifexists), overwrite, append or ignore"
            ))),
        }
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            SaveMode::ErrorIfExists => "error",
            SaveMode::Overwrite => "overwrite",
            SaveMode::Append => "append",
            SaveMode::Ignore => "ignore",
        }
    }
}

/// File formats Faísca writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values.
    Csv,
    /// Newline-delimited JSON.
    Json,
}

impl WriteFormat {
    /// Parse a format name (case-insensitive).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "parquet" => Ok(WriteFormat::Parquet),
            "csv" => Ok(WriteFormat::Csv),
            "json" | "ndjson" => Ok(WriteFormat::Json),
            other => Err(Error::user(format!(
                "cannot write format '{other}': expected parquet, csv or json"
            ))),
        }
    }

    /// The format's name, also the file extension.
    pub fn name(self) -> &'static str {
        match self {
            WriteFormat::Parquet => "parquet",
            WriteFormat::Csv => "csv",
            WriteFormat::Json => "json",
        }
    }

    fn config_type(self) -> ConfigFileType {
        match self {
            WriteFormat::Parquet => ConfigFileType::PARQUET,
            WriteFormat::Csv => ConfigFileType::CSV,
            WriteFormat::Json => ConfigFileType::JSON,
        }
    }
}

/// What the tasks of a write stage write, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkSpec {
    /// The destination directory URL.
    pub url: String,
    /// The file format.
    pub format: WriteFormat,
    /// Hive-style partition columns (not stored in the files).
    pub partition_by: Vec<String>,
    /// Rows after which a task starts a new file (0: no limit).
    pub max_records_per_file: u64,
    /// Format options with DataFusion's keys (`format.compression`, ...).
    pub options: HashMap<String, String>,
    /// The name of the one file a SQL `COPY` to a file path writes in `url` (its parent
    /// directory), as DataFusion does; `None`: a directory of part files.
    pub single_file: Option<String>,
}

impl FileSinkSpec {
    /// The spec a launch carries.
    pub fn from_proto(sink: &faisca_proto::FileSink) -> Result<Self> {
        Ok(FileSinkSpec {
            url: sink.url.clone(),
            format: WriteFormat::parse(&sink.format)?,
            partition_by: sink.partition_by.clone(),
            max_records_per_file: sink.max_records_per_file,
            options: sink
                .options
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
            single_file: (!sink.single_file.is_empty()).then(|| sink.single_file.clone()),
        })
    }

    /// The spec as it travels.
    pub fn to_proto(&self) -> faisca_proto::FileSink {
        let mut options: Vec<faisca_proto::ConfigEntry> = self
            .options
            .iter()
            .map(|(k, v)| faisca_proto::ConfigEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        options.sort_by(|a, b| a.key.cmp(&b.key));
        faisca_proto::FileSink {
            url: self.url.clone(),
            format: self.format.name().to_string(),
            partition_by: self.partition_by.clone(),
            max_records_per_file: self.max_records_per_file,
            options,
            single_file: self.single_file.clone().unwrap_or_default(),
        }
    }

    /// The format options of this write on top of a session's defaults; an unknown or malformed
    /// option is an error naming it.
    pub fn table_options(&self, session: &ConfigOptions) -> Result<TableOptions> {
        let mut options = TableOptions::default_from_session_config(session);
        options.set_config_format(self.format.config_type());
        for (key, value) in &self.options {
            let key = if key.contains('.') {
                key.clone()
            } else {
                format!("format.{key}")
            };
            options.set(&key, value).map_err(|e| {
                Error::user(format!(
                    "invalid {} write option '{key}' = '{value}': {e}",
                    self.format.name()
                ))
            })?;
        }
        Ok(options)
    }
}

/// A destination resolved: its store and the root path of the written tree.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The URL as the user gave it.
    pub url: String,
    /// The store holding it.
    pub store: Arc<dyn ObjectStore>,
    /// The directory files go to.
    pub root: Path,
}

impl Destination {
    /// Resolve `url` (an object-store URL or a local path) with the stores of `runtime`.
    pub fn resolve(url: &str, runtime: &RuntimeEnv) -> Result<Self> {
        let parsed = ListingTableUrl::parse(url).map_err(|e| {
            Error::user(format!(
                "invalid write destination '{url}': {e}; expected a directory URL such as s3://bucket/path/ or a local path"
            ))
        })?;
        let store = runtime.object_store(parsed.object_store())?;
        Ok(Destination {
            url: url.to_string(),
            store,
            root: parsed.prefix().clone(),
        })
    }

    /// `relative` below the root.
    pub fn child(&self, relative: &str) -> Result<Path> {
        join(&self.root, relative)
    }

    /// The job's temporary directory, relative to the root.
    pub fn job_dir(job: &str) -> String {
        format!("{TEMPORARY_DIR}/{job}")
    }

    /// A task attempt's directory, relative to the root.
    pub fn attempt_dir(job: &str, partition: u32, attempt: u32) -> String {
        format!("{TEMPORARY_DIR}/{job}/{partition}-{attempt}")
    }
}

/// `relative` (`/`-separated, already encoded) below `root`.
pub fn join(root: &Path, relative: &str) -> Result<Path> {
    let text = if root.as_ref().is_empty() {
        relative.to_string()
    } else {
        format!("{}/{relative}", root.as_ref())
    };
    Path::parse(&text).map_err(|e| Error::internal(format!("invalid object path '{text}': {e}")))
}

/// Whether a path has a `_temporary` segment: files of uncommitted task attempts.
pub fn is_temporary(path: &str) -> bool {
    path.split('/').any(|segment| segment == TEMPORARY_DIR)
}
