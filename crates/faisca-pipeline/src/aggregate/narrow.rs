//! Decimal `sum` and `avg` with 64-bit sums while they provably fit.
//!
//! A `Decimal128` sum is an `i128`, but the values summed in practice (prices, quantities) are
//! far smaller. With many groups every row's update is a cache miss, so the width of a group's
//! state is what the update costs: an `avg` over `(i64, u64)` states is half the memory of one
//! over `(i128, u64)`. [`Headroom`] keeps an upper bound of how far any group's sum may have
//! moved from zero (the largest magnitude in each batch times its rows, added up); while it
//! stays within `i64`, no sum can have left `i64` and the narrow states are exact. A batch that
//! would break the bound first converts the states to the wide accumulators of
//! [`super::accumulators`], which take over until the next emission. Either way the partial
//! states are the same `Decimal128` arrays DataFusion produces.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type};
use datafusion::error::Result as DfResult;

use super::accumulators::{
    Accumulate, Arg, Avg, Sum, add_to_averages, add_to_sums, dense_values, permuted,
};
use crate::selection::Selection;

/// How much further the sums may move from zero before one could leave `i64`.
#[derive(Debug, Clone, Copy)]
struct Headroom(u128);

impl Headroom {
    const FULL: Headroom = Headroom(i64::MAX as u128);

    /// Takes what adding the selected rows of `arg` can move a sum by; `false` (nothing
    /// taken) when it does not fit.
    fn take(&mut self, arg: &Arg, sel: &Selection) -> bool {
        let array = match arg {
            Arg::Dense(a) | Arg::Rows(a) => *a,
            Arg::Constant { .. } => return false,
        };
        // The bits of every magnitude ORed together (`v ^ (v >> 127)` is `|v|` for v >= 0 and
        // `|v| - 1` below), so `2^bits` bounds them all; null slots only make it larger. Done on
        // each value's two 64-bit halves, which the compiler vectorizes (it does not for i128).
        let halves = array
            .as_primitive::<Decimal128Type>()
            .values()
            .inner()
            .typed_data::<u64>();
        let (lo, hi) = if cfg!(target_endian = "little") {
            (0, 1)
        } else {
            (1, 0)
        };
        let (mut low, mut high) = (0u64, 0u64);
        for value in halves.chunks_exact(2) {
            let sign = ((value[hi] as i64) >> 63) as u64;
            low |= value[lo] ^ sign;
            high |= value[hi] ^ sign;
        }
        let bits = (u128::from(high) << 64) | u128::from(low);
        let width = 128 - bits.leading_zeros();
        if width >= 64 {
            return false;
        }
        let growth = (1u128 << width).saturating_mul(sel.len() as u128);
        if growth > self.0 {
            return false;
        }
        self.0 -= growth;
        true
    }
}

/// `sum` of a `Decimal128` argument, in `i64` until a batch could overflow it.
#[derive(Debug)]
pub struct NarrowDecimalSum {
    sums: Vec<i64>,
    seen: Vec<bool>,
    headroom: Headroom,
    /// The `i128` accumulator, once the sums were widened (until the next emission).
    wide: Option<Sum<Decimal128Type>>,
    state_type: DataType,
}

impl NarrowDecimalSum {
    /// A sum whose state has type `state_type` (a `Decimal128`).
    pub fn new(state_type: DataType) -> Self {
        NarrowDecimalSum {
            sums: Vec::new(),
            seen: Vec::new(),
            headroom: Headroom::FULL,
            wide: None,
            state_type,
        }
    }

    fn widened(&mut self) -> &mut Sum<Decimal128Type> {
        let state_type = self.state_type.clone();
        let (sums, seen) = (&mut self.sums, &mut self.seen);
        self.wide.get_or_insert_with(|| {
            let sums = std::mem::take(sums).into_iter().map(i128::from).collect();
            Sum::with_states(sums, std::mem::take(seen), state_type)
        })
    }
}

