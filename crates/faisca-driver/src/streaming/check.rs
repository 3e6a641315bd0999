//! What a streaming query may do, checked when it starts, with Spark's reasons (its
//! `UnsupportedOperationChecker`, for what this engine runs so far): output modes against
//! aggregations and watermarks, sorting, limits, non-time windows, and joins and unions of
//! streaming and static data. A plan reading no streaming source is a batch plan and is not
//! checked.

use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, TableScan};
use faisca_common::{Error, Result};
use faisca_engine::streaming_plan::EventTimeWatermark;

/// How a streaming query writes its result (Spark's output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Only rows that will never change: a window once the watermark passed its end.
    Append,
    /// Rows that changed in the batch.
    Update,
    /// The whole result, every batch.
    Complete,
}

impl OutputMode {
    /// `append`, `update` or `complete` (any case).
    pub fn parse(mode: &str) -> Result<OutputMode> {
        match mode.trim().to_ascii_lowercase().as_str() {
            "append" => Ok(OutputMode::Append),
            "update" => Ok(OutputMode::Update),
            "complete" => Ok(OutputMode::Complete),
            _ => Err(Error::user(format!(
                "unknown output mode '{mode}': expected append, update or complete"
            ))),
        }
    }
}

/// What the check learned of a subtree.
#[derive(Debug, Default, Clone)]
struct Facts {
    /// It reads a streaming source.
    streaming: bool,
    /// Streaming aggregations in it.
    aggregations: usize,
    /// The event-time columns of the watermarks in it.
    watermarks: Vec<String>,
}

/// Checks `plan` for `mode`; `is_streaming` says which scans read streaming sources.
pub fn check(
    plan: &LogicalPlan,
    mode: OutputMode,
    is_streaming: &dyn Fn(&TableScan) -> bool,
) -> Result<()> {
    let facts = walk(plan, mode, is_streaming)?;
    if !facts.streaming {
        return Ok(());
    }
    if mode == OutputMode::Complete && facts.aggregations == 0 {
        return refuse(
            "Complete output mode not supported when there are no streaming aggregations on streaming DataFrames/Datasets",
            plan,
        );
    }
    Ok(())
}

fn refuse<T>(reason: &str, node: &LogicalPlan) -> Result<T> {
    Err(Error::user(format!(
        "{reason}; at: {}",
        node.display().to_string().trim()
    )))
}

