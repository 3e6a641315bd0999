//! One micro-batch of a streaming aggregation in one state partition (issue 19, being built):
//! the batch's partial aggregates merged into the partition's state, rows for the output mode,
//! and the state left for the next batch.
//!
//! The operator that will run this stands where the final aggregate of a batch query would: its
//! input is the partial aggregates of the batch's rows (group keys, then each aggregate's state
//! fields, as DataFusion's partial `AggregateExec` makes them), shuffled by key. Merging uses
//! each aggregate's own `GroupsAccumulator` (`merge_batch`, `state`, `evaluate`), so every
//! aggregate DataFusion can run distributed merges here the same way. State rows are the group
//! keys and the aggregates' state fields ([`crate::state_store`]).
//!
//! With an event-time key (a timestamp column, or a window struct whose `end` is used) and a
//! watermark, as Spark: partial rows whose event time is at or before the watermark are late
//! and dropped (counted); in append mode a group is emitted once the watermark passes it and
//! then leaves the state; in update mode the batch's changed groups are emitted and groups the
//! watermark passed leave the state; complete mode emits every group and keeps them all.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use faisca_common::{Error, Result};

use crate::state_store::PartitionState;

/// How the batch's result is written (Spark's output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Groups the watermark passed, once, then evicted.
    Append,
    /// Groups this batch changed; groups the watermark passed are evicted.
    Update,
    /// Every group, every batch; nothing evicted.
    Complete,
}

/// What one batch did to one partition.
#[derive(Debug)]
pub struct BatchOutcome {
    /// Rows to write: the group keys, then each aggregate's value.
    pub output: RecordBatch,
    /// Groups whose state this batch changed.
    pub updated: usize,
    /// Partial rows dropped as late.
    pub dropped_late: usize,
    /// Groups evicted from the state.
    pub evicted: usize,
}

/// A streaming aggregation's shape.
pub struct StreamingAggregate {
    /// The aggregates, in output order.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Group key columns (the first ones of the partial rows and of the state).
    pub keys: usize,
    /// The key column that holds event time, if any.
    pub event_time_key: Option<usize>,
    /// The output's schema: the keys, then each aggregate's value.
    pub output_schema: SchemaRef,
}

