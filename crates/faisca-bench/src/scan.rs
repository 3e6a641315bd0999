//! `faisca bench scan`: Parquet decode throughput of TPC-H lineitem, every column decoded and
//! aggregated inside the tasks (so almost nothing reaches the client), against single-process
//! DataFusion on the same files in the same run.
//!
//! Throughput is Arrow output: the bytes of the decoded columns (values, offsets and validity
//! buffers, as the scan hands them on), counted once by streaming `SELECT *` through DataFusion,
//! divided by the query's time and the cores that ran it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use datafusion::arrow::array::Array;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Serialize;

use crate::cluster::{machine, median};
use crate::tpch::data;

/// `faisca bench scan`.
#[derive(Debug, clap::Args)]
pub struct ScanBenchArgs {
    /// Scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub sf: f64,
    /// Directory of TPC-H data (generated there if missing; default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Timed runs per engine (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/scan.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// DataFusion configuration `key=value` for the single-process reference (repeatable).
    #[arg(long = "reference-conf", value_name = "KEY=VALUE")]
    pub reference_conf: Vec<String>,
}

#[derive(Serialize)]
struct ScanReport {
    scale_factor: f64,
    master: String,
    cores: usize,
    machine: String,
    arrow_bytes: u64,
    queries: Vec<QueryReport>,
}

/// One query's timings in both engines.
#[derive(Serialize)]
struct QueryReport {
    name: &'static str,
    sql: String,
    faisca_ms: Vec<f64>,
    datafusion_ms: Vec<f64>,
    faisca_gb_per_s_per_core: f64,
    datafusion_gb_per_s_per_core: f64,
    ratio: f64,
}

/// The filter every query carries: it holds for every row but cannot be decided from Parquet
/// statistics, so every value is decoded (without it, counts and min/max come from the footers).
const EVERY_ROW: &str = "l_orderkey % 2 >= 0";

/// The benchmark's queries over every column of lineitem, by name: `decode` (the target's
/// measure) aggregates each column with `count(c)`, which costs next to nothing once the column
/// is decoded, so decoding dominates; `min-max` aggregates each with `min(c), max(c)`, where the
/// 32 accumulators (strings among them) cost as much as decoding.
async fn queries(ctx: &SessionContext) -> Result<Vec<(&'static str, String)>> {
    let schema = ctx.table("lineitem").await?.schema().clone();
    let over_columns = |aggregates: &dyn Fn(&str) -> Vec<String>| {
        let list: Vec<String> = schema
            .fields()
            .iter()
            .flat_map(|f| aggregates(f.name()))
            .collect();
        format!("SELECT {} FROM lineitem WHERE {EVERY_ROW}", list.join(", "))
    };
    Ok(vec![
        ("decode", over_columns(&|c| vec![format!("count({c})")])),
        (
            "min-max",
            over_columns(&|c| vec![format!("min({c})"), format!("max({c})")]),
        ),
    ])
}

async fn arrow_bytes(ctx: &SessionContext) -> Result<u64> {
    let mut stream = ctx
        .sql("SELECT * FROM lineitem")
        .await?
        .execute_stream()
        .await?;
    let mut bytes = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
            .sum::<u64>();
    }
    Ok(bytes)
}

/// `faisca bench scan`.
pub async fn scan(args: ScanBenchArgs) -> Result<()> {
    let sf = args.sf;
    let (dir, _) = data::prepare(args.data.clone(), sf).await?;
    let (session, ctx, cores) = crate::cluster::lineitem_engines(
        &args.master,
        "faisca bench scan",
        &args.conf,
        &args.reference_conf,
        &dir,
    )
    .await?;
    let queries = queries(&ctx).await?;
    let bytes = arrow_bytes(&ctx).await?;
    eprintln!(
        "TPC-H SF{sf} lineitem: {:.2} GB of Arrow data; Faísca on {} ({cores} cores) vs DataFusion ({cores} partitions)",
        bytes as f64 / 1e9,
        args.master
    );
    let rate = |d: Duration| bytes as f64 / 1e9 / d.as_secs_f64() / cores as f64;
    let mut reports = Vec::new();
    for (name, sql) in queries {
        // Warm-up, then alternate the engines.
        faisca::client::collect(session.execute_sql(&sql).await?.batches).await?;
        ctx.sql(&sql).await?.collect().await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..args.iterations.max(1) {
            for engine in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let t = Instant::now();
                if engine == 0 {
                    faisca::client::collect(session.execute_sql(&sql).await?.batches).await?;
                    ours.push(t.elapsed());
                } else {
                    ctx.sql(&sql).await?.collect().await?;
                    theirs.push(t.elapsed());
                }
            }
        }
        let (f, d) = (median(&ours), median(&theirs));
        let report = QueryReport {
            name,
            sql,
            faisca_ms: ours.iter().map(|t| t.as_secs_f64() * 1000.0).collect(),
            datafusion_ms: theirs.iter().map(|t| t.as_secs_f64() * 1000.0).collect(),
            faisca_gb_per_s_per_core: rate(f),
            datafusion_gb_per_s_per_core: rate(d),
            ratio: f.as_secs_f64() / d.as_secs_f64().max(1e-9),
        };
        println!(
            "{name}\n  faisca      {:>8.1} ms  {:>5.2} GB/s per core\n  datafusion  {:>8.1} ms  {:>5.2} GB/s per core\n  ratio       {:>8.2}",
            f.as_secs_f64() * 1000.0,
            report.faisca_gb_per_s_per_core,
            d.as_secs_f64() * 1000.0,
            report.datafusion_gb_per_s_per_core,
            report.ratio
        );
        reports.push(report);
    }
    let report = ScanReport {
        scale_factor: sf,
        master: args.master.clone(),
        cores,
        machine: machine(),
        arrow_bytes: bytes,
        queries: reports,
    };
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&report)?)?;
    session.stop().await;
    Ok(())
}
