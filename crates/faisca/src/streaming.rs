//! Structured streaming, Spark's API: `session.read_stream()` ([`DataStreamReader`]) makes a
//! streaming DataFrame, the usual verbs (with [`crate::DataFrame::with_watermark`],
//! [`crate::functions::window`] and `group_by(..).agg(..)`) transform it, and
//! `df.write_stream()…start()` ([`DataStreamWriter`]) starts a query on the driver, which runs
//! one micro-batch job per trigger until stopped. A [`StreamingQuery`] is the client's handle:
//! status, progress, stop, wait.
//!
//! ```no_run
//! # async fn run(session: faisca::Session) -> faisca::Result<()> {
//! use faisca::functions::{col, window};
//! let events = session
//!     .read_stream()
//!     .format("kafka")
//!     .option("kafka.bootstrap.servers", "127.0.0.1:9092")
//!     .option("subscribe", "events")
//!     .load()
//!     .await?
//!     .select_expr(&["CAST(value AS VARCHAR) AS key", "timestamp"])?
//!     .with_watermark("timestamp", "10 seconds")?;
//! let counts = events
//!     .group_by(vec![window(col("timestamp"), "10 seconds", None)?, col("key")])?
//!     .count()?;
//! let query = counts
//!     .write_stream()
//!     .format("parquet")
//!     .option("path", "/data/counts")
//!     .option("checkpointLocation", "/data/checkpoints/counts")
//!     .trigger(faisca::Trigger::AvailableNow)
//!     .start()
//!     .await?;
//! query.await_termination(None).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use faisca_common::{Error, Result};
use faisca_proto::{
    ConfigEntry, GetStreamingQueryRequest, ListStreamingQueriesRequest, ResolveSourceRequest,
    StartStreamingQueryRequest, StopStreamingQueryRequest, StreamingQueryInfo,
};

use crate::{DataFrame, Session};

/// Reads a streaming source into a streaming [`DataFrame`]: Spark's `spark.readStream`.
#[derive(Debug, Clone)]
pub struct DataStreamReader {
    session: Session,
    format: String,
    options: Vec<(String, String)>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

impl DataStreamReader {
    pub(crate) fn new(session: Session) -> Self {
        DataStreamReader {
            session,
            format: String::new(),
            options: Vec::new(),
            schema: None,
        }
    }

    /// The rows' schema of a file source (Spark requires one; without it the schema is
    /// inferred from the files in the directory when the source is loaded).
    pub fn schema(mut self, schema: datafusion::arrow::datatypes::SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Watch the directory `url` (a file source): Spark's `load(path)`.
    pub async fn load_path(self, url: &str) -> Result<DataFrame> {
        self.option("path", url).load().await
    }

    /// The source: `kafka` (the batch source's options, with streaming's rules:
    /// `maxOffsetsPerTrigger`, `minOffsetsPerTrigger`, `maxTriggerDelay`), `rate`
    /// (`rowsPerSecond`, `rampUpTime`, `numPartitions`), or new files of a directory in
    /// `parquet`, `csv` or `json` (`path`, `maxFilesPerTrigger`, `latestFirst`, `maxFileAge`,
    /// and the format's options), each file read once.
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_string();
        self
    }

