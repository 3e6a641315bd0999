//! Planning a Kafka write (`format("kafka")`, `COPY … STORED AS KAFKA`, `INSERT INTO` a Kafka
//! table) with Spark's contract, so that every mistake fails before a record is sent:
//!
//! * save modes: `append` and `errorifexists` both append (a topic is a log); `overwrite` and
//!   `ignore` are refused with Spark's reason;
//! * options: `topic` and `kafka.*` (`faisca_connectors::kafka::sink::SinkOptions`); a `COPY`'s
//!   target is the `topic` option, which wins over a `topic` column;
//! * columns: `value` (binary or string) is required; `key` (binary or string), `topic`
//!   (string), `partition` (an integer) and `headers` (`array<struct<key string, value binary>>`)
//!   are optional; other columns are ignored, as in Spark. A missing or mistyped column is an
//!   error naming it and the type expected. The job's input becomes a projection of the sink's
//!   columns cast to the types the tasks read.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::parser::{CopyToSource, DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use faisca_common::{Error, Result};
use faisca_connectors::kafka::options::{SourceOptions, Subscription};
use faisca_connectors::kafka::sink::{
    CONSUMER_ONLY_PARAMS, SINK_COLUMNS, SinkOptions, sink_column_type,
};
use faisca_engine::kafka::KafkaTable;

use super::{JobWrite, PlannedWrite, WriteRequest};
use crate::session::Session;

