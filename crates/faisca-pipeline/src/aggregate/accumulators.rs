//! Typed partial-aggregate accumulators: one state vector per aggregate, indexed by group, updated
//! straight from a batch's selection.
//!
//! Each accumulator produces exactly the partial state DataFusion's own accumulator for the same
//! function produces (the fields of the replaced `AggregateExec`'s output): `sum` → the sum,
//! null for a group that saw no non-null value; `count` → an `Int64` count; `avg` → a `UInt64`
//! count and the sum; `min`/`max` → the extreme value (floats in Arrow's total order), null when
//! none was seen. Sums wrap on overflow as DataFusion's do.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, PrimitiveArray, UInt64Array, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{ArrowNativeTypeOp, ArrowPrimitiveType, DataType};
use datafusion::error::Result as DfResult;

use crate::selection::Selection;

/// Where an aggregate's argument comes from for the selected rows of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// The same value for every row: null or not (what `count(1)` counts).
    Constant {
        /// Whether the constant is null.
        null: bool,
    },
    /// One value per selected row, in selection order.
    Dense(&'a ArrayRef),
    /// A column of the batch, read through the selection.
    Rows(&'a ArrayRef),
}

impl Arg<'_> {
    /// The argument as one value per selected row.
    pub fn dense(&self, sel: &Selection, data_type: &DataType) -> DfResult<ArrayRef> {
        Ok(match self {
            Arg::Constant { null: true } => new_null_array(data_type, sel.len()),
            Arg::Constant { null: false } => {
                Arc::new(BooleanArray::from(vec![true; sel.len()])) as ArrayRef
            }
            Arg::Dense(a) => (*a).clone(),
            Arg::Rows(a) => sel.gather(a)?,
        })
    }
}

/// Calls `f(k, i)` for each selected row: `k` its position in the selection, `i` its index in
/// the argument array (`k` for dense arrays, the row number for batch columns).
#[inline(always)]
fn visit(sel: &Selection, by_row: bool, mut f: impl FnMut(usize, usize)) {
    match sel {
        Selection::Rows(rows) if by_row => {
            for (k, r) in rows.iter().enumerate() {
                f(k, *r as usize)
            }
        }
        _ => {
            for k in 0..sel.len() {
                f(k, k)
            }
        }
    }
}

/// Calls `f(group, value)` for each selected row whose argument is not null.
#[inline(always)]
fn fold<T: ArrowPrimitiveType>(
    arg: &Arg,
    sel: &Selection,
    groups: Option<&[u32]>,
    mut f: impl FnMut(usize, T::Native),
) {
    let (array, by_row) = match arg {
        Arg::Dense(a) => (*a, false),
        Arg::Rows(a) => (*a, true),
        Arg::Constant { .. } => unreachable!("typed accumulators take array arguments"),
    };
    let values = array.as_primitive::<T>().values();
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    match (groups, nulls) {
        (None, None) => visit(sel, by_row, |_, i| f(0, values[i])),
        (Some(g), None) => visit(sel, by_row, |k, i| f(g[k] as usize, values[i])),
        (None, Some(n)) => visit(sel, by_row, |_, i| {
            if n.is_valid(i) {
                f(0, values[i])
            }
        }),
        (Some(g), Some(n)) => visit(sel, by_row, |k, i| {
            if n.is_valid(i) {
                f(g[k] as usize, values[i])
            }
        }),
    }
}

/// Copies of the sums that consecutive rows add into, so that the additions of rows in the
/// same group do not wait on each other (few groups: the next row is often in the same group).
const LANES: usize = 4;
/// Groups up to which a batch's lane copies pay for themselves.
const LANE_MAX_GROUPS: usize = 1024;

/// Whether `T` adds exactly in any order (integers and decimals wrap; floats round).
fn exact<T: ArrowPrimitiveType>() -> bool {
    !T::DATA_TYPE.is_floating()
}