    /// A source option.
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// The source as a streaming DataFrame (nothing is read until a query starts).
    pub async fn load(self) -> Result<DataFrame> {
        if self.format.trim().is_empty() {
            return Err(Error::user(
                "read_stream() needs a format: format(\"kafka\") or format(\"rate\")",
            ));
        }
        let path = self
            .options
            .iter()
            .rev()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("path"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let request = ResolveSourceRequest {
            session_id: self.session.id().to_string(),
            format: self.format.clone(),
            location: path,
            options: self
                .options
                .iter()
                .filter(|(k, _)| !k.trim().eq_ignore_ascii_case("path"))
                .map(|(k, v)| ConfigEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            table: String::new(),
            streaming: true,
            schema: match &self.schema {
                Some(schema) => faisca_engine::codec::schema_to_ipc(schema)?,
                None => Vec::new(),
            },
        };
        let plan = self.session.client().resolve_source(request).await?;
        self.session.data_frame_from_driver(&plan)
    }
}

/// When a query's micro-batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every interval (zero: as soon as the previous one ended), when there is data.
    ProcessingTime(Duration),
    /// Everything available when the query starts, in as many batches as the source limits
    /// (`maxOffsetsPerTrigger`) make; then the query stops.
    AvailableNow,
    /// One batch of what is available; then the query stops.
    Once,
}

/// What `foreach_batch` runs on each batch: the batch's rows and its id.
pub type BatchFunction =
    Arc<dyn Fn(DataFrame, u64) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Starts a streaming query of a [`DataFrame`]: Spark's `df.writeStream`.
#[derive(Clone)]
pub struct DataStreamWriter {
    df: DataFrame,
    format: String,
    options: Vec<(String, String)>,
    output_mode: String,
    trigger: Trigger,
    query_name: String,
    partition_by: Vec<String>,
    batch_function: Option<BatchFunction>,
}

impl std::fmt::Debug for DataStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStreamWriter")
            .field("format", &self.format)
            .field("output_mode", &self.output_mode)
            .field("trigger", &self.trigger)
            .field("query_name", &self.query_name)
            .finish()
    }
}

impl DataStreamWriter {
    pub(crate) fn new(df: DataFrame) -> Self {
        DataStreamWriter {
            df,
            format: "parquet".to_string(),
            options: Vec::new(),
            output_mode: "append".to_string(),
            trigger: Trigger::ProcessingTime(Duration::ZERO),
            query_name: String::new(),
            partition_by: Vec::new(),
            batch_function: None,
        }
    }

    /// Runs `f` on each batch's rows and id, in this client (Spark's `foreachBatch`): the
    /// driver holds the batch until `f` returns, then commits it; an error from `f` fails the
    /// query. At-least-once: a batch `f` had not finished when the query stopped runs again
    /// after a restart. The query stops when this client's session closes.
    pub fn foreach_batch<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(DataFrame, u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        self.format = "foreachBatch".to_string();
        self.batch_function = Some(Arc::new(move |df, batch| Box::pin(f(df, batch))));
        self
    }

    /// The sink: `parquet` (default), `csv`, `json` (append mode; exactly once through the
    /// sink's `_faisca_metadata` log), `memory` (a temporary table of the session named by
    /// [`Self::query_name`]) or `console` (each batch printed by this client, `numRows` rows,
    /// as Spark's; the query stops when this client's session closes).
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_string();
        self
    }

    /// A sink option: `path` (file sinks), `checkpointLocation`, format options.
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// `append` (default), `update` or `complete`, as Spark's.
    pub fn output_mode(mut self, mode: &str) -> Self {
        self.output_mode = mode.to_string();
        self
    }

    /// When batches run (default: one after another as data arrives).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// The query's name (the memory sink's table).
    pub fn query_name(mut self, name: &str) -> Self {
        self.query_name = name.to_string();
        self
    }

    /// Hive-style partition columns of a file sink.
    pub fn partition_by<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.partition_by = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Starts the query on the driver; it runs until stopped (or, with `AvailableNow` and
    /// `Once`, until its data is processed), whether or not this client stays.
    pub async fn start(self) -> Result<StreamingQuery> {
        if !self.df.is_streaming() {
            return Err(Error::user(
                "'writeStream' can be called only on streaming Dataset/DataFrame: read the source with session.read_stream()",
            ));
        }
        let (trigger, interval) = match self.trigger {
            Trigger::ProcessingTime(d) => ("processingTime", d.as_millis() as u64),
            Trigger::AvailableNow => ("availableNow", 0),
            Trigger::Once => ("once", 0),
        };
        let session = self.df.session().clone();
        let batch_function = match self.format.trim().to_ascii_lowercase().as_str() {
            "console" => {
                let rows = match self
                    .options
                    .iter()
                    .rev()
                    .find(|(k, _)| k.eq_ignore_ascii_case("numRows"))
                {
                    Some((_, v)) => v.trim().parse::<usize>().map_err(|_| {
                        Error::user(format!(
                            "console sink option 'numRows' is '{v}': expected a whole number"
                        ))
                    })?,
                    None => 20,
                };
                Some(console(rows))
            }
            "foreachbatch" => self.batch_function.clone(),
            _ => None,
        };
        let request = StartStreamingQueryRequest {
            session_id: session.id().to_string(),
            logical_plan: self.df.encoded()?,
            format: self.format,
            options: self
                .options
                .into_iter()
                .map(|(key, value)| ConfigEntry { key, value })
                .collect(),
            output_mode: self.output_mode,
            trigger: trigger.to_string(),
            trigger_interval_ms: interval,
            query_name: self.query_name,
            partition_by: self.partition_by,
        };
        let info = session
            .client()
            .control()
            .start_streaming_query(request)
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, "starting a streaming query"))?
            .into_inner();
        let client_sink = batch_function.map(|f| {
            Arc::new(ClientSink {
                task: tokio::spawn(serve_batches(session.clone(), info.run_id.clone(), f)),
            })
        });
        Ok(StreamingQuery {
            session,
            info,
            _client_sink: client_sink,
        })
    }
}

