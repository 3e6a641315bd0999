//! Arithmetic kernels: one monomorphised loop per type, operator and operand kind, reading
//! column operands through the selection.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, PrimitiveArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowNativeTypeOp, ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};

use super::super::selection::Selection;
use super::*;

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
            Value::Case(c) => c.columns(used),
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
            Value::Case(c) => Value::Case(Box::new(c.remap(map))),
        }
    }

    /// The value for every selected row of `batch`.
    pub fn eval(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<Dense> {
        Ok(match self {
            Value::Column(i) => Dense::Array(sel.gather(batch.column(*i))?),
            Value::Literal(v) => Dense::Scalar(v.clone()),
            Value::Arith(a) => Dense::Array(a.eval(batch, sel)?),
            Value::Truth(p) => Dense::Array(Arc::new(p.truth(batch, sel)?)),
            Value::Case(c) => Dense::Array(c.eval(batch, sel)?),
        })
    }
}