fn walk(
    plan: &LogicalPlan,
    mode: OutputMode,
    is_streaming: &dyn Fn(&TableScan) -> bool,
) -> Result<Facts> {
    let inputs: Vec<Facts> = plan
        .inputs()
        .into_iter()
        .map(|input| walk(input, mode, is_streaming))
        .collect::<Result<_>>()?;
    let mut facts = Facts {
        streaming: inputs.iter().any(|f| f.streaming),
        aggregations: inputs.iter().map(|f| f.aggregations).sum(),
        watermarks: inputs.iter().flat_map(|f| f.watermarks.clone()).collect(),
    };
    if let LogicalPlan::TableScan(scan) = plan {
        facts.streaming = is_streaming(scan);
        return Ok(facts);
    }
    if !facts.streaming {
        return Ok(facts);
    }
    match plan {
        LogicalPlan::Extension(_) if EventTimeWatermark::of(plan).is_some() => {
            if let Some(w) = EventTimeWatermark::of(plan) {
                facts.watermarks.push(w.column.clone());
            }
        }
        LogicalPlan::Aggregate(aggregate) => {
            let keys: Vec<String> = aggregate
                .group_expr
                .iter()
                .flat_map(|e| e.column_refs())
                .map(|c| c.name.clone())
                .collect();
            aggregation(plan, &facts, mode, &keys)?;
            let distinct = aggregate.aggr_expr.iter().any(|e| {
                matches!(
                    e.clone().unalias(),
                    Expr::AggregateFunction(f) if f.params.distinct
                )
            });
            if distinct {
                return refuse(
                    "Distinct aggregations are not supported on streaming DataFrames/Datasets. Consider using approx_count_distinct() instead",
                    plan,
                );
            }
            facts.aggregations += 1;
        }
        LogicalPlan::Distinct(distinct) => {
            let keys = distinct.input().schema().field_names();
            aggregation(plan, &facts, mode, &keys)?;
            facts.aggregations += 1;
        }
        LogicalPlan::Sort(_) if facts.aggregations == 0 || mode != OutputMode::Complete => {
            return refuse(
                "Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated DataFrame/Dataset in Complete output mode",
                plan,
            );
        }
        LogicalPlan::Limit(_) if mode == OutputMode::Update => {
            return refuse(
                "Limits are not supported on streaming DataFrames/Datasets in Update output mode",
                plan,
            );
        }
        LogicalPlan::Window(_) => {
            return refuse(
                "Non-time-based windows are not supported on streaming DataFrames/Datasets",
                plan,
            );
        }
        LogicalPlan::Join(join) => {
            let (left, right) = (inputs[0].streaming, inputs[1].streaming);
            let reason = match join.join_type {
                _ if left && right => Some(
                    "Stream-stream joins are not supported yet: join a streaming DataFrame/Dataset with a static one",
                ),
                JoinType::Inner => None,
                JoinType::Full => {
                    Some("Full outer joins with streaming DataFrames/Datasets are not supported")
                }
                JoinType::Left if right => Some(
                    "Left outer join with a streaming DataFrame/Dataset on the right and a static DataFrame/Dataset on the left is not supported",
                ),
                JoinType::Right if left => Some(
                    "Right outer join with a streaming DataFrame/Dataset on the left and a static DataFrame/Dataset on the right is not supported",
                ),
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark if right => Some(
                    "Left semi/anti joins with a streaming DataFrame/Dataset on the right are not supported",
                ),
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark if left => Some(
                    "Right semi/anti joins with a streaming DataFrame/Dataset on the left are not supported",
                ),
                _ => None,
            };
            if let Some(reason) = reason {
                return refuse(reason, plan);
            }
        }
        LogicalPlan::Union(_) if inputs.iter().any(|f| !f.streaming) => {
            return refuse(
                "Union between streaming and batch DataFrames/Datasets is not supported",
                plan,
            );
        }
        _ => {}
    }
    Ok(facts)
}

