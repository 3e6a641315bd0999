//! `faisca bench write`: a partitioned Parquet write of TPC-H lineitem (`PARTITIONED BY
//! l_shipmode`), Faísca's distributed write with its commit against single-process DataFusion's
//! `COPY` of the same rows with the same partitions, in the same run. Both write to local disk with
//! the same Parquet settings (DataFusion's defaults).

use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::cluster::{machine, median};
use crate::tpch::data;

/// `faisca bench write`.
#[derive(Debug, clap::Args)]
pub struct WriteBenchArgs {
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
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Column to partition the output by.
    #[arg(long, default_value = "l_shipmode")]
    pub partition_by: String,
    /// Directory the outputs are written below (default: a temporary directory).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/write.json")]
    pub output: PathBuf,
}

#[derive(Serialize)]
struct WriteReport {
    scale_factor: f64,
    master: String,
    cores: usize,
    machine: String,
    partition_by: String,
    rows: u64,
    faisca_ms: Vec<f64>,
    datafusion_ms: Vec<f64>,
    faisca_files: usize,
    datafusion_files: usize,
    output_bytes: u64,
    ratio: f64,
}

fn tree_size(dir: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let (f, b) = tree_size(&path);
                files += f;
                bytes += b;
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files += 1;
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (files, bytes)
}

/// `faisca bench write`.
pub async fn write(args: WriteBenchArgs) -> Result<()> {
    let sf = args.sf;
    let (dir, _) = data::prepare(args.data.clone(), sf).await?;
    let scratch = match &args.scratch {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let (session, ctx, cores) =
        crate::cluster::lineitem_engines(&args.master, "faisca bench write", &[], &[], &dir)
            .await?;
    let column = &args.partition_by;
    let copy = |target: &Path, mode: &str| {
        format!(
            "COPY lineitem TO '{}/' STORED AS PARQUET PARTITIONED BY ({column}){mode}",
            target.display()
        )
    };
    eprintln!(
        "TPC-H SF{sf} lineitem partitioned by {column}: Faísca on {} ({cores} cores) vs DataFusion COPY ({cores} partitions)",
        args.master
    );
    let ours_dir = scratch.path().join("faisca");
    let theirs_dir = scratch.path().join("datafusion");
    let run_ours = || async {
        let sql = copy(&ours_dir, " OPTIONS ('mode' 'overwrite')");
        faisca::client::collect(session.execute_sql(&sql).await?.batches).await?;
        anyhow::Ok(())
    };
    // DataFusion's COPY adds files to a directory: it starts from an empty one each time (the
    // removal is not timed).
    let run_theirs = || async {
        ctx.sql(&copy(&theirs_dir, "")).await?.collect().await?;
        anyhow::Ok(())
    };
    run_ours().await?;
    let _ = std::fs::remove_dir_all(&theirs_dir);
    run_theirs().await?;
    let (mut ours, mut theirs): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for i in 0..args.iterations.max(1) {
        for engine in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if engine == 1 {
                let _ = std::fs::remove_dir_all(&theirs_dir);
            }
            let t = Instant::now();
            if engine == 0 {
                run_ours().await?;
                ours.push(t.elapsed());
            } else {
                run_theirs().await?;
                theirs.push(t.elapsed());
            }
        }
    }
    let rows = ctx
        .sql("SELECT count(*) FROM lineitem")
        .await?
        .collect()
        .await?
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .map(|a| a.value(0) as u64)
        })
        .unwrap_or(0);
    let (ours_files, ours_bytes) = tree_size(&ours_dir);
    let (theirs_files, _) = tree_size(&theirs_dir);
    let (f, d) = (median(&ours), median(&theirs));
    let report = WriteReport {
        scale_factor: sf,
        master: args.master.clone(),
        cores,
        machine: machine(),
        partition_by: column.clone(),
        rows,
        faisca_ms: ours.iter().map(|t| t.as_secs_f64() * 1000.0).collect(),
        datafusion_ms: theirs.iter().map(|t| t.as_secs_f64() * 1000.0).collect(),
        faisca_files: ours_files,
        datafusion_files: theirs_files,
        output_bytes: ours_bytes,
        ratio: f.as_secs_f64() / d.as_secs_f64().max(1e-9),
    };
    println!(
        "faisca      {:>8.1} ms  ({} files)\ndatafusion  {:>8.1} ms  ({} files)\nratio       {:>8.2}",
        f.as_secs_f64() * 1000.0,
        ours_files,
        d.as_secs_f64() * 1000.0,
        theirs_files,
        report.ratio
    );
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&report)?)?;
    session.stop().await;
    Ok(())
}