/// The write an `INSERT INTO` a Kafka table asks for: its brokers and client properties, and
/// its topic when it reads exactly one (otherwise each row's `topic` column names it).
pub fn insert_request(table: &KafkaTable, op: InsertOp) -> WriteRequest {
    let options = table.options();
    let topic = match &options.subscription {
        Subscription::Topics(topics) if topics.len() == 1 => topics[0].clone(),
        Subscription::Assign(partitions) if partitions.len() == 1 => {
            partitions.keys().next().cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    WriteRequest {
        url: topic,
        format: "kafka".into(),
        mode: Some(
            match op {
                InsertOp::Append => "append",
                InsertOp::Overwrite => "overwrite",
                InsertOp::Replace => "replace",
            }
            .into(),
        ),
        partition_by: Vec::new(),
        // The table's settings, less those only its reads use.
        options: options
            .read
            .kafka_params
            .iter()
            .filter(|(k, _)| !CONSUMER_ONLY_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (format!("kafka.{k}"), v.clone()))
            .collect(),
        copy: false,
        insert: true,
    }
}

/// A `COPY … TO 'topic' STORED AS KAFKA OPTIONS (…)` statement as a write request and the
/// statement of its rows; `None` for any other statement. (DataFusion plans `COPY` only to file
/// formats, so the driver takes these before DataFusion's planner.)
pub fn copy_to_kafka(statement: &DfStatement) -> Result<Option<(WriteRequest, DfStatement)>> {
    let DfStatement::CopyTo(copy) = statement else {
        return Ok(None);
    };
    if !copy.stored_as.as_deref().is_some_and(is_kafka) {
        return Ok(None);
    }
    let query = match &copy.source {
        CopyToSource::Query(query) => query.as_ref().clone(),
        CopyToSource::Relation(table) => {
            let sql = format!("SELECT * FROM {table}");
            let parsed = DFParser::parse_sql(&sql)?;
            match parsed.into_iter().next() {
                Some(DfStatement::Statement(s)) => match *s {
                    SqlStatement::Query(q) => *q,
                    _ => return Err(Error::internal(format!("'{sql}' is not a query"))),
                },
                _ => return Err(Error::internal(format!("'{sql}' is not a query"))),
            }
        }
    };
    let options = copy
        .options
        .iter()
        .map(|(k, v)| {
            let value = match v.clone().into_string() {
                Some(text) => text,
                None => v.to_string(),
            };
            (k.clone(), value)
        })
        .collect();
    let request = WriteRequest {
        url: copy.target.clone(),
        format: "kafka".into(),
        mode: None,
        partition_by: copy.partitioned_by.clone(),
        options,
        copy: true,
        insert: false,
    };
    let source = DfStatement::Statement(Box::new(SqlStatement::Query(Box::new(query))));
    Ok(Some((request, source)))
}

/// Whether `format` names the Kafka sink.
pub fn is_kafka(format: &str) -> bool {
    format.trim().eq_ignore_ascii_case("kafka")
}

/// Plan a write of `input` to Kafka as `request` says.
pub async fn plan_kafka_write(
    session: &Session,
    request: WriteRequest,
    input: LogicalPlan,
) -> Result<PlannedWrite> {
    if !request.partition_by.is_empty() {
        return Err(Error::user(format!(
            "a Kafka write cannot be partitioned by {}: records go to partitions by their key (or a 'partition' column)",
            request.partition_by.join(", ")
        )));
    }
    let mut options: HashMap<String, String> = request.options;
    let option_mode = take_mode(&mut options);
    check_mode(request.mode.as_deref().or(option_mode.as_deref()))?;
    let target = request.url.trim();
    if !target.is_empty() {
        if !request.copy && !request.insert {
            return Err(Error::user(format!(
                "a Kafka write has no path ('{target}'): set the 'topic' option, or give the rows a 'topic' column"
            )));
        }
        let given = options
            .iter()
            .find(|(k, _)| normalized(k) == "topic")
            .map(|(k, v)| (k.clone(), v.trim().to_string()));
        match given {
            Some((_, topic)) if request.copy && topic != target => {
                return Err(Error::user(format!(
                    "COPY … TO '{target}' STORED AS KAFKA also has the option 'topic' = '{topic}': name the topic once"
                )));
            }
            Some(_) => {}
            None => {
                options.insert("topic".into(), target.to_string());
            }
        }
    }
    let redaction = session.config.redaction();
    let sink = SinkOptions::parse(&SourceOptions::normalize(options)?, &redaction)?;
    // The cluster's advertised brokers, and the login, before any task starts.
    let (params, allowed) = (sink.producer.clone(), session.allowed.clone());
    let timeout = session.config.kafka_request_timeout();
    tokio::task::spawn_blocking(move || {
        faisca_connectors::kafka::broker::check_write_cluster(&params, timeout, &allowed)
    })
    .await
    .map_err(|e| Error::internal(format!("the Kafka cluster check: {e}")))??;
    let input = sink_projection(input, sink.topic.is_some())?;
    Ok(PlannedWrite::Job {
        input,
        write: Arc::new(JobWrite::Kafka(faisca_engine::sink::kafka::to_proto(&sink))),
    })
}

/// An option name as the sink compares it: trimmed, lower case, without DataFusion's `format.`.
fn normalized(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase();
    lower
        .strip_prefix("format.")
        .map(str::to_string)
        .unwrap_or(lower)
}

/// Take the `mode` option out of `options`.
fn take_mode(options: &mut HashMap<String, String>) -> Option<String> {
    let key = options.keys().find(|k| normalized(k) == "mode").cloned()?;
    options.remove(&key)
}

/// Spark's Kafka sink: `append` and `errorifexists` (the default) append.
fn check_mode(mode: Option<&str>) -> Result<()> {
    let mode = mode.unwrap_or("errorifexists").trim().to_ascii_lowercase();
    match mode.as_str() {
        "append" | "error" | "errorifexists" | "default" => Ok(()),
        "overwrite" | "ignore" => {
            let name = if mode == "overwrite" {
                "Overwrite"
            } else {
                "Ignore"
            };
            Err(Error::user(format!(
                "Save mode {name} not allowed for Kafka. Allowed save modes are Append and ErrorIfExists (default): a topic is a log that a write appends to"
            )))
        }
        other => Err(Error::user(format!(
            "unknown save mode '{other}': expected append or errorifexists (Kafka writes append)"
        ))),
    }
}

/// The input's sink columns, checked and cast to the types the tasks read. `topic_option`: the
/// `topic` option is set, so a `topic` column is left out (the option wins).
fn sink_projection(input: LogicalPlan, topic_option: bool) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut exprs: Vec<Expr> = Vec::new();
    for name in SINK_COLUMNS {
        if *name == "topic" && topic_option {
            continue;
        }
        let Some((qualifier, field)) = schema
            .iter()
            .find(|(_, f)| f.name() == name)
            .map(|(q, f)| (q.cloned(), f.clone()))
        else {
            continue;
        };
        check_type(name, &field)?;
        let column = Expr::Column(datafusion::common::Column::new(qualifier, *name));
        exprs.push(
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(column),
                sink_column_type(name),
            ))
            .alias(*name),
        );
    }
    if !exprs.iter().any(|e| e.schema_name().to_string() == "value") {
        return Err(Error::user(format!(
            "a Kafka write needs a 'value' column (binary or string) holding each record's value; the rows have {}",
            columns.join(", ")
        )));
    }
    if !topic_option && !exprs.iter().any(|e| e.schema_name().to_string() == "topic") {
        return Err(Error::user(
            "a Kafka write needs a topic: set the 'topic' option (COPY … TO 'topic'), or give the rows a 'topic' column (string)",
        ));
    }
    Ok(LogicalPlanBuilder::from(input).project(exprs)?.build()?)
}

