//! The fused partial aggregate: a pipeline's last step, in place of DataFusion's
//! `AggregateExec` in `Partial` mode.
//!
//! [`AggregateStep`] is what the planner takes from the replaced operator: the group keys, the
//! aggregate functions (`sum`, `count`, `avg`, `min`, `max`) with their argument expressions,
//! and the operator's output schema, which fixes each state's type. [`CompiledAggregate`]
//! checks that the types are ones the typed [`accumulators`] produce exactly as DataFusion
//! does and refuses anything else (the operator then stays DataFusion's). At run time an
//! [`Aggregator`] maps each selected row to its group ([`keys`]: a fast path for few distinct
//! keys, DataFusion's `GroupValues` otherwise) and updates every accumulator straight from the
//! selection: columns are read through it, nothing is gathered.
//!
//! As DataFusion's partial aggregate does, the aggregator gives up grouping when the probe
//! shows almost every row is its own group (`datafusion.execution.skip_partial_aggregation_*`),
//! emitting each row's own state instead, and emits its groups early when the memory pool
//! refuses to grow (the final aggregate merges whatever arrives).

pub mod accumulators;
pub mod keys;
pub mod narrow;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Schema, SchemaRef, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use datafusion::error::Result as DfResult;
use datafusion::physical_expr::PhysicalExpr;

use super::kernel::{self, Unsupported, Value, with_primitive_type};
use super::selection::Selection;
use super::with_rows;
use accumulators::{Accumulate, Arg, Avg, Count, Extreme, Sum};
use keys::{GroupKeys, Mapped};
use narrow::{NarrowDecimalAvg, NarrowDecimalSum};

/// The aggregate functions a pipeline computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// `sum`
    Sum,
    /// `count`
    Count,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
}

impl AggregateKind {
    /// DataFusion's name of the function.
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Sum => "sum",
            AggregateKind::Count => "count",
            AggregateKind::Avg => "avg",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
        }
    }

    /// The function DataFusion calls `name`, if the pipeline computes it.
    pub fn from_name(name: &str) -> Option<AggregateKind> {
        Some(match name {
            "sum" => AggregateKind::Sum,
            "count" => AggregateKind::Count,
            "avg" => AggregateKind::Avg,
            "min" => AggregateKind::Min,
            "max" => AggregateKind::Max,
            _ => return None,
        })
    }

    /// How many state fields the function has.
    fn state_fields(self) -> usize {
        match self {
            AggregateKind::Avg => 2,
            _ => 1,
        }
    }
}

/// One aggregate function of the step.
#[derive(Debug, Clone)]
pub struct AggregateFunction {
    /// Which function.
    pub kind: AggregateKind,
    /// Its argument, over the step's input.
    pub argument: Arc<dyn PhysicalExpr>,
}

/// A partial aggregate: group keys, functions and the output schema (keys, then each
/// function's state fields).
#[derive(Debug, Clone)]
pub struct AggregateStep {
    /// Group key expressions over the step's input (empty: one group).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The functions, in output order.
    pub functions: Vec<AggregateFunction>,
    /// The output schema.
    pub schema: SchemaRef,
}

impl AggregateStep {
    /// A short rendering for `EXPLAIN`.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        let functions: Vec<String> = self
            .functions
            .iter()
            .map(|f| format!("{}({})", f.kind.name(), f.argument))
            .collect();
        format!(
            "partial_aggregate(keys=[{}], {})",
            keys.join(", "),
            functions.join(", ")
        )
    }
}

/// A function ready to run: its argument and the types of its state.
#[derive(Debug)]
struct CompiledFunction {
    kind: AggregateKind,
    argument: Value,
    argument_type: DataType,
    state_types: Vec<DataType>,
}

/// The DataFusion state types of `kind` over `arg`, as far as the accumulators produce them;
/// `false` for anything else.
fn states_match(kind: AggregateKind, arg: &DataType, states: &[DataType]) -> bool {
    use DataType::*;
    let same_native = |state: &DataType| match (arg, state) {
        (Decimal128(_, s), Decimal128(_, t)) => s == t,
        (Int64, Int64) | (UInt64, UInt64) | (Float64, Float64) => true,
        _ => false,
    };
    match (kind, states) {
        (AggregateKind::Sum, [state]) => same_native(state),
        (AggregateKind::Avg, [UInt64, sum]) => {
            matches!(arg, Float64 | Decimal128(..)) && same_native(sum)
        }
        (AggregateKind::Count, [Int64]) => true,
        (AggregateKind::Min | AggregateKind::Max, [state]) => {
            state == arg
                && with_primitive_type!(arg, T => { let _ = std::marker::PhantomData::<T>; true }, _ => false)
        }
        _ => false,
    }
}