/// Spark's console sink: each batch's first `rows` rows, under a `Batch: N` banner.
fn console(rows: usize) -> BatchFunction {
    Arc::new(move |df: DataFrame, batch: u64| {
        Box::pin(async move {
            println!(
                "-------------------------------------------\nBatch: {batch}\n-------------------------------------------"
            );
            df.show_n(rows).await
        })
    })
}

/// The client's side of a client sink: hands each pending batch to `f` and acknowledges it.
/// Owned by the query's handles ([`ClientSink`]); ends when the query ends.
async fn serve_batches(session: Session, run_id: String, f: BatchFunction) {
    let mut served: Option<u64> = None;
    loop {
        let info = match session
            .client()
            .control()
            .get_streaming_query(GetStreamingQueryRequest { id: run_id.clone() })
            .await
        {
            Ok(info) => info.into_inner(),
            Err(status) => {
                tracing::warn!(run = %run_id, "a client sink lost its query: {}", status.message());
                return;
            }
        };
        if !info.active {
            return;
        }
        let batch = info.pending_batch_id;
        if info.has_pending_batch && served != Some(batch) {
            let outcome = match session.table(&info.pending_table).await {
                Ok(df) => f(df, batch).await,
                Err(e) => Err(e),
            };
            let ack = faisca_proto::AckStreamingBatchRequest {
                run_id: run_id.clone(),
                batch_id: batch,
                error: outcome.err().map(|e| e.to_string()).unwrap_or_default(),
            };
            if let Err(status) = session.client().control().ack_streaming_batch(ack).await {
                tracing::warn!(run = %run_id, batch, "acknowledging a batch: {}", status.message());
            }
            served = Some(batch);
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A client sink's task; it stops when the last handle of its query is dropped.
#[derive(Debug)]
struct ClientSink {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ClientSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running (or ended) streaming query: Spark's `StreamingQuery`. With a client sink
/// (`console`, `foreach_batch`) the handles also run the sink: dropping the last one stops
/// serving batches (and closing the session stops the query).
#[derive(Debug, Clone)]
pub struct StreamingQuery {
    session: Session,
    info: StreamingQueryInfo,
    /// Held for its `Drop`: the client sink serves batches while a handle lives.
    _client_sink: Option<Arc<ClientSink>>,
}

/// What a query is doing now: Spark's `StreamingQueryStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingQueryStatus {
    /// A description (`Waiting for data to arrive`, `Processing new data`, `Stopped`, …).
    pub message: String,
    /// Whether the last look at the sources found data.
    pub is_data_available: bool,
    /// Whether a batch is running.
    pub is_trigger_active: bool,
}

/// One source's part in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceProgress {
    /// The source.
    pub description: String,
    /// Where the batch started (the source's JSON).
    pub start_offset: String,
    /// Where it ended.
    pub end_offset: String,
    /// How far the source reached when the batch was planned.
    pub latest_offset: String,
    /// Rows read.
    pub num_input_rows: u64,
    /// Rows per second arriving (since the previous batch).
    pub input_rows_per_second: f64,
    /// Rows per second processed.
    pub processed_rows_per_second: f64,
}

/// A stateful operator's part in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOperatorProgress {
    /// The operator.
    pub operator_name: String,
    /// State rows after the batch.
    pub num_rows_total: u64,
    /// State rows the batch changed.
    pub num_rows_updated: u64,
    /// State rows the batch removed.
    pub num_rows_removed: u64,
    /// Input rows dropped as late.
    pub num_rows_dropped_by_watermark: u64,
    /// Memory the state holds.
    pub memory_used_bytes: u64,
    /// The operator's state partitions.
    pub num_state_partitions: u64,
}

/// One micro-batch's progress: Spark's `StreamingQueryProgress`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingQueryProgress {
    /// The query's id.
    pub id: String,
    /// The run's id.
    pub run_id: String,
    /// The query's name.
    pub name: String,
    /// When the trigger started (RFC 3339).
    pub timestamp: String,
    /// The batch.
    pub batch_id: u64,
    /// Rows read.
    pub num_input_rows: u64,
    /// Rows per second arriving.
    pub input_rows_per_second: f64,
    /// Rows per second processed.
    pub processed_rows_per_second: f64,
    /// Phases in milliseconds.
    pub duration_ms: BTreeMap<String, u64>,
    /// `watermark` (and `max`), RFC 3339.
    pub event_time: BTreeMap<String, String>,
    /// Each source's part.
    pub sources: Vec<SourceProgress>,
    /// Each stateful operator's part.
    pub state_operators: Vec<StateOperatorProgress>,
    /// The sink.
    pub sink: String,
    /// Rows the sink received (-1 when unknown).
    pub sink_num_output_rows: i64,
}

