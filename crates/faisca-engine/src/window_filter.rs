//! `FILTER (WHERE …)` of window aggregates, carried as an argument.
//!
//! DataFusion keeps a window aggregate's filter in a private field that neither datafusion-proto
//! encodes nor any accessor reads, so a plan sent to executors would aggregate every row
//! (`count(*) FILTER (WHERE false) OVER ()` would count them all). Faísca's sessions rewrite
//! `agg(args) FILTER (WHERE p) OVER (…)` before physical planning into `filtered_agg(p, args)
//! OVER (…)` under the original name: [`FilteredAggregate`] wraps the aggregate and feeds its
//! accumulators only the rows where `p` is true, as DataFusion's filter does. The predicate is
//! now an argument, which every codec carries; the wrapper travels by the name of the aggregate it
//! wraps ([`crate::codec::FaiscaCodec`]).

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::filter;
use arrow::compute::kernels::cmp::eq;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, ReversedUDAF, Signature,
    WindowFunctionDefinition,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The name every filtered aggregate has on the wire.
pub const FILTERED_AGGREGATE: &str = "faisca_filtered";

/// An aggregate that sees only the rows whose first argument is true; the other arguments are
/// the wrapped aggregate's.
#[derive(Debug)]
pub struct FilteredAggregate {
    inner: Arc<AggregateUDF>,
    signature: Signature,
}

impl FilteredAggregate {
    /// `inner`, filtered.
    pub fn new(inner: Arc<AggregateUDF>) -> Self {
        let signature = Signature::user_defined(inner.signature().volatility);
        FilteredAggregate { inner, signature }
    }

    /// The aggregate this one filters the rows of.
    pub fn inner(&self) -> &Arc<AggregateUDF> {
        &self.inner
    }

    fn wrap(inner: Arc<AggregateUDF>) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(FilteredAggregate::new(inner)))
    }
}

impl PartialEq for FilteredAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for FilteredAggregate {}

impl Hash for FilteredAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        FILTERED_AGGREGATE.hash(state);
        self.inner.hash(state);
    }
}

/// The wrapped aggregate's arguments: all but the predicate.
fn inner_args<'a>(args: &AccumulatorArgs<'a>) -> DfResult<AccumulatorArgs<'a>> {
    if args.exprs.is_empty() || args.expr_fields.is_empty() {
        return exec_err!("a filtered aggregate needs its predicate as the first argument");
    }
    Ok(AccumulatorArgs {
        return_field: Arc::clone(&args.return_field),
        schema: args.schema,
        ignore_nulls: args.ignore_nulls,
        order_bys: args.order_bys,
        is_reversed: args.is_reversed,
        name: args.name,
        is_distinct: args.is_distinct,
        exprs: &args.exprs[1..],
        expr_fields: &args.expr_fields[1..],
    })
}

