//! Compiled expressions: DataFusion physical expressions turned into typed kernels that work on
//! the selected rows of a batch.
//!
//! [`compile_value`] and [`compile_predicate`] walk an expression once (per stage, on each
//! executor) and pick, for every node, a kernel specialised for its Arrow types: the match on
//! operator and type happens once per batch, and the loops over rows are monomorphised generic
//! functions with no dynamic dispatch inside. Predicates narrow a [`Selection`] instead of
//! building a boolean mask and a filtered copy of the batch; `AND` narrows term by term, so later
//! terms look only at rows the earlier ones kept. Values are computed only for selected rows;
//! arithmetic reads its column operands through the selection directly.
//!
//! Semantics are DataFusion's: integer arithmetic wraps (DataFusion's default), decimal `+`/`-`
//! align scales and `*` adds them, comparisons use Arrow's total order for floats, `AND`/`OR`
//! are Kleene logic and a filter keeps only rows whose predicate is true. An expression this
//! module does not know is reported by `compile_*` as an `Err` naming it, so the planner leaves
//! that operator unfused: never a wrong answer. This is also the seam for native code: a
//! later compiler can replace a `Value` or `Predicate` tree with generated code of the same
//! contract.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, PrimitiveArray, RecordBatch,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::{
    ArrowNativeTypeOp, ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};

use super::selection::Selection;

/// Why an expression was not compiled.
pub type Unsupported = String;

/// A compiled value: computes an expression for the selected rows, densely.
#[derive(Debug, Clone)]
pub enum Value {
    /// A column of the input batch.
    Column(usize),
    /// A constant.
    Literal(ScalarValue),
    /// Arithmetic on two values.
    Arith(Box<Arith>),
    /// A predicate's three-valued truth, as a boolean value.
    Truth(Box<Predicate>),
}

/// `left op right` on numbers of one type (decimals: of aligned scales).
#[derive(Debug, Clone)]
pub struct Arith {
    op: ArithOp,
    left: Value,
    right: Value,
    out: DataType,
    /// Decimal `+`/`-`: the factors that bring each side to the result's scale.
    scale_factors: (i128, i128),
}

/// Arithmetic operators compiled (division and remainder stay with DataFusion: their error and
/// rounding rules are not worth duplicating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// A compiled predicate.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// `left op right`.
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        left: Value,
        /// Right operand.
        right: Value,
    },
    /// Every term (Kleene `AND`).
    And(Vec<Predicate>),
    /// Any term (Kleene `OR`).
    Or(Vec<Predicate>),
    /// `NOT p`.
    Not(Box<Predicate>),
    /// `v IS NULL`.
    IsNull(Value),
    /// `v IS NOT NULL`.
    IsNotNull(Value),
    /// A boolean value used as a predicate.
    Boolean(Value),
}

/// A value computed for the selected rows: an array with one row per selected row, or a constant.
#[derive(Debug, Clone)]
pub enum Dense {
    /// One row per selected row.
    Array(ArrayRef),
    /// The same value for every row.
    Scalar(ScalarValue),
}

impl Dense {
    /// As an array of `len` rows.
    pub fn into_array(self, len: usize) -> DfResult<ArrayRef> {
        match self {
            Dense::Array(a) => Ok(a),
            Dense::Scalar(s) => s.to_array_of_size(len),
        }
    }
}

fn unsupported(expr: &dyn PhysicalExpr, why: &str) -> Unsupported {
    format!("{expr}: {why}")
}

