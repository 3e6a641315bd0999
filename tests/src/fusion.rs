//! The stage compiler in whole queries: a join whose one side runs fused (its pipeline splits
//! rows into shuffle partitions itself) and whose other side keeps DataFusion's operators (an
//! expression the compiler does not know; the shuffle writer splits its rows) must still meet
//! at the same shuffle partitions, and give DataFusion's rows.

use datafusion::prelude::SessionContext;
use faisca::Session;
use faisca_bench::tpch::data;

use crate::common::{normalized_rows, tpch_dir};

const JOIN: &str = "SELECT o_orderpriority, count(*), sum(l_extendedprice * (1 - l_discount)) \
    FROM lineitem JOIN orders ON l_orderkey = o_orderkey \
    WHERE l_shipdate >= DATE '1995-01-01' AND l_quantity < 30 \
      AND o_totalprice / 3 > 10000 \
    GROUP BY o_orderpriority";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_of_a_fused_side_and_an_unfused_side_gives_datafusions_rows() {
    let session = Session::builder()
        .master("local[3]")
        .config("faisca.files.maxPartitionBytes", "256k")
        // Both sides shuffled by the join key (no broadcast of the small side).
        .config(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            "0",
        )
        .config(
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            "0",
        )
        .build()
        .await
        .unwrap();
    let ctx = SessionContext::new();
    for ddl in data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
        ctx.sql(&ddl).await.unwrap().collect().await.unwrap();
    }
    let explained = session
        .execute_sql(&format!("EXPLAIN {JOIN}"))
        .await
        .unwrap();
    let plan =
        normalized_rows(&faisca::client::collect(explained.batches).await.unwrap()).join("\n");
    // lineitem's filter and projection are fused; orders' filter divides, so it stays a
    // FilterExec, and the two sides are hash-partitioned by different operators.
    assert!(
        plan.contains("PipelineExec: steps=[filter(l_shipdate"),
        "{plan}"
    );
    assert!(plan.contains("FilterExec: o_totalprice"), "{plan}");
    // The fused side computes its shuffle partitions in the pipeline's pass; the other side's
    // are computed by the shuffle writer: the two must agree row for row.
    assert!(plan.contains(", hash_partition([l_orderkey@"), "{plan}");
    let expected = normalized_rows(&ctx.sql(JOIN).await.unwrap().collect().await.unwrap());
    assert_eq!(expected.len(), 5, "{expected:?}");
    // Shuffle transfers between the executors (all on 127.0.0.1) go uncompressed unless
    // `compressLoopback` asks otherwise: both ways give the same rows.
    for (codegen, compress) in [("true", "false"), ("false", "true"), ("true", "true")] {
        for set in [
            format!("SET faisca.codegen.enabled = {codegen}"),
            format!("SET faisca.shuffle.compressLoopback = {compress}"),
        ] {
            session.execute_sql(&set).await.unwrap();
        }
        let result = session.execute_sql(JOIN).await.unwrap();
        let rows = normalized_rows(&faisca::client::collect(result.batches).await.unwrap());
        assert_eq!(
            rows, expected,
            "codegen {codegen}, compressLoopback {compress}"
        );
    }
    session.stop().await;
}