/// Event times of `column` in microseconds: a timestamp, or the `end` of a window struct.
fn event_times(column: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let column = match column.data_type() {
        DataType::Struct(_) => column
            .as_struct()
            .column_by_name("end")
            .cloned()
            .ok_or_else(|| {
                Error::user("a streaming aggregation's window key has no 'end' field")
            })?,
        _ => column.clone(),
    };
    let micros = cast(&column, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .and_then(|c| cast(&c, &DataType::Int64))
        .map_err(|e| {
            Error::user(format!(
                "a streaming aggregation's event-time key is {}, expected a timestamp or a window: {e}",
                column.data_type()
            ))
        })?;
    Ok(micros
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .iter()
        .collect())
}

/// Rows of `times` at or before `watermark` (null times are never late).
fn passed(times: &[Option<i64>], watermark: i64) -> BooleanArray {
    times
        .iter()
        .map(|t| Some(t.is_some_and(|t| t <= watermark)))
        .collect()
}

impl StreamingAggregate {
    fn state_widths(&self) -> Result<Vec<usize>> {
        self.aggregates
            .iter()
            .map(|a| {
                a.state_fields()
                    .map(|f| f.len())
                    .map_err(|e| Error::internal(format!("{}: {e}", a.name())))
            })
            .collect()
    }

    /// Each aggregate's accumulator with `states` (rows of keys and state fields, `groups[i]`
    /// the group of row `i`, `count` groups) merged in, in aggregate order.
    fn accumulate(
        &self,
        states: &[ArrayRef],
        groups: &[usize],
        count: usize,
    ) -> Result<Vec<(String, Box<dyn GroupsAccumulator>)>> {
        let widths = self.state_widths()?;
        let mut at = self.keys;
        let mut accumulators = Vec::with_capacity(self.aggregates.len());
        for (aggregate, width) in self.aggregates.iter().zip(widths) {
            let name = aggregate.name().to_string();
            let accumulator = aggregate
                .create_groups_accumulator()
                .and_then(|mut a| {
                    a.merge_batch(&states[at..at + width], groups, count)?;
                    Ok(a)
                })
                .map_err(|e| Error::internal(format!("{name}: {e}")))?;
            accumulators.push((name, accumulator));
            at += width;
        }
        Ok(accumulators)
    }

    /// Merges `states` into one state row per group, in group order.
    fn merge(&self, states: &[ArrayRef], groups: &[usize], count: usize) -> Result<Vec<ArrayRef>> {
        let mut merged = Vec::new();
        for (name, mut accumulator) in self.accumulate(states, groups, count)? {
            merged.extend(
                accumulator
                    .state(EmitTo::All)
                    .map_err(|e| Error::internal(format!("{name}: {e}")))?,
            );
        }
        Ok(merged)
    }

    /// The output rows of `state_rows` (keys and state fields): keys and final values.
    fn evaluate(&self, state_rows: &RecordBatch) -> Result<RecordBatch> {
        let rows = state_rows.num_rows();
        let groups: Vec<usize> = (0..rows).collect();
        let mut columns: Vec<ArrayRef> = state_rows.columns()[..self.keys].to_vec();
        for (name, mut accumulator) in self.accumulate(state_rows.columns(), &groups, rows)? {
            columns.push(
                accumulator
                    .evaluate(EmitTo::All)
                    .map_err(|e| Error::internal(format!("{name}: {e}")))?,
            );
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::internal(format!("streaming aggregate output: {e}")))
    }

    /// Runs one batch: `partial` (keys and state fields) merged into `state` under `watermark`
    /// (microseconds; `None`: no watermark), rows for `emit`. The caller commits `state`.
    pub fn run_batch(
        &self,
        state: &mut PartitionState,
        partial: &RecordBatch,
        watermark: Option<i64>,
        emit: Emit,
    ) -> Result<BatchOutcome> {
        let internal =
            |e: &dyn std::fmt::Display| Error::internal(format!("streaming aggregate: {e}"));
        // Late partial rows are dropped.
        let (partial, dropped_late) = match (self.event_time_key, watermark, emit) {
            (Some(key), Some(w), Emit::Append | Emit::Update) => {
                let late = passed(&event_times(partial.column(key))?, w);
                let keep: BooleanArray = late.iter().map(|l| l.map(|l| !l)).collect();
                let kept = filter_record_batch(partial, &keep).map_err(|e| internal(&e))?;
                let dropped = partial.num_rows() - kept.num_rows();
                (kept, dropped)
            }
            _ => (partial.clone(), 0),
        };
        // The batch's groups: their stored state rows first, then the partial rows.
        let key_columns = partial.columns()[..self.keys].to_vec();
        let converter = RowConverter::new(
            key_columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )
        .map_err(|e| internal(&e))?;
        let rows = converter
            .convert_columns(&key_columns)
            .map_err(|e| internal(&e))?;
        let mut group_of: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
        let mut first_row = Vec::new();
        let partial_groups: Vec<usize> = (0..rows.num_rows())
            .map(|i| {
                let next = group_of.len();
                *group_of.entry(rows.row(i).data()).or_insert_with(|| {
                    first_row.push(i as u32);
                    next
                })
            })
            .collect();
        let count = group_of.len();
        let outcome_rows = if count > 0 {
            let firsts = datafusion::arrow::array::UInt32Array::from(first_row);
            let group_keys: Vec<ArrayRef> = key_columns
                .iter()
                .map(|c| take(c, &firsts, None))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| internal(&e))?;
            let (found, stored_values) = state.lookup(&group_keys)?;
            let stored_groups: Vec<usize> = found
                .iter()
                .enumerate()
                .filter_map(|(g, f)| f.map(|_| g))
                .collect();
            // States to merge: stored rows (for the groups that have them), then partial rows.
            let mut states = Vec::with_capacity(partial.num_columns());
            for (i, column) in partial.columns().iter().enumerate() {
                let stored: ArrayRef = if i < self.keys {
                    take(
                        &group_keys[i],
                        &datafusion::arrow::array::UInt32Array::from(
                            stored_groups.iter().map(|g| *g as u32).collect::<Vec<_>>(),
                        ),
                        None,
                    )
                    .map_err(|e| internal(&e))?
                } else {
                    stored_values[i - self.keys].clone()
                };
                let both = datafusion::arrow::compute::concat(&[stored.as_ref(), column.as_ref()])
                    .map_err(|e| internal(&e))?;
                states.push(both);
            }
            let groups: Vec<usize> = stored_groups
                .iter()
                .copied()
                .chain(partial_groups.iter().copied())
                .collect();
            let merged = self.merge(&states, &groups, count)?;
            let mut columns = group_keys;
            columns.extend(merged);
            let updated =
                RecordBatch::try_new(partial.schema(), columns).map_err(|e| internal(&e))?;
            state.upsert(&updated)?;
            Some(updated)
        } else {
            None
        };
        let updated = outcome_rows.as_ref().map_or(0, RecordBatch::num_rows);
        // Rows for the output mode, and evictions.
        let (output, evicted) = match (emit, self.event_time_key, watermark) {
            (Emit::Complete, _, _) => (self.evaluate(&state.rows()?)?, 0),
            (Emit::Update, key, w) => {
                let output = match &outcome_rows {
                    Some(rows) => self.evaluate(rows)?,
                    None => RecordBatch::new_empty(self.output_schema.clone()),
                };
                let evicted = match (key, w) {
                    (Some(key), Some(w)) => self.evict(state, key, w)?.num_rows(),
                    _ => 0,
                };
                (output, evicted)
            }
            (Emit::Append, Some(key), Some(w)) => {
                let done = self.evict(state, key, w)?;
                (self.evaluate(&done)?, done.num_rows())
            }
            (Emit::Append, _, _) => {
                return Err(Error::user(
                    "Append output mode not supported when there are streaming aggregations on streaming DataFrames/DataSets without watermark",
                ));
            }
        };
        Ok(BatchOutcome {
            output,
            updated,
            dropped_late,
            evicted,
        })
    }

    /// Removes the groups the watermark passed from `state`; returns their state rows.
    fn evict(&self, state: &mut PartitionState, key: usize, watermark: i64) -> Result<RecordBatch> {
        state.remove_where(|all| Ok(passed(&event_times(all.column(key))?, watermark)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    use super::*;
    use crate::state_store::StateLocation;

    const S: i64 = 1_000_000;

    /// count(v) and sum(v) per (window end `t`, key `k`) over rows (t, k, v).
    fn aggregate() -> (StreamingAggregate, SchemaRef) {
        let input = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let build = |udaf, name: &str| {
            Arc::new(
                AggregateExprBuilder::new(udaf, vec![col("v", &input).unwrap()])
                    .schema(input.clone())
                    .alias(name)
                    .build()
                    .unwrap(),
            )
        };
        let aggregates = vec![build(count_udaf(), "count"), build(sum_udaf(), "sum")];
        let mut state_fields = vec![input.field(0).clone(), input.field(1).clone()];
        for a in &aggregates {
            state_fields.extend(a.state_fields().unwrap().iter().map(|f| f.as_ref().clone()));
        }
        let output = Arc::new(Schema::new(vec![
            input.field(0).clone(),
            input.field(1).clone(),
            Field::new("count", DataType::Int64, false),
            Field::new("sum", DataType::Int64, true),
        ]));
        (
            StreamingAggregate {
                aggregates,
                keys: 2,
                event_time_key: Some(0),
                output_schema: output,
            },
            Arc::new(Schema::new(state_fields)),
        )
    }

    /// Partial rows: (window end s, key, count, sum).
    fn partial(schema: &SchemaRef, rows: &[(i64, &str, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.0 * S),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    fn shown(batch: &RecordBatch) -> Vec<String> {
        let mut rows: Vec<String> = (0..batch.num_rows())
            .map(|i| {
                let t = batch
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                    .value(i)
                    / S;
                let k = batch.column(1).as_string::<i32>().value(i);
                let c = batch
                    .column(2)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .value(i);
                let s = batch
                    .column(3)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .value(i);
                format!("{t} {k} {c} {s}")
            })
            .collect();
        rows.sort();
        rows
    }

    async fn state(schema: &SchemaRef) -> PartitionState {
        let location = StateLocation {
            url: "memory:///cp".into(),
            store: Arc::new(InMemory::new()),
            dir: Path::from("cp/state/0/0"),
            snapshot_interval: 10,
            min_versions_to_retain: 10,
        };
        PartitionState::load(location, schema.clone(), 2, 0)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn batches_merge_into_state_and_emit_per_output_mode() {
        let (agg, schema) = aggregate();
        // Update: each batch's changed groups, with totals so far.
        let mut st = state(&schema).await;
        let out = agg
            .run_batch(
                &mut st,
                &partial(
                    &schema,
                    &[(10, "a", 2, 5), (10, "b", 1, 1), (10, "a", 1, 1)],
                ),
                Some(0),
                Emit::Update,
            )
            .unwrap();
        assert_eq!(shown(&out.output), ["10 a 3 6", "10 b 1 1"]);
        assert_eq!(out.updated, 2);
        let out = agg
            .run_batch(
                &mut st,
                &partial(&schema, &[(10, "a", 1, 4), (20, "a", 1, 7)]),
                Some(0),
                Emit::Update,
            )
            .unwrap();
        assert_eq!(shown(&out.output), ["10 a 4 10", "20 a 1 7"]);
        // The watermark passed window 10: its late rows are dropped, its groups evicted.
        let out = agg
            .run_batch(
                &mut st,
                &partial(&schema, &[(10, "b", 5, 5), (20, "b", 1, 2)]),
                Some(10 * S),
                Emit::Update,
            )
            .unwrap();
        assert_eq!(shown(&out.output), ["20 b 1 2"]);
        assert_eq!((out.dropped_late, out.evicted), (1, 2));
        assert_eq!(st.len(), 2);

        // Append: a window is emitted once, when the watermark reaches its end.
        let mut st = state(&schema).await;
        let out = agg
            .run_batch(
                &mut st,
                &partial(&schema, &[(10, "a", 1, 1), (20, "a", 1, 1)]),
                Some(0),
                Emit::Append,
            )
            .unwrap();
        assert!(out.output.num_rows() == 0);
        let out = agg
            .run_batch(
                &mut st,
                &partial(&schema, &[(10, "a", 2, 2)]),
                Some(10 * S),
                Emit::Append,
            )
            .unwrap();
        // The new rows for window 10 came too late; the window is emitted with what it had.
        assert_eq!(shown(&out.output), ["10 a 1 1"]);
        assert_eq!(out.dropped_late, 1);
        let out = agg
            .run_batch(&mut st, &partial(&schema, &[]), Some(20 * S), Emit::Append)
            .unwrap();
        assert_eq!(shown(&out.output), ["20 a 1 1"]);
        assert!(st.is_empty());

        // Complete: everything, every batch, nothing dropped or evicted.
        let mut st = state(&schema).await;
        agg.run_batch(
            &mut st,
            &partial(&schema, &[(10, "a", 1, 1)]),
            Some(50 * S),
            Emit::Complete,
        )
        .unwrap();
        let out = agg
            .run_batch(
                &mut st,
                &partial(&schema, &[(20, "b", 2, 3), (10, "a", 1, 1)]),
                Some(50 * S),
                Emit::Complete,
            )
            .unwrap();
        assert_eq!(shown(&out.output), ["10 a 2 2", "20 b 2 3"]);
        assert_eq!((out.dropped_late, out.evicted), (0, 0));
    }
}
