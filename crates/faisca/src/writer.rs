//! `df.write()`: [`DataFrameWriter`], Spark's `DataFrame.write`.

use faisca_common::{Error, Result};
use faisca_proto::{ConfigEntry, ExecuteMode, WriteRequest};

use crate::DataFrame;

/// Writes a [`DataFrame`]'s rows to files, in parallel (one writer per task), with Spark's save
/// modes and a commit protocol: readers see all of the new files or none, and a failed job leaves
/// the destination as it was. With `format("kafka")` each row becomes a Kafka record (Spark's
/// columns: `value`, and optionally `key`, `topic`, `partition`, `headers`), sent by one
/// idempotent producer per task and confirmed before the task ends: at-least-once, as Spark's
/// Kafka sink (a retried task sends its records again).
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
/// # async fn kafka(df: faisca::DataFrame) -> faisca::Result<()> {
/// df.select_expr(&["CAST(id AS VARCHAR) AS key", "to_json(named_struct('id', id)) AS value"])?
///     .write()
///     .format("kafka")
///     .option("kafka.bootstrap.servers", "127.0.0.1:9092")
///     .option("topic", "orders")
///     .save()
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

    /// The format [`DataFrameWriter::save`] writes: `parquet` (default), `csv`, `json` or
    /// `kafka`.
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

    /// A writer option: `path`, `maxRecordsPerFile`, `partitionOverwriteMode` (`static` or
    /// `dynamic`), Spark's format names (`header`, `sep`, `compression`, …) or DataFusion's
    /// (`format.*`); for Kafka, `topic` and `kafka.*` (librdkafka producer properties).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// Write as Spark's `save()`: files at the `path` option's URL, or Kafka records
    /// (`format("kafka")`, with its `topic` option or a `topic` column). Returns the number of
    /// rows written (0 when `ignore` skipped the write).
    pub async fn save(self) -> Result<u64> {
        let url = self
            .options
            .iter()
            .rev()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("path"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let kafka = self.format.trim().eq_ignore_ascii_case("kafka");
        if url.trim().is_empty() && !kafka {
            return Err(Error::user(
                "no destination given for the write: expected a directory URL or path (save_path(url), or the 'path' option)",
            ));
        }
        let options = self
            .options
            .iter()
            .filter(|(k, _)| !k.trim().eq_ignore_ascii_case("path"))
            .map(|(k, v)| ConfigEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let write = WriteRequest {
            url,
            format: self.format.clone(),
            mode: self.mode.clone(),
            partition_by: self.partition_by.clone(),
            options,
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

    /// Write to `url` (a directory: `s3://bucket/path/`, `file:///…`, a local path) in the chosen
    /// format: Spark's `save(path)`.
    pub async fn save_path(self, url: &str) -> Result<u64> {
        if url.trim().is_empty() {
            return Err(Error::user(
                "no destination given for the write: expected a directory URL or path",
            ));
        }
        self.option("path", url).save().await
    }

    /// Write Parquet files.
    pub async fn parquet(self, url: &str) -> Result<u64> {
        self.format("parquet").save_path(url).await
    }

    /// Write CSV files.
    pub async fn csv(self, url: &str) -> Result<u64> {
        self.format("csv").save_path(url).await
    }

    /// Write newline-delimited JSON files.
    pub async fn json(self, url: &str) -> Result<u64> {
        self.format("json").save_path(url).await
    }
}
