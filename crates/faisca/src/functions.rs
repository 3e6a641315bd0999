//! Column functions with Spark's names: `use faisca::functions::*`.
//!
//! Expressions are DataFusion [`Expr`]s, so DataFusion's own functions
//! (`datafusion::functions::expr_fn`) work too. Aggregates go in
//! [`crate::GroupedData::agg`] or [`crate::DataFrame::agg`]; window functions get their window
//! with [`Over::over`] and a [`WindowSpec`] from [`Window`].

use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn as f;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition,
};
use faisca_common::{Error, Result};

pub use datafusion::functions_aggregate::expr_fn::{
    approx_distinct, avg, count, count_distinct, first_value, last_value, max, median, min, stddev,
    sum, var_sample as variance,
};
pub use datafusion::functions_window::expr_fn::{
    cume_dist, dense_rank, lag, lead, ntile, percent_rank, rank, row_number,
};
pub use datafusion::prelude::{cast, coalesce, col, lit, when};

use crate::columns::{IntoColumns, IntoSorts};

/// Ascending sort key, nulls first (Spark's default for ascending).
pub fn asc(expr: Expr) -> SortExpr {
    expr.sort(true, true)
}

/// Descending sort key, nulls last (Spark's default for descending).
pub fn desc(expr: Expr) -> SortExpr {
    expr.sort(false, false)
}

/// Spark's `from_json`: JSON text (a string, or a Kafka record's binary `value`) to a struct of
/// `schema`, Spark's DDL (`"id BIGINT, name STRING, tags ARRAY<STRING>"`). Malformed JSON gives a
/// struct of nulls; fields are read with `get_field` or `col("s")["name"]` in SQL.
pub fn from_json(value: Expr, schema: &str) -> Expr {
    let udf = datafusion::logical_expr::ScalarUDF::from(
        faisca_engine::functions::from_json::FromJson::new(),
    );
    udf.call(vec![value, lit(schema)])
}

/// Spark's `from_avro`: binary Avro datums (a Kafka record's `value`) to a struct of the Avro
/// record schema `schema_json`; a value that is not one datum of that schema fails the query.
pub fn from_avro(value: Expr, schema_json: &str) -> Expr {
    let udf = datafusion::logical_expr::ScalarUDF::from(
        faisca_engine::functions::from_avro::FromAvro::new(),
    );
    udf.call(vec![value, lit(schema_json)])
}

/// Spark's `from_avro(data, jsonFormatSchema, options)`. Options: `mode` (`FAILFAST`, the
/// default, or `PERMISSIVE`: a null struct for a value that is not a datum);
/// `schemaRegistryAddress` (values in the Confluent Schema Registry wire format, decoded with the
/// writer schema their id names, fetched from that registry, and read as `schema_json`);
/// `basic.auth.user.info` (`user:password` for the registry); `schemaRegistryTimeout` (`30s`).
pub fn from_avro_with_options(value: Expr, schema_json: &str, options: &[(&str, &str)]) -> Expr {
    let udf = datafusion::logical_expr::ScalarUDF::from(
        faisca_engine::functions::from_avro::FromAvro::new(),
    );
    let (keys, values) = options.iter().map(|(k, v)| (lit(*k), lit(*v))).unzip();
    udf.call(vec![
        value,
        lit(schema_json),
        datafusion::functions_nested::map::map(keys, values),
    ])
}

/// Spark's `to_json`: a struct, map or array as JSON text (null fields left out), e.g. a Kafka
/// record's value.
pub fn to_json(value: Expr) -> Expr {
    let udf =
        datafusion::logical_expr::ScalarUDF::from(faisca_engine::functions::to_json::ToJson::new());
    udf.call(vec![value])
}

/// Spark's `to_avro(data, jsonFormatSchema)`: a column as binary Avro datums of the Avro schema
/// `schema_json` (a record schema takes a struct, matched by field name); a null gives null.
pub fn to_avro(value: Expr, schema_json: &str) -> Expr {
    let udf =
        datafusion::logical_expr::ScalarUDF::from(faisca_engine::functions::to_avro::ToAvro::new());
    udf.call(vec![value, lit(schema_json)])
}

/// `to_avro` with options: `schemaRegistryAddress` and `subject` write the Confluent Schema
/// Registry wire format with the schema registered under the subject (only looked up when
/// `autoRegisterSchemas` is `false`); `basic.auth.user.info`; `schemaRegistryTimeout` (`30s`).
pub fn to_avro_with_options(value: Expr, schema_json: &str, options: &[(&str, &str)]) -> Expr {
    let udf =
        datafusion::logical_expr::ScalarUDF::from(faisca_engine::functions::to_avro::ToAvro::new());
    let (keys, values) = options.iter().map(|(k, v)| (lit(*k), lit(*v))).unzip();
    udf.call(vec![
        value,
        lit(schema_json),
        datafusion::functions_nested::map::map(keys, values),
    ])
}

/// Upper-case.
pub fn upper(e: Expr) -> Expr {
    f::upper(e)
}

/// Lower-case.
pub fn lower(e: Expr) -> Expr {
    f::lower(e)
}

