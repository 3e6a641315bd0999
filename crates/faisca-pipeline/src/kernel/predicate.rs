//! Predicate kernels: comparisons with fast paths that narrow the selection directly, Kleene
//! logic, and three-valued truth arrays where a predicate is used as a value.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, PrimitiveArray, RecordBatch, StringViewArray};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::{
    ArrowNativeTypeOp, ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use super::super::selection::Selection;
use super::*;

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

/// `test` of each value as bits, 64 values to a word, in a loop the compiler turns into
/// vector compares.
#[inline(always)]
fn mask_words<N: Copy>(values: &[N], test: impl Fn(N) -> bool) -> Vec<u64> {
    let chunks = values.chunks_exact(64);
    let tail = chunks.remainder();
    let mut words = Vec::with_capacity(values.len().div_ceil(64));
    for chunk in chunks {
        let mut word = 0u64;
        for (i, v) in chunk.iter().enumerate() {
            word |= u64::from(test(*v)) << i;
        }
        words.push(word);
    }
    if !tail.is_empty() {
        let mut word = 0u64;
        for (i, v) in tail.iter().enumerate() {
            word |= u64::from(test(*v)) << i;
        }
        words.push(word);
    }
    words
}

/// `column = text` (`<>` when `negated`) for every row of a string-view column as a bitmask,
/// null rows unset. A view holds its string's length and first bytes — all of them up to 12
/// bytes — so the views alone decide, compared under a mask of the length and the literal's
/// inline bytes (whatever a view holds past its string does not matter); a longer literal's
/// length and 4-byte prefix leave few candidates, whose bytes are then compared.
fn mask_view_equals(column: &StringViewArray, text: &[u8], negated: bool) -> BooleanBuffer {
    let inline = text.len() <= 12;
    let compared = if inline { text.len() } else { 4 };
    let mut target = [0u8; 16];
    target[..4].copy_from_slice(&(text.len() as u32).to_le_bytes());
    target[4..4 + compared].copy_from_slice(&text[..compared]);
    let mut keep = [0u8; 16];
    keep[..4 + compared].fill(0xff);
    let (target, keep) = (u128::from_le_bytes(target), u128::from_le_bytes(keep));
    let views: &[u128] = column.views();
    let mut words = mask_words(views, |v| v & keep == target);
    if !inline {
        for (w, word) in words.iter_mut().enumerate() {
            let mut candidates = *word;
            while candidates != 0 {
                let bit = candidates.trailing_zeros();
                candidates &= candidates - 1;
                let row = w * 64 + bit as usize;
                // A null row's view need not point at real bytes; it is unset below anyway.
                if column.is_null(row) || column.value(row).as_bytes() != text {
                    *word &= !(1u64 << bit);
                }
            }
        }
    }
    let mut bits = BooleanBuffer::new(Buffer::from_vec(words), 0, views.len());
    if negated {
        bits = !&bits;
    }
    match column.nulls() {
        Some(nulls) if nulls.null_count() > 0 => &bits & nulls.inner(),
        _ => bits,
    }
}

/// `column op constant` for every row of the batch as a bitmask, null rows unset: how an
/// `All` selection is first narrowed. 64 rows make one word, in a loop the compiler turns into
/// vector compares (a row-at-a-time narrowing costs several times more per row).
fn mask_column_constant<T: ArrowPrimitiveType>(
    column: &PrimitiveArray<T>,
    op: CmpOp,
    constant: T::Native,
) -> BooleanBuffer
where
    T::Native: SqlOrder,
{
    let values: &[T::Native] = column.values();
    let words = match op {
        CmpOp::Eq => mask_words(values, |v| compare(CmpOp::Eq, v, constant)),
        CmpOp::NotEq => mask_words(values, |v| compare(CmpOp::NotEq, v, constant)),
        CmpOp::Lt => mask_words(values, |v| compare(CmpOp::Lt, v, constant)),
        CmpOp::LtEq => mask_words(values, |v| compare(CmpOp::LtEq, v, constant)),
        CmpOp::Gt => mask_words(values, |v| compare(CmpOp::Gt, v, constant)),
        CmpOp::GtEq => mask_words(values, |v| compare(CmpOp::GtEq, v, constant)),
    };
    let bits = BooleanBuffer::new(Buffer::from_vec(words), 0, values.len());
    match column.nulls() {
        Some(nulls) if nulls.null_count() > 0 => &bits & nulls.inner(),
        _ => bits,
    }
}

