//! A topic read as the table its records describe (`asTable`): stream–table duality.
//!
//! Per key (within a topic), the record with the highest offset in the key's partition wins —
//! what compaction keeps — and when a key appears in several partitions, the partition winner
//! with the latest timestamp (then the higher partition number) wins. A winner whose value is
//! null (a tombstone) deletes the key; records with a null key are skipped. The answer does not
//! depend on whether the broker has compacted the topic, nor on how ranges are cut into tasks.
//!
//! It is a logical plan over the topic's ordinary scan, inlined where the table is used:
//! two aggregations of `max(named_struct(…))` (a struct orders by its fields in turn), per
//! `(topic, key, partition)` and then per `(topic, key)`. Each is partial per task and merged
//! by key after a shuffle, so no task has to read a whole topic.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, lit};
use faisca_common::Result;

use crate::kafka::KafkaTable;

/// The columns of a topic read as a table, in order.
pub const TABLE_COLUMNS: &[&str] = &["key", "value", "topic", "partition", "offset", "timestamp"];

/// The schema of a topic read as a table (the source's types for these columns).
pub fn table_schema() -> SchemaRef {
    let full = faisca_connectors::kafka::schema::kafka_schema(false);
    let fields: Vec<Field> = TABLE_COLUMNS
        .iter()
        .map(|name| {
            full.field_with_name(name)
                .expect("a column of the Kafka schema")
                .clone()
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn field(struct_column: &str, name: &str) -> Expr {
    get_field(col(struct_column), ScalarValue::from(name))
}

/// The table plan over `records`, a table reading the topic's records as they are.
pub fn table_plan(records: Arc<KafkaTable>) -> Result<LogicalPlan> {
    let scan = LogicalPlanBuilder::scan("kafka_records", provider_as_source(records), None)?;
    let latest_in_partition = max(named_struct(vec![
        lit("offset"),
        col("offset"),
        lit("timestamp"),
        col("timestamp"),
        lit("value"),
        col("value"),
    ]))
    .alias("latest");
    let winner = max(named_struct(vec![
        lit("timestamp"),
        field("latest", "timestamp"),
        lit("partition"),
        col("partition"),
        lit("offset"),
        field("latest", "offset"),
        lit("value"),
        field("latest", "value"),
    ]))
    .alias("winner");
    let plan = scan
        .filter(col("key").is_not_null())?
        .aggregate(
            vec![col("topic"), col("key"), col("partition")],
            vec![latest_in_partition],
        )?
        .aggregate(vec![col("topic"), col("key")], vec![winner])?
        .filter(field("winner", "value").is_not_null())?
        .project(vec![
            col("key"),
            field("winner", "value").alias("value"),
            col("topic"),
            field("winner", "partition").alias("partition"),
            field("winner", "offset").alias("offset"),
            field("winner", "timestamp").alias("timestamp"),
        ])?
        .build()?;
    Ok(plan)
}
