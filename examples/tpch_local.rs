//! TPC-H Q1 on `local[2]` from a Rust program: generate data, register tables, run, show.
//!
//! `cargo run --example tpch_local [SCALE_FACTOR]` (default 0.01).

use faisca::Session;
use faisca_bench::tpch::{data, queries};

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
        .app_name("tpch_local example")
        .build()
        .await?;
    for ddl in data::create_tables_sql(&dir) {
        session.sql(&ddl).await?;
    }
    let df = session.sql(queries::query(1).expect("Q1")).await?;
    println!("{}", df.explain().await?);
    df.show().await?;
    session.stop().await;
    Ok(())
}
