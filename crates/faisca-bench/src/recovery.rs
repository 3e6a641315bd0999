//! `faisca bench recovery`: how much a lost executor costs a query.
//!
//! Starts a driver and executors as child processes of this binary (so that killing one is a real
//! SIGKILL of a real process), times a TPC-H query normally, then times it again while one
//! executor is killed part-way through (by default at half the normal time), starting a
//! replacement executor after each such run. Reports both medians, their ratio, the rows' equality
//! and what the driver re-ran.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use faisca::Session;
use serde::Serialize;

use crate::cluster::{machine, median};
use crate::tpch::{data, queries};

/// `faisca bench recovery`.
#[derive(Debug, clap::Args)]
pub struct RecoveryBenchArgs {
    /// Scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub sf: f64,
    /// Directory of TPC-H data (generated there if missing; default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The TPC-H query.
    #[arg(long, default_value_t = 9)]
    pub query: usize,
    /// Executor processes.
    #[arg(long, default_value_t = 3)]
    pub executors: usize,
    /// Cores of each executor.
    #[arg(long, default_value_t = 1)]
    pub cores: u32,
    /// Memory of each executor.
    #[arg(long, default_value = "4g")]
    pub memory: String,
    /// Timed runs of each kind (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// When to kill an executor, as a fraction of the normal median time.
    #[arg(long, default_value_t = 0.5)]
    pub kill_at: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/recovery.json")]
    pub output: PathBuf,
}

/// Child processes, SIGKILLed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Serialize)]
struct RecoveryRun {
    ms: f64,
    killed_after_ms: f64,
    same_rows: bool,
    failed_attempts: u32,
    rerun_tasks: u32,
    fetch_failures: u32,
}

#[derive(Serialize)]
struct RecoveryReport {
    scale_factor: f64,
    query: usize,
    executors: usize,
    cores_per_executor: u32,
    machine: String,
    normal_ms: Vec<f64>,
    normal_median_ms: f64,
    recovery: Vec<RecoveryRun>,
    recovery_median_ms: f64,
    ratio: f64,
}

fn start_driver(exe: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(exe)
        .args(["driver", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the driver process")?;
    let mut lines = BufReader::new(child.stderr.take().context("driver stderr")?).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    break rest.trim().to_string();
                }
            }
            _ => bail!("the driver process exited before printing its address"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, address))
}

fn start_executor(
    exe: &Path,
    driver: &str,
    args: &RecoveryBenchArgs,
    work: &Path,
) -> Result<Child> {
    Command::new(exe)
        .args(["executor", "--driver", driver, "--cores"])
        .arg(args.cores.to_string())
        .args(["--memory", &args.memory, "--work-dir"])
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting an executor process")
}

