//! Logical nodes of streaming queries (issue 19, being built).
//!
//! [`EventTimeWatermark`] is what `DataFrame::with_watermark(column, delay)` adds over its input,
//! as Spark's node of that name: rows pass unchanged; the query tracks the largest value of
//! `column` it sees, and stateful operators above it use the watermark it yields
//! (`faisca_driver::streaming::watermark`).

use std::fmt;
use std::time::Duration;

use datafusion::common::{DFSchemaRef, Result as DfResult, plan_err};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use std::sync::Arc;

/// The name of [`EventTimeWatermark`] nodes.
pub const EVENT_TIME_WATERMARK: &str = "EventTimeWatermark";

/// A watermark on `column` of `input`, `delay` behind the largest event time seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Hash)]
pub struct EventTimeWatermark {
    /// The rows.
    pub input: LogicalPlan,
    /// The event-time column (a timestamp of `input`).
    pub column: String,
    /// How far behind the largest event time the watermark stays, in microseconds.
    pub delay_micros: i64,
}

impl EventTimeWatermark {
    /// The node over `input`, checked: `column` must be a timestamp column of it.
    pub fn try_new(input: LogicalPlan, column: &str, delay: Duration) -> DfResult<LogicalPlan> {
        let schema = input.schema();
        let Some((_, field)) = schema.iter().find(|(_, f)| f.name() == column) else {
            return plan_err!(
                "with_watermark: no column '{column}'; expected a timestamp column of the DataFrame, one of {:?}",
                schema.field_names()
            );
        };
        if !matches!(
            field.data_type(),
            datafusion::arrow::datatypes::DataType::Timestamp(_, _)
        ) {
            return plan_err!(
                "with_watermark: column '{column}' is {}; expected a timestamp (cast it, e.g. CAST({column} AS TIMESTAMP))",
                field.data_type()
            );
        }
        let delay_micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(EventTimeWatermark {
                input,
                column: column.to_string(),
                delay_micros,
            }),
        }))
    }

    /// The node of `plan`, if it is one.
    pub fn of(plan: &LogicalPlan) -> Option<&EventTimeWatermark> {
        match plan {
            LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<EventTimeWatermark>(),
            _ => None,
        }
    }
}

impl UserDefinedLogicalNodeCore for EventTimeWatermark {
    fn name(&self) -> &str {
        EVENT_TIME_WATERMARK
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "EventTimeWatermark: {}, delay={} ms",
            self.column,
            self.delay_micros / 1000
        )
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let Some(input) = inputs.into_iter().next() else {
            return plan_err!("EventTimeWatermark takes one input");
        };
        Ok(EventTimeWatermark {
            input,
            ..self.clone()
        })
    }

    fn supports_limit_pushdown(&self) -> bool {
        false
    }
}

/// Plans [`EventTimeWatermark`] nodes as [`crate::streaming_exec::WatermarkExec`].
#[derive(Debug, Default)]
pub struct WatermarkPlanner;

#[async_trait::async_trait]
impl datafusion::physical_planner::ExtensionPlanner for WatermarkPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn datafusion::physical_planner::PhysicalPlanner,
        node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn datafusion::physical_plan::ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>> {
        let Some(watermark) = node.as_any().downcast_ref::<EventTimeWatermark>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return plan_err!("EventTimeWatermark takes one input");
        };
        Ok(Some(Arc::new(
            crate::streaming_exec::WatermarkExec::try_new(input.clone(), &watermark.column)?,
        )))
    }
}

/// DataFusion's query planner with Faísca's logical nodes ([`WatermarkPlanner`]).
#[derive(Debug, Default)]
pub struct FaiscaQueryPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for FaiscaQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::PhysicalPlanner;
        datafusion::physical_planner::DefaultPhysicalPlanner::with_extension_planners(vec![
            Arc::new(WatermarkPlanner),
        ])
        .create_physical_plan(logical_plan, session)
        .await
    }
}

/// Encodes a logical extension node for the client ↔ driver codecs: `column\ndelay_micros`.
pub fn encode_extension(node: &Extension) -> DfResult<Vec<u8>> {
    match node.node.as_any().downcast_ref::<EventTimeWatermark>() {
        Some(w) => {
            Ok(format!("{EVENT_TIME_WATERMARK}\n{}\n{}", w.delay_micros, w.column).into_bytes())
        }
        None => Err(datafusion::error::DataFusionError::NotImplemented(format!(
            "the logical node {} cannot be sent between client and driver",
            node.node.name()
        ))),
    }
}

/// Decodes what [`encode_extension`] wrote, over `inputs`' one plan.
pub fn decode_extension(buf: &[u8], inputs: &[LogicalPlan]) -> DfResult<Extension> {
    let text = std::str::from_utf8(buf).map_err(|_| {
        datafusion::error::DataFusionError::Plan("malformed logical extension node".into())
    })?;
    let mut parts = text.splitn(3, '\n');
    let (Some(EVENT_TIME_WATERMARK), Some(delay), Some(column), [input]) =
        (parts.next(), parts.next(), parts.next(), inputs)
    else {
        return plan_err!(
            "malformed logical extension node: expected an EventTimeWatermark over one input"
        );
    };
    let delay_micros: i64 = delay.parse().map_err(|_| {
        datafusion::error::DataFusionError::Plan(format!("malformed watermark delay '{delay}'"))
    })?;
    let plan = EventTimeWatermark::try_new(
        input.clone(),
        column,
        Duration::from_micros(delay_micros.max(0) as u64),
    )?;
    match plan {
        LogicalPlan::Extension(e) => Ok(e),
        _ => plan_err!("EventTimeWatermark did not make an extension node"),
    }
}