/// Adds `value(k)` of every selected row into `sums[group]`, in lanes; `Some(len)` is the
/// number of rows, `at(k)` the index of the `k`-th selected row in `values`.
#[inline(always)]
fn lanes_add<N: ArrowNativeTypeOp>(
    sums: &mut [N],
    groups: Option<&[u32]>,
    len: usize,
    value: impl Fn(usize) -> N,
) {
    match groups {
        None => {
            let mut acc = [N::ZERO; LANES];
            let whole = len - len % LANES;
            for k in (0..whole).step_by(LANES) {
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = a.add_wrapping(value(k + l));
                }
            }
            for k in whole..len {
                acc[0] = acc[0].add_wrapping(value(k));
            }
            sums[0] = acc.iter().fold(sums[0], |s, a| s.add_wrapping(*a));
        }
        Some(g) => {
            let n = sums.len();
            let mut lanes = vec![N::ZERO; LANES * n];
            let (l0, rest) = lanes.split_at_mut(n);
            let (l1, rest) = rest.split_at_mut(n);
            let (l2, l3) = rest.split_at_mut(n);
            let g = &g[..len];
            let whole = len - len % LANES;
            for k in (0..whole).step_by(LANES) {
                let (a, b, c, d) = (
                    g[k] as usize,
                    g[k + 1] as usize,
                    g[k + 2] as usize,
                    g[k + 3] as usize,
                );
                l0[a] = l0[a].add_wrapping(value(k));
                l1[b] = l1[b].add_wrapping(value(k + 1));
                l2[c] = l2[c].add_wrapping(value(k + 2));
                l3[d] = l3[d].add_wrapping(value(k + 3));
            }
            for (k, group) in g.iter().enumerate().take(len).skip(whole) {
                let a = *group as usize;
                l0[a] = l0[a].add_wrapping(value(k));
            }
            for (j, sum) in sums.iter_mut().enumerate() {
                *sum = sum
                    .add_wrapping(l0[j])
                    .add_wrapping(l1[j])
                    .add_wrapping(l2[j])
                    .add_wrapping(l3[j]);
            }
        }
    }
}

/// Adds `map(value)` of the selected rows to `sums[group]`, marking the groups seen: in lanes
/// for few groups when `exact` (the sums come out the same in any order).
#[inline(always)]
pub(super) fn add_to_sums<T: ArrowPrimitiveType, N: ArrowNativeTypeOp>(
    sums: &mut [N],
    seen: &mut [bool],
    (arg, sel, groups): (&Arg, &Selection, Option<&[u32]>),
    exact: bool,
    map: impl Fn(T::Native) -> N + Copy,
) {
    if exact && lanes_add_mapped::<T, N>(sums, arg, sel, groups, map) {
        mark_seen(seen, groups, sel.len());
        return;
    }
    fold::<T>(arg, sel, groups, |g, v| {
        sums[g] = sums[g].add_wrapping(map(v));
        seen[g] = true;
    });
}

/// Adds `map(value)` of the selected rows to each group's `(sum, count)`: few groups in lanes
/// of separate sums and counts folded in at the end, when `exact`; otherwise row by row.
#[inline(always)]
pub(super) fn add_to_averages<T: ArrowPrimitiveType, N: ArrowNativeTypeOp>(
    states: &mut [(N, u64)],
    (arg, sel, groups): (&Arg, &Selection, Option<&[u32]>),
    exact: bool,
    map: impl Fn(T::Native) -> N + Copy,
) {
    let n = states.len();
    if exact && n <= LANE_MAX_GROUPS {
        let mut sums = vec![N::ZERO; n];
        if lanes_add_mapped::<T, N>(&mut sums, arg, sel, groups, map) {
            let mut counts = vec![0u64; n];
            lanes_add(&mut counts, groups, sel.len(), |_| 1);
            for (state, (sum, count)) in states.iter_mut().zip(sums.iter().zip(&counts)) {
                state.0 = state.0.add_wrapping(*sum);
                state.1 += count;
            }
            return;
        }
    }
    fold::<T>(arg, sel, groups, |g, v| {
        let state = &mut states[g];
        state.0 = state.0.add_wrapping(map(v));
        state.1 += 1;
    });
}

/// [`lanes_add`] of `map(value)` for the argument's values, when it has no nulls and there are
/// few groups; `false` (nothing done) otherwise. `map` must keep sums exact in any order.
#[inline(always)]
fn lanes_add_mapped<T: ArrowPrimitiveType, N: ArrowNativeTypeOp>(
    sums: &mut [N],
    arg: &Arg,
    sel: &Selection,
    groups: Option<&[u32]>,
    map: impl Fn(T::Native) -> N,
) -> bool {
    let (array, by_row) = match arg {
        Arg::Dense(a) => (*a, false),
        Arg::Rows(a) => (*a, true),
        Arg::Constant { .. } => return false,
    };
    if array.null_count() > 0 || sums.len() > LANE_MAX_GROUPS {
        return false;
    }
    let values = array.as_primitive::<T>().values();
    match sel {
        Selection::Rows(rows) if by_row => {
            lanes_add(sums, groups, rows.len(), |k| map(values[rows[k] as usize]))
        }
        _ => lanes_add(sums, groups, sel.len(), |k| map(values[k])),
    }
    true
}

/// Marks every group with a selected row as seen.
fn mark_seen(seen: &mut [bool], groups: Option<&[u32]>, rows: usize) {
    match groups {
        None => seen[0] |= rows > 0,
        Some(g) => g.iter().for_each(|g| seen[*g as usize] = true),
    }
}

