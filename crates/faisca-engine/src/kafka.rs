//! The engine's part of the Kafka source (everything else — options, planning, checkpoints,
//! reading — is `faisca_connectors::kafka`): the scan node [`KafkaScanExec`], which runs a task's
//! ranges through the connector's reader, and the table that makes it ([`KafkaTable`], from
//! `CREATE EXTERNAL TABLE … STORED AS KAFKA` through [`KafkaTableFactory`] or from a DataFrame
//! reader's `format("kafka")`). Its wire form is in `codec/kafka.rs`.
//!
//! A table holds its checked options only: its offsets are planned per query, not at `CREATE`.
//! Planning a query first yields an *unplanned* scan (one placeholder partition); the driver then
//! plans the run's ranges once (see `faisca_connectors::kafka`) and puts them in the scan, one
//! task per partition, before DataFusion's distribution rules run. Executors receive the ranges
//! in the stage plan and read exactly those.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{CreateExternalTable, Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use faisca_common::{Error, Redaction, Result};
use faisca_connectors::kafka::options::{KafkaOptions, ReadOptions, SourceOptions};
use faisca_connectors::kafka::reader::RangeReader;
use faisca_connectors::kafka::schema::kafka_schema;
use faisca_connectors::kafka::{KnownEnds, OffsetRange};

use crate::task_metrics::{
    KAFKA_NULL_KEYS_SKIPPED, KAFKA_RANGES_CONTINUED, KAFKA_RECORDS_READ, TaskMetrics,
};
use std::borrow::Cow;

/// The format name of Kafka tables (`STORED AS KAFKA`, `format("kafka")`).
pub const KAFKA_FORMAT: &str = "KAFKA";

/// Makes [`KafkaTable`]s from `CREATE EXTERNAL TABLE … STORED AS KAFKA LOCATION 'topic'`.
#[derive(Debug, Default)]
pub struct KafkaTableFactory;

#[async_trait]
impl TableProviderFactory for KafkaTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        if !cmd.schema.fields().is_empty() {
            return Err(Error::user(format!(
                "Kafka table '{}' declares columns: a Kafka table's columns are fixed (key, value, topic, partition, offset, timestamp, timestampType, and headers with 'includeHeaders'); leave the column list out",
                cmd.name
            ))
            .into());
        }
        if !cmd.table_partition_cols.is_empty() {
            return Err(Error::user(format!(
                "Kafka table '{}' has PARTITIONED BY: Kafka tables are partitioned by their topic-partitions; leave it out",
                cmd.name
            ))
            .into());
        }
        let redaction = crate::session_config::redaction(state.config());
        let table = SourceOptions::normalize(&cmd.options).and_then(|options| {
            KafkaTable::from_options(&cmd.locations.join(","), &options, &redaction)
        });
        Ok(Arc::new(table.map_err(|e| {
            e.context(format!("Kafka table '{}'", cmd.name))
        })?))
    }
}

/// A Kafka source as a table.
#[derive(Debug)]
pub struct KafkaTable {
    options: Arc<KafkaOptions>,
    schema: SchemaRef,
    /// With `asTable`: the plan over the records that yields the table, inlined where used.
    as_table: Option<LogicalPlan>,
    /// The records of a topic read as a table: scans count the null keys the table skips.
    count_null_keys: bool,
}

impl KafkaTable {
    /// The table of a source at `location` (a topic or a comma list; may be empty when an option
    /// names the topics) with `options`, normalised where they entered.
    pub fn from_options(
        location: &str,
        options: &SourceOptions,
        redaction: &Redaction,
    ) -> Result<Self> {
        Self::new(KafkaOptions::parse(location, options, redaction)?)
    }

