//! Distributed plans give single-process DataFusion's answers: one case per class of bug that a
//! broad SQL suite once found (window functions that lost `IGNORE NULLS`, `FILTER` or their
//! reversal on the way to executors, empty grouping sets, scalar subqueries, ordered `PARTITION
//! BY`, type corner cases, recursive CTEs; `COPY` to one file is in [`crate::writes`]). Each runs
//! with three shuffle partitions on `local[3]` (three executors over gRPC) and on a driver and
//! two executor processes, next to DataFusion with its defaults.

use datafusion::prelude::SessionContext;
use faisca::Session;

use crate::cli::{Processes, start_driver, start_executor};
use crate::common::normalized_rows;

/// Tables the cases read, created in both engines.
const SETUP: &[&str] = &[
    "CREATE TABLE w (k INT, v INT, g VARCHAR) AS VALUES \
       (1, NULL, 'a'), (2, 3, 'a'), (3, NULL, 'b'), (4, 4, 'a'), (5, NULL, 'b'), \
       (6, 7, 'b'), (7, 1, 'a'), (8, NULL, 'c'), (9, 2, 'c'), (10, 5, 'a')",
    "CREATE TABLE n AS VALUES (NULL), (3), (4)",
    "CREATE TABLE t2 (v INT) AS VALUES (10), (20), (30)",
    "CREATE TABLE d (c DECIMAL(10, 2), f DOUBLE) AS VALUES (1.50, 1.5), (2.25, 2.25), (1.50, 1.5), (NULL, NULL)",
    "CREATE TABLE fl (id BIGINT, v2 VARCHAR) AS VALUES (1, 'ab'), (2, 'x'), (3, NULL), (4, 'ab')",
    "CREATE TABLE fr (id BIGINT, v0 BIGINT, v1 DATE, v2 DATE, v3 VARCHAR, v4 BOOLEAN) AS VALUES \
       (10, 1, DATE '2023-01-01', DATE '2023-01-01', 'ab', true), (11, 2, DATE '2024-06-01', DATE '2023-01-01', 'q', true), \
       (12, 3, DATE '2023-01-01', DATE '2023-01-01', 'ab', true), (13, 1, DATE '2023-01-01', DATE '2025-01-01', 'ab', true), \
       (14, 9, DATE '2023-01-01', DATE '2023-01-01', 'ab', false), (15, 4, DATE '2023-01-01', DATE '2023-01-01', NULL, true)",
    "CREATE TABLE d256 AS SELECT arrow_cast(i % 7, 'Decimal256(40, 2)') AS c, arrow_cast(i / 3.0, 'Float16') AS h, i % 3 AS g \
       FROM generate_series(1, 1000) t(i)",
];

/// One query: what it shows, its SQL, whether its rows come in a defined order, and whether
/// DataFusion fails it (then Faísca must fail it with DataFusion's message).
struct Case {
    class: &'static str,
    sql: &'static str,
    ordered: bool,
    fails: bool,
}

const fn case(class: &'static str, sql: &'static str) -> Case {
    Case {
        class,
        sql,
        ordered: false,
        fails: false,
    }
}

const fn ordered(class: &'static str, sql: &'static str) -> Case {
    Case {
        ordered: true,
        ..case(class, sql)
    }
}

const fn failing(class: &'static str, sql: &'static str) -> Case {
    Case {
        fails: true,
        ..case(class, sql)
    }
}