/// The rules every streaming aggregation meets: one per query, and in append mode a key on a
/// watermarked event-time column (the column itself or a window over it), so that a group is
/// known to be final once the watermark passes it.
fn aggregation(plan: &LogicalPlan, below: &Facts, mode: OutputMode, keys: &[String]) -> Result<()> {
    if below.aggregations > 0 {
        return refuse(
            "Multiple streaming aggregations are not supported with streaming DataFrames/Datasets",
            plan,
        );
    }
    let keyed_by_event_time = below.watermarks.iter().any(|w| keys.contains(w));
    if mode == OutputMode::Append && !keyed_by_event_time {
        return refuse(
            "Append output mode not supported when there are streaming aggregations on streaming DataFrames/DataSets without watermark",
            plan,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("k", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![1])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        for name in ["events", "other_events", "dims"] {
            let table = MemTable::try_new(schema.clone(), vec![vec![batch.clone()]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        ctx
    }

    fn streaming(scan: &TableScan) -> bool {
        scan.table_name.table().ends_with("events")
    }

    async fn plan(sql: &str) -> LogicalPlan {
        context()
            .await
            .sql(sql)
            .await
            .unwrap()
            .into_unoptimized_plan()
    }

    /// `events` with a watermark on `ts`, counted per `k` and, when `by_time`, per `ts`.
    async fn counted_with_watermark(by_time: bool) -> LogicalPlan {
        use datafusion::functions_aggregate::expr_fn::count;
        use datafusion::prelude::{DataFrame, col, lit};
        let ctx = context().await;
        let events = ctx.table("events").await.unwrap().into_unoptimized_plan();
        let marked = EventTimeWatermark::try_new(events, "ts", Duration::from_secs(10)).unwrap();
        let keys = if by_time {
            vec![col("ts"), col("k")]
        } else {
            vec![col("k")]
        };
        DataFrame::new(ctx.state(), marked)
            .aggregate(keys, vec![count(lit(1))])
            .unwrap()
            .into_unoptimized_plan()
    }

    fn refused(plan: &LogicalPlan, mode: &str) -> String {
        check(plan, OutputMode::parse(mode).unwrap(), &streaming)
            .unwrap_err()
            .to_string()
    }

    fn allowed(plan: &LogicalPlan, mode: &str) {
        check(plan, OutputMode::parse(mode).unwrap(), &streaming).unwrap();
    }

    #[tokio::test]
    async fn output_modes_against_aggregations_and_watermarks() {
        let counts = plan("SELECT k, count(*) FROM events GROUP BY k").await;
        assert!(refused(&counts, "append").contains("without watermark"));
        allowed(&counts, "update");
        allowed(&counts, "complete");
        let windowed = counted_with_watermark(true).await;
        allowed(&windowed, "append");
        // A watermark, but groups not keyed by event time never become final.
        let unkeyed = counted_with_watermark(false).await;
        assert!(refused(&unkeyed, "append").contains("without watermark"));
        allowed(&unkeyed, "update");
        let e = EventTimeWatermark::try_new(counts.clone(), "nope", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column 'nope'"), "{e}");
        let e = EventTimeWatermark::try_new(counts.clone(), "k", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'k' is Int64; expected a timestamp"), "{e}");
        let rows = plan("SELECT k + 1 FROM events WHERE k > 0").await;
        allowed(&rows, "append");
        assert!(refused(&rows, "complete").contains("no streaming aggregations"));
        let twice =
            plan("SELECT count(*) FROM (SELECT k, count(*) AS c FROM events GROUP BY k)").await;
        assert!(refused(&twice, "update").contains("Multiple streaming aggregations"));
        let distinct = plan("SELECT count(DISTINCT k) FROM events").await;
        assert!(refused(&distinct, "complete").contains("approx_count_distinct"));
        // Batch plans are not checked.
        allowed(&plan("SELECT k FROM dims ORDER BY k").await, "complete");
        assert!(
            OutputMode::parse("upsert")
                .unwrap_err()
                .to_string()
                .contains("append, update or complete")
        );
    }

    #[tokio::test]
    async fn sorting_limits_windows_joins_and_unions() {
        let sorted = plan("SELECT k, count(*) AS c FROM events GROUP BY k ORDER BY c").await;
        allowed(&sorted, "complete");
        assert!(refused(&sorted, "update").contains("Sorting is not supported"));
        let rows_sorted = plan("SELECT k FROM events ORDER BY k").await;
        assert!(refused(&rows_sorted, "append").contains("Sorting is not supported"));
        let limited = plan("SELECT k, count(*) FROM events GROUP BY k LIMIT 3").await;
        assert!(refused(&limited, "update").contains("Limits are not supported"));
        allowed(&limited, "complete");
        let ranked = plan("SELECT k, row_number() OVER (ORDER BY ts) FROM events").await;
        assert!(refused(&ranked, "append").contains("Non-time-based windows"));
        let enriched = plan("SELECT e.k FROM events e JOIN dims d ON e.k = d.k").await;
        allowed(&enriched, "append");
        let left = plan("SELECT e.k FROM events e LEFT JOIN dims d ON e.k = d.k").await;
        allowed(&left, "append");
        let wrong_side = plan("SELECT d.k FROM dims d LEFT JOIN events e ON e.k = d.k").await;
        assert!(refused(&wrong_side, "append").contains("Left outer join with a streaming"));
        let full = plan("SELECT e.k FROM events e FULL JOIN dims d ON e.k = d.k").await;
        assert!(refused(&full, "append").contains("Full outer joins"));
        let both = plan("SELECT e.k FROM events e JOIN other_events o ON e.k = o.k").await;
        assert!(refused(&both, "append").contains("Stream-stream joins"));
        let mixed = plan("SELECT k FROM events UNION ALL SELECT k FROM dims").await;
        assert!(refused(&mixed, "append").contains("Union between streaming and batch"));
        allowed(
            &plan("SELECT k FROM events UNION ALL SELECT k FROM other_events").await,
            "append",
        );
    }
}