fn data_type(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<DataType, Unsupported> {
    expr.data_type(schema)
        .map_err(|e| unsupported(expr.as_ref(), &e.to_string()))
}

fn cmp_op(op: &Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::NotEq => CmpOp::NotEq,
        Operator::Lt => CmpOp::Lt,
        Operator::LtEq => CmpOp::LtEq,
        Operator::Gt => CmpOp::Gt,
        Operator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

fn is_plain_number(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
    )
}

/// Types comparisons are compiled for (through Arrow's comparison kernels when not a fast path).
fn is_comparable(t: &DataType) -> bool {
    is_plain_number(t)
        || matches!(
            t,
            DataType::Decimal128(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Timestamp(..)
        )
}

/// Compiles `expr` (over rows of `schema`) into a value kernel.
pub fn compile_value(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Value, Unsupported> {
    let any = expr.as_ref();
    if let Some(c) = any.downcast_ref::<Column>() {
        if c.index() >= schema.fields().len() {
            return Err(unsupported(expr.as_ref(), "column out of range"));
        }
        return Ok(Value::Column(c.index()));
    }
    if let Some(l) = any.downcast_ref::<Literal>() {
        return Ok(Value::Literal(l.value().clone()));
    }
    if let Some(b) = any.downcast_ref::<BinaryExpr>() {
        let op = match b.op() {
            Operator::Plus => Some(ArithOp::Add),
            Operator::Minus => Some(ArithOp::Sub),
            Operator::Multiply => Some(ArithOp::Mul),
            _ => None,
        };
        if let Some(op) = op {
            // BinaryExpr has no getter for it: compare with the wrapping form.
            let wrapping = BinaryExpr::new(b.left().clone(), *b.op(), b.right().clone());
            if *b != wrapping {
                return Err(unsupported(expr.as_ref(), "checked arithmetic"));
            }
            return compile_arith(expr, op, b, schema);
        }
    }
    if data_type(expr, schema)? == DataType::Boolean {
        return Ok(Value::Truth(Box::new(compile_predicate(expr, schema)?)));
    }
    Err(unsupported(expr.as_ref(), "no compiled kernel"))
}

fn compile_arith(
    expr: &Arc<dyn PhysicalExpr>,
    op: ArithOp,
    b: &BinaryExpr,
    schema: &Schema,
) -> Result<Value, Unsupported> {
    let (lt, rt) = (data_type(b.left(), schema)?, data_type(b.right(), schema)?);
    let out = data_type(expr, schema)?;
    let scale_factors = match (&lt, &rt, &out) {
        (l, r, o) if l == r && r == o && is_plain_number(o) => (1, 1),
        (DataType::Decimal128(_, s1), DataType::Decimal128(_, s2), DataType::Decimal128(_, s)) => {
            let (s1, s2, s) = (*s1 as i32, *s2 as i32, *s as i32);
            match op {
                ArithOp::Add | ArithOp::Sub if s == s1.max(s2) && s1 >= 0 && s2 >= 0 => {
                    (10i128.pow((s - s1) as u32), 10i128.pow((s - s2) as u32))
                }
                ArithOp::Mul if s == s1 + s2 => (1, 1),
                _ => return Err(unsupported(expr.as_ref(), "decimal scales")),
            }
        }
        _ => {
            return Err(unsupported(
                expr.as_ref(),
                &format!("arithmetic on {lt} and {rt}"),
            ));
        }
    };
    Ok(Value::Arith(Box::new(Arith {
        op,
        left: compile_value(b.left(), schema)?,
        right: compile_value(b.right(), schema)?,
        out,
        scale_factors,
    })))
}

/// Compiles a boolean `expr` (over rows of `schema`) into a predicate kernel.
pub fn compile_predicate(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Predicate, Unsupported> {
    let any = expr.as_ref();
    if let Some(b) = any.downcast_ref::<BinaryExpr>() {
        match b.op() {
            Operator::And | Operator::Or => {
                let mut terms = Vec::new();
                for side in [b.left(), b.right()] {
                    match (compile_predicate(side, schema)?, b.op()) {
                        (Predicate::And(inner), Operator::And) => terms.extend(inner),
                        (Predicate::Or(inner), Operator::Or) => terms.extend(inner),
                        (p, _) => terms.push(p),
                    }
                }
                return Ok(if *b.op() == Operator::And {
                    Predicate::And(terms)
                } else {
                    Predicate::Or(terms)
                });
            }
            op => {
                if let Some(op) = cmp_op(op) {
                    let (lt, rt) = (data_type(b.left(), schema)?, data_type(b.right(), schema)?);
                    if lt != rt || !is_comparable(&lt) {
                        return Err(unsupported(
                            expr.as_ref(),
                            &format!("comparison of {lt} and {rt}"),
                        ));
                    }
                    return Ok(Predicate::Compare {
                        op,
                        left: compile_value(b.left(), schema)?,
                        right: compile_value(b.right(), schema)?,
                    });
                }
            }
        }
    }
    if let Some(n) = any.downcast_ref::<NotExpr>() {
        return Ok(Predicate::Not(Box::new(compile_predicate(
            n.arg(),
            schema,
        )?)));
    }
    if let Some(l) = any.downcast_ref::<InListExpr>() {
        // `x IN (a, b)` is `x = a OR x = b` in three-valued logic; `NOT IN` its negation.
        let t = data_type(l.expr(), schema)?;
        if !is_comparable(&t) || l.list().is_empty() {
            return Err(unsupported(expr.as_ref(), &format!("IN list of {t}")));
        }
        let x = compile_value(l.expr(), schema)?;
        let mut terms = Vec::with_capacity(l.list().len());
        for item in l.list() {
            if data_type(item, schema)? != t {
                return Err(unsupported(expr.as_ref(), "IN list of mixed types"));
            }
            terms.push(Predicate::Compare {
                op: CmpOp::Eq,
                left: x.clone(),
                right: compile_value(item, schema)?,
            });
        }
        let any_of = Predicate::Or(terms);
        return Ok(if l.negated() {
            Predicate::Not(Box::new(any_of))
        } else {
            any_of
        });
    }
    if let Some(n) = any.downcast_ref::<IsNullExpr>() {
        return Ok(Predicate::IsNull(compile_value(n.arg(), schema)?));
    }
    if let Some(n) = any.downcast_ref::<IsNotNullExpr>() {
        return Ok(Predicate::IsNotNull(compile_value(n.arg(), schema)?));
    }
    if data_type(expr, schema)? == DataType::Boolean
        && (any.downcast_ref::<Column>().is_some() || any.downcast_ref::<Literal>().is_some())
    {
        return Ok(Predicate::Boolean(compile_value(expr, schema)?));
    }
    Err(unsupported(expr.as_ref(), "no compiled kernel"))
}

/// Runs `$body` with `$t` bound to the Arrow primitive type of `$dt`; `$other` otherwise.
macro_rules! with_primitive_type {
    ($dt:expr, $t:ident => $body:expr, _ => $other:expr) => {
        match $dt {
            DataType::Int8 => {
                type $t = Int8Type;
                $body
            }
            DataType::Int16 => {
                type $t = Int16Type;
                $body
            }
            DataType::Int32 => {
                type $t = Int32Type;
                $body
            }
            DataType::Int64 => {
                type $t = Int64Type;
                $body
            }
            DataType::UInt8 => {
                type $t = UInt8Type;
                $body
            }
            DataType::UInt16 => {
                type $t = UInt16Type;
                $body
            }
            DataType::UInt32 => {
                type $t = UInt32Type;
                $body
            }
            DataType::UInt64 => {
                type $t = UInt64Type;
                $body
            }
            DataType::Float32 => {
                type $t = Float32Type;
                $body
            }
            DataType::Float64 => {
                type $t = Float64Type;
                $body
            }
            DataType::Date32 => {
                type $t = Date32Type;
                $body
            }
            DataType::Date64 => {
                type $t = Date64Type;
                $body
            }
            DataType::Decimal128(..) => {
                type $t = Decimal128Type;
                $body
            }
            _ => $other,
        }
    };
}

/// An arithmetic operand, resolved once per batch.
enum Operand<'a, T: ArrowPrimitiveType> {
    /// A column of the batch, read through the selection.
    Indexed(&'a PrimitiveArray<T>),
    /// Already one row per selected row.
    Dense(&'a PrimitiveArray<T>),
    /// A constant (`None`: null).
    Constant(Option<T::Native>),
}

/// Reads an operand's value for the `i`-th selected row, which is row `row` of the batch.
trait Get<T: ArrowPrimitiveType> {
    fn get(&self, i: usize, row: usize) -> T::Native;
    fn valid(&self, i: usize, row: usize) -> bool;
    fn has_nulls(&self) -> bool;
}

struct ByRow<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>);
struct ByPosition<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>);
struct Always<T: ArrowPrimitiveType>(T::Native, bool);

impl<T: ArrowPrimitiveType> Get<T> for ByRow<'_, T> {
    #[inline(always)]
    fn get(&self, _i: usize, row: usize) -> T::Native {
        self.0.values()[row]
    }
    #[inline(always)]
    fn valid(&self, _i: usize, row: usize) -> bool {
        self.0.is_valid(row)
    }
    fn has_nulls(&self) -> bool {
        self.0.null_count() > 0
    }
}

impl<T: ArrowPrimitiveType> Get<T> for ByPosition<'_, T> {
    #[inline(always)]
    fn get(&self, i: usize, _row: usize) -> T::Native {
        self.0.values()[i]
    }
    #[inline(always)]
    fn valid(&self, i: usize, _row: usize) -> bool {
        self.0.is_valid(i)
    }
    fn has_nulls(&self) -> bool {
        self.0.null_count() > 0
    }
}

impl<T: ArrowPrimitiveType> Get<T> for Always<T> {
    #[inline(always)]
    fn get(&self, _i: usize, _row: usize) -> T::Native {
        self.0
    }
    #[inline(always)]
    fn valid(&self, _i: usize, _row: usize) -> bool {
        self.1
    }
    fn has_nulls(&self) -> bool {
        !self.1
    }
}

/// The typed loop: `f(left, right)` for every selected row.
fn binary_loop<T, L, R, F>(
    l: &L,
    r: &R,
    sel: &Selection,
    out: &DataType,
    f: F,
) -> DfResult<ArrayRef>
where
    T: ArrowPrimitiveType,
    L: Get<T>,
    R: Get<T>,
    F: Fn(T::Native, T::Native) -> T::Native,
{
    let n = sel.len();
    let mut values = Vec::with_capacity(n);
    for (i, row) in sel.rows().enumerate() {
        let row = row as usize;
        values.push(f(l.get(i, row), r.get(i, row)));
    }
    let nulls = if l.has_nulls() || r.has_nulls() {
        let mut valid = BooleanBufferBuilder::new(n);
        for (i, row) in sel.rows().enumerate() {
            let row = row as usize;
            valid.append(l.valid(i, row) && r.valid(i, row));
        }
        Some(NullBuffer::new(valid.finish()))
    } else {
        None
    };
    let array = PrimitiveArray::<T>::try_new(values.into(), nulls)?.with_data_type(out.clone());
    Ok(Arc::new(array))
}

fn dispatch_sides<T, F>(
    l: Operand<'_, T>,
    r: Operand<'_, T>,
    sel: &Selection,
    out: &DataType,
    f: F,
) -> DfResult<ArrayRef>
where
    T: ArrowPrimitiveType,
    F: Fn(T::Native, T::Native) -> T::Native,
{
    macro_rules! with_right {
        ($left:expr) => {
            match r {
                Operand::Indexed(a) => binary_loop::<T, _, _, _>(&$left, &ByRow(a), sel, out, f),
                Operand::Dense(a) => binary_loop::<T, _, _, _>(&$left, &ByPosition(a), sel, out, f),
                Operand::Constant(c) => binary_loop::<T, _, _, _>(
                    &$left,
                    &Always::<T>(c.unwrap_or_default(), c.is_some()),
                    sel,
                    out,
                    f,
                ),
            }
        };
    }
    match l {
        Operand::Indexed(a) => with_right!(ByRow(a)),
        Operand::Dense(a) => with_right!(ByPosition(a)),
        Operand::Constant(c) => with_right!(Always::<T>(c.unwrap_or_default(), c.is_some())),
    }
}

/// An operand's source, kept alive while the typed loop borrows it.
enum Source {
    Batch(usize),
    Dense(ArrayRef),
    Constant(ScalarValue),
}

fn constant<T: ArrowPrimitiveType>(v: &ScalarValue, t: &DataType) -> DfResult<Option<T::Native>> {
    if v.is_null() {
        return Ok(None);
    }
    let v = v.cast_to(t)?.to_array_of_size(1)?;
    Ok(Some(v.as_primitive::<T>().value(0)))
}

fn operand<'a, T: ArrowPrimitiveType>(
    source: &'a Source,
    batch: &'a RecordBatch,
    out: &DataType,
) -> DfResult<Operand<'a, T>> {
    Ok(match source {
        Source::Batch(i) => Operand::Indexed(batch.column(*i).as_primitive::<T>()),
        Source::Dense(a) => Operand::Dense(a.as_primitive::<T>()),
        Source::Constant(v) => {
            // A decimal constant keeps its own scale (the scale factors align it).
            let t = match (v.data_type(), out) {
                (t @ DataType::Decimal128(..), DataType::Decimal128(..)) => t,
                _ => out.clone(),
            };
            Operand::Constant(constant::<T>(v, &t)?)
        }
    })
}

