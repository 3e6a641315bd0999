//! `faisca bench recovery`: how much a lost executor costs a query, and a decommissioned one.
//!
//! Starts a driver and executors as child processes of this binary (so that killing one is a real
//! SIGKILL of a real process), times a TPC-H query normally, then times it again while one
//! executor is killed part-way through (by default at half the normal time), then while one is
//! sent SIGTERM at the same moment (a graceful decommission: it finishes its tasks and serves its
//! shuffle output until the driver releases it), starting a replacement executor after each such
//! run. Reports the medians, their ratios, the rows' equality and what the driver re-ran.

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
    /// Decommission grace period of the executors (`faisca.executor.decommission.gracePeriod`).
    #[arg(long, default_value = "30s")]
    pub grace_period: String,
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
    grace_period: String,
    decommission: Vec<RecoveryRun>,
    decommission_median_ms: f64,
    /// Decommission median over the normal median.
    decommission_ratio: f64,
    /// Decommission median over the kill median (≤ 1: never slower than a kill).
    decommission_vs_kill: f64,
}

/// How an executor leaves in the middle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disruption {
    /// SIGKILL.
    Kill,
    /// SIGTERM: a graceful decommission.
    Decommission,
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
        .args([
            "--conf",
            &format!(
                "faisca.executor.decommission.gracePeriod={}",
                args.grace_period
            ),
        ])
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
    let mut decommission = Vec::new();
    for how in [Disruption::Kill, Disruption::Decommission] {
        for i in 0..args.iterations {
            let victim = i % executors.len();
            let run = disrupted_run(
                &session,
                sql,
                kill_after,
                &mut executors[victim],
                how,
                &reference,
            )
            .await?;
            if !run.same_rows {
                bail!(
                    "Q{} gave different rows after an executor left ({how:?})",
                    args.query
                );
            }
            match how {
                Disruption::Kill => recovery.push(run),
                Disruption::Decommission => decommission.push(run),
            }
            // A replacement, so that every run starts with the same cluster.
            executors[victim] = start_executor(&exe, &address, &args, work.path())?;
            session
                .wait_for_executors(args.executors, Duration::from_secs(60))
                .await?;
        }
    }
    let median_of = |runs: &[RecoveryRun]| {
        median(
            &runs
                .iter()
                .map(|r| Duration::from_secs_f64(r.ms / 1000.0))
                .collect::<Vec<_>>(),
        )
    };
    let decommission_median = median_of(&decommission);
    let recovery_median = median_of(&recovery);
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
        grace_period: args.grace_period.clone(),
        decommission,
        decommission_median_ms: decommission_median.as_secs_f64() * 1000.0,
        decommission_ratio: decommission_median.as_secs_f64()
            / normal_median.as_secs_f64().max(1e-9),
        decommission_vs_kill: decommission_median.as_secs_f64()
            / recovery_median.as_secs_f64().max(1e-9),
    };
    eprintln!(
        "normal median {:.0} ms, with an executor killed {:.0} ms: {:.2}×, decommissioned {:.0} ms: {:.2}× ({:.2}× a kill)",
        report.normal_median_ms,
        report.recovery_median_ms,
        report.ratio,
        report.decommission_median_ms,
        report.decommission_ratio,
        report.decommission_vs_kill
    );
    session.stop().await;
    children.0.extend(executors);
    drop(children);
    crate::cluster::write_json(&args.output, &report)
}

/// Run `sql` and make `victim` leave after `after` (`how`); the victim has exited when this
/// returns (a decommissioned one once the driver released it).
async fn disrupted_run(
    session: &Session,
    sql: &str,
    after: Duration,
    victim: &mut Child,
    how: Disruption,
    reference: &[String],
) -> Result<RecoveryRun> {
    let started = Instant::now();
    let result = session.execute_sql(sql).await?;
    let job = result.job_id.clone().unwrap_or_default();
    let collect = tokio::spawn(faisca::client::collect(result.batches));
    tokio::time::sleep(after.saturating_sub(started.elapsed())).await;
    let left_after = started.elapsed();
    let pid = nix::unistd::Pid::from_raw(victim.id() as i32);
    let signal = match how {
        Disruption::Kill => nix::sys::signal::Signal::SIGKILL,
        Disruption::Decommission => nix::sys::signal::Signal::SIGTERM,
    };
    nix::sys::signal::kill(pid, signal).context("signalling an executor")?;
    let batches = collect.await??;
    let elapsed = started.elapsed();
    // Blocking, but short: a decommissioned executor exits once the result was read.
    let status = victim.wait().context("waiting for the executor to exit")?;
    let info = session.client().job(&job).await?;
    let run = RecoveryRun {
        ms: elapsed.as_secs_f64() * 1000.0,
        killed_after_ms: left_after.as_secs_f64() * 1000.0,
        same_rows: normalized(&batches) == reference,
        failed_attempts: info.stages.iter().map(|s| s.failed_attempts).sum(),
        rerun_tasks: info.stages.iter().map(|s| s.rerun_tasks).sum(),
        fetch_failures: info.stages.iter().map(|s| s.fetch_failures).sum(),
    };
    eprintln!(
        "  executor {} after {:.0} ms: {:.0} ms, same rows: {}, {} failed attempts, {} tasks re-run, {} fetch failures (exit: {status})",
        match how {
            Disruption::Kill => "killed",
            Disruption::Decommission => "decommissioned",
        },
        run.killed_after_ms,
        run.ms,
        run.same_rows,
        run.failed_attempts,
        run.rerun_tasks,
        run.fetch_failures
    );
    Ok(run)
}