/// Whether column `name`'s type is one the sink takes.
fn check_type(name: &str, field: &Field) -> Result<()> {
    let t = field.data_type();
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let bytes = |t: &DataType| {
        text(t)
            || matches!(
                t,
                DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
                    | DataType::FixedSizeBinary(_)
            )
    };
    let (ok, expected) = match name {
        "key" | "value" => (
            bytes(t) || t == &DataType::Null,
            "binary or string (build structured values with to_json or to_avro)",
        ),
        "topic" => (text(t) || t == &DataType::Null, "string"),
        "partition" => (t.is_integer() || t == &DataType::Null, "int"),
        _ => (
            t == &DataType::Null || headers_like(t),
            "array<struct<key: string, value: binary>>",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::user(format!(
            "the Kafka write's column '{name}' is {t}: expected {expected}"
        )))
    }
}

/// `list<struct<key: string, value: binary or string>>`.
fn headers_like(t: &DataType) -> bool {
    let item = match t {
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => item,
        _ => return false,
    };
    let DataType::Struct(fields) = item.data_type() else {
        return false;
    };
    fields.len() == 2
        && fields[0].name() == "key"
        && matches!(
            fields[0].data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
        && fields[1].name() == "value"
        && matches!(
            fields[1].data_type(),
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_leaves_the_tables_consumer_settings_out_of_its_producer() {
        let options = SourceOptions::normalize([
            ("kafka.bootstrap.servers", "127.0.0.1:9092"),
            ("kafka.group.id", "readers"),
            ("kafka.fetch.min.bytes", "1024"),
            ("kafka.compression.type", "lz4"),
        ])
        .unwrap();
        let table =
            KafkaTable::from_options("orders", &options, &faisca_common::Redaction::default())
                .unwrap();
        let request = insert_request(&table, InsertOp::Append);
        assert_eq!(request.url, "orders");
        let mut keys: Vec<&str> = request.options.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["kafka.bootstrap.servers", "kafka.compression.type"]);
    }

    #[test]
    fn save_modes_follow_sparks_kafka_sink() {
        for mode in [None, Some("append"), Some("ErrorIfExists"), Some("error")] {
            check_mode(mode).unwrap();
        }
        let e = check_mode(Some("overwrite")).unwrap_err().to_string();
        assert!(
            e.contains("Save mode Overwrite not allowed for Kafka"),
            "{e}"
        );
        let e = check_mode(Some("ignore")).unwrap_err().to_string();
        assert!(e.contains("Save mode Ignore not allowed"), "{e}");
        assert!(check_mode(Some("upsert")).is_err());
    }

    #[test]
    fn column_types_are_checked_by_name() {
        let field = |t: DataType| Field::new("x", t, true);
        check_type("value", &field(DataType::Utf8View)).unwrap();
        check_type("key", &field(DataType::LargeBinary)).unwrap();
        check_type("partition", &field(DataType::Int64)).unwrap();
        check_type(
            "headers",
            &field(faisca_connectors::kafka::schema::headers_type()),
        )
        .unwrap();
        let e = check_type("value", &field(DataType::Int64))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column 'value' is Int64") && e.contains("binary or string"),
            "{e}"
        );
        let e = check_type("partition", &field(DataType::Utf8))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'partition'") && e.contains("expected int"),
            "{e}"
        );
        assert!(check_type("headers", &field(DataType::Utf8)).is_err());
    }
}