/// A partial aggregate's state for every group.
pub trait Accumulate: Send + Sync + Debug {
    /// Makes room for `groups` groups (new groups start empty).
    fn resize(&mut self, groups: usize);
    /// Adds the selected rows; `groups[k]` is the group of the `k`-th selected row (`None`:
    /// every row is in group 0).
    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>);
    /// The states of every group, in group order; the accumulator is left with no group.
    fn emit(&mut self) -> Vec<ArrayRef>;
    /// Each selected row's own state (the skip-partial mode: no grouping).
    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>>;
    /// Reorders groups: group `i` becomes group `order[i]`.
    fn permute(&mut self, order: &[usize]);
    /// Bytes held.
    fn size(&self) -> usize;
}

pub(super) fn permuted<T: Copy + Default>(values: &[T], order: &[usize]) -> Vec<T> {
    let mut out = vec![T::default(); values.len()];
    for (i, v) in values.iter().enumerate() {
        out[order[i]] = *v;
    }
    out
}

fn primitive<T: ArrowPrimitiveType>(
    values: Vec<T::Native>,
    nulls: Option<NullBuffer>,
    data_type: &DataType,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(data_type.clone()))
}

fn seen_nulls(seen: &[bool]) -> Option<NullBuffer> {
    if seen.iter().all(|s| *s) {
        None
    } else {
        Some(NullBuffer::from(seen.to_vec()))
    }
}

/// The argument's values per selected row, typed as the state (`data_type`).
pub(super) fn dense_values<T: ArrowPrimitiveType>(
    arg: &Arg,
    sel: &Selection,
    data_type: &DataType,
) -> DfResult<ArrayRef> {
    let dense = arg.dense(sel, data_type)?;
    let typed = dense.as_primitive::<T>().clone();
    Ok(Arc::new(typed.with_data_type(data_type.clone())))
}

/// `sum`: wrapping, null for a group with no non-null value.
#[derive(Debug)]
pub struct Sum<T: ArrowPrimitiveType> {
    sums: Vec<T::Native>,
    seen: Vec<bool>,
    state_type: DataType,
}

impl<T: ArrowPrimitiveType> Sum<T> {
    /// A sum whose state has type `state_type` (of `T`'s native type).
    pub fn new(state_type: DataType) -> Self {
        Self::with_states(Vec::new(), Vec::new(), state_type)
    }

    /// A sum holding `sums[g]` for each group `g`, `seen[g]` when it saw a value.
    pub fn with_states(sums: Vec<T::Native>, seen: Vec<bool>, state_type: DataType) -> Self {
        Sum {
            sums,
            seen,
            state_type,
        }
    }
}