/// `left op right` for every row of two columns of one primitive type as a bitmask (a null on
/// either side: unset), 64 rows to a word as in [`mask_column_constant`].
fn mask_column_column<T: ArrowPrimitiveType>(
    left: &PrimitiveArray<T>,
    op: CmpOp,
    right: &PrimitiveArray<T>,
) -> BooleanBuffer
where
    T::Native: SqlOrder,
{
    #[inline(always)]
    fn words<N: Copy>(l: &[N], r: &[N], test: impl Fn(N, N) -> bool) -> Vec<u64> {
        let mut words = Vec::with_capacity(l.len().div_ceil(64));
        for (l, r) in l.chunks(64).zip(r.chunks(64)) {
            let mut word = 0u64;
            for (i, (a, b)) in l.iter().zip(r).enumerate() {
                word |= u64::from(test(*a, *b)) << i;
            }
            words.push(word);
        }
        words
    }
    let (l, r): (&[T::Native], &[T::Native]) = (left.values(), right.values());
    let words = match op {
        CmpOp::Eq => words(l, r, |a, b| compare(CmpOp::Eq, a, b)),
        CmpOp::NotEq => words(l, r, |a, b| compare(CmpOp::NotEq, a, b)),
        CmpOp::Lt => words(l, r, |a, b| compare(CmpOp::Lt, a, b)),
        CmpOp::LtEq => words(l, r, |a, b| compare(CmpOp::LtEq, a, b)),
        CmpOp::Gt => words(l, r, |a, b| compare(CmpOp::Gt, a, b)),
        CmpOp::GtEq => words(l, r, |a, b| compare(CmpOp::GtEq, a, b)),
    };
    let mut bits = BooleanBuffer::new(Buffer::from_vec(words), 0, l.len());
    for nulls in [left.nulls(), right.nulls()].into_iter().flatten() {
        if nulls.null_count() > 0 {
            bits = &bits & nulls.inner();
        }
    }
    bits
}

/// The rows set in `bits` (all of them: `All`).
fn selection_of_mask(bits: &BooleanBuffer) -> Selection {
    let count = bits.count_set_bits();
    if count == bits.len() {
        return Selection::All(count);
    }
    // 64 slots of slack: a dense word writes each of its rows and keeps the set ones, without
    // a branch per row; a sparse word visits only its set bits.
    let mut rows = vec![0u32; count + 64];
    let mut n = 0;
    let chunks = bits.inner().bit_chunks(bits.offset(), bits.len());
    let tail = (chunks.remainder_len() > 0).then(|| chunks.remainder_bits());
    for (word, base) in chunks.iter().chain(tail).zip((0u32..).step_by(64)) {
        if word.count_ones() > 16 {
            for i in 0..64 {
                rows[n] = base + i;
                n += ((word >> i) & 1) as usize;
            }
        } else {
            let mut word = word;
            while word != 0 {
                rows[n] = base + word.trailing_zeros();
                n += 1;
                word &= word - 1;
            }
        }
    }
    rows.truncate(n);
    Selection::Rows(rows)
}

