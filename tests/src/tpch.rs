//! The 22 TPC-H queries on `local[3]` give the rows single-process DataFusion gives, with the
//! stage compiler's fused pipelines and without them.

use datafusion::prelude::SessionContext;
use faisca::Session;
use faisca_bench::tpch::{data, queries};

use crate::common::{normalized_rows, tpch_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_22_queries_match_datafusion_on_local_3() {
    let dir = tpch_dir();
    // Small splits so that scans have several tasks even at this scale factor.
    let session = Session::builder()
        .master("local[3]")
        .config("faisca.files.maxPartitionBytes", "256k")
        .build()
        .await
        .unwrap();
    let ctx = SessionContext::new();
    for ddl in data::create_tables_sql(dir) {
        session.execute_sql(&ddl).await.unwrap();
        ctx.sql(&ddl).await.unwrap().collect().await.unwrap();
    }
    let mut multi_stage = 0;
    let mut non_empty = 0;
    let mut fused = 0;
    for (i, sql) in queries::QUERIES.iter().enumerate() {
        let q = i + 1;
        let expected = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let expected = normalized_rows(&expected);
        if !expected.is_empty() {
            non_empty += 1;
        }
        for codegen in [true, false] {
            session
                .execute_sql(&format!("SET faisca.codegen.enabled = {codegen}"))
                .await
                .unwrap();
            let explained = session
                .execute_sql(&format!("EXPLAIN {sql}"))
                .await
                .unwrap_or_else(|e| panic!("EXPLAIN Q{q}: {e}"));
            let plan = normalized_rows(&faisca::client::collect(explained.batches).await.unwrap())
                .join("\n");
            if codegen {
                fused += usize::from(plan.contains("PipelineExec"));
            } else {
                assert!(
                    !plan.contains("PipelineExec"),
                    "Q{q} fused with codegen off: {plan}"
                );
            }
            let result = session
                .execute_sql(sql)
                .await
                .unwrap_or_else(|e| panic!("Q{q} (codegen {codegen}): {e}"));
            let stages = result.stages.clone().unwrap_or_default();
            let ours = faisca::client::collect(result.batches)
                .await
                .unwrap_or_else(|e| panic!("Q{q} (codegen {codegen}): {e}"));
            assert_eq!(
                normalized_rows(&ours),
                expected,
                "Q{q} differs (codegen {codegen})"
            );
            if codegen && stages.len() > 1 {
                multi_stage += 1;
            }
        }
    }
    // Most queries filter or compute before their first exchange.
    assert!(fused >= 18, "only {fused} queries had a fused pipeline");
    // The comparison means something only if the queries really ran distributed.
    assert!(
        multi_stage >= 18,
        "only {multi_stage} queries had more than one stage"
    );
    assert!(non_empty >= 18, "only {non_empty} queries returned rows");
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_stages_and_tasks() {
    let session = Session::builder().master("local[2]").build().await.unwrap();
    for ddl in data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
    }
    let df = session.sql(queries::query(3).unwrap()).await.unwrap();
    let text = df.explain().await.unwrap();
    assert!(text.contains("== distributed_plan =="), "{text}");
    assert!(text.contains("Stage 0 (tasks="), "{text}");
    assert!(text.contains("output=result"), "{text}");
    assert!(text.contains("ShuffleReaderExec"), "{text}");
    // Q3's filters and projections run fused: one line per pipeline, listing its steps.
    assert!(text.contains("PipelineExec: steps=[filter("), "{text}");
    // Q1's partial aggregate runs in the pipeline of its filter and projection.
    let q1 = session
        .sql(queries::query(1).unwrap())
        .await
        .unwrap()
        .explain()
        .await
        .unwrap();
    assert!(
        q1.contains("partial_aggregate(keys=[l_returnflag@"),
        "Q1's partial aggregate is not fused:\n{q1}"
    );
    assert!(!q1.contains("mode=Partial"), "{q1}");
    // The DataFrame runs when collected; commands ran when created.
    assert_eq!(
        df.collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        10
    );
    session.stop().await;
}
