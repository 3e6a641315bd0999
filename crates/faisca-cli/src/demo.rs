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
    /// Instead of TPC-H: a live windowed count of the `rate` streaming source for a few seconds.
    #[arg(long)]
    pub streaming: bool,
    /// With --streaming: how long the query runs, in seconds.
    #[arg(long, default_value_t = 6, requires = "streaming")]
    pub seconds: u64,
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
    if args.streaming {
        return run_streaming(&args).await;
    }
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

/// `faisca demo --streaming`: the `rate` source (1000 rows a second) counted in 1-second event-time
/// windows with a 2-second watermark, shown every second while the query runs.
async fn run_streaming(args: &DemoArgs) -> Result<()> {
    use faisca::Trigger;
    use faisca::functions::{col, window};
    let master = format!("local[{}]", args.executors.max(1));
    let session = Session::builder()
        .master(master.clone())
        .app_name("faisca demo --streaming")
        .build()
        .await?;
    eprintln!("started {master}; streaming the rate source (1000 rows/s) into 1 s windows");
    let counts = session
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "1000")
        .load()
        .await?
        .with_watermark("timestamp", "2 seconds")?
        .group_by(vec![window(col("timestamp"), "1 second", None)?])?
        .agg(vec![
            faisca::functions::count(col("value")).alias("rows"),
            faisca::functions::sum(col("value")).alias("sum_of_values"),
        ])?;
    let query = counts
        .write_stream()
        .format("memory")
        .query_name("rate_windows")
        .output_mode("update")
        .trigger(Trigger::ProcessingTime(std::time::Duration::from_millis(
            500,
        )))
        .start()
        .await?;
    let shown = async {
        for _ in 0..args.seconds.max(1) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Some(e) = query.exception().await? {
                anyhow::bail!("the streaming query failed: {e}");
            }
            let latest = session
                .sql(
                    "SELECT get_field(\"window\", 'start') AS window_start, max(rows) AS rows, max(sum_of_values) AS sum_of_values \
                     FROM rate_windows GROUP BY 1 ORDER BY 1 DESC LIMIT 3",
                )
                .await?
                .collect()
                .await?;
            let progress = query.recent_progress().await?;
            // The batch that read rows last (a batch without data follows each one that moved
            // the watermark, to write and evict the windows it passed).
            if let Some(p) = progress.iter().rev().find(|p| p.num_input_rows > 0) {
                println!(
                    "batch {} · {} rows in · {:.0} rows/s processed · watermark {}",
                    p.batch_id,
                    p.num_input_rows,
                    p.processed_rows_per_second,
                    p.event_time.get("watermark").map(String::as_str).unwrap_or("-")
                );
            }
            if latest.iter().any(|b| b.num_rows() > 0) {
                println!("{}", pretty_format_batches(&latest)?);
            }
        }
        Ok(())
    }
    .await;
    query.stop().await?;
    session.stop().await;
    shown
}