impl CompiledFunction {
    fn accumulator(&self, grouped: bool) -> Box<dyn Accumulate> {
        let state = self
            .state_types
            .last()
            .expect("checked at compile time")
            .clone();
        if let DataType::Decimal128(..) = self.argument_type {
            match self.kind {
                AggregateKind::Sum => return Box::new(NarrowDecimalSum::new(state)),
                AggregateKind::Avg => return Box::new(NarrowDecimalAvg::new(state, grouped)),
                _ => {}
            }
        }
        with_primitive_type!(&self.argument_type, T => match self.kind {
            AggregateKind::Sum => Box::new(Sum::<T>::new(state)),
            AggregateKind::Avg => Box::new(Avg::<T>::new(state, grouped)),
            AggregateKind::Min => Box::new(Extreme::<T, false>::new(state)),
            AggregateKind::Max => Box::new(Extreme::<T, true>::new(state)),
            AggregateKind::Count => Box::new(Count::default()),
        }, _ => Box::new(Count::default()))
    }

    fn arg<'a>(&self, batch: &'a RecordBatch, computed: &'a Option<ArrayRef>) -> Arg<'a> {
        match (&self.argument, computed) {
            (Value::Column(i), _) => Arg::Rows(batch.column(*i)),
            (Value::Literal(v), _) => Arg::Constant { null: v.is_null() },
            (_, Some(a)) => Arg::Dense(a),
            (_, None) => unreachable!("computed arguments are evaluated first"),
        }
    }
}

/// A partial aggregate compiled into key and accumulator kernels.
#[derive(Debug)]
pub struct CompiledAggregate {
    keys: Vec<Value>,
    key_schema: SchemaRef,
    functions: Vec<CompiledFunction>,
    schema: SchemaRef,
}

impl CompiledAggregate {
    /// Compiles `step` over rows of `input`; `Err` says what has no kernel.
    pub fn compile(step: &AggregateStep, input: &Schema) -> Result<CompiledAggregate, Unsupported> {
        let fields = step.schema.fields();
        let mut next = 0;
        let mut keys = Vec::new();
        for key in &step.keys {
            let field = fields.get(next).ok_or("aggregate schema lacks a key")?;
            let t = key.data_type(input).map_err(|e| e.to_string())?;
            if &t != field.data_type() {
                return Err(format!(
                    "key {key} is {t}, the output has {}",
                    field.data_type()
                ));
            }
            keys.push(kernel::compile_value(key, input)?);
            next += 1;
        }
        let key_schema = Arc::new(Schema::new(fields[..next].to_vec()));
        let mut functions = Vec::new();
        for f in &step.functions {
            let n = f.kind.state_fields();
            let states: Vec<DataType> = fields
                .get(next..next + n)
                .ok_or("aggregate schema lacks a state")?
                .iter()
                .map(|s| s.data_type().clone())
                .collect();
            next += n;
            let argument_type = f.argument.data_type(input).map_err(|e| e.to_string())?;
            if !states_match(f.kind, &argument_type, &states) {
                return Err(format!(
                    "{}({}) of {argument_type} with states {states:?}",
                    f.kind.name(),
                    f.argument
                ));
            }
            functions.push(CompiledFunction {
                kind: f.kind,
                argument: kernel::compile_value(&f.argument, input)?,
                argument_type,
                state_types: states,
            });
        }
        if next != fields.len() {
            return Err("aggregate schema has fields no function produces".into());
        }
        Ok(CompiledAggregate {
            keys,
            key_schema,
            functions,
            schema: step.schema.clone(),
        })
    }

    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// When to stop grouping: DataFusion's partial-aggregation probe.
#[derive(Debug, Clone, Copy)]
pub struct SkipProbe {
    /// Rows after which the ratio is judged.
    pub rows_threshold: usize,
    /// Groups per row above which grouping stops (≥ 1: never).
    pub ratio_threshold: f64,
}

/// A running partial aggregate over one task's batches.
#[derive(Debug)]
pub struct Aggregator {
    program: Arc<CompiledAggregate>,
    /// `None`: no `GROUP BY`, one group.
    keys: Option<GroupKeys>,
    accumulators: Vec<Box<dyn Accumulate>>,
    groups: Vec<u32>,
    probe: Option<SkipProbe>,
    rows_seen: usize,
    skipping: bool,
}

impl Aggregator {
    /// An empty aggregate.
    pub fn new(program: Arc<CompiledAggregate>, probe: SkipProbe) -> DfResult<Aggregator> {
        let keys = if program.keys.is_empty() {
            None
        } else {
            Some(GroupKeys::new(program.key_schema.clone())?)
        };
        let mut accumulators: Vec<Box<dyn Accumulate>> = program
            .functions
            .iter()
            .map(|f| f.accumulator(keys.is_some()))
            .collect();
        if keys.is_none() {
            accumulators.iter_mut().for_each(|a| a.resize(1));
        }
        let probe = (keys.is_some() && probe.ratio_threshold < 1.0).then_some(probe);
        Ok(Aggregator {
            program,
            keys,
            accumulators,
            groups: Vec::new(),
            probe,
            rows_seen: 0,
            skipping: false,
        })
    }

