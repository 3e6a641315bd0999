//! TPC-H Q1 on `local[2]` from a Rust program: generate data, register tables, run, show; then
//! run it again reporting the job's progress to a callback (`collect_with_progress`).
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
    // The same query again, following its job: stages and tasks as they finish.
    let rows = df
        .collect_with_progress(|job| {
            let done: u32 = job.stages.iter().map(|s| s.done).sum();
            let tasks: u32 = job.stages.iter().map(|s| s.tasks).sum();
            eprintln!("job {} {:?}: {done}/{tasks} tasks", job.job_id, job.state);
        })
        .await?;
    println!("{} rows", rows.iter().map(|b| b.num_rows()).sum::<usize>());
    if let Some(url) = session.ui_url().await? {
        println!("web UI: {url}");
    }
    session.stop().await;
    Ok(())
}