const CASES: &[Case] = &[
    // 1. IGNORE NULLS reaches the executors.
    case(
        "ignore nulls",
        "SELECT first_value(column1) IGNORE NULLS OVER () FROM n",
    ),
    case(
        "ignore nulls",
        "SELECT k, first_value(v) IGNORE NULLS OVER (ORDER BY k), \
                last_value(v) IGNORE NULLS OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING), \
                lag(v, 1) IGNORE NULLS OVER (ORDER BY k), lead(v, 1) IGNORE NULLS OVER (ORDER BY k), \
                nth_value(v, 2) IGNORE NULLS OVER (ORDER BY k) FROM w",
    ),
    case(
        "ignore nulls",
        "SELECT k, lag(v) IGNORE NULLS OVER (PARTITION BY g ORDER BY k) FROM w",
    ),
    // 2. FILTER on window aggregates.
    case(
        "window filter",
        "SELECT count(*) FILTER (WHERE NULL) OVER () FROM (VALUES (1)) t(x)",
    ),
    case(
        "window filter",
        "SELECT k, sum(v) FILTER (WHERE v >= 2) OVER (ORDER BY k), \
                count(v) FILTER (WHERE g = 'a') OVER (PARTITION BY g ORDER BY k ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM w",
    ),
    // 3. Windows DataFusion evaluates reversed (two windows sharing one sort).
    case(
        "reversed window",
        "SELECT k, lag(k, 2) OVER (ORDER BY k), nth_value(k, 2) OVER (ORDER BY k DESC), \
                first_value(k) OVER (ORDER BY k DESC), row_number() OVER (ORDER BY k) FROM w",
    ),
    case(
        "reversed window",
        "SELECT k, lead(v, 1, -1) OVER (ORDER BY k DESC), sum(k) OVER (ORDER BY k ASC ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), \
                last_value(k) OVER (ORDER BY k ASC ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) FROM w",
    ),
    case(
        "ignore nulls",
        "SELECT DISTINCT lag(v, 1) IGNORE NULLS OVER (ORDER BY k) FROM w",
    ),
    // 4. An empty grouping set.
    case(
        "grouping sets",
        "SELECT count(*) FROM w GROUP BY GROUPING SETS (())",
    ),
    case(
        "grouping sets",
        "SELECT min(v), max(k) FROM w GROUP BY GROUPING SETS ((), ())",
    ),
    case(
        "grouping sets",
        "SELECT g, count(*), sum(v) FROM w GROUP BY GROUPING SETS ((), (g))",
    ),
    case(
        "grouping sets",
        "SELECT g, k % 2, grouping(g), count(v) FROM w GROUP BY CUBE (g, k % 2)",
    ),
    // 5. Scalar subqueries anywhere, at most one row.
    case(
        "scalar subquery",
        "SELECT sum(k + (SELECT max(v) FROM t2)) FROM w",
    ),
    case(
        "scalar subquery",
        "SELECT k, (SELECT min(v) FROM t2) + k FROM w WHERE k > (SELECT count(*) FROM t2)",
    ),
    case(
        "scalar subquery",
        "SELECT g, count(*) FROM w GROUP BY g HAVING count(*) > (SELECT min(v) / 10 FROM t2)",
    ),
    case(
        "scalar subquery",
        "SELECT (SELECT max(v) FROM t2 WHERE v < (SELECT avg(k) * 3 FROM w))",
    ),
    case(
        "scalar subquery",
        "SELECT k FROM w WHERE v = (SELECT max(v) FROM w w2 WHERE w2.g = w.g)",
    ),
    case("scalar subquery", "SELECT (SELECT v FROM t2 WHERE v > 100)"),
    failing("scalar subquery", "SELECT (SELECT v FROM t2)"),
    failing(
        "scalar subquery",
        "SELECT k FROM w WHERE k > (SELECT v FROM t2 WHERE v >= 20)",
    ),
    // 6. Windows over an ordered PARTITION BY.
    case(
        "ordered partition by",
        "SELECT k, count(*) OVER (PARTITION BY g ORDER BY g) FROM w",
    ),
    case(
        "ordered partition by",
        "SELECT k, sum(k) OVER (PARTITION BY g ORDER BY g, k), rank() OVER (PARTITION BY g ORDER BY g) FROM w",
    ),
    // A filter makes the partition key constant on a side read from another stage.
    case(
        "ordered partition by",
        "SELECT p.k, sum(w.v) OVER (PARTITION BY p.g) FROM p JOIN w ON p.k = w.k WHERE p.g = 'a'",
    ),
    case(
        "ordered partition by",
        "SELECT p.k, row_number() OVER (PARTITION BY p.g ORDER BY p.k DESC) FROM p WHERE p.g = 'b'",
    ),
    // 7. Types and shapes that crashed or failed.
    case(
        "types",
        "SELECT avg(DISTINCT arrow_cast(c, 'Decimal256(40, 2)')), sum(DISTINCT arrow_cast(c, 'Decimal256(40, 2)')) FROM d",
    ),
    case(
        "types",
        "SELECT min(arrow_cast(f, 'Float16')), max(arrow_cast(f, 'Float16')) FROM d",
    ),
    // Group keys of 256 bits (a DISTINCT aggregate groups by its argument first).
    case(
        "types",
        "SELECT avg(DISTINCT c), sum(DISTINCT c), count(DISTINCT c) FROM d256",
    ),
    case(
        "types",
        "SELECT g, c, count(*), min(h), max(h) FROM d256 GROUP BY g, c",
    ),
    case(
        "types",
        "SELECT g, min(h), max(h), count(DISTINCT h) FROM d256 GROUP BY g",
    ),
    case(
        "types",
        "WITH t AS (SELECT i, i + 1 FROM generate_series(1, 10) t(i)) SELECT count(*) FROM t WHERE 1 = 1",
    ),
    // A generated table keeps its ordering on the wire (it lives in the equivalence properties).
    case(
        "types",
        "SELECT count(*), sum(v) FROM generate_series(1, 100000) AS t(v) WHERE v % 3 = 0",
    ),
    // A fused pipeline over a round-robin repartition keeps that partitioning on the wire.
    case(
        "types",
        "SELECT x, count(*), sum(x) FROM (SELECT value % 7 AS x FROM generate_series(1, 100000)) GROUP BY x",
    ),
    ordered(
        "types",
        "WITH a AS (SELECT g, count(*) AS c FROM w GROUP BY g), b AS (SELECT g, sum(k) AS c FROM w GROUP BY g) \
         SELECT * FROM a UNION ALL SELECT * FROM b ORDER BY g, c",
    ),
    // 8. Recursive CTEs.
    case(
        "recursive cte",
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10) SELECT * FROM r",
    ),
    case(
        "recursive cte",
        "WITH RECURSIVE chain(k, depth) AS (SELECT k, 0 FROM w WHERE k = 1 \
           UNION ALL SELECT w.k, chain.depth + 1 FROM w JOIN chain ON w.k = chain.k + 1) \
         SELECT depth, count(*) FROM chain GROUP BY depth",
    ),
    // A filter on one of two columns of one name (DataFusion's own pushdown confuses them).
    ordered(
        "filter pushdown",
        "SELECT fr.id, fl.v2 FROM fl FULL JOIN fr ON fl.id = fr.v0 AND fr.v2 < DATE '2023-12-30' \
         WHERE fr.v4 AND (fr.v1 >= DATE '2024-01-01' OR fl.v2 = 'ab') ORDER BY fr.id",
    ),
    ordered(
        "filter pushdown",
        "SELECT fr.id, fl.v2, fr.v3 FROM fl RIGHT JOIN (SELECT id, v0, v1, v3 AS v2, v3, v4 FROM fr) fr \
         ON fl.id = fr.v0 WHERE fr.v4 AND (fr.v1 >= DATE '2024-01-01' OR fl.v2 = 'ab') ORDER BY fr.id",
    ),
];