/// Concatenation (nulls are skipped, as in DataFusion's `concat`).
pub fn concat(args: Vec<Expr>) -> Expr {
    f::concat(args)
}

/// Concatenation with a separator.
pub fn concat_ws(separator: &str, args: Vec<Expr>) -> Expr {
    f::concat_ws(lit(separator), args)
}

/// `len` characters from 1-based position `pos`.
pub fn substring(e: Expr, pos: i64, len: i64) -> Expr {
    f::substring(e, lit(pos), lit(len))
}

/// Length in characters.
pub fn length(e: Expr) -> Expr {
    f::character_length(e)
}

/// Without leading and trailing spaces.
pub fn trim(e: Expr) -> Expr {
    f::btrim(vec![e])
}

/// Replace matches of `pattern` (a regular expression) with `replacement`.
pub fn regexp_replace(e: Expr, pattern: &str, replacement: &str) -> Expr {
    f::regexp_replace(e, lit(pattern), lit(replacement), None)
}

fn part(unit: &str, e: Expr) -> Expr {
    f::date_part(lit(unit), e)
}

/// The year of a date or timestamp.
pub fn year(e: Expr) -> Expr {
    part("year", e)
}

/// The month (1–12).
pub fn month(e: Expr) -> Expr {
    part("month", e)
}

/// The day of the month (1–31).
pub fn dayofmonth(e: Expr) -> Expr {
    part("day", e)
}

/// The hour (0–23).
pub fn hour(e: Expr) -> Expr {
    part("hour", e)
}

/// The date of a string or timestamp.
pub fn to_date(e: Expr) -> Expr {
    f::to_date(vec![e])
}

/// A timestamp truncated to `unit` (`year`, `month`, `day`, `hour`, …; Spark's argument order).
pub fn date_trunc(unit: &str, e: Expr) -> Expr {
    f::date_trunc(lit(unit), e)
}

/// Absolute value.
pub fn abs(e: Expr) -> Expr {
    f::abs(e)
}

/// Rounded to `digits` decimal places.
pub fn round(e: Expr, digits: i64) -> Expr {
    f::round(vec![e, lit(digits)])
}

/// Square root.
pub fn sqrt(e: Expr) -> Expr {
    f::sqrt(e)
}

/// `base` to the power `exponent`.
pub fn pow(base: Expr, exponent: Expr) -> Expr {
    f::power(base, exponent)
}

/// Largest integer not above.
pub fn floor(e: Expr) -> Expr {
    f::floor(e)
}

/// Smallest integer not below.
pub fn ceil(e: Expr) -> Expr {
    f::ceil(e)
}

/// A window: partitioning, ordering and frame of a window function.
#[derive(Debug, Clone, Default)]
pub struct WindowSpec {
    partition_by: Vec<Expr>,
    order_by: Vec<SortExpr>,
    frame: Option<WindowFrame>,
}

/// Builds [`WindowSpec`]s: `Window::partition_by(["k"])?.order_by(["t"])?`.
#[derive(Debug)]
pub struct Window;

impl Window {
    /// Frame bound: every row before.
    pub const UNBOUNDED_PRECEDING: i64 = i64::MIN;
    /// Frame bound: every row after.
    pub const UNBOUNDED_FOLLOWING: i64 = i64::MAX;
    /// Frame bound: the current row.
    pub const CURRENT_ROW: i64 = 0;

    /// A window partitioned by `columns`.
    pub fn partition_by(columns: impl IntoColumns) -> Result<WindowSpec> {
        WindowSpec::default().partition_by(columns)
    }

    /// A window over all rows, ordered by `sorts`.
    pub fn order_by(sorts: impl IntoSorts) -> Result<WindowSpec> {
        WindowSpec::default().order_by(sorts)
    }
}

fn bound(offset: i64) -> WindowFrameBound {
    match offset {
        i64::MIN => WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        i64::MAX => WindowFrameBound::Following(ScalarValue::UInt64(None)),
        0 => WindowFrameBound::CurrentRow,
        n if n < 0 => WindowFrameBound::Preceding(ScalarValue::UInt64(Some(n.unsigned_abs()))),
        n => WindowFrameBound::Following(ScalarValue::UInt64(Some(n as u64))),
    }
}

impl WindowSpec {
    /// Partition by `columns`.
    pub fn partition_by(mut self, columns: impl IntoColumns) -> Result<Self> {
        self.partition_by = columns.into_exprs()?;
        Ok(self)
    }

    /// Order by `sorts`.
    pub fn order_by(mut self, sorts: impl IntoSorts) -> Result<Self> {
        self.order_by = sorts.into_sorts()?;
        Ok(self)
    }

    /// A frame of rows from `start` to `end` relative to the current row (negative: before;
    /// [`Window::UNBOUNDED_PRECEDING`], [`Window::CURRENT_ROW`], [`Window::UNBOUNDED_FOLLOWING`]).
    pub fn rows_between(mut self, start: i64, end: i64) -> Self {
        self.frame = Some(WindowFrame::new_bounds(
            WindowFrameUnits::Rows,
            bound(start),
            bound(end),
        ));
        self
    }

