//! `faisca demo`: TPC-H data generated in-process, a local cluster, real queries.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::util::pretty::pretty_format_batches;
use faisca::Session;

use faisca_bench::tpch::{data, queries};

/// `faisca demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// TPC-H scale factor of the generated data.
    #[arg(long, default_value_t = 0.1)]
    pub sf: f64,
    /// Where to keep the generated data (default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Executors of the local cluster.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
}

/// The queries the demo runs, with a one-line description.
const DEMO_QUERIES: &[(usize, &str)] = &[
    (1, "pricing summary report"),
    (3, "shipping priority"),
    (5, "local supplier volume"),
    (6, "forecasting revenue change"),
    (10, "returned item reporting"),
    (18, "large volume customer"),
];

/// Run the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let sf = args.sf;
    let (dir, generated) = data::prepare(args.data.clone(), sf).await?;
    if !generated {
        eprintln!("using cached TPC-H SF{sf} in {}", dir.display());
    }
    let master = format!("local[{}]", args.executors.max(1));
    let t = Instant::now();
    let session = Session::builder()
        .master(master.clone())
        .app_name("faisca demo")
        .build()
        .await?;
    eprintln!(
        "started {master}: a driver and {} executors on 127.0.0.1 ({:.0} ms)",
        args.executors.max(1),
        t.elapsed().as_secs_f64() * 1000.0
    );
    let result = run_queries(&session, &dir).await;
    session.stop().await;
    result
}

async fn run_queries(session: &Session, dir: &std::path::Path) -> Result<()> {
    for ddl in data::create_tables_sql(dir) {
        session
            .execute_sql(&ddl)
            .await
            .with_context(|| format!("registering tables: {ddl}"))?;
    }
    let mut total = 0.0;
    for (q, title) in DEMO_QUERIES {
        let sql = queries::query(*q).expect("demo queries are among the 22");
        let t = Instant::now();
        let result = session
            .execute_sql(sql)
            .await
            .with_context(|| format!("TPC-H Q{q}"))?;
        let stages = result.stages.clone().unwrap_or_default();
        let batches = faisca::client::collect(result.batches)
            .await
            .with_context(|| format!("TPC-H Q{q}"))?;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        total += elapsed;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let tasks: u32 = stages.iter().map(|s| s.tasks).sum();
        println!(
            "TPC-H Q{q} ({title}): {rows} rows, {} stages, {tasks} tasks, {elapsed:.0} ms",
            stages.len()
        );
        let shown: Vec<_> = batches
            .iter()
            .take(1)
            .map(|b| b.slice(0, b.num_rows().min(5)))
            .collect();
        println!("{}", pretty_format_batches(&shown)?);
        if rows > 5 {
            println!("({} more rows)", rows - 5);
        }
        println!();
    }
    println!("{} queries in {total:.0} ms", DEMO_QUERIES.len());
    Ok(())
}