impl Arith {
    fn source(value: &Value, batch: &RecordBatch, sel: &Selection) -> DfResult<Source> {
        Ok(match value {
            Value::Column(i) => Source::Batch(*i),
            Value::Literal(v) => Source::Constant(v.clone()),
            other => match other.eval(batch, sel)? {
                Dense::Array(a) => Source::Dense(a),
                Dense::Scalar(s) => Source::Constant(s),
            },
        })
    }

    fn eval(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<ArrayRef> {
        let left = Self::source(&self.left, batch, sel)?;
        let right = Self::source(&self.right, batch, sel)?;
        let (op, (lm, rm)) = (self.op, self.scale_factors);
        with_primitive_type!(&self.out, T => {
            let l = operand::<T>(&left, batch, &self.out)?;
            let r = operand::<T>(&right, batch, &self.out)?;
            arith_typed::<T>(op, lm, rm, l, r, sel, &self.out)
        }, _ => Err(DataFusionError::Internal(format!(
            "compiled arithmetic on {}",
            self.out
        ))))
    }
}

/// Native arithmetic for each primitive type, as DataFusion computes it by default.
trait Arithmetic: ArrowPrimitiveType {
    fn apply(op: ArithOp, lm: i128, rm: i128, a: Self::Native, b: Self::Native) -> Self::Native;
}

macro_rules! wrapping_arithmetic {
    ($($t:ty),*) => {$(
        impl Arithmetic for $t {
            #[inline(always)]
            fn apply(op: ArithOp, _lm: i128, _rm: i128, a: Self::Native, b: Self::Native) -> Self::Native {
                match op {
                    ArithOp::Add => a.add_wrapping(b),
                    ArithOp::Sub => a.sub_wrapping(b),
                    ArithOp::Mul => a.mul_wrapping(b),
                }
            }
        }
    )*};
}

wrapping_arithmetic!(
    Int8Type,
    Int16Type,
    Int32Type,
    Int64Type,
    UInt8Type,
    UInt16Type,
    UInt32Type,
    UInt64Type,
    Float32Type,
    Float64Type,
    Date32Type,
    Date64Type
);

impl Arithmetic for Decimal128Type {
    #[inline(always)]
    fn apply(op: ArithOp, lm: i128, rm: i128, a: i128, b: i128) -> i128 {
        match op {
            ArithOp::Add => a.wrapping_mul(lm).wrapping_add(b.wrapping_mul(rm)),
            ArithOp::Sub => a.wrapping_mul(lm).wrapping_sub(b.wrapping_mul(rm)),
            ArithOp::Mul => a.wrapping_mul(b),
        }
    }
}

fn arith_typed<T: Arithmetic>(
    op: ArithOp,
    lm: i128,
    rm: i128,
    l: Operand<'_, T>,
    r: Operand<'_, T>,
    sel: &Selection,
    out: &DataType,
) -> DfResult<ArrayRef> {
    // One monomorphised loop per (type, operator, operand kinds): the operator is a constant
    // inside each closure, so `apply`'s match folds away.
    match op {
        ArithOp::Add => dispatch_sides(l, r, sel, out, |a, b| T::apply(ArithOp::Add, lm, rm, a, b)),
        ArithOp::Sub => dispatch_sides(l, r, sel, out, |a, b| T::apply(ArithOp::Sub, lm, rm, a, b)),
        ArithOp::Mul => dispatch_sides(l, r, sel, out, |a, b| T::apply(ArithOp::Mul, lm, rm, a, b)),
    }
}

impl Value {
    /// Marks the input columns this value reads.
    pub fn columns(&self, used: &mut [bool]) {
        match self {
            Value::Column(i) => used[*i] = true,
            Value::Literal(_) => {}
            Value::Arith(a) => {
                a.left.columns(used);
                a.right.columns(used);
            }
            Value::Truth(p) => p.columns(used),
        }
    }