    /// Bytes held by the groups and states.
    pub fn size(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.size())
            + self.groups.capacity() * 4
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Whether there are groups to emit (with no `GROUP BY`: always).
    pub fn has_groups(&self) -> bool {
        self.keys.as_ref().is_none_or(|k| !k.is_empty())
    }

    /// Adds the selected rows of `batch`; returns states to send on now (when grouping was
    /// given up: the groups so far, or these rows' own states).
    pub fn update(
        &mut self,
        batch: &RecordBatch,
        sel: &Selection,
    ) -> DfResult<Option<RecordBatch>> {
        if sel.is_empty() {
            return Ok(None);
        }
        let computed: Vec<Option<ArrayRef>> = self
            .program
            .functions
            .iter()
            .map(|f| match f.argument {
                Value::Column(_) | Value::Literal(_) => Ok(None),
                _ => Ok(Some(f.argument.eval(batch, sel)?.into_array(sel.len())?)),
            })
            .collect::<DfResult<_>>()?;
        if self.skipping {
            return self.row_states(batch, sel, &computed).map(Some);
        }
        let grouped = match &mut self.keys {
            None => false,
            Some(keys) => {
                let key_columns = key_columns(&self.program.keys, batch)?;
                if let Mapped::Renumbered(order) =
                    keys.map_rows(&key_columns, sel, &mut self.groups)?
                {
                    self.accumulators.iter_mut().for_each(|a| a.permute(&order));
                }
                let n = keys.len();
                self.accumulators.iter_mut().for_each(|a| a.resize(n));
                true
            }
        };
        let groups = grouped.then_some(self.groups.as_slice());
        for ((f, acc), c) in self
            .program
            .functions
            .iter()
            .zip(&mut self.accumulators)
            .zip(&computed)
        {
            acc.update(&f.arg(batch, c), sel, groups);
        }
        if let (Some(probe), Some(keys)) = (self.probe, &self.keys) {
            self.rows_seen += sel.len();
            if self.rows_seen >= probe.rows_threshold
                && keys.len() as f64 / self.rows_seen as f64 > probe.ratio_threshold
            {
                self.skipping = true;
                return self.emit();
            }
        }
        Ok(None)
    }

    fn row_states(
        &self,
        batch: &RecordBatch,
        sel: &Selection,
        computed: &[Option<ArrayRef>],
    ) -> DfResult<RecordBatch> {
        let mut columns = Vec::with_capacity(self.program.schema.fields().len());
        for key in key_columns(&self.program.keys, batch)? {
            columns.push(sel.gather(&key)?);
        }
        for ((f, acc), c) in self
            .program
            .functions
            .iter()
            .zip(&self.accumulators)
            .zip(computed)
        {
            columns.extend(acc.row_states(&f.arg(batch, c), sel)?);
        }
        with_rows(&self.program.schema, columns, sel.len())
    }

    /// Every group's states (one row with no `GROUP BY`, even with no input); the
    /// aggregator is left empty.
    pub fn emit(&mut self) -> DfResult<Option<RecordBatch>> {
        let (mut columns, rows) = match &mut self.keys {
            Some(keys) => {
                let rows = keys.len();
                if rows == 0 {
                    return Ok(None);
                }
                (keys.emit()?, rows)
            }
            None => (Vec::new(), 1),
        };
        for acc in &mut self.accumulators {
            columns.extend(acc.emit());
            if self.keys.is_none() {
                acc.resize(1);
            }
        }
        self.groups = Vec::new();
        with_rows(&self.program.schema, columns, rows).map(Some)
    }
}

fn key_columns(keys: &[Value], batch: &RecordBatch) -> DfResult<Vec<ArrayRef>> {
    let all = Selection::All(batch.num_rows());
    keys.iter()
        .map(|k| match k {
            Value::Column(i) => Ok(batch.column(*i).clone()),
            other => other.eval(batch, &all)?.into_array(batch.num_rows()),
        })
        .collect()
}