    /// The table's options.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// A table reading what `options` describe: the records, or with `asTable` the table they
    /// describe ([`crate::kafka_table`]).
    pub fn new(options: KafkaOptions) -> Result<Self> {
        if options.as_table {
            let records = KafkaTable {
                count_null_keys: true,
                ..KafkaTable::new(KafkaOptions {
                    as_table: false,
                    ..options.clone()
                })?
            };
            return Ok(KafkaTable {
                options: Arc::new(options),
                schema: crate::kafka_table::table_schema(),
                as_table: Some(crate::kafka_table::table_plan(Arc::new(records))?),
                count_null_keys: false,
            });
        }
        let schema = kafka_schema(options.read.include_headers);
        Ok(KafkaTable {
            options: Arc::new(options),
            schema,
            as_table: None,
            count_null_keys: false,
        })
    }
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        match self.as_table {
            Some(_) => TableType::View,
            None => TableType::Base,
        }
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.as_table.as_ref().map(Cow::Borrowed)
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.as_table.is_some() {
            return Err(Error::internal(
                "a Kafka topic read as a table is planned through its logical plan, not scanned",
            )
            .into());
        }
        let scan = KafkaScanExec::unplanned(self.options.clone(), projection.cloned())?;
        Ok(Arc::new(scan.counting_null_keys(self.count_null_keys)))
    }
}

/// Reads Kafka offset ranges: partition `i` reads `tasks[i]`.
#[derive(Debug, Clone)]
pub struct KafkaScanExec {
    key: String,
    read: ReadOptions,
    /// Every option, on the driver (to plan the run); executors do without.
    options: Option<Arc<KafkaOptions>>,
    projection: Option<Vec<usize>>,
    tasks: Vec<Vec<OffsetRange>>,
    planned: bool,
    /// Count records with a null key in the task's metrics (the scan of a topic read as a table).
    count_null_keys: bool,
    /// Where partitions ended when a streaming micro-batch's ranges were planned (empty for
    /// batch reads): readers keep consumers positioned for the next batch only short of these.
    known_ends: Arc<KnownEnds>,
    properties: Arc<PlanProperties>,
}

fn properties(schema: SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions.max(1)),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

