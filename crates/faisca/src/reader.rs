//! `session.read()`: [`DataFrameReader`], Spark's `spark.read`.

use faisca_common::Result;
use faisca_proto::{ConfigEntry, ResolveSourceRequest};

use crate::{DataFrame, Session};

/// Reads files into a [`DataFrame`]: `session.read().option("header", "true").csv(url)`.
/// The driver resolves the source (schema inference, Hive partition directories); nothing is
/// read until an action runs.
#[derive(Debug, Clone)]
pub struct DataFrameReader {
    session: Session,
    format: String,
    options: Vec<(String, String)>,
}

impl DataFrameReader {
    pub(crate) fn new(session: Session) -> Self {
        DataFrameReader {
            session,
            format: "parquet".into(),
            options: Vec::new(),
        }
    }

    /// The format [`DataFrameReader::load`] reads: `parquet` (default), `csv`, `json` (newline
    /// delimited), `arrow` (IPC files), `kafka`.
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_string();
        self
    }

    /// A format option: Spark's names (`header`, `sep`, `quote`, `escape`, `nullValue`,
    /// `compression`, …) or DataFusion's (`format.has_header`).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// Read the source the format and options describe, as Spark's `load()`: files at the
    /// `path` option's URL, or a source that needs no path (`format("kafka")` with its
    /// `subscribe`/`subscribePattern`/`assign` option).
    pub async fn load(self) -> Result<DataFrame> {
        let path = self
            .options
            .iter()
            .rev()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("path"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let options = self
            .options
            .iter()
            .filter(|(k, _)| !k.trim().eq_ignore_ascii_case("path"))
            .map(|(k, v)| ConfigEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let request = ResolveSourceRequest {
            session_id: self.session.id().to_string(),
            format: self.format.clone(),
            location: path,
            options,
            table: String::new(),
            streaming: false,
            schema: Vec::new(),
        };
        let plan = self.session.client().resolve_source(request).await?;
        self.session.data_frame_from_driver(&plan)
    }

    /// Read the files at `url` (a file, a directory, `s3://…`, …) in the chosen format: Spark's
    /// `load(path)`.
    pub async fn load_path(self, url: &str) -> Result<DataFrame> {
        self.option("path", url).load().await
    }

    /// Read Parquet files.
    pub async fn parquet(self, url: &str) -> Result<DataFrame> {
        self.format("parquet").load_path(url).await
    }

    /// Read CSV files.
    pub async fn csv(self, url: &str) -> Result<DataFrame> {
        self.format("csv").load_path(url).await
    }

    /// Read newline-delimited JSON files.
    pub async fn json(self, url: &str) -> Result<DataFrame> {
        self.format("json").load_path(url).await
    }
}