/// Rows of `sel` whose dense truth value is true (null counts as false).
fn select_true(truth: &BooleanArray, sel: &Selection) -> Selection {
    let bits = match truth.nulls() {
        Some(nulls) if truth.null_count() > 0 => truth.values() & nulls.inner(),
        _ => truth.values().clone(),
    };
    match (sel, selection_of_mask(&bits)) {
        (Selection::All(_), chosen) => chosen,
        (Selection::Rows(_), Selection::All(_)) => sel.clone(),
        (Selection::Rows(rows), Selection::Rows(positions)) => {
            Selection::Rows(positions.iter().map(|k| rows[*k as usize]).collect())
        }
    }
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

/// Rows of `sel` where `column IN set` (or `NOT IN` when `negated`; `set` holds the list's
/// non-null values, and for `NOT IN` there is no null in the list): one pass, a short scan of
/// the set per row.
fn select_in_set<T: ArrowPrimitiveType>(
    column: &PrimitiveArray<T>,
    set: &[T::Native],
    negated: bool,
    sel: &Selection,
) -> Selection
where
    T::Native: SqlOrder,
{
    let values = column.values();
    let hit = |row: u32| {
        let v = values[row as usize];
        set.iter().any(|s| compare(CmpOp::Eq, v, *s))
    };
    if column.null_count() == 0 {
        narrow_rows(sel, |row| hit(row) != negated)
    } else {
        narrow_rows(sel, |row| {
            column.is_valid(row as usize) && hit(row) != negated
        })
    }
}

fn datum(d: &Dense) -> DfResult<Box<dyn arrow::array::Datum>> {
    Ok(match d {
        Dense::Array(a) => Box::new(a.clone()),
        Dense::Scalar(s) => Box::new(s.to_scalar()?),
    })
}

impl Predicate {
    /// `column op constant` (the column on either side): the comparisons with fast paths.
    fn column_constant(&self) -> Option<(usize, CmpOp, &ScalarValue)> {
        match self {
            Predicate::Compare {
                op,
                left: Value::Column(c),
                right: Value::Literal(v),
            } => Some((*c, *op, v)),
            Predicate::Compare {
                op,
                left: Value::Literal(v),
                right: Value::Column(c),
            } => Some((*c, flip(*op), v)),
            _ => None,
        }
    }

    /// The predicate over every row of `batch` as a bitmask (null: unset), where a bitmask
    /// kernel computes it: a comparison of a primitive column with a constant or with another
    /// column of its type, or a string-view column's (in)equality with a string.
    fn mask_all(&self, batch: &RecordBatch) -> DfResult<Option<BooleanBuffer>> {
        if let Predicate::Compare {
            op,
            left: Value::Column(a),
            right: Value::Column(b),
        } = self
        {
            let (a, b) = (batch.column(*a), batch.column(*b));
            let dt = a.data_type().clone();
            if b.data_type() != &dt {
                return Ok(None);
            }
            return Ok(with_primitive_type!(&dt, T => {
                Some(mask_column_column::<T>(a.as_primitive::<T>(), *op, b.as_primitive::<T>()))
            }, _ => None));
        }
        let Some((c, op, v)) = self.column_constant() else {
            return Ok(None);
        };
        let column = batch.column(c);
        if v.is_null() {
            return Ok(Some(BooleanBuffer::new_unset(column.len())));
        }
        if let (CmpOp::Eq | CmpOp::NotEq, Some(views), Some(Some(text))) =
            (op, column.as_string_view_opt(), v.try_as_str())
        {
            return Ok(Some(mask_view_equals(
                views,
                text.as_bytes(),
                op == CmpOp::NotEq,
            )));
        }
        let dt = column.data_type().clone();
        Ok(with_primitive_type!(&dt, T => {
            let constant = constant::<T>(v, &dt)?.unwrap_or_default();
            Some(mask_column_constant::<T>(column.as_primitive::<T>(), op, constant))
        }, _ => None))
    }

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
            Predicate::InSet { expanded, .. } => expanded.columns(used),
            Predicate::IsNull(v)
            | Predicate::IsNotNull(v)
            | Predicate::Boolean(v)
            | Predicate::Like { value: v, .. } => v.columns(used),
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
            Predicate::InSet {
                column,
                items,
                negated,
                expanded,
            } => Predicate::InSet {
                column: map[*column],
                items: items.clone(),
                negated: *negated,
                expanded: Box::new(expanded.remap(map)),
            },
            Predicate::IsNull(v) => Predicate::IsNull(v.remap(map)),
            Predicate::IsNotNull(v) => Predicate::IsNotNull(v.remap(map)),
            Predicate::Boolean(v) => Predicate::Boolean(v.remap(map)),
            Predicate::Like {
                value,
                pattern,
                negated,
            } => Predicate::Like {
                value: value.remap(map),
                pattern: pattern.clone(),
                negated: *negated,
            },
        }
    }

    /// The rows of `sel` for which the predicate is true.
    pub fn select(&self, batch: &RecordBatch, sel: &Selection) -> DfResult<Selection> {
        if sel.is_empty() {
            return Ok(Selection::Rows(Vec::new()));
        }
        match self {
            Predicate::Compare { op, left, right } => {
                if let Selection::All(_) = sel
                    && let Some(bits) = self.mask_all(batch)?
                {
                    return Ok(selection_of_mask(&bits));
                }
                if let Some((c, op, v)) = self.column_constant() {
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
                // Over every row, the terms with a bitmask kernel go first, all in one mask.
                let mut rest: Vec<&Predicate> = Vec::with_capacity(terms.len());
                let mut current = sel.clone();
                if let Selection::All(_) = sel {
                    let mut mask: Option<BooleanBuffer> = None;
                    for t in terms {
                        match t.mask_all(batch)? {
                            Some(bits) => {
                                mask = Some(match mask {
                                    None => bits,
                                    Some(m) => &m & &bits,
                                })
                            }
                            None => rest.push(t),
                        }
                    }
                    if let Some(m) = mask {
                        current = selection_of_mask(&m);
                    }
                } else {
                    rest.extend(terms);
                }
                for t in rest {
                    if current.is_empty() {
                        break;
                    }
                    current = t.select(batch, &current)?;
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
            Predicate::InSet {
                column,
                items,
                negated,
                expanded,
            } => {
                if *negated && items.iter().any(ScalarValue::is_null) {
                    // `x NOT IN (.., NULL)` is never true.
                    return Ok(Selection::Rows(Vec::new()));
                }
                let array = batch.column(*column);
                let dt = array.data_type().clone();
                let done: Option<Selection> = with_primitive_type!(&dt, T => {
                    let mut set = Vec::with_capacity(items.len());
                    for item in items {
                        if let Some(v) = constant::<T>(item, &dt)? {
                            set.push(v);
                        }
                    }
                    Some(select_in_set::<T>(array.as_primitive::<T>(), &set, *negated, sel))
                }, _ => None);
                match done {
                    Some(s) => Ok(s),
                    None => expanded.select(batch, sel),
                }
            }
            Predicate::Like {
                value: Value::Column(c),
                pattern,
                negated,
            } => {
                let mut out = Vec::with_capacity(sel.len());
                let rows = sel.rows().map(|r| r as usize);
                let text = like::match_rows(batch.column(*c).as_ref(), rows, pattern, |row, m| {
                    if m != *negated {
                        out.push(row as u32);
                    }
                });
                if text {
                    return Ok(Selection::Rows(out));
                }
                Ok(select_true(&self.truth(batch, sel)?, sel))
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
            Predicate::InSet { expanded, .. } => expanded.truth(batch, sel),
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
            Predicate::Like {
                value,
                pattern,
                negated,
            } => {
                let a = value.eval(batch, sel)?.into_array(n)?;
                like::truth(a.as_ref(), pattern, *negated).ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!(
                        "LIKE kernel given {}",
                        a.data_type()
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_view_equality_masks_match_arrows_comparison() {
        let pool = [
            "",
            "R",
            "AIR",
            "AIR REG",
            "twelve bytes",
            "thirteen byte",
            "DELIVER IN PERSON",
            "DELIVER IN PERSOX",
            "DELI",
            "DELIVER",
        ];
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let values: Vec<Option<&str>> = (0..300)
            .map(|_| (next() % 9 != 0).then(|| pool[next() % pool.len()]))
            .collect();
        let array = StringViewArray::from(values);
        for offset in [0, 5] {
            let column = array.slice(offset, 290);
            for text in pool {
                let literal = StringViewArray::new_scalar(text);
                for negated in [false, true] {
                    let expected = if negated {
                        cmp::neq(&column, &literal).unwrap()
                    } else {
                        cmp::eq(&column, &literal).unwrap()
                    };
                    let expected: Vec<bool> = expected.iter().map(|v| v.unwrap_or(false)).collect();
                    let mask = mask_view_equals(&column, text.as_bytes(), negated);
                    let got: Vec<bool> = mask.iter().collect();
                    assert_eq!(got, expected, "{text:?} negated={negated} offset={offset}");
                }
            }
        }
    }

    #[test]
    fn masks_become_the_rows_they_set() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [1usize, 63, 64, 65, 200, 1000, 8192] {
            for density in [0u64, 3, 20, 50, 90, 100] {
                let bits: Vec<bool> = (0..len + 7).map(|_| next() % 100 < density).collect();
                // Offsets other than zero: the mask of a slice.
                for offset in [0, 7] {
                    let mask = BooleanBuffer::from(bits.clone()).slice(offset, len);
                    let expected: Vec<u32> = mask.set_indices().map(|i| i as u32).collect();
                    match selection_of_mask(&mask) {
                        Selection::All(n) => assert!(n == len && expected.len() == len),
                        Selection::Rows(rows) => assert_eq!(rows, expected, "{len} {density}"),
                    }
                }
            }
        }
    }
}