impl Accumulate for NarrowDecimalSum {
    fn resize(&mut self, groups: usize) {
        match &mut self.wide {
            Some(wide) => wide.resize(groups),
            None => {
                self.sums.resize(groups, 0);
                self.seen.resize(groups, false);
            }
        }
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        if self.wide.is_some() || !self.headroom.take(arg, sel) {
            return self.widened().update(arg, sel, groups);
        }
        let rows = (arg, sel, groups);
        add_to_sums::<Decimal128Type, i64>(&mut self.sums, &mut self.seen, rows, true, |v| {
            v as i64
        });
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        let emitted = self.widened().emit();
        *self = NarrowDecimalSum::new(self.state_type.clone());
        emitted
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![dense_values::<Decimal128Type>(
            arg,
            sel,
            &self.state_type,
        )?])
    }

    fn permute(&mut self, order: &[usize]) {
        match &mut self.wide {
            Some(wide) => wide.permute(order),
            None => {
                self.sums = permuted(&self.sums, order);
                self.seen = permuted(&self.seen, order);
            }
        }
    }

    fn size(&self) -> usize {
        match &self.wide {
            Some(wide) => wide.size(),
            None => self.sums.capacity() * 8 + self.seen.capacity(),
        }
    }
}

/// `avg` of a `Decimal128` argument, with `(i64 sum, u64 count)` states until a batch could
/// overflow a sum.
#[derive(Debug)]
pub struct NarrowDecimalAvg {
    states: Vec<(i64, u64)>,
    headroom: Headroom,
    /// The `i128` accumulator, once the sums were widened (until the next emission).
    wide: Option<Avg<Decimal128Type>>,
    sum_type: DataType,
    grouped: bool,
}

impl NarrowDecimalAvg {
    /// An average whose sum state has type `sum_type` (a `Decimal128`).
    pub fn new(sum_type: DataType, grouped: bool) -> Self {
        NarrowDecimalAvg {
            states: Vec::new(),
            headroom: Headroom::FULL,
            wide: None,
            sum_type,
            grouped,
        }
    }

    fn widened(&mut self) -> &mut Avg<Decimal128Type> {
        let (sum_type, grouped) = (self.sum_type.clone(), self.grouped);
        let states = &mut self.states;
        self.wide.get_or_insert_with(|| {
            let states = std::mem::take(states)
                .into_iter()
                .map(|(sum, count)| (i128::from(sum), count))
                .collect();
            Avg::with_states(states, sum_type, grouped)
        })
    }
}

impl Accumulate for NarrowDecimalAvg {
    fn resize(&mut self, groups: usize) {
        match &mut self.wide {
            Some(wide) => wide.resize(groups),
            None => self.states.resize(groups, (0, 0)),
        }
    }

    fn update(&mut self, arg: &Arg, sel: &Selection, groups: Option<&[u32]>) {
        if self.wide.is_some() || !self.headroom.take(arg, sel) {
            return self.widened().update(arg, sel, groups);
        }
        let rows = (arg, sel, groups);
        add_to_averages::<Decimal128Type, i64>(&mut self.states, rows, true, |v| v as i64);
    }

    fn emit(&mut self) -> Vec<ArrayRef> {
        let emitted = self.widened().emit();
        *self = NarrowDecimalAvg::new(self.sum_type.clone(), self.grouped);
        emitted
    }

    fn row_states(&self, arg: &Arg, sel: &Selection) -> DfResult<Vec<ArrayRef>> {
        let sums = dense_values::<Decimal128Type>(arg, sel, &self.sum_type)?;
        let counts =
            arrow::array::UInt64Array::new(vec![1; sel.len()].into(), sums.logical_nulls());
        Ok(vec![Arc::new(counts), sums])
    }

    fn permute(&mut self, order: &[usize]) {
        match &mut self.wide {
            Some(wide) => wide.permute(order),
            None => self.states = permuted(&self.states, order),
        }
    }