impl AggregateUDFImpl for FilteredAggregate {
    fn name(&self) -> &str {
        FILTERED_AGGREGATE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [_, rest @ ..] => self.inner.return_type(rest),
            [] => exec_err!("a filtered aggregate needs its predicate as the first argument"),
        }
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        match arg_fields {
            [_, rest @ ..] => self.inner.return_field(rest),
            [] => exec_err!("a filtered aggregate needs its predicate as the first argument"),
        }
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let inner = self.inner.accumulator(inner_args(&args)?)?;
        Ok(Box::new(FilteredAccumulator { inner }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let inner = self.inner.create_sliding_accumulator(inner_args(&args)?)?;
        Ok(Box::new(FilteredAccumulator { inner }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let input_fields = args.input_fields.get(1..).unwrap_or_default();
        self.inner.state_fields(StateFieldsArgs {
            name: args.name,
            input_fields,
            return_field: args.return_field,
            ordering_fields: args.ordering_fields,
            is_distinct: args.is_distinct,
        })
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_udf() {
            ReversedUDAF::Reversed(reversed) => ReversedUDAF::Reversed(Self::wrap(reversed)),
            other => other,
        }
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn default_value(&self, data_type: &DataType) -> DfResult<ScalarValue> {
        self.inner.default_value(data_type)
    }
}

/// The wrapped accumulator, fed the rows whose predicate is true.
#[derive(Debug)]
struct FilteredAccumulator {
    inner: Box<dyn Accumulator>,
}

/// `values` without the predicate, keeping only the rows where it is true.
fn kept(values: &[ArrayRef]) -> DfResult<Vec<ArrayRef>> {
    let Some((predicate, rest)) = values.split_first() else {
        return exec_err!("a filtered aggregate got no predicate");
    };
    if predicate.data_type() == &DataType::Null {
        // `FILTER (WHERE NULL)`: no row passes.
        return Ok(rest.iter().map(|array| array.slice(0, 0)).collect());
    }
    let Some(predicate) = predicate.as_boolean_opt() else {
        return exec_err!(
            "the predicate of a filtered aggregate is {}, not a boolean",
            predicate.data_type()
        );
    };
    if predicate.null_count() == 0 && predicate.true_count() == predicate.len() {
        return Ok(rest.to_vec());
    }
    // NULL is not true: a row passes only where the predicate is true.
    let mask: BooleanArray = eq(predicate, &BooleanArray::new_scalar(true))?;
    rest.iter()
        .map(|array| Ok(filter(array.as_ref(), &mask)?))
        .collect()
}

impl Accumulator for FilteredAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.inner.update_batch(&kept(values)?)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.inner.retract_batch(&kept(values)?)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.inner.merge_batch(states)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.inner.evaluate()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) - std::mem::size_of_val(&self.inner) + self.inner.size()
    }
}

/// The logical rule that moves window aggregates' filters into [`FilteredAggregate`]s.
#[derive(Debug, Default)]
pub struct FilterWindowAggregates;

impl OptimizerRule for FilterWindowAggregates {
    fn name(&self) -> &str {
        "faisca_filter_window_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Window(window) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if !window.window_expr.iter().any(has_filter) {
            return Ok(Transformed::no(plan));
        }
        let exprs = window
            .window_expr
            .iter()
            .map(|e| {
                if !has_filter(e) {
                    return Ok(e.clone());
                }
                let name = e.schema_name().to_string();
                Ok(filtered(e.clone()).alias(name))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let input = Arc::clone(&window.input);
        Ok(Transformed::yes(LogicalPlan::Window(
            datafusion::logical_expr::Window::try_new(exprs, input)?,
        )))
    }
}

fn has_filter(expr: &Expr) -> bool {
    match expr {
        Expr::WindowFunction(w) => {
            w.params.filter.is_some() && matches!(w.fun, WindowFunctionDefinition::AggregateUDF(_))
        }
        Expr::Alias(alias) => has_filter(&alias.expr),
        _ => false,
    }
}

/// `expr` (a window aggregate with a filter, perhaps aliased) with its filter as an argument.
fn filtered(expr: Expr) -> Expr {
    match expr {
        Expr::Alias(alias) => filtered(*alias.expr),
        Expr::WindowFunction(w) => {
            let WindowFunction { fun, params } = *w;
            let (WindowFunctionDefinition::AggregateUDF(inner), Some(predicate)) =
                (fun.clone(), params.filter.clone())
            else {
                return Expr::WindowFunction(Box::new(WindowFunction { fun, params }));
            };
            let mut args = Vec::with_capacity(params.args.len() + 1);
            args.push(*predicate);
            args.extend(params.args);
            Expr::WindowFunction(Box::new(WindowFunction {
                fun: WindowFunctionDefinition::AggregateUDF(FilteredAggregate::wrap(inner)),
                params: WindowFunctionParams {
                    args,
                    filter: None,
                    ..params
                },
            }))
        }
        other => other,
    }
}