fn json_or_string(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

impl StreamingQueryProgress {
    fn from_proto(p: faisca_proto::StreamingQueryProgress) -> Self {
        StreamingQueryProgress {
            id: p.id,
            run_id: p.run_id,
            name: p.name,
            timestamp: p.timestamp,
            batch_id: p.batch_id,
            num_input_rows: p.num_input_rows,
            input_rows_per_second: p.input_rows_per_second,
            processed_rows_per_second: p.processed_rows_per_second,
            duration_ms: p.duration_ms.into_iter().collect(),
            event_time: p.event_time.into_iter().collect(),
            sources: p
                .sources
                .into_iter()
                .map(|s| SourceProgress {
                    description: s.description,
                    start_offset: s.start_offset,
                    end_offset: s.end_offset,
                    latest_offset: s.latest_offset,
                    num_input_rows: s.num_input_rows,
                    input_rows_per_second: s.input_rows_per_second,
                    processed_rows_per_second: s.processed_rows_per_second,
                })
                .collect(),
            state_operators: p
                .state_operators
                .into_iter()
                .map(|s| StateOperatorProgress {
                    operator_name: s.operator_name,
                    num_rows_total: s.num_rows_total,
                    num_rows_updated: s.num_rows_updated,
                    num_rows_removed: s.num_rows_removed,
                    num_rows_dropped_by_watermark: s.num_rows_dropped_by_watermark,
                    memory_used_bytes: s.memory_used_bytes,
                    num_state_partitions: s.num_state_partitions,
                })
                .collect(),
            sink: p.sink,
            sink_num_output_rows: p.sink_num_output_rows,
        }
    }

    /// The progress as Spark's JSON (camelCase names).
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "id": self.id,
            "runId": self.run_id,
            "name": if self.name.is_empty() { serde_json::Value::Null } else { self.name.clone().into() },
            "timestamp": self.timestamp,
            "batchId": self.batch_id,
            "numInputRows": self.num_input_rows,
            "inputRowsPerSecond": self.input_rows_per_second,
            "processedRowsPerSecond": self.processed_rows_per_second,
            "durationMs": self.duration_ms,
            "eventTime": self.event_time,
            "stateOperators": self.state_operators.iter().map(|s| serde_json::json!({
                "operatorName": s.operator_name,
                "numRowsTotal": s.num_rows_total,
                "numRowsUpdated": s.num_rows_updated,
                "numRowsRemoved": s.num_rows_removed,
                "numRowsDroppedByWatermark": s.num_rows_dropped_by_watermark,
                "memoryUsedBytes": s.memory_used_bytes,
                "numShufflePartitions": s.num_state_partitions,
            })).collect::<Vec<_>>(),
            "sources": self.sources.iter().map(|s| serde_json::json!({
                "description": s.description,
                "startOffset": json_or_string(&s.start_offset),
                "endOffset": json_or_string(&s.end_offset),
                "latestOffset": json_or_string(&s.latest_offset),
                "numInputRows": s.num_input_rows,
                "inputRowsPerSecond": s.input_rows_per_second,
                "processedRowsPerSecond": s.processed_rows_per_second,
            })).collect::<Vec<_>>(),
            "sink": {
                "description": self.sink,
                "numOutputRows": self.sink_num_output_rows,
            },
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}

impl StreamingQuery {
    pub(crate) fn from_info(session: Session, info: StreamingQueryInfo) -> Self {
        StreamingQuery {
            session,
            info,
            _client_sink: None,
        }
    }

    /// The query's id: the same across restarts from its checkpoint.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.info.run_id
    }

    /// The query's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        (!self.info.name.is_empty()).then_some(self.info.name.as_str())
    }

    async fn fetch(&self) -> Result<StreamingQueryInfo> {
        // By run id: a later run of the same query is another StreamingQuery.
        Ok(self
            .session
            .client()
            .control()
            .get_streaming_query(GetStreamingQueryRequest {
                id: self.info.run_id.clone(),
            })
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, "asking for a streaming query"))?
            .into_inner())
    }

    /// Whether the query is running.
    pub async fn is_active(&self) -> Result<bool> {
        Ok(self.fetch().await?.active)
    }

    /// What the query is doing now.
    pub async fn status(&self) -> Result<StreamingQueryStatus> {
        let info = self.fetch().await?;
        Ok(StreamingQueryStatus {
            message: info.status_message,
            is_data_available: info.is_data_available,
            is_trigger_active: info.is_trigger_active,
        })
    }

    /// The last batch's progress, if a batch ran.
    pub async fn last_progress(&self) -> Result<Option<StreamingQueryProgress>> {
        Ok(self
            .fetch()
            .await?
            .recent_progress
            .pop()
            .map(StreamingQueryProgress::from_proto))
    }

    /// The recent batches' progress, oldest first (`faisca.streaming.recentProgress` of them).
    pub async fn recent_progress(&self) -> Result<Vec<StreamingQueryProgress>> {
        Ok(self
            .fetch()
            .await?
            .recent_progress
            .into_iter()
            .map(StreamingQueryProgress::from_proto)
            .collect())
    }

    /// Why the query failed, once it ended with an error.
    pub async fn exception(&self) -> Result<Option<String>> {
        let info = self.fetch().await?;
        Ok((!info.exception.is_empty()).then_some(info.exception))
    }

    /// Stops the query (the running batch finishes first) and waits until it stopped.
    pub async fn stop(&self) -> Result<()> {
        self.session
            .client()
            .control()
            .stop_streaming_query(StopStreamingQueryRequest {
                id: self.info.run_id.clone(),
            })
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, "stopping a streaming query"))?;
        Ok(())
    }

    /// Waits until the query ends (`None`: however long that takes) and returns whether it
    /// ended; a query that failed returns its error, as Spark's `awaitTermination` throws.
    pub async fn await_termination(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut poll = Duration::from_millis(10);
        loop {
            let info = self.fetch().await?;
            if !info.active {
                if !info.exception.is_empty() {
                    return Err(Error::user(format!(
                        "streaming query {} ({}) terminated with exception: {}",
                        info.id, info.run_id, info.exception
                    )));
                }
                return Ok(true);
            }
            if let Some(deadline) = deadline
                && tokio::time::Instant::now() >= deadline
            {
                return Ok(false);
            }
            let mut wait = poll;
            if let Some(deadline) = deadline {
                wait = wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::time::sleep(wait).await;
            poll = (poll * 2).min(Duration::from_millis(200));
        }
    }
}

