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

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr,
};

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
    /// A searched `CASE`.
    Case(Box<case::Case>),
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
    /// `column IN (literals)` (`NOT IN` when `negated`): one pass over the column for
    /// primitive types, `expanded` (the `OR` of equalities, negated for `NOT IN`) otherwise and
    /// wherever three-valued truth is needed.
    InSet {
        /// The column tested.
        column: usize,
        /// The list's values (a null makes `NOT IN` never true).
        items: Vec<ScalarValue>,
        /// `NOT IN`.
        negated: bool,
        /// The same predicate as equalities.
        expanded: Box<Predicate>,
    },
    /// `value LIKE pattern` (`NOT LIKE` when `negated`).
    Like {
        /// The text matched.
        value: Value,
        /// The compiled pattern.
        pattern: Arc<like::LikePattern>,
        /// `NOT LIKE`.
        negated: bool,
    },
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
    if let Some(c) = any.downcast_ref::<CaseExpr>() {
        return compile_case(expr.as_ref(), c, schema);
    }
    if data_type(expr, schema)? == DataType::Boolean {
        return Ok(Value::Truth(Box::new(compile_predicate(expr, schema)?)));
    }
    Err(unsupported(expr.as_ref(), "no compiled kernel"))
}

/// A searched `CASE` whose branches all have its type.
fn compile_case(
    expr: &dyn PhysicalExpr,
    case: &CaseExpr,
    schema: &Schema,
) -> Result<Value, Unsupported> {
    if case.expr().is_some() {
        return Err(unsupported(expr, "CASE with an operand"));
    }
    let out = expr
        .data_type(schema)
        .map_err(|e| unsupported(expr, &e.to_string()))?;
    let branch = |e: &Arc<dyn PhysicalExpr>| -> Result<Value, Unsupported> {
        let t = data_type(e, schema)?;
        if t != out {
            return Err(unsupported(
                expr,
                &format!("a CASE branch of {t} in a CASE of {out}"),
            ));
        }
        compile_value(e, schema)
    };
    let whens = case
        .when_then_expr()
        .iter()
        .map(|(when, then)| Ok((compile_predicate(when, schema)?, branch(then)?)))
        .collect::<Result<Vec<_>, Unsupported>>()?;
    let otherwise = match case.else_expr() {
        Some(e) => branch(e)?,
        None => Value::Literal(
            ScalarValue::try_from(&out).map_err(|e| unsupported(expr, &e.to_string()))?,
        ),
    };
    Ok(Value::Case(Box::new(case::Case { whens, otherwise })))
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
        let expanded = if l.negated() {
            Predicate::Not(Box::new(any_of))
        } else {
            any_of
        };
        let literals: Option<Vec<ScalarValue>> = l
            .list()
            .iter()
            .map(|i| i.downcast_ref::<Literal>().map(|l| l.value().clone()))
            .collect();
        return Ok(match (x, literals) {
            (Value::Column(column), Some(items)) => Predicate::InSet {
                column,
                items,
                negated: l.negated(),
                expanded: Box::new(expanded),
            },
            _ => expanded,
        });
    }
    if let Some(l) = any.downcast_ref::<LikeExpr>() {
        return compile_like(expr.as_ref(), l, schema);
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

/// `x LIKE 'pattern'` on text, case-sensitive, with a pattern of literal text and `%`s.
fn compile_like(
    expr: &dyn PhysicalExpr,
    like: &LikeExpr,
    schema: &Schema,
) -> Result<Predicate, Unsupported> {
    let t = data_type(like.expr(), schema)?;
    if like.case_insensitive() || !like::is_text(&t) {
        return Err(unsupported(expr, &format!("ILIKE, or LIKE on {t}")));
    }
    let text = match like.pattern().downcast_ref::<Literal>().map(Literal::value) {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => s,
        _ => {
            return Err(unsupported(
                expr,
                "a LIKE pattern that is not a text literal",
            ));
        }
    };
    let pattern = like::LikePattern::parse(text)
        .ok_or_else(|| unsupported(expr, "a LIKE pattern with `_` or `\\`"))?;
    Ok(Predicate::Like {
        value: compile_value(like.expr(), schema)?,
        pattern: Arc::new(pattern),
        negated: like.negated(),
    })
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
pub(crate) use with_primitive_type;

/// A scalar as the native value of `T` (cast to `t` first); `None` for null.
pub(super) fn constant<T: ArrowPrimitiveType>(
    v: &ScalarValue,
    t: &DataType,
) -> DfResult<Option<T::Native>> {
    if v.is_null() {
        return Ok(None);
    }
    let v = v.cast_to(t)?.to_array_of_size(1)?;
    Ok(Some(v.as_primitive::<T>().value(0)))
}

mod arith;
pub mod case;
pub mod like;
mod predicate;
