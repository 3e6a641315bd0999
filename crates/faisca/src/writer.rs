//! `df.write()`: [`DataFrameWriter`], Spark's `DataFrame.write`.

use faisca_common::{Error, Result};
use faisca_proto::{ConfigEntry, ExecuteMode, WriteRequest};

use crate::DataFrame;

/// Writes a [`DataFrame`]'s rows to files, in parallel (one writer per task), with Spark's save
/// modes and a commit protocol: readers see all of the new files or none, and a failed job leaves
/// the destination as it was.
///
/// ```no_run
/// # async fn run(df: faisca::DataFrame) -> faisca::Result<()> {
/// df.write()
///     .mode("overwrite")
///     .partition_by(["l_shipmode"])
///     .option("maxRecordsPerFile", "1000000")
///     .parquet("s3://lake/lineitem/")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DataFrameWriter {
    df: DataFrame,
    format: String,
    mode: String,
    partition_by: Vec<String>,
    options: Vec<(String, String)>,
}

impl DataFrameWriter {
    pub(crate) fn new(df: DataFrame) -> Self {
        DataFrameWriter {
            df,
            format: "parquet".into(),
            mode: String::new(),
            partition_by: Vec::new(),
            options: Vec::new(),
        }
    }

    /// What happens when the destination already holds data: `error` / `errorifexists` (the
    /// default: the write fails), `overwrite`, `append` or `ignore` (nothing is written).
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_string();
        self
    }

    /// The format [`DataFrameWriter::save`] writes: `parquet` (default), `csv` or `json`.
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_string();
        self
    }

    /// Hive-style partition columns: rows go to `col=value/` directories and the columns are left
    /// out of the files.
    pub fn partition_by<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.partition_by = columns.into_iter().map(Into::into).collect();
        self
    }

    /// A writer option: `maxRecordsPerFile`, `partitionOverwriteMode` (`static` or `dynamic`),
    /// Spark's format names (`header`, `sep`, `compression`, …) or DataFusion's (`format.*`).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// Write to `url` (a directory: `s3://bucket/path/`, `file:///…`, a local path) in the chosen
    /// format. Returns the number of rows written (0 when `ignore` skipped the write).
    pub async fn save(self, url: &str) -> Result<u64> {
        if url.trim().is_empty() {
            return Err(Error::user(
                "no destination given for the write: expected a directory URL or path",
            ));
        }
        let write = WriteRequest {
            url: url.to_string(),
            format: self.format.clone(),
            mode: self.mode.clone(),
            partition_by: self.partition_by.clone(),
            options: self
                .options
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        let session = self.df.session();
        let result = session
            .client()
            .execute_plan(
                session.id(),
                self.df.encoded()?,
                ExecuteMode::Run,
                "",
                Some(write),
            )
            .await?;
        let batches = crate::client::collect(result.batches).await?;
        let rows = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                    .map(|a| a.value(0))
            })
            .ok_or_else(|| Error::internal("a write job returned no row count"))?;
        Ok(rows)
    }

    /// Write Parquet files.
    pub async fn parquet(self, url: &str) -> Result<u64> {
        self.format("parquet").save(url).await
    }

    /// Write CSV files.
    pub async fn csv(self, url: &str) -> Result<u64> {
        self.format("csv").save(url).await
    }

    /// Write newline-delimited JSON files.
    pub async fn json(self, url: &str) -> Result<u64> {
        self.format("json").save(url).await
    }
}
