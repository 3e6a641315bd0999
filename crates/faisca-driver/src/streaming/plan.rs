//! A streaming query's plan: what it reads and keeps (learned once, at start), each
//! micro-batch's bounded plan (its sources replaced by the batch's data), and the physical
//! rewrite that puts the stateful operator where the batch plan's final aggregate stands.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{TableProvider, provider_as_source, source_as_provider};
use datafusion::logical_expr::{LogicalPlan, TableScan, TableSource};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use faisca_common::{Error, Result};
use faisca_engine::streaming_aggregate::Emit;
use faisca_engine::streaming_exec::{StatefulAggregateExec, StatefulSpec};
use faisca_engine::streaming_plan::EventTimeWatermark;
use faisca_engine::streaming_source::{StreamSource, StreamSourceTable};

use super::check::OutputMode;

/// One streaming source of a query, in the order the plan reads them.
#[derive(Clone)]
pub struct QuerySource {
    /// The scan's table in the plan (identifies the scan when the plan is bound).
    pub table: Arc<dyn TableSource>,
    /// What it reads.
    pub source: StreamSource,
}

impl std::fmt::Debug for QuerySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySource")
            .field("source", &self.source)
            .finish()
    }
}

/// What a streaming query's plan holds, learned when it starts.
#[derive(Debug, Clone)]
pub struct QueryShape {
    /// Its streaming sources.
    pub sources: Vec<QuerySource>,
    /// Its watermark: the event-time column and the delay.
    pub watermark: Option<(String, Duration)>,
    /// Whether it aggregates (a stateful operator).
    pub aggregates: bool,
    /// The group key of the aggregation that holds event time.
    pub event_time_key: Option<usize>,
    /// The aggregation's output fields (`name: type`, one a line): what its state is keyed and
    /// valued by, checked against the checkpoint's.
    pub state_schema: Option<String>,
}

fn stream_table(scan: &TableScan) -> Option<Arc<dyn TableProvider>> {
    let provider = source_as_provider(&scan.source).ok()?;
    provider
        .downcast_ref::<StreamSourceTable>()
        .is_some()
        .then_some(provider)
}

/// Whether `scan` reads a streaming source.
pub fn is_streaming_scan(scan: &TableScan) -> bool {
    stream_table(scan).is_some()
}

/// The shape of `plan` (see [`QueryShape`]); more than one watermark or aggregation is refused
/// (not supported yet).
pub fn shape(plan: &LogicalPlan) -> Result<QueryShape> {
    let mut sources = Vec::new();
    let mut watermarks = Vec::new();
    let mut aggregations = Vec::new();
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Some(provider) = stream_table(scan)
                    && let Some(table) = provider.downcast_ref::<StreamSourceTable>()
                    && !sources
                        .iter()
                        .any(|s: &QuerySource| Arc::ptr_eq(&s.table, &scan.source))
                {
                    sources.push(QuerySource {
                        table: scan.source.clone(),
                        source: table.source().clone(),
                    });
                }
            }
            LogicalPlan::Aggregate(aggregate) => aggregations.push(aggregate.clone()),
            _ => {
                if let Some(w) = EventTimeWatermark::of(node) {
                    watermarks.push((
                        w.column.clone(),
                        Duration::from_micros(w.delay_micros.max(0) as u64),
                    ));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if sources.is_empty() {
        return Err(Error::user(
            "write_stream() needs a streaming DataFrame: this one reads no streaming source (read it with session.read_stream())",
        ));
    }
    if watermarks.len() > 1 {
        return Err(Error::user(format!(
            "a streaming query with {} watermarks is not supported yet; expected at most one with_watermark",
            watermarks.len()
        )));
    }
    if aggregations.len() > 1 {
        return Err(Error::user(format!(
            "a streaming query with {} aggregations is not supported yet (Spark allows chained aggregations only in append mode); expected one",
            aggregations.len()
        )));
    }
    if let Some(aggregate) = aggregations.first()
        && aggregate.group_expr.is_empty()
    {
        return Err(Error::user(
            "a streaming aggregation without grouping keys (a global count, sum, …) is not supported yet: its state is kept per key; group by a window or a column",
        ));
    }
    let watermark = watermarks.into_iter().next();
    let event_time_key = match (&watermark, aggregations.first()) {
        (Some((column, _)), Some(aggregate)) => {
            let schema = aggregate.schema.clone();
            aggregate.group_expr.iter().enumerate().position(|(i, e)| {
                let refs_watermark = e.column_refs().iter().any(|c| &c.name == column);
                let field = schema.field(i);
                let windowish = matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Struct(fields)
                    if fields.iter().any(|f| f.name() == "end"));
                refs_watermark || (windowish && field.name() == "window")
            })
        }
        _ => None,
    };
    let state_schema = aggregations.first().map(|aggregate| {
        aggregate
            .schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(QueryShape {
        sources,
        watermark,
        aggregates: !aggregations.is_empty(),
        event_time_key,
        state_schema,
    })
}

/// `plan` with each streaming source's scan reading `bound[i]` (in [`QueryShape::sources`]
/// order) instead.
pub fn bind(
    plan: &LogicalPlan,
    sources: &[QuerySource],
    bound: &[Arc<dyn TableProvider>],
) -> Result<LogicalPlan> {
    let rewritten = plan.clone().transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some(i) = sources
            .iter()
            .position(|s| Arc::ptr_eq(&s.table, &scan.source))
        else {
            return Ok(Transformed::no(node));
        };
        let mut scan = scan.clone();
        scan.source = provider_as_source(bound[i].clone());
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    })?;
    Ok(rewritten.data)
}

/// The emit mode of an output mode.
pub fn emit(mode: OutputMode) -> Emit {
    match mode {
        OutputMode::Append => Emit::Append,
        OutputMode::Update => Emit::Update,
        OutputMode::Complete => Emit::Complete,
    }
}

/// `physical` with its final aggregate replaced by a [`StatefulAggregateExec`] running `spec`
/// (operator 0). An aggregate DataFusion planned in one step (one input partition) is split
/// into its partial and final halves first, as the stateful operator merges partial states.
pub fn apply_stateful(
    physical: Arc<dyn ExecutionPlan>,
    spec: &StatefulSpec,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut replaced = 0;
    let rewritten = physical.transform_up(|node| {
        let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        let final_aggregate = match aggregate.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => aggregate.clone(),
            AggregateMode::Single | AggregateMode::SinglePartitioned => {
                let partial = AggregateExec::try_new(
                    AggregateMode::Partial,
                    aggregate.group_expr().clone(),
                    aggregate.aggr_expr().to_vec(),
                    aggregate.filter_expr().to_vec(),
                    aggregate.input().clone(),
                    aggregate.input_schema(),
                )?;
                let partial: Arc<dyn ExecutionPlan> = Arc::new(partial);
                AggregateExec::try_new(
                    AggregateMode::Final,
                    aggregate.group_expr().as_final(),
                    aggregate.aggr_expr().to_vec(),
                    aggregate.filter_expr().to_vec(),
                    partial.clone(),
                    partial.schema(),
                )?
            }
            _ => return Ok(Transformed::no(node)),
        };
        replaced += 1;
        Ok(Transformed::yes(Arc::new(StatefulAggregateExec::new(
            Arc::new(final_aggregate),
            spec.clone(),
        )) as Arc<dyn ExecutionPlan>))
    })?;
    if replaced != 1 {
        return Err(Error::internal(format!(
            "a streaming aggregation planned to {replaced} final aggregates; expected one"
        )));
    }
    Ok(rewritten.data)
}