impl KafkaScanExec {
    fn projected_schema(read: &ReadOptions, projection: Option<&[usize]>) -> DfResult<SchemaRef> {
        let full = kafka_schema(read.include_headers);
        Ok(match projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        })
    }

    /// A scan whose ranges the driver has yet to plan.
    pub fn unplanned(options: Arc<KafkaOptions>, projection: Option<Vec<usize>>) -> DfResult<Self> {
        let schema = Self::projected_schema(&options.read, projection.as_deref())?;
        Ok(KafkaScanExec {
            key: options.key.clone(),
            read: options.read.clone(),
            options: Some(options),
            projection,
            tasks: vec![Vec::new()],
            planned: false,
            count_null_keys: false,
            known_ends: Arc::default(),
            properties: properties(schema, 1),
        })
    }

    /// A scan reading `tasks` (one partition each), as decoded on an executor.
    pub fn planned(
        key: String,
        read: ReadOptions,
        projection: Option<Vec<usize>>,
        tasks: Vec<Vec<OffsetRange>>,
    ) -> DfResult<Self> {
        let schema = Self::projected_schema(&read, projection.as_deref())?;
        let tasks = if tasks.is_empty() {
            vec![Vec::new()]
        } else {
            tasks
        };
        let properties = properties(schema, tasks.len());
        Ok(KafkaScanExec {
            key,
            read,
            options: None,
            projection,
            tasks,
            planned: true,
            count_null_keys: false,
            known_ends: Arc::default(),
            properties,
        })
    }

    /// This scan, counting records with a null key in each task's metrics when `count` (the
    /// scan of a topic read as a table, which skips them).
    pub fn counting_null_keys(self, count: bool) -> Self {
        KafkaScanExec {
            count_null_keys: count,
            ..self
        }
    }

    /// Whether the scan counts records with a null key.
    pub fn counts_null_keys(&self) -> bool {
        self.count_null_keys
    }

    /// This scan, told where partitions ended when its (micro-batch) ranges were planned.
    pub fn with_known_ends(self, known_ends: Arc<KnownEnds>) -> Self {
        KafkaScanExec { known_ends, ..self }
    }

    /// Where partitions ended when the ranges were planned (empty for batch reads).
    pub fn known_ends(&self) -> &Arc<KnownEnds> {
        &self.known_ends
    }

    /// This scan with its run's tasks.
    pub fn with_tasks(&self, tasks: Vec<Vec<OffsetRange>>) -> Self {
        let tasks = if tasks.is_empty() {
            vec![Vec::new()]
        } else {
            tasks
        };
        KafkaScanExec {
            properties: properties(self.schema(), tasks.len()),
            tasks,
            planned: true,
            ..self.clone()
        }
    }

    /// Identifies the source (its location and options) within a query.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The source's options (on the driver only).
    pub fn options(&self) -> Option<&Arc<KafkaOptions>> {
        self.options.as_ref()
    }

    /// What executors need to read.
    pub fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    /// The projected columns.
    pub fn projection(&self) -> Option<&[usize]> {
        self.projection.as_deref()
    }

    /// The ranges of each task.
    pub fn tasks(&self) -> &[Vec<OffsetRange>] {
        &self.tasks
    }

    /// Whether the run's ranges are in.
    pub fn is_planned(&self) -> bool {
        self.planned
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let ranges: Vec<&OffsetRange> = self.tasks.iter().flatten().collect();
        let records: u64 = ranges.iter().map(|r| r.len()).sum();
        write!(
            f,
            "KafkaScanExec: servers={}, tasks={}, ranges={}, offsets={records}",
            self.read
                .kafka_params
                .get("bootstrap.servers")
                .map(String::as_str)
                .unwrap_or_default(),
            self.tasks.len(),
            ranges.len()
        )?;
        if self.projection.is_some() {
            let schema = self.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &str {
        "KafkaScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "KafkaScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if !self.planned {
            return Err(Error::internal(
                "a Kafka scan ran before the driver planned its offset ranges",
            )
            .into());
        }
        let ranges = self.tasks.get(partition).cloned().ok_or_else(|| {
            Error::internal(format!(
                "Kafka scan partition {partition} of {} does not exist",
                self.tasks.len()
            ))
        })?;
        let batch_size = context.session_config().batch_size();
        let config = crate::session_config::faisca_config(context.session_config());
        let reader = RangeReader::new(&self.read, ranges, self.projection.as_deref(), batch_size)?
            .with_known_ends(self.known_ends.clone())
            .with_max_headers(config.kafka_max_headers_per_record())
            .with_allowed(config.allowed_locations(false));
        let schema = reader.schema();
        // Records with a null key, counted where the task has metrics and the key is read.
        let metrics = TaskMetrics::of(&context);
        let null_keys = match (self.count_null_keys, &metrics) {
            (true, Some(metrics)) => schema.index_of("key").ok().map(|i| (i, metrics.clone())),
            _ => None,
        };
        let stream = futures::stream::try_unfold(reader, move |mut reader| {
            let null_keys = null_keys.clone();
            let metrics = metrics.clone();
            async move {
                match reader.next_batch().await {
                    Ok(Some(batch)) => {
                        if let Some(metrics) = &metrics {
                            metrics.add(KAFKA_RECORDS_READ, batch.num_rows() as u64);
                        }
                        if let Some((key, metrics)) = &null_keys {
                            let nulls = batch.column(*key).null_count() as u64;
                            if nulls > 0 {
                                metrics.add(KAFKA_NULL_KEYS_SKIPPED, nulls);
                            }
                        }
                        Ok(Some((batch, reader)))
                    }
                    Ok(None) => {
                        if let Some(metrics) = &metrics {
                            metrics.add(KAFKA_RANGES_CONTINUED, reader.ranges_continued() as u64);
                        }
                        Ok(None)
                    }
                    Err(e) => Err(DataFusionError::from(e)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Drops the process's Kafka consumers idle past their timeout: a consumer kept positioned for
/// the next micro-batch fetches in the background until then. Called by an executor's heartbeat.
pub fn expire_idle_consumers() {
    faisca_connectors::kafka::consumer_pool::expire();
}