    fn size(&self) -> usize {
        match &self.wide {
            Some(wide) => wide.size(),
            None => self.states.capacity() * std::mem::size_of::<(i64, u64)>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Decimal128Array;

    fn decimal(values: &[Option<i128>]) -> ArrayRef {
        Arc::new(
            values
                .iter()
                .copied()
                .collect::<Decimal128Array>()
                .with_precision_and_scale(38, 2)
                .unwrap(),
        )
    }

    /// Feeds the same batches to the narrow and the wide accumulator; their states must match.
    fn same_states(batches: &[(Vec<Option<i128>>, Vec<u32>)], groups: usize) {
        let state = DataType::Decimal128(38, 2);
        let mut narrow_sum = NarrowDecimalSum::new(state.clone());
        let mut wide_sum = Sum::<Decimal128Type>::new(state.clone());
        let mut narrow_avg = NarrowDecimalAvg::new(state.clone(), true);
        let mut wide_avg = Avg::<Decimal128Type>::new(state.clone(), true);
        let accumulators: [(&mut dyn Accumulate, &mut dyn Accumulate); 2] = [
            (&mut narrow_sum, &mut wide_sum),
            (&mut narrow_avg, &mut wide_avg),
        ];
        for (narrow, wide) in accumulators {
            narrow.resize(groups);
            wide.resize(groups);
            for (values, group_of) in batches {
                let array = decimal(values);
                let sel = Selection::All(values.len());
                narrow.update(&Arg::Rows(&array), &sel, Some(group_of));
                wide.update(&Arg::Rows(&array), &sel, Some(group_of));
            }
            assert_eq!(narrow.emit(), wide.emit());
        }
    }

    #[test]
    fn small_values_stay_narrow_and_match_the_wide_states() {
        let batch = |shift: i128| {
            let values: Vec<Option<i128>> = (0..3000)
                .map(|i| (i % 7 != 0).then_some((i as i128 * 7919 + shift) % 10_000 - 5_000))
                .collect();
            let groups: Vec<u32> = (0..3000).map(|i| (i * 31 % 2000) as u32).collect();
            (values, groups)
        };
        let mut sum = NarrowDecimalSum::new(DataType::Decimal128(38, 2));
        sum.resize(2000);
        let (values, groups) = batch(0);
        sum.update(
            &Arg::Rows(&decimal(&values)),
            &Selection::All(3000),
            Some(&groups),
        );
        assert!(sum.wide.is_none(), "small values keep 64-bit sums");
        same_states(&[batch(0), batch(1), batch(2)], 2000);
        // Few groups (the lane path).
        let few = |values: Vec<Option<i128>>| {
            let groups: Vec<u32> = (0..values.len()).map(|i| (i % 3) as u32).collect();
            (values, groups)
        };
        same_states(
            &[few(vec![Some(1), Some(-2), Some(3), Some(4), Some(-5)])],
            3,
        );
    }

    #[test]
    fn sums_that_could_leave_64_bits_widen_first() {
        let big = i64::MAX as i128 / 2;
        let groups = vec![0, 1, 0, 1];
        same_states(
            &[
                (vec![Some(10), Some(-10), Some(5), None], groups.clone()),
                // Three of these in one group leave i64: the batch widens before adding.
                (
                    vec![Some(big), Some(-big), Some(big), Some(-big)],
                    groups.clone(),
                ),
                (
                    vec![Some(big), Some(-big), Some(big), Some(-big)],
                    groups.clone(),
                ),
                (
                    vec![Some(i128::MAX / 4), None, Some(1), Some(i128::MIN / 4)],
                    groups,
                ),
            ],
            2,
        );
    }

    #[test]
    fn many_small_batches_widen_when_their_bound_runs_out() {
        // Each batch may move a sum by at most 2^50 × 2 rows: the bound runs out after 4096
        // batches, before any sum overflows, and the answers stay exact across the switch.
        let value = (1i128 << 50) - 1;
        let batches: Vec<_> = (0..5000)
            .map(|i| (vec![Some(value), Some(-value + i)], vec![0u32, 1]))
            .collect();
        let mut avg = NarrowDecimalAvg::new(DataType::Decimal128(38, 2), true);
        avg.resize(2);
        for (values, groups) in &batches {
            avg.update(
                &Arg::Rows(&decimal(values)),
                &Selection::All(2),
                Some(groups),
            );
        }
        assert!(avg.wide.is_some(), "the bound ran out and the sums widened");
        same_states(&batches, 2);
    }

    #[test]
    fn emission_starts_narrow_again() {
        let mut sum = NarrowDecimalSum::new(DataType::Decimal128(38, 2));
        sum.resize(1);
        let huge = decimal(&[Some(i128::MAX / 2)]);
        sum.update(&Arg::Rows(&huge), &Selection::All(1), Some(&[0]));
        assert!(sum.wide.is_some());
        let emitted = sum.emit();
        assert_eq!(emitted[0].len(), 1);
        assert!(sum.wide.is_none() && sum.sums.is_empty());
        sum.resize(1);
        let small = decimal(&[Some(3)]);
        sum.update(&Arg::Rows(&small), &Selection::All(1), Some(&[0]));
        assert!(sum.wide.is_none());
        assert_eq!(sum.emit(), vec![decimal(&[Some(3)])]);
    }
}
