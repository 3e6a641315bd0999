//! The DataFrame API: each verb gives the rows the same query gives in SQL on single-process
//! DataFusion.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use faisca::functions::*;
use faisca::{DataFrame, Over, Session, Window};
use faisca_bench::tpch::data;

use crate::common::{normalized_rows, tpch_dir};

struct Fixture {
    session: Session,
    reference: SessionContext,
}

impl Fixture {
    async fn new() -> Fixture {
        let session = Session::builder()
            .master("local[2]")
            .config("faisca.files.maxPartitionBytes", "256k")
            .build()
            .await
            .unwrap();
        let reference = SessionContext::new();
        for ddl in data::create_tables_sql(tpch_dir()) {
            session.execute_sql(&ddl).await.unwrap();
            reference.sql(&ddl).await.unwrap().collect().await.unwrap();
        }
        Fixture { session, reference }
    }

    async fn parquet(&self, table: &str) -> DataFrame {
        let url = tpch_dir().join(table);
        self.session
            .read()
            .parquet(&format!("{}/", url.display()))
            .await
            .unwrap()
    }

    async fn expected(&self, sql: &str) -> Vec<String> {
        let batches: Vec<RecordBatch> = self
            .reference
            .sql(sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        normalized_rows(&batches)
    }

    /// `df` gives the rows `sql` gives (as multisets) and has `sql`'s column names.
    async fn same(&self, what: &str, df: &DataFrame, sql: &str) {
        let ours = df.collect().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let expected_df = self.reference.sql(sql).await.unwrap();
        let names: Vec<String> = expected_df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(df.columns(), names, "{what}: column names");
        assert_eq!(
            normalized_rows(&ours),
            self.expected(sql).await,
            "{what}: rows differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataframe_verbs_match_sql() {
    let fx = Fixture::new().await;
    let nation = fx.parquet("nation").await;
    let region = fx.parquet("region").await;
    let orders = fx.parquet("orders").await;
    let customer = fx.session.table("customer").await.unwrap();

    let df = nation
        .filter(col("n_regionkey").gt(lit(1)))
        .unwrap()
        .select(["n_name", "n_regionkey"])
        .unwrap()
        .order_by(vec![desc(col("n_name"))])
        .unwrap()
        .limit(5)
        .unwrap();
    fx.same(
        "select/filter/order_by/limit",
        &df,
        "SELECT n_name, n_regionkey FROM nation WHERE n_regionkey > 1 ORDER BY n_name DESC LIMIT 5",
    )
    .await;

    let df = nation
        .where_("n_nationkey < 10 AND n_name <> 'BRAZIL'")
        .unwrap()
        .select_expr(&[
            "n_nationkey * 2 AS twice",
            "upper(n_comment) AS c",
            "n_name",
        ])
        .unwrap();
    fx.same(
        "select_expr/where_",
        &df,
        "SELECT n_nationkey * 2 AS twice, upper(n_comment) AS c, n_name FROM nation WHERE n_nationkey < 10 AND n_name <> 'BRAZIL'",
    )
    .await;

    let df = nation
        .with_column("key10", col("n_nationkey") * lit(10))
        .unwrap()
        .with_column_renamed("n_name", "name")
        .unwrap()
        .drop(&["n_comment", "no_such_column"])
        .unwrap();
    fx.same(
        "with_column/with_column_renamed/drop",
        &df,
        "SELECT n_nationkey, n_name AS name, n_regionkey, n_nationkey * 10 AS key10 FROM nation",
    )
    .await;

    let df = orders
        .group_by(["o_orderstatus"])
        .unwrap()
        .agg(vec![
            count(lit(1)).alias("n"),
            sum(col("o_totalprice")).alias("total"),
            avg(col("o_totalprice")).alias("mean"),
            max(col("o_orderdate")).alias("last"),
        ])
        .unwrap();
    fx.same(
        "group_by/agg",
        &df,
        "SELECT o_orderstatus, count(1) AS n, sum(o_totalprice) AS total, avg(o_totalprice) AS mean, max(o_orderdate) AS last FROM orders GROUP BY o_orderstatus",
    )
    .await;
    let df = orders
        .group_by(["o_orderpriority"])
        .unwrap()
        .count()
        .unwrap();
    fx.same(
        "group_by/count",
        &df,
        "SELECT o_orderpriority, count(1) AS count FROM orders GROUP BY o_orderpriority",
    )
    .await;
    assert_eq!(orders.count().await.unwrap(), 15000);

    // Joins on a key column name: the key appears once.
    let nr = nation.select(["n_name", "n_regionkey"]).unwrap();
    let r = region
        .with_column_renamed("r_regionkey", "n_regionkey")
        .unwrap()
        .filter(col("n_regionkey").lt(lit(3)))
        .unwrap()
        .select(["n_regionkey", "r_name"])
        .unwrap();
    let region_sql =
        "(SELECT r_regionkey AS n_regionkey, r_name FROM region WHERE r_regionkey < 3) r";
    for (how, sql) in [
        (
            "inner",
            format!(
                "SELECT n.n_regionkey, n.n_name, r.r_name FROM nation n JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
        (
            "left",
            format!(
                "SELECT n.n_regionkey, n.n_name, r.r_name FROM nation n LEFT JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
        (
            "right",
            format!(
                "SELECT r.n_regionkey, n.n_name, r.r_name FROM nation n RIGHT JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
        (
            "full",
            format!(
                "SELECT coalesce(n.n_regionkey, r.n_regionkey) AS n_regionkey, n.n_name, r.r_name FROM nation n FULL JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
        (
            "left_semi",
            format!(
                "SELECT n.n_regionkey, n.n_name FROM nation n LEFT SEMI JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
        (
            "anti",
            format!(
                "SELECT n.n_regionkey, n.n_name FROM nation n LEFT ANTI JOIN {region_sql} ON n.n_regionkey = r.n_regionkey"
            ),
        ),
    ] {
        let df = nr.join(&r, &["n_regionkey"], how).unwrap();
        fx.same(&format!("join {how}"), &df, &sql).await;
    }
    let df = nr.join(&r, &[], "cross").unwrap();
    assert_eq!(df.count().await.unwrap(), 25 * 3, "cross join");
    let df = customer
        .join_on(
            &orders,
            col("c_custkey")
                .eq(col("o_custkey"))
                .and(col("o_totalprice").gt(lit(400000.0))),
            "inner",
        )
        .unwrap()
        .select(["c_name", "o_orderkey"])
        .unwrap();
    fx.same(
        "join_on",
        &df,
        "SELECT c_name, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey AND o_totalprice > 400000.0",
    )
    .await;

    let df = orders
        .select(["o_orderstatus", "o_orderpriority"])
        .unwrap()
        .distinct()
        .unwrap();
    fx.same(
        "distinct",
        &df,
        "SELECT DISTINCT o_orderstatus, o_orderpriority FROM orders",
    )
    .await;
    let dedup = orders.drop_duplicates(&["o_orderpriority"]).unwrap();
    assert_eq!(
        dedup.count().await.unwrap(),
        5,
        "drop_duplicates keeps one row per key"
    );
    assert_eq!(dedup.columns(), orders.columns());

    let a = nation.select(["n_name", "n_nationkey"]).unwrap();
    let b = nation.select(["n_nationkey", "n_name"]).unwrap();
    fx.same(
        "union_by_name",
        &a.union_by_name(&b).unwrap(),
        "SELECT n_name, n_nationkey FROM nation UNION ALL SELECT n_name, n_nationkey FROM nation",
    )
    .await;
    fx.same(
        "union",
        &a.union(&a).unwrap(),
        "SELECT n_name, n_nationkey FROM nation UNION ALL SELECT n_name, n_nationkey FROM nation",
    )
    .await;

    let df = orders
        .repartition(5, ["o_custkey"])
        .unwrap()
        .group_by(["o_custkey"])
        .unwrap()
        .count()
        .unwrap();
    fx.same(
        "repartition",
        &df,
        "SELECT o_custkey, count(1) AS count FROM orders GROUP BY o_custkey",
    )
    .await;
    let plan = df.explain().await.unwrap();
    assert!(
        plan.contains("tasks=5"),
        "repartition(5) makes a 5-task stage:\n{plan}"
    );
    assert_eq!(orders.coalesce(1).unwrap().count().await.unwrap(), 15000);

    // Global min/max over many tasks: each partial aggregate prunes rows with the bounds it has
    // learned (DataFusion's aggregate dynamic filter); the answer must not change.
    let sql = "SELECT min(l_orderkey) AS a, max(l_orderkey) AS b, min(l_comment) AS c, \
               max(l_shipdate) AS d, min(l_extendedprice) AS e FROM lineitem WHERE l_orderkey % 2 >= 0";
    let df = fx.session.sql(sql).await.unwrap();
    fx.same("global min/max", &df, sql).await;
    fx.session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_functions_match_sql() {
    let fx = Fixture::new().await;
    let orders = fx.parquet("orders").await;
    let by_customer = Window::partition_by(["o_custkey"])
        .unwrap()
        .order_by(vec![asc(col("o_orderdate")), asc(col("o_orderkey"))])
        .unwrap();
    let df = orders
        .filter(col("o_custkey").lt(lit(100)))
        .unwrap()
        .select(vec![
            col("o_custkey"),
            col("o_orderkey"),
            row_number().over(&by_customer).unwrap().alias("rn"),
            rank().over(&by_customer).unwrap().alias("rk"),
            lag(col("o_totalprice"), Some(1), None)
                .over(&by_customer)
                .unwrap()
                .alias("prev"),
            lead(col("o_orderkey"), Some(1), None)
                .over(&by_customer)
                .unwrap()
                .alias("next"),
            sum(col("o_totalprice"))
                .over(&by_customer)
                .unwrap()
                .alias("running"),
            count(lit(1))
                .over(&Window::partition_by(["o_custkey"]).unwrap())
                .unwrap()
                .alias("orders_of_customer"),
        ])
        .unwrap();
    let w = "PARTITION BY o_custkey ORDER BY o_orderdate, o_orderkey";
    fx.same(
        "window functions",
        &df,
        &format!(
            "SELECT o_custkey, o_orderkey, row_number() OVER ({w}) AS rn, rank() OVER ({w}) AS rk, \
             lag(o_totalprice, 1) OVER ({w}) AS prev, lead(o_orderkey, 1) OVER ({w}) AS next, \
             sum(o_totalprice) OVER ({w}) AS running, \
             count(1) OVER (PARTITION BY o_custkey) AS orders_of_customer \
             FROM orders WHERE o_custkey < 100"
        ),
    )
    .await;
    let last3 = Window::partition_by(["o_custkey"])
        .unwrap()
        .order_by(["o_orderkey"])
        .unwrap()
        .rows_between(-2, Window::CURRENT_ROW);
    let df = orders
        .filter("o_custkey < 50")
        .unwrap()
        .select(vec![
            col("o_orderkey"),
            sum(col("o_totalprice"))
                .over(&last3)
                .unwrap()
                .alias("last3"),
        ])
        .unwrap();
    fx.same(
        "rows_between",
        &df,
        "SELECT o_orderkey, sum(o_totalprice) OVER (PARTITION BY o_custkey ORDER BY o_orderkey ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS last3 FROM orders WHERE o_custkey < 50",
    )
    .await;
    fx.session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_sql_dataframes_and_other_formats() {
    let fx = Fixture::new().await;
    // A DataFrame as a view for SQL, and SQL as a DataFrame to build on.
    let big = fx
        .parquet("orders")
        .await
        .filter(col("o_totalprice").gt(lit(300000.0)))
        .unwrap();
    big.create_or_replace_temp_view("big_orders").await.unwrap();
    let df = fx
        .session
        .sql("SELECT o_orderstatus, count(*) AS n FROM big_orders GROUP BY o_orderstatus")
        .await
        .unwrap()
        .filter(col("n").gt(lit(10)))
        .unwrap();
    fx.same(
        "view + sql + filter",
        &df,
        "SELECT o_orderstatus, count(*) AS n FROM orders WHERE o_totalprice > 300000.0 GROUP BY o_orderstatus HAVING count(*) > 10",
    )
    .await;
    let err = big
        .create_temp_view("big_orders")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    let view = fx.session.table("big_orders").await.unwrap();
    assert_eq!(view.count().await.unwrap(), big.count().await.unwrap());

    // CSV with a header and JSON lines, written here, read through the driver.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("people.csv"),
        "name;age\nana;31\nbruno;27\ncarla;45\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("people.json"),
        "{\"name\":\"ana\",\"age\":31}\n{\"name\":\"bruno\",\"age\":27}\n",
    )
    .unwrap();
    let csv = fx
        .session
        .read()
        .option("header", "true")
        .option("sep", ";")
        .csv(&dir.path().join("people.csv").display().to_string())
        .await
        .unwrap();
    assert_eq!(csv.columns(), vec!["name", "age"]);
    let older = csv
        .filter(col("age").gt(lit(30)))
        .unwrap()
        .order_by(["name"])
        .unwrap();
    assert_eq!(
        normalized_rows(&older.collect().await.unwrap()),
        vec!["ana|31", "carla|45"]
    );
    let json = fx
        .session
        .read()
        .format("json")
        .option(
            "path",
            &dir.path().join("people.json").display().to_string(),
        )
        .load()
        .await
        .unwrap();
    assert_eq!(json.count().await.unwrap(), 2);

    // Bad input: clear errors.
    let nation = fx.parquet("nation").await;
    let err = nation.select(["no_such"]).unwrap_err().to_string();
    assert!(err.contains("no_such"), "{err}");
    let err = nation
        .join(&nation, &["x"], "inner")
        .unwrap_err()
        .to_string();
    assert!(err.contains("join key 'x'"), "{err}");
    let err = nation
        .join(&nation, &["n_name"], "sideways")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown join type 'sideways'"), "{err}");
    let err = fx
        .session
        .read()
        .format("xml")
        .load_path("/tmp")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown data source format 'xml'"), "{err}");
    let missing = dir.path().join("missing.parquet").display().to_string();
    let err = fx
        .session
        .read()
        .parquet(&missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.parquet"), "{err}");
    let err = fx
        .session
        .read()
        .option("no_such_option", "1")
        .csv(&dir.path().join("people.csv").display().to_string())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such_option"), "{err}");
    fx.session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_windows_match_sql() {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::functions::core::expr_ext::FieldAccessor;
    let fx = Fixture::new().await;
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let orders = fx
        .parquet("orders")
        .await
        .filter(col("o_orderdate").lt(lit("1992-03-01")))
        .unwrap()
        .with_column("ts", cast(col("o_orderdate"), ts.clone()))
        .unwrap();
    let source = "(SELECT CAST(o_orderdate AS TIMESTAMP) AS ts FROM orders WHERE o_orderdate < DATE '1992-03-01')";

    // Tumbling: one window per row.
    let tumbling = orders
        .group_by(vec![window(col("ts"), "7 days", None).unwrap()])
        .unwrap()
        .agg(vec![count(lit(1)).alias("n")])
        .unwrap()
        .select(vec![
            col("window").field("start").alias("start"),
            col("window").field("end").alias("end"),
            col("n"),
        ])
        .unwrap();
    fx.same(
        "tumbling window",
        &tumbling,
        &format!(
            "SELECT date_bin(INTERVAL '7 days', ts, TIMESTAMP '1970-01-01') AS start, \
             date_bin(INTERVAL '7 days', ts, TIMESTAMP '1970-01-01') + INTERVAL '7 days' AS end, \
             count(1) AS n FROM {source} GROUP BY 1, 2"
        ),
    )
    .await;

    // Hopping: 7-day windows every 2 days; a row is in every window that holds it.
    let hopping = orders
        .group_by(vec![window(col("ts"), "7 days", Some("2 days")).unwrap()])
        .unwrap()
        .agg(vec![count(lit(1)).alias("n")])
        .unwrap()
        .select(vec![col("window").field("start").alias("start"), col("n")])
        .unwrap();
    fx.same(
        "hopping window",
        &hopping,
        &format!(
            "SELECT start, count(1) AS n FROM (\
               SELECT ts, date_bin(INTERVAL '2 days', ts, TIMESTAMP '1970-01-01') - o AS start FROM {source} \
               CROSS JOIN (VALUES (INTERVAL '0 days'), (INTERVAL '2 days'), (INTERVAL '4 days'), (INTERVAL '6 days')) AS offsets(o)) \
             WHERE start + INTERVAL '7 days' > ts GROUP BY start"
        ),
    )
    .await;

    assert!(hopping.count().await.unwrap() > tumbling.count().await.unwrap() * 3);

    // A hopping window outside group_by, and bad durations, are clear errors.
    let err = orders
        .select(vec![window(col("ts"), "7 days", Some("1 day")).unwrap()])
        .unwrap()
        .collect()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("use it in group_by"), "{err}");
    let err = window(col("ts"), "a while", None).unwrap_err().to_string();
    assert!(err.contains("invalid window duration 'a while'"), "{err}");
    let err = window(col("ts"), "1 hour", Some("2 hours"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than its duration"), "{err}");
    fx.session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_with_progress_reports_the_job_until_it_ends() {
    // Stage 1's tasks wait for this file, which the callback creates once it saw the job run.
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("open");
    let gate_rule = format!("1:{}", gate.display());
    let session = crate::common::tpch_session(
        "local[2]",
        &[
            ("faisca.test.taskGate", gate_rule.as_str()),
            ("faisca.client.progressInterval", "50ms"),
        ],
        2,
    )
    .await;
    let sql = "SELECT l_returnflag, count(*) AS n FROM lineitem GROUP BY l_returnflag";
    let df = session.sql(sql).await.unwrap();
    let mut reports: Vec<faisca::JobInfo> = Vec::new();
    let rows = df
        .collect_with_progress(|job| {
            if job.state == faisca::JobState::Running {
                std::fs::write(&gate, b"").unwrap();
            }
            reports.push(job.clone());
        })
        .await
        .unwrap();
    assert_eq!(
        normalized_rows(&rows),
        normalized_rows(&df.collect().await.unwrap())
    );
    assert!(
        reports.len() >= 2,
        "reports while running and at the end: {}",
        reports.len()
    );
    let first = &reports[0];
    assert!(reports.iter().all(|r| r.job_id == first.job_id), "one job");
    assert!(
        reports.iter().any(|r| r.state == faisca::JobState::Running),
        "a report while the delayed stage ran"
    );
    let last = reports.last().unwrap();
    assert_eq!(last.state, faisca::JobState::Succeeded);
    assert!(last.stages.iter().all(|s| s.done == s.tasks), "{last:?}");
    session.stop().await;
}