    /// A frame of ordering-key values from `start` to `end` relative to the current row's.
    pub fn range_between(mut self, start: i64, end: i64) -> Self {
        self.frame = Some(WindowFrame::new_bounds(
            WindowFrameUnits::Range,
            bound(start),
            bound(end),
        ));
        self
    }
}

/// `.over(&window)` for window functions (`row_number()`, `rank()`, `lag(..)`) and aggregates
/// (`sum(col("x")).over(&w)?` is a running sum when `w` is ordered).
pub trait Over {
    /// This function evaluated over `window`.
    fn over(self, window: &WindowSpec) -> Result<Expr>;
}

impl Over for Expr {
    fn over(self, window: &WindowSpec) -> Result<Expr> {
        let function = match self {
            Expr::AggregateFunction(agg) => Expr::WindowFunction(Box::new(WindowFunction {
                fun: WindowFunctionDefinition::AggregateUDF(agg.func),
                params: WindowFunctionParams {
                    args: agg.params.args,
                    partition_by: vec![],
                    order_by: vec![],
                    window_frame: WindowFrame::new(None),
                    filter: agg.params.filter,
                    null_treatment: agg.params.null_treatment,
                    distinct: agg.params.distinct,
                },
            })),
            w @ Expr::WindowFunction(_) => w,
            other => {
                return Err(Error::user(format!(
                    "over() needs a window function (row_number, rank, lag, …) or an aggregate, not '{other}'"
                )));
            }
        };
        let mut builder = function
            .partition_by(window.partition_by.clone())
            .order_by(window.order_by.clone());
        let frame = window.frame.clone().unwrap_or_else(|| {
            // Spark's default: the whole partition without ordering, a running frame with it.
            WindowFrame::new(if window.order_by.is_empty() {
                None
            } else {
                Some(false)
            })
        });
        builder = builder.window_frame(frame);
        Ok(builder.build()?)
    }
}

/// Spark's interval text (`"10 minutes"`, `"1 hour"`, `"30 seconds"`) in nanoseconds, or why
/// it is not one: months are rejected (their length varies).
pub(crate) fn interval_nanos(text: &str) -> std::result::Result<i64, String> {
    let interval =
        datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text)
            .map_err(|e| e.to_string())?;
    if interval.months != 0 {
        return Err("months have no fixed length".into());
    }
    i64::from(interval.days)
        .checked_mul(86_400_000_000_000)
        .and_then(|d| d.checked_add(interval.nanoseconds))
        .ok_or_else(|| "too long".into())
}

/// A window duration in nanoseconds (positive; see [`interval_nanos`]).
fn duration_nanos(text: &str) -> Result<i64> {
    let bad = |why: String| {
        Error::user(format!(
            "invalid window duration '{text}': {why} (expected e.g. '10 minutes', '1 hour', '30 seconds')"
        ))
    };
    let nanos = interval_nanos(text).map_err(bad)?;
    if nanos <= 0 {
        return Err(bad("not positive".into()));
    }
    Ok(nanos)
}

pub(crate) fn interval(nanos: i64) -> Expr {
    lit(ScalarValue::IntervalMonthDayNano(Some(
        datafusion::arrow::datatypes::IntervalMonthDayNano::new(0, 0, nanos),
    )))
}

/// The start of the `stride`-long window (aligned to the Unix epoch) holding `time`.
pub(crate) fn window_start(time: Expr, stride_nanos: i64) -> Expr {
    f::date_bin(
        interval(stride_nanos),
        time,
        lit(ScalarValue::TimestampNanosecond(Some(0), None)),
    )
}

/// `{start, end}` of a window that starts at `start` and lasts `duration_nanos`.
pub(crate) fn window_struct(start: Expr, duration_nanos: i64) -> Expr {
    f::named_struct(vec![
        lit("start"),
        start.clone(),
        lit("end"),
        start + interval(duration_nanos),
    ])
}

/// Spark's event-time `window(time, duration, slide)`: a `{start, end}` struct column named
/// `window`. Windows are aligned to the Unix epoch; `start` is inclusive and `end` exclusive.
/// Without a slide (or with a slide equal to the duration) windows are tumbling: one per row. A
/// shorter slide makes hopping windows, in which a row belongs to several windows: such a
/// `window` goes in `group_by`, which gives each row one group per window it falls in.
pub fn window(time: Expr, duration: &str, slide: Option<&str>) -> Result<Expr> {
    let d = duration_nanos(duration)?;
    let s = match slide {
        Some(s) => duration_nanos(s)?,
        None => d,
    };
    if s > d {
        return Err(Error::user(format!(
            "window slide '{}' is longer than its duration '{duration}': expected a slide at most the duration",
            slide.unwrap_or_default()
        )));
    }
    if s == d {
        return Ok(window_struct(window_start(time, d), d).alias("window"));
    }
    let marker = datafusion::logical_expr::ScalarUDF::new_from_impl(
        faisca_engine::udf::HoppingWindow::default(),
    );
    Ok(marker.call(vec![time, lit(d), lit(s)]).alias("window"))
}