/// Every case on `local[3]`: three executors over gRPC in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_plans_give_datafusions_answers() {
    let session = Session::builder()
        .master("local[3]")
        .config("faisca.shuffle.partitions", "3")
        .build()
        .await
        .unwrap();
    compare_every_case(session).await;
}

/// Every case on a `faisca driver` and two `faisca executor` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_and_two_executor_processes_give_datafusions_answers() {
    let (driver, address) = start_driver();
    let work = tempfile::tempdir().unwrap();
    let mut processes = Processes(vec![driver]);
    processes.0.push(start_executor(&address, 1, work.path()));
    processes.0.push(start_executor(&address, 1, work.path()));
    let session = Session::builder()
        .master(address.as_str())
        .config("faisca.shuffle.partitions", "3")
        .build()
        .await
        .unwrap();
    session
        .wait_for_executors(2, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    compare_every_case(session).await;
    drop(processes);
}

/// Run every case in `session` and in DataFusion; collect the differences instead of stopping
/// at the first.
async fn compare_every_case(session: Session) {
    // DataFusion as the tester asks it (dynamic filters off, filter pushdown guarded).
    let ctx: SessionContext = crate::difftest::reference_context(4);
    let files = tempfile::tempdir().unwrap();
    let parquet = parquet_table(files.path());
    for ddl in SETUP.iter().copied().chain([parquet.as_str()]) {
        session.execute_sql(ddl).await.unwrap();
        ctx.sql(ddl).await.unwrap().collect().await.unwrap();
    }
    let mut failures = Vec::new();
    for case in CASES {
        let expected = match ctx.sql(case.sql).await {
            Ok(df) => df.collect().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let actual = match session.execute_sql(case.sql).await {
            Ok(result) => faisca::client::collect(result.batches)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let rows = |batches: &[datafusion::arrow::record_batch::RecordBatch]| {
            let rows = normalized_rows(batches);
            if case.ordered {
                crate::common::ordered_rows(batches)
            } else {
                rows
            }
        };
        if expected.is_err() != case.fails {
            failures.push(format!(
                "[{}] {}\n  DataFusion was expected to {}: {:?}",
                case.class,
                case.sql,
                if case.fails { "fail" } else { "succeed" },
                expected.map(|b| rows(&b))
            ));
            continue;
        }
        match (expected, actual) {
            (Ok(e), Ok(a)) if rows(&e) == rows(&a) => {}
            (Err(e), Err(a)) if same_error(&e, &a) => {}
            (e, a) => failures.push(format!(
                "[{}] {}\n  DataFusion: {:?}\n  Faísca:     {:?}",
                case.class,
                case.sql,
                e.map(|b| rows(&b)),
                a.map(|b| rows(&b))
            )),
        }
    }
    session.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Both engines failed for the same reason: DataFusion's message appears in Faísca's.
fn same_error(datafusion: &str, faisca: &str) -> bool {
    let core = datafusion.rsplit(": ").next().unwrap_or(datafusion).trim();
    faisca.contains(core)
}

/// Table `p` (k, g) as three Parquet files (three scan tasks), and the statement creating it.
fn parquet_table(dir: &std::path::Path) -> String {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, false),
        Field::new("g", DataType::Utf8, true),
    ]));
    let table = dir.join("p");
    std::fs::create_dir_all(&table).unwrap();
    for part in 0..3 {
        let keys: Vec<i32> = (1..=10).filter(|k| k % 3 == part).collect();
        let groups: Vec<Option<&str>> = keys
            .iter()
            .map(|k| [Some("a"), Some("b"), None][*k as usize % 3])
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(keys)),
                Arc::new(StringArray::from(groups)),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(table.join(format!("part-{part}.parquet"))).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    format!(
        "CREATE EXTERNAL TABLE p STORED AS PARQUET LOCATION '{}/'",
        table.display()
    )
}

/// Catalog queries read tables that live only in the driver: their plans cannot be sent to
/// executors (a typed error, not a message), so the driver runs them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_queries_run_on_the_driver() {
    let session = Session::builder().master("local[2]").build().await.unwrap();
    session
        .execute_sql("CREATE TABLE catalog_probe (a INT, b VARCHAR) AS VALUES (1, 'x')")
        .await
        .unwrap();
    let rows = |sql: &'static str| {
        let session = &session;
        async move {
            let result = session
                .execute_sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let batches = faisca::client::collect(result.batches)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            crate::common::normalized_rows(&batches)
        }
    };
    let tables = rows("SHOW TABLES").await;
    assert!(
        tables.iter().any(|r| r.contains("catalog_probe")),
        "{tables:?}"
    );
    assert_eq!(
        rows(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'catalog_probe' ORDER BY column_name"
        )
        .await,
        ["a|Int32", "b|Utf8View"]
    );
}
