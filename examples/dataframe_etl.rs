//! A DataFrame job on local Parquet files, Spark style: read, join, aggregate, rank with a window,
//! register a view for SQL, show.
//!
//! `cargo run --example dataframe_etl [SCALE_FACTOR]` (default 0.01; TPC-H data is generated once
//! into the cache directory).

use faisca::functions::*;
use faisca::{Over, Session, Window};
use faisca_bench::tpch::data;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sf: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(0.01);
    let dir = data::dataset_dir(&faisca_bench::cache_dir(), sf);
    data::ensure(&dir, sf, 2)?;
    let session = Session::builder()
        .master("local[2]")
        .app_name("dataframe_etl example")
        .build()
        .await?;
    let path = |table: &str| format!("{}/", dir.join(table).display());
    let orders = session.read().parquet(&path("orders")).await?;
    let customer = session.read().parquet(&path("customer")).await?;
    let nation = session.read().parquet(&path("nation")).await?;

    // Revenue per customer in 1995, with the customer's nation.
    let revenue = orders
        .filter(
            col("o_orderdate")
                .gt_eq(lit("1995-01-01"))
                .and(col("o_orderdate").lt(lit("1996-01-01"))),
        )?
        .with_column_renamed("o_custkey", "c_custkey")?
        .join(&customer, &["c_custkey"], "inner")?
        .with_column_renamed("c_nationkey", "n_nationkey")?
        .join(&nation, &["n_nationkey"], "inner")?
        .group_by(["n_name", "c_name"])?
        .agg(vec![
            sum(col("o_totalprice")).alias("revenue"),
            count(lit(1)).alias("orders"),
        ])?;

    // The three best customers of each nation.
    let by_nation = Window::partition_by(["n_name"])?.order_by(vec![desc(col("revenue"))])?;
    let best = revenue
        .with_column("rank", rank().over(&by_nation)?)?
        .filter(col("rank").lt_eq(lit(3)))?
        .order_by(vec![asc(col("n_name")), asc(col("rank"))])?;
    best.show_n(15).await?;

    // The same data for SQL.
    best.create_or_replace_temp_view("best_customers").await?;
    session
        .sql("SELECT n_name, round(sum(revenue), 2) AS top3_revenue FROM best_customers GROUP BY n_name ORDER BY top3_revenue DESC LIMIT 5")
        .await?
        .show()
        .await?;
    println!("{}", best.explain().await?);
    session.stop().await;
    Ok(())
}