/// A streaming query as `faisca status` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingQuerySummary {
    /// The query's id.
    pub id: String,
    /// The run's id.
    pub run_id: String,
    /// Its name, or empty.
    pub name: String,
    /// Whether it runs.
    pub active: bool,
    /// What it is doing (or `Stopped`, `Terminated with exception`).
    pub status: String,
    /// Why it failed, or empty.
    pub exception: String,
    /// Its sink.
    pub sink: String,
    /// Its checkpoint.
    pub checkpoint: String,
    /// Its last batch's progress.
    pub last_progress: Option<StreamingQueryProgress>,
}

impl StreamingQuerySummary {
    pub(crate) fn from_proto(mut info: StreamingQueryInfo) -> Self {
        StreamingQuerySummary {
            last_progress: info
                .recent_progress
                .pop()
                .map(StreamingQueryProgress::from_proto),
            id: info.id,
            run_id: info.run_id,
            name: info.name,
            active: info.active,
            status: info.status_message,
            exception: info.exception,
            sink: info.sink,
            checkpoint: info.checkpoint,
        }
    }

    /// `active`, `stopped` or `failed`.
    pub fn state(&self) -> &'static str {
        if self.active {
            "active"
        } else if self.exception.is_empty() {
            "stopped"
        } else {
            "failed"
        }
    }
}