impl<T: ArrowPrimitiveType + Debug> Accumulate for Sum<T> {
    fn resize(&mut self, groups: usize) {
        self.sums.resize(groups, T::Native::default());
        self.seen.resize(groups, false);
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        let rows = (arg, sel, groups);
        add_to_sums::<T, T::Native>(&mut self.sums, &mut self.seen, rows, exact::<T>(), |v| v);
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        let nulls = seen_nulls(&self.seen);
        self.seen.clear();
        vec![primitive::<T>(
            std::mem::take(&mut self.sums),
            nulls,
            &self.state_type,
        )]
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![dense_values::<T>(arg, sel, &self.state_type)?])
    }

    fn permute(&mut self, order: &[usize]) {
        self.sums = permuted(&self.sums, order);
        self.seen = permuted(&self.seen, order);
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

/// Adds one per selected row to its group's count.
fn count_rows(counts: &mut [i64], groups: Option<&[u32]>, rows: usize) {
    match groups {
        None => counts[0] += rows as i64,
        Some(_) if counts.len() <= LANE_MAX_GROUPS => lanes_add(counts, groups, rows, |_| 1),
        Some(g) => g.iter().for_each(|g| counts[*g as usize] += 1),
    }
}

/// `count`: non-null values (every row for a non-null constant).
#[derive(Debug, Default)]
pub struct Count {
    counts: Vec<i64>,
}

impl Accumulate for Count {
    fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        let counts = &mut self.counts;
        let (array, by_row) = match arg {
            Arg::Constant { null: true } => return,
            Arg::Constant { null: false } => {
                count_rows(counts, groups, sel.len());
                return;
            }
            Arg::Dense(a) => (*a, false),
            Arg::Rows(a) => (*a, true),
        };
        let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
        match (groups, nulls) {
            (_, None) => count_rows(counts, groups, sel.len()),
            (None, Some(n)) => visit(sel, by_row, |_, i| counts[0] += n.is_valid(i) as i64),
            (Some(g), Some(n)) => visit(sel, by_row, |k, i| {
                counts[g[k] as usize] += n.is_valid(i) as i64
            }),
        }
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(std::mem::take(&mut self.counts)))]
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        let counts: Vec<i64> = match arg {
            Arg::Constant { null } => vec![i64::from(!null); sel.len()],
            _ => {
                let dense = arg.dense(sel, &DataType::Null)?;
                match dense.logical_nulls() {
                    None => vec![1; sel.len()],
                    Some(n) => n.iter().map(i64::from).collect(),
                }
            }
        };
        Ok(vec![Arc::new(Int64Array::from(counts))])
    }

    fn permute(&mut self, order: &[usize]) {
        self.counts = permuted(&self.counts, order);
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// `avg`: a count and a wrapping sum. A group that saw no value has a null sum, and, as in
/// DataFusion's grouped accumulator (whose final merge counts any non-null count as a value
/// seen), a null count too; without `GROUP BY` the count is 0, as DataFusion's plain
/// accumulator has it.
#[derive(Debug)]
pub struct Avg<T: ArrowPrimitiveType> {
    /// Each group's `(sum, count)`, side by side: with many groups a row's update touches one
    /// cache line, not one in a sums array and one in a counts array.
    states: Vec<(T::Native, u64)>,
    sum_type: DataType,
    grouped: bool,
}

impl<T: ArrowPrimitiveType> Avg<T> {
    /// An average whose sum state has type `sum_type` (of `T`'s native type).
    pub fn new(sum_type: DataType, grouped: bool) -> Self {
        Self::with_states(Vec::new(), sum_type, grouped)
    }

    /// An average holding each group's `(sum, count)`.
    pub fn with_states(states: Vec<(T::Native, u64)>, sum_type: DataType, grouped: bool) -> Self {
        Avg {
            states,
            sum_type,
            grouped,
        }
    }
}

impl<T: ArrowPrimitiveType + Debug> Accumulate for Avg<T> {
    fn resize(&mut self, groups: usize) {
        self.states.resize(groups, (T::Native::default(), 0));
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        add_to_averages::<T, T::Native>(&mut self.states, (arg, sel, groups), exact::<T>(), |v| v);
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        let states = std::mem::take(&mut self.states);
        let seen: Vec<bool> = states.iter().map(|s| s.1 > 0).collect();
        let nulls = seen_nulls(&seen);
        let sums = primitive::<T>(
            states.iter().map(|s| s.0).collect(),
            nulls.clone(),
            &self.sum_type,
        );
        let counts: Vec<u64> = states.iter().map(|s| s.1).collect();
        let count_nulls = if self.grouped { nulls } else { None };
        vec![Arc::new(UInt64Array::new(counts.into(), count_nulls)), sums]
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        let sums = dense_values::<T>(arg, sel, &self.sum_type)?;
        let counts = UInt64Array::new(vec![1; sel.len()].into(), sums.logical_nulls());
        Ok(vec![Arc::new(counts), sums])
    }

    fn permute(&mut self, order: &[usize]) {
        self.states = permuted(&self.states, order);
    }

    fn size(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<(T::Native, u64)>()
    }
}

/// `min` (`MAX == false`) or `max` (`MAX == true`), in Arrow's total order.
#[derive(Debug)]
pub struct Extreme<T: ArrowPrimitiveType, const MAX: bool> {
    values: Vec<T::Native>,
    seen: Vec<bool>,
    data_type: DataType,
}

impl<T: ArrowPrimitiveType, const MAX: bool> Extreme<T, MAX> {
    /// A min or max over values of `data_type`.
    pub fn new(data_type: DataType) -> Self {
        Extreme {
            values: Vec::new(),
            seen: Vec::new(),
            data_type,
        }
    }
}

impl<T: ArrowPrimitiveType + Debug, const MAX: bool> Accumulate for Extreme<T, MAX> {
    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, T::Native::default());
        self.seen.resize(groups, false);
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        let (values, seen) = (&mut self.values, &mut self.seen);
        fold::<T>(arg, sel, groups, |g, v| {
            let better = if MAX {
                values[g].is_lt(v)
            } else {
                v.is_lt(values[g])
            };
            if !seen[g] || better {
                values[g] = v;
                seen[g] = true;
            }
        });
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        let nulls = seen_nulls(&self.seen);
        self.seen.clear();
        vec![primitive::<T>(
            std::mem::take(&mut self.values),
            nulls,
            &self.data_type,
        )]
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![dense_values::<T>(arg, sel, &self.data_type)?])
    }

    fn permute(&mut self, order: &[usize]) {
        self.values = permuted(&self.values, order);
        self.seen = permuted(&self.seen, order);
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}
