//! User-defined functions registered by the program: used from SQL and DataFrames on the
//! cluster; an executor without them fails the task with an error naming the function.

use std::sync::{Arc, Once};
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Accumulator, ColumnarValue, Volatility, create_udaf, create_udf};
use faisca::Session;
use faisca::functions::*;
use faisca_bench::tpch::data;

use crate::cli::{Processes, start_executor};
use crate::common::{normalized_rows, tpch_dir};

/// Sum of squares, as an aggregate UDF.
#[derive(Debug, Default)]
struct SumOfSquares(f64);

impl Accumulator for SumOfSquares {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        let values = datafusion::arrow::compute::cast(&values[0], &DataType::Float64)?;
        let values = values.as_any().downcast_ref::<Float64Array>().expect("f64");
        self.0 += values.iter().flatten().map(|v| v * v).sum::<f64>();
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let states = states[0]
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64");
        self.0 += states.iter().flatten().sum::<f64>();
        Ok(())
    }
    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(Some(self.0))])
    }
    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Float64(Some(self.0)))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let add_one = create_udf(
            "add_one",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let input = arrays[0]
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("i64");
                let out: Int64Array = input.iter().map(|v| v.map(|v| v + 1)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        );
        faisca::udf::register_scalar(add_one);
        let sum_sq = create_udaf(
            "sum_of_squares",
            vec![DataType::Float64],
            Arc::new(DataType::Float64),
            Volatility::Immutable,
            Arc::new(|_| Ok(Box::new(SumOfSquares::default()))),
            Arc::new(vec![DataType::Float64]),
        );
        faisca::udf::register_aggregate(sum_sq);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_functions_run_on_the_cluster() {
    register();
    let session = Session::builder().master("local[2]").build().await.unwrap();
    for ddl in data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
    }
    let rows = session
        .sql("SELECT add_one(n_nationkey) AS k FROM nation WHERE n_nationkey < 3")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(normalized_rows(&rows), vec!["1", "2", "3"]);
    let nation = session.table("nation").await.unwrap();
    let add_one = faisca::udf::registered_names();
    assert!(add_one.contains(&"add_one".to_string()));
    let df = nation
        .select_expr(&["add_one(n_regionkey) AS r"])
        .unwrap()
        .group_by(["r"])
        .unwrap()
        .agg(vec![count(lit(1)).alias("n")])
        .unwrap();
    assert_eq!(
        normalized_rows(&df.collect().await.unwrap()),
        vec!["1|5", "2|5", "3|5", "4|5", "5|5"]
    );
    // An aggregate UDF, partial on each task and merged after the shuffle.
    let rows = session
        .sql(
            "SELECT n_regionkey, sum_of_squares(n_nationkey) AS s FROM nation GROUP BY n_regionkey",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let total: f64 = rows
        .iter()
        .map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .iter()
                .flatten()
                .sum::<f64>()
        })
        .sum();
    assert_eq!(total, (0..25).map(|k| (k * k) as f64).sum::<f64>());
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_without_a_function_fails_the_task_naming_it() {
    register();
    // The driver runs here (it has the functions); the executor is the plain `faisca` binary.
    let driver = faisca::driver::DriverServer::start(faisca::driver::DriverOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_host: None,
        config: faisca::FaiscaConfig::default(),
        health_bind: None,
        launcher: None,
        ui_by_default: false,
        metrics_bind: None,
    })
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let procs = Processes(vec![start_executor(driver.address(), 1, work.path())]);
    let session = Session::builder()
        .master(driver.address())
        .build()
        .await
        .unwrap();
    session
        .wait_for_executors(1, Duration::from_secs(30))
        .await
        .unwrap();
    for ddl in data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
    }
    let result = session
        .execute_sql("SELECT add_one(n_nationkey) FROM nation")
        .await
        .unwrap();
    let job = result.job_id.clone().unwrap();
    let error = faisca::client::collect(result.batches)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no function 'add_one'"),
        "the error names the function: {error}"
    );
    // A deployment error: not retried.
    let info = session.client().job(&job).await.unwrap();
    assert_eq!(
        info.stages.iter().map(|s| s.attempts).sum::<u32>(),
        1,
        "{info:?}"
    );
    session.stop().await;
    drop(procs);
    driver.shutdown().await;
}
