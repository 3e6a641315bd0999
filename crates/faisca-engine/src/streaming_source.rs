//! Streaming sources as tables: what `session.read_stream()…load()` resolves to.
//!
//! A [`StreamSourceTable`] stands for an unbounded source in a streaming query's logical plan: it
//! has the source's schema so that DataFrame verbs can build on it, but it cannot be scanned —
//! a plan reading it is a streaming plan, run only by `write_stream().start()`. Each micro-batch,
//! the driver replaces it with a bounded table of that batch's data ([`StreamSource::bind`]):
//! the Kafka table whose scan the driver gives the batch's offset ranges, or the rate source's
//! rows for the batch's seconds.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::stream::StreamOptions;
use faisca_connectors::rate::{RateBatch, RateOptions};

use crate::kafka::KafkaTable;

/// What a streaming source reads.
#[derive(Debug, Clone)]
pub enum StreamSource {
    /// Kafka topics.
    Kafka(Arc<StreamOptions>),
    /// Spark's `rate` source.
    Rate(RateOptions),
    /// New files of a directory.
    Files(Arc<FileSource>),
}

/// A streaming file source: new files of `path` in `format`, each read once.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// `parquet`, `csv` or `json`.
    pub format: String,
    /// The directory's URL.
    pub path: String,
    /// Format options, as DataFusion's format factories name them (`format.has_header`).
    pub format_options: std::collections::HashMap<String, String>,
    /// Which files a batch reads.
    pub batches: faisca_connectors::file_stream::FileStreamOptions,
    /// The rows' schema: given with `.schema(..)`, or inferred from the files there at start.
    pub schema: SchemaRef,
}

impl StreamSource {
    /// The source's kind as `format(..)` names it.
    pub fn format(&self) -> &'static str {
        match self {
            StreamSource::Kafka(_) => "kafka",
            StreamSource::Rate(_) => "rate",
            StreamSource::Files(files) => match files.format.as_str() {
                "csv" => "csv",
                "json" => "json",
                _ => "parquet",
            },
        }
    }

    /// What identifies the source in a query's checkpoint: a restart must read the same one.
    pub fn identity(&self) -> String {
        match self {
            StreamSource::Kafka(options) => format!("kafka:{}", options.source.source_identity()),
            StreamSource::Rate(options) => format!(
                "rate:rowsPerSecond={},rampUpTime={}s,numPartitions={}",
                options.rows_per_second, options.ramp_up_seconds, options.num_partitions
            ),
            StreamSource::Files(files) => format!("files:{}:{}", files.format, files.path),
        }
    }

    /// The rows of the source.
    pub fn schema(&self) -> Result<SchemaRef> {
        Ok(match self {
            StreamSource::Kafka(options) => {
                KafkaTable::new(options.source.clone())?.schema().clone()
            }
            StreamSource::Rate(_) => rate_schema(),
            StreamSource::Files(files) => files.schema.clone(),
        })
    }
}

/// The rate source's rows: `timestamp` (UTC) and `value`, as Spark's.
pub fn rate_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Int64, false),
    ]))
}

/// One batch of the rate source as a table: one partition per `numPartitions`.
pub fn rate_table(batch: &RateBatch) -> Result<Arc<dyn TableProvider>> {
    let schema = rate_schema();
    let partitions = (0..batch.partitions.max(1))
        .map(|p| {
            let values: Vec<u64> = batch.partition_values(p).collect();
            let times: TimestampMicrosecondArray = values
                .iter()
                .map(|v| Some(batch.timestamp_ms(*v) * 1000))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC");
            let values: Int64Array = values.iter().map(|v| Some(*v as i64)).collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(times), Arc::new(values)])
                .map(|b| vec![b])
                .map_err(|e| Error::internal(format!("rate batch: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(MemTable::try_new(schema, partitions)?))
}

/// A streaming source in a logical plan (see the module docs).
#[derive(Debug)]
pub struct StreamSourceTable {
    source: StreamSource,
    schema: SchemaRef,
}

impl StreamSourceTable {
    /// The table of `source`.
    pub fn new(source: StreamSource) -> Result<Self> {
        let schema = source.schema()?;
        Ok(StreamSourceTable { source, schema })
    }

    /// What it reads.
    pub fn source(&self) -> &StreamSource {
        &self.source
    }
}

#[async_trait]
impl TableProvider for StreamSourceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Spark's words for the same mistake.
        Err(Error::user(format!(
            "Queries with streaming sources must be executed with writeStream.start(): this DataFrame reads the streaming {} source; run it with df.write_stream()…start()",
            self.source.format()
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_batch_is_a_table_of_its_values_spread_over_partitions() {
        let options = RateOptions {
            rows_per_second: 4,
            ramp_up_seconds: 0,
            num_partitions: 2,
        };
        let batch = options.batch(1, 2, 1_000);
        assert_eq!(batch.values, 4..8);
        let table = rate_table(&batch).unwrap();
        assert_eq!(table.schema(), rate_schema());
        let source = StreamSourceTable::new(StreamSource::Rate(options)).unwrap();
        assert_eq!(source.schema(), rate_schema());
        assert!(source.source().identity().contains("rowsPerSecond=4"));
    }
}