    /// This value reading column `map[i]` where it read column `i`.
    pub fn remap(&self, map: &[usize]) -> Value {
        match self {
            Value::Column(i) => Value::Column(map[*i]),
            Value::Literal(v) => Value::Literal(v.clone()),
            Value::Arith(a) => Value::Arith(Box::new(Arith {
                left: a.left.remap(map),
                right: a.right.remap(map),
                ..(**a).clone()
            })),
            Value::Truth(p) => Value::Truth(Box::new(p.remap(map))),
        }
    }

    /// The value for every selected row of `batch`.
    pub fn eval(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<Dense> {
        Ok(match self {
            Value::Column(i) => Dense::Array(sel.gather(batch.column(*i))?),
            Value::Literal(v) => Dense::Scalar(v.clone()),
            Value::Arith(a) => Dense::Array(a.eval(batch, sel)?),
            Value::Truth(p) => Dense::Array(Arc::new(p.truth(batch, sel)?)),
        })
    }
}

/// Native values as SQL compares them: Arrow's total order, except that DataFusion makes
/// `-0.0` equal `+0.0` (adding `+0.0` turns `-0.0` into `+0.0` and leaves every other value,
/// NaN included, as it is).
trait SqlOrder: ArrowNativeTypeOp {
    #[inline(always)]
    fn sql(self) -> Self {
        self
    }
}

macro_rules! sql_order_as_is {
    ($($t:ty),*) => {$(impl SqlOrder for $t {})*};
}

sql_order_as_is!(i8, i16, i32, i64, u8, u16, u32, u64, i128);

impl SqlOrder for f32 {
    #[inline(always)]
    fn sql(self) -> Self {
        self + 0.0
    }
}

impl SqlOrder for f64 {
    #[inline(always)]
    fn sql(self) -> Self {
        self + 0.0
    }
}

/// A dense operand of a comparison with `-0.0` made `+0.0`, as DataFusion compares floats.
fn sql_zeros(d: Dense) -> DfResult<Dense> {
    Ok(match d {
        Dense::Array(a) => match a.data_type() {
            DataType::Float64 => Dense::Array(Arc::new(
                a.as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(|v| v + 0.0),
            )),
            DataType::Float32 => Dense::Array(Arc::new(
                a.as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(|v| v + 0.0),
            )),
            _ => Dense::Array(a),
        },
        Dense::Scalar(ScalarValue::Float64(Some(v))) => {
            Dense::Scalar(ScalarValue::Float64(Some(v + 0.0)))
        }
        Dense::Scalar(ScalarValue::Float32(Some(v))) => {
            Dense::Scalar(ScalarValue::Float32(Some(v + 0.0)))
        }
        other => other,
    })
}

/// `left op right` for primitive values, as DataFusion compares them.
#[inline(always)]
fn compare<N: SqlOrder>(op: CmpOp, a: N, b: N) -> bool {
    let (a, b) = (a.sql(), b.sql());
    match op {
        CmpOp::Eq => a.is_eq(b),
        CmpOp::NotEq => a.is_ne(b),
        CmpOp::Lt => a.is_lt(b),
        CmpOp::LtEq => a.is_le(b),
        CmpOp::Gt => a.is_gt(b),
        CmpOp::GtEq => a.is_ge(b),
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        same => same,
    }
}

/// Rows of `sel` where `column op constant` is true: the selection's fast path.
fn select_column_constant<T: ArrowPrimitiveType>(
    column: &PrimitiveArray<T>,
    op: CmpOp,
    constant: T::Native,
    sel: &Selection,
) -> Selection
where
    T::Native: SqlOrder,
{
    let values = column.values();
    macro_rules! narrow {
        ($op:expr) => {
            if column.null_count() == 0 {
                narrow_rows(sel, |row| compare($op, values[row as usize], constant))
            } else {
                narrow_rows(sel, |row| {
                    column.is_valid(row as usize) && compare($op, values[row as usize], constant)
                })
            }
        };
    }
    match op {
        CmpOp::Eq => narrow!(CmpOp::Eq),
        CmpOp::NotEq => narrow!(CmpOp::NotEq),
        CmpOp::Lt => narrow!(CmpOp::Lt),
        CmpOp::LtEq => narrow!(CmpOp::LtEq),
        CmpOp::Gt => narrow!(CmpOp::Gt),
        CmpOp::GtEq => narrow!(CmpOp::GtEq),
    }
}

#[inline(always)]
fn narrow_rows(sel: &Selection, mut keep: impl FnMut(u32) -> bool) -> Selection {
    // Branch-free: every row is written, and the cursor moves only past kept ones.
    let mut out = vec![0u32; sel.len() + 1];
    let mut n = 0;
    for row in sel.rows() {
        out[n] = row;
        n += usize::from(keep(row));
    }
    out.truncate(n);
    Selection::Rows(out)
}

/// Rows of `sel` whose dense truth value is true (null counts as false).
fn select_true(truth: &BooleanArray, sel: &Selection) -> Selection {
    let bits = match truth.nulls() {
        Some(nulls) if truth.null_count() > 0 => truth.values() & nulls.inner(),
        _ => truth.values().clone(),
    };
    // Word-at-a-time over the set bits.
    Selection::Rows(match sel {
        Selection::All(_) => bits.set_indices().map(|i| i as u32).collect(),
        Selection::Rows(rows) => bits.set_indices().map(|i| rows[i]).collect(),
    })
}

/// Rows of `sel` where `left op right`, both columns of one primitive type: a fast path.
fn select_column_column<T: ArrowPrimitiveType>(
    left: &PrimitiveArray<T>,
    op: CmpOp,
    right: &PrimitiveArray<T>,
    sel: &Selection,
) -> Selection
where
    T::Native: SqlOrder,
{
    let (l, r) = (left.values(), right.values());
    let nulls = left.null_count() > 0 || right.null_count() > 0;
    macro_rules! narrow {
        ($op:expr) => {
            if nulls {
                narrow_rows(sel, |row| {
                    let row = row as usize;
                    left.is_valid(row) && right.is_valid(row) && compare($op, l[row], r[row])
                })
            } else {
                narrow_rows(sel, |row| compare($op, l[row as usize], r[row as usize]))
            }
        };
    }
    match op {
        CmpOp::Eq => narrow!(CmpOp::Eq),
        CmpOp::NotEq => narrow!(CmpOp::NotEq),
        CmpOp::Lt => narrow!(CmpOp::Lt),
        CmpOp::LtEq => narrow!(CmpOp::LtEq),
        CmpOp::Gt => narrow!(CmpOp::Gt),
        CmpOp::GtEq => narrow!(CmpOp::GtEq),
    }
}

fn datum(d: &Dense) -> DfResult<Box<dyn arrow::array::Datum>> {
    Ok(match d {
        Dense::Array(a) => Box::new(a.clone()),
        Dense::Scalar(s) => Box::new(s.to_scalar()?),
    })
}

impl Predicate {
    /// Marks the input columns this predicate reads.
    pub fn columns(&self, used: &mut [bool]) {
        match self {
            Predicate::Compare { left, right, .. } => {
                left.columns(used);
                right.columns(used);
            }
            Predicate::And(terms) | Predicate::Or(terms) => {
                terms.iter().for_each(|t| t.columns(used))
            }
            Predicate::Not(p) => p.columns(used),
            Predicate::IsNull(v) | Predicate::IsNotNull(v) | Predicate::Boolean(v) => {
                v.columns(used)
            }
        }
    }