/// The session's view of its driver's streaming queries: Spark's `spark.streams`.
#[derive(Debug, Clone)]
pub struct StreamingQueryManager {
    session: Session,
}

impl StreamingQueryManager {
    pub(crate) fn new(session: Session) -> Self {
        StreamingQueryManager { session }
    }

    async fn list(&self, active_only: bool) -> Result<Vec<StreamingQuery>> {
        let queries = self
            .session
            .client()
            .control()
            .list_streaming_queries(ListStreamingQueriesRequest { active_only })
            .await
            .map_err(|s| faisca_proto::error_from_status(&s, "listing streaming queries"))?
            .into_inner()
            .queries;
        Ok(queries
            .into_iter()
            .map(|info| StreamingQuery::from_info(self.session.clone(), info))
            .collect())
    }

    /// The active queries.
    pub async fn active(&self) -> Result<Vec<StreamingQuery>> {
        self.list(true).await
    }

    /// The active query with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<StreamingQuery>> {
        Ok(self.active().await?.into_iter().find(|q| q.id() == id))
    }
}

/// A watermark delay: `"10 seconds"`, `"1 minute"` (Spark's interval text) or `10s`, `500ms`.
pub(crate) fn parse_delay(text: &str) -> Result<Duration> {
    if let Ok(duration) = faisca_common::config::parse_duration(text) {
        return Ok(duration);
    }
    let nanos = crate::functions::interval_nanos(text)
        .and_then(|n| u64::try_from(n).map_err(|_| "negative".to_string()))
        .map_err(|why| {
            Error::user(format!(
                "invalid watermark delay '{text}': {why} (expected e.g. '10 seconds', '1 minute' or '30s')"
            ))
        })?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_delays_take_spark_and_short_forms() {
        assert_eq!(parse_delay("10 seconds").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_delay("1 minute").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_delay("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_delay("0 seconds").unwrap(), Duration::ZERO);
        assert!(
            parse_delay("1 month")
                .unwrap_err()
                .to_string()
                .contains("months")
        );
        assert!(
            parse_delay("soon")
                .unwrap_err()
                .to_string()
                .contains("watermark delay")
        );
    }
}