/// Rows as sorted strings, floats to 9 significant digits.
fn normalized(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    DataType::Float64 if !c.is_null(r) => format!(
                        "{:.8e}",
                        c.as_any()
                            .downcast_ref::<Float64Array>()
                            .map(|a| a.value(r))
                            .unwrap_or_default()
                    ),
                    _ => array_value_to_string(c, r).unwrap_or_default(),
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

async fn timed_run(session: &Session, sql: &str) -> Result<(Duration, Vec<String>, String)> {
    let started = Instant::now();
    let result = session.execute_sql(sql).await?;
    let job = result.job_id.clone().unwrap_or_default();
    let batches = faisca::client::collect(result.batches).await?;
    Ok((started.elapsed(), normalized(&batches), job))
}

/// `faisca bench recovery`.
pub async fn recovery(args: RecoveryBenchArgs) -> Result<()> {
    let sql = queries::query(args.query)
        .with_context(|| format!("unknown TPC-H query {}: expected 1 to 22", args.query))?;
    if args.executors < 2 {
        bail!(
            "invalid --executors {}: expected at least 2 (one is killed)",
            args.executors
        );
    }
    let (dir, _) = data::prepare(args.data.clone(), args.sf).await?;
    let exe = std::env::current_exe().context("locating the faisca binary")?;
    let work = tempfile::Builder::new()
        .prefix("faisca-recovery-")
        .tempdir()?;
    let (driver, address) = start_driver(&exe)?;
    let mut children = Children(vec![driver]);
    let mut executors = Vec::new();
    for _ in 0..args.executors {
        executors.push(start_executor(&exe, &address, &args, work.path())?);
    }
    let session = Session::builder()
        .master(address.clone())
        .app_name("faisca bench recovery")
        .build()
        .await?;
    session
        .wait_for_executors(args.executors, Duration::from_secs(60))
        .await?;
    for ddl in data::create_tables_sql(&dir) {
        session.execute_sql(&ddl).await?;
    }
    eprintln!(
        "TPC-H SF{} Q{} on {} executors × {} cores",
        args.sf, args.query, args.executors, args.cores
    );
    let (_, reference, _) = timed_run(&session, sql).await?; // warm-up
    let mut normal = Vec::new();
    for _ in 0..args.iterations {
        let (elapsed, _, _) = timed_run(&session, sql).await?;
        eprintln!("  normal: {:.0} ms", elapsed.as_secs_f64() * 1000.0);
        normal.push(elapsed);
    }
    let normal_median = median(&normal);
    let kill_after = normal_median.mul_f64(args.kill_at);
    let mut recovery = Vec::new();
    for i in 0..args.iterations {
        let victim = i % executors.len();
        let started = Instant::now();
        let result = session.execute_sql(sql).await?;
        let job = result.job_id.clone().unwrap_or_default();
        let collect = tokio::spawn(faisca::client::collect(result.batches));
        tokio::time::sleep(kill_after.saturating_sub(started.elapsed())).await;
        let killed_after = started.elapsed();
        executors[victim].kill().context("killing an executor")?;
        let _ = executors[victim].wait();
        let batches = collect.await??;
        let elapsed = started.elapsed();
        let info = session.client().job(&job).await?;
        let run = RecoveryRun {
            ms: elapsed.as_secs_f64() * 1000.0,
            killed_after_ms: killed_after.as_secs_f64() * 1000.0,
            same_rows: normalized(&batches) == reference,
            failed_attempts: info.stages.iter().map(|s| s.failed_attempts).sum(),
            rerun_tasks: info.stages.iter().map(|s| s.rerun_tasks).sum(),
            fetch_failures: info.stages.iter().map(|s| s.fetch_failures).sum(),
        };
        eprintln!(
            "  executor killed after {:.0} ms: {:.0} ms, same rows: {}, {} failed attempts, {} tasks re-run",
            run.killed_after_ms, run.ms, run.same_rows, run.failed_attempts, run.rerun_tasks
        );
        if !run.same_rows {
            bail!(
                "Q{} gave different rows after an executor was killed",
                args.query
            );
        }
        recovery.push(run);
        // A replacement, so that every run starts with the same cluster.
        executors[victim] = start_executor(&exe, &address, &args, work.path())?;
        session
            .wait_for_executors(args.executors, Duration::from_secs(60))
            .await?;
    }
    let recovery_median = median(
        &recovery
            .iter()
            .map(|r| Duration::from_secs_f64(r.ms / 1000.0))
            .collect::<Vec<_>>(),
    );
    let report = RecoveryReport {
        scale_factor: args.sf,
        query: args.query,
        executors: args.executors,
        cores_per_executor: args.cores,
        machine: machine(),
        normal_ms: normal.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        normal_median_ms: normal_median.as_secs_f64() * 1000.0,
        recovery_median_ms: recovery_median.as_secs_f64() * 1000.0,
        ratio: recovery_median.as_secs_f64() / normal_median.as_secs_f64().max(1e-9),
        recovery,
    };
    eprintln!(
        "normal median {:.0} ms, with an executor killed {:.0} ms: {:.2}×",
        report.normal_median_ms, report.recovery_median_ms, report.ratio
    );
    session.stop().await;
    children.0.extend(executors);
    drop(children);
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("report written to {}", args.output.display());
    Ok(())
}