    /// This predicate reading column `map[i]` where it read column `i`.
    pub fn remap(&self, map: &[usize]) -> Predicate {
        match self {
            Predicate::Compare { op, left, right } => Predicate::Compare {
                op: *op,
                left: left.remap(map),
                right: right.remap(map),
            },
            Predicate::And(terms) => Predicate::And(terms.iter().map(|t| t.remap(map)).collect()),
            Predicate::Or(terms) => Predicate::Or(terms.iter().map(|t| t.remap(map)).collect()),
            Predicate::Not(p) => Predicate::Not(Box::new(p.remap(map))),
            Predicate::IsNull(v) => Predicate::IsNull(v.remap(map)),
            Predicate::IsNotNull(v) => Predicate::IsNotNull(v.remap(map)),
            Predicate::Boolean(v) => Predicate::Boolean(v.remap(map)),
        }
    }

    /// The rows of `sel` for which the predicate is true.
    pub fn select(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<Selection> {
        if sel.is_empty() {
            return Ok(Selection::Rows(Vec::new()));
        }
        match self {
            Predicate::Compare { op, left, right } => {
                let fast = match (left, right) {
                    (Value::Column(c), Value::Literal(v)) => Some((*c, *op, v)),
                    (Value::Literal(v), Value::Column(c)) => Some((*c, flip(*op), v)),
                    _ => None,
                };
                if let Some((c, op, v)) = fast {
                    let column = batch.column(c);
                    if v.is_null() {
                        return Ok(Selection::Rows(Vec::new()));
                    }
                    let dt = column.data_type().clone();
                    let done: Option<Selection> = with_primitive_type!(&dt, T => {
                        let constant = constant::<T>(v, &dt)?.unwrap_or_default();
                        Some(select_column_constant::<T>(column.as_primitive::<T>(), op, constant, sel))
                    }, _ => None);
                    if let Some(s) = done {
                        return Ok(s);
                    }
                }
                if let (Value::Column(a), Value::Column(b)) = (left, right) {
                    let (a, b) = (batch.column(*a), batch.column(*b));
                    let dt = a.data_type().clone();
                    if b.data_type() == &dt {
                        let done: Option<Selection> = with_primitive_type!(&dt, T => {
                            Some(select_column_column::<T>(a.as_primitive::<T>(), *op, b.as_primitive::<T>(), sel))
                        }, _ => None);
                        if let Some(s) = done {
                            return Ok(s);
                        }
                    }
                }
                Ok(select_true(&self.truth(batch, sel)?, sel))
            }
            Predicate::And(terms) => {
                let mut current = sel.clone();
                for t in terms {
                    current = t.select(batch, &current)?;
                    if current.is_empty() {
                        break;
                    }
                }
                Ok(current)
            }
            Predicate::Or(terms) => {
                let mut out = Selection::Rows(Vec::new());
                for t in terms {
                    out = out.union(&t.select(batch, sel)?);
                }
                Ok(out)
            }
            Predicate::IsNull(Value::Column(c)) | Predicate::IsNotNull(Value::Column(c)) => {
                let column = batch.column(*c);
                let want_null = matches!(self, Predicate::IsNull(_));
                Ok(narrow_rows(sel, |row| {
                    column.is_null(row as usize) == want_null
                }))
            }
            _ => Ok(select_true(&self.truth(batch, sel)?, sel)),
        }
    }

    /// The predicate's three-valued truth for every selected row.
    pub fn truth(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<BooleanArray> {
        let n = sel.len();
        let broadcast = |b: &BooleanArray| -> DfResult<BooleanArray> {
            if b.len() == n {
                return Ok(b.clone());
            }
            let v = ScalarValue::try_from_array(b, 0)?;
            Ok(v.to_array_of_size(n)?.as_boolean().clone())
        };
        match self {
            Predicate::Compare { op, left, right } => {
                let l = sql_zeros(left.eval(batch, sel)?)?;
                let r = sql_zeros(right.eval(batch, sel)?)?;
                let (l, r) = (datum(&l)?, datum(&r)?);
                let (l, r) = (l.as_ref(), r.as_ref());
                let out = match op {
                    CmpOp::Eq => cmp::eq(l, r)?,
                    CmpOp::NotEq => cmp::neq(l, r)?,
                    CmpOp::Lt => cmp::lt(l, r)?,
                    CmpOp::LtEq => cmp::lt_eq(l, r)?,
                    CmpOp::Gt => cmp::gt(l, r)?,
                    CmpOp::GtEq => cmp::gt_eq(l, r)?,
                };
                broadcast(&out)
            }
            Predicate::And(terms) | Predicate::Or(terms) => {
                let and = matches!(self, Predicate::And(_));
                let mut acc: Option<BooleanArray> = None;
                for t in terms {
                    let v = t.truth(batch, sel)?;
                    acc = Some(match acc {
                        None => v,
                        Some(a) if and => boolean::and_kleene(&a, &v)?,
                        Some(a) => boolean::or_kleene(&a, &v)?,
                    });
                }
                Ok(acc.unwrap_or_else(|| BooleanArray::from(vec![and; n])))
            }
            Predicate::Not(p) => Ok(boolean::not(&p.truth(batch, sel)?)?),
            Predicate::IsNull(v) | Predicate::IsNotNull(v) => {
                let want_null = matches!(self, Predicate::IsNull(_));
                Ok(match v.eval(batch, sel)? {
                    Dense::Array(a) => (0..n).map(|i| Some(a.is_null(i) == want_null)).collect(),
                    Dense::Scalar(s) => BooleanArray::from(vec![s.is_null() == want_null; n]),
                })
            }
            Predicate::Boolean(v) => {
                let a = v.eval(batch, sel)?.into_array(n)?;
                Ok(a.as_boolean().clone())
            }
        }
    }
}
