//! Stage cutting of real DataFusion plans, checked as rendered text (hand-verified snapshots).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;
use crate::explain::render;

/// Two tables of two partitions each; `big` is large enough to stay a partitioned join side.
async fn context(broadcast_threshold: usize) -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(3);
    let opts = config.options_mut();
    opts.optimizer.enable_round_robin_repartition = false;
    opts.optimizer.enable_dynamic_filter_pushdown = false;
    opts.optimizer.hash_join_single_partition_threshold = broadcast_threshold;
    opts.optimizer.hash_join_single_partition_threshold_rows = broadcast_threshold;
    opts.explain.show_statistics = false;
    let ctx = SessionContext::new_with_config(config);
    for (name, rows) in [("orders", 1000), ("customer", 100)] {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batch = |offset: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(offset..offset + rows)),
                    Arc::new(StringArray::from_iter_values(
                        (0..rows).map(|i| format!("n{}", i % 7)),
                    )),
                ],
            )
            .unwrap()
        };
        let table =
            MemTable::try_new(schema.clone(), vec![vec![batch(0)], vec![batch(rows)]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    ctx
}

async fn stages_of(ctx: &SessionContext, sql: &str) -> StageGraph {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    cut_stages(plan).unwrap()
}

/// The stage headers and operator names only (no expressions), so the snapshot shows the cut.
fn outline(graph: &StageGraph) -> String {
    render(graph)
        .lines()
        .map(|l| match l.find(':') {
            Some(i) if l.trim_start().ends_with("Exec") || l.contains("Exec:") => {
                l[..i].to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn aggregate_cuts_at_the_hash_exchange() {
    let ctx = context(0).await;
    let graph = stages_of(&ctx, "SELECT name, count(*) FROM orders GROUP BY name").await;
    let expected = "\
Stage 0 (tasks=2, output=hash(3))
  AggregateExec
    DataSourceExec
Stage 1 (tasks=3, output=result, inputs=[0])
  ProjectionExec
    AggregateExec
      ShuffleReaderExec";
    assert_eq!(outline(&graph), expected, "\n{}", render(&graph));
}

#[tokio::test]
async fn partitioned_join_and_aggregate_with_order() {
    let ctx = context(0).await;
    let graph = stages_of(
        &ctx,
        "SELECT c.name, count(*) AS n FROM orders o JOIN customer c ON o.id = c.id GROUP BY c.name ORDER BY n DESC",
    )
    .await;
    let expected = "\
Stage 0 (tasks=2, output=hash(3))
  DataSourceExec
Stage 1 (tasks=2, output=hash(3))
  DataSourceExec
Stage 2 (tasks=3, output=hash(3), inputs=[0,1])
  AggregateExec
    HashJoinExec
      ShuffleReaderExec
      ShuffleReaderExec
Stage 3 (tasks=3, output=per-task, inputs=[2])
  ProjectionExec
    SortExec
      AggregateExec
        ShuffleReaderExec
Stage 4 (tasks=1, output=result, inputs=[3])
  SortPreservingMergeExec
    ShuffleReaderExec";
    assert_eq!(outline(&graph), expected, "\n{}", render(&graph));
    assert_eq!(graph.stages[2].inputs, vec![0, 1]);
}

#[tokio::test]
async fn broadcast_build_side_is_its_own_stage() {
    let ctx = context(usize::MAX).await;
    let graph = stages_of(
        &ctx,
        "SELECT o.id, c.name FROM orders o JOIN customer c ON o.id = c.id",
    )
    .await;
    let text = render(&graph);
    // The build side is coalesced into one partition in its own stage and read by every probe task.
    assert!(text.contains("mode=CollectLeft"), "{text}");
    let result = graph.result_stage();
    assert_eq!(result.tasks(), 2, "{text}");
    assert_eq!(result.inputs.len(), 1, "{text}");
    let build = &graph.stages[result.inputs[0] as usize];
    assert!(matches!(build.output, StageOutput::PerTask), "{text}");
}

#[tokio::test]
async fn global_limit_reads_every_task() {
    let ctx = context(0).await;
    let graph = stages_of(&ctx, "SELECT id FROM orders LIMIT 5").await;
    assert_eq!(graph.stages.len(), 2, "{}", render(&graph));
    assert_eq!(graph.result_stage().tasks(), 1);
    assert_eq!(graph.stages[0].tasks(), 2);
}

#[tokio::test]
async fn a_plan_without_exchanges_is_one_stage() {
    let ctx = context(0).await;
    let graph = stages_of(&ctx, "SELECT id FROM orders WHERE id > 3").await;
    assert_eq!(graph.stages.len(), 1);
    assert_eq!(graph.result_stage().tasks(), 2);
}

#[tokio::test]
async fn semi_join_with_broadcast_left_becomes_partitioned() {
    // The left side is small enough to broadcast, but a LEFT SEMI join emits left rows that depend
    // on every probe partition: it must become a partitioned join.
    let ctx = context(usize::MAX).await;
    let graph = stages_of(
        &ctx,
        "SELECT c.id FROM customer c WHERE c.id IN (SELECT o.id FROM orders o GROUP BY o.id)",
    )
    .await;
    let text = render(&graph);
    assert!(
        !text.contains("mode=CollectLeft, join_type=LeftSemi"),
        "{text}"
    );
    // The collected side's merge goes: its tasks hash their rows straight into the join's
    // partitions, with no one-task stage that merges them first.
    assert!(!text.contains("CoalescePartitionsExec"), "{text}");
    assert!(
        !text.contains("mode=CollectLeft, join_type=RightSemi")
            || graph.result_stage().tasks() >= 1,
        "{text}"
    );
}

#[tokio::test]
async fn left_outer_join_keeps_unmatched_rows_once() {
    let ctx = context(usize::MAX).await;
    let graph = stages_of(
        &ctx,
        "SELECT c.id, o.id FROM customer c LEFT JOIN orders o ON c.id = o.id",
    )
    .await;
    let text = render(&graph);
    for line in text.lines().filter(|l| l.contains("HashJoinExec")) {
        assert!(
            !(line.contains("CollectLeft") && line.contains("join_type=Left")),
            "{text}"
        );
    }
}
