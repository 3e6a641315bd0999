//! `faisca bench`: Faísca against single-process DataFusion on the same data, in the same run.

use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::prelude::{SessionConfig, SessionContext};
use faisca::Session;
use faisca_common::config::parse_key_values;
use serde::Serialize;

use crate::tpch::{data, queries};

/// `faisca bench tpch`.
#[derive(Debug, clap::Args)]
pub struct TpchBenchArgs {
    /// Scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub sf: f64,
    /// Directory of TPC-H data (generated there if missing; default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Queries to run, e.g. 1,6 (default: all 22).
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<usize>,
    /// Timed runs per query and engine (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/tpch.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// DataFusion configuration `key=value` for the single-process reference (repeatable), e.g.
    /// `datafusion.optimizer.enable_dynamic_filter_pushdown=false` to see what run-time filters give.
    #[arg(long = "reference-conf", value_name = "KEY=VALUE")]
    pub reference_conf: Vec<String>,
}

/// `faisca bench overhead`.
#[derive(Debug, clap::Args)]
pub struct OverheadBenchArgs {
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Timed runs of each measurement.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Tasks of the many-task query.
    #[arg(long, default_value_t = 100)]
    pub tasks: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/overhead.json")]
    pub output: PathBuf,
}

/// The median of `samples`.
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

/// CPU time used by this process so far, user and system, threads that ended included (from
/// `/proc/self/stat`, in the kernel's 10 ms clock ticks: summed over a query's iterations it
/// is far less disturbed by other work on a shared machine than wall time); `None` without
/// procfs.
pub(crate) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the state
    // is field 3, utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux whatever the kernel's own tick rate.
    Some(Duration::from_millis(ticks * 10))
}

/// `numerators[i] / denominators[i]` for each iteration.
fn paired_ratios(numerators: &[Duration], denominators: &[Duration]) -> Vec<f64> {
    numerators
        .iter()
        .zip(denominators)
        .map(|(n, d)| n.as_secs_f64() / d.as_secs_f64().max(1e-9))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Serialize)]
struct QueryReport {
    query: usize,
    rows: usize,
    /// Faísca with fused pipelines (`faisca.codegen.enabled=true`).
    faisca_ms: Vec<f64>,
    /// Faísca with DataFusion's operators one by one (`faisca.codegen.enabled=false`).
    unfused_ms: Vec<f64>,
    datafusion_ms: Vec<f64>,
    faisca_median_ms: f64,
    unfused_median_ms: f64,
    datafusion_median_ms: f64,
    /// Fused Faísca time / DataFusion time.
    ratio: f64,
    /// Unfused time / fused time (above 1: fusion is faster).
    fusion_speedup: f64,
    /// Unfused / fused time of each iteration (the two ran back to back), for the spread.
    fusion_speedup_paired: Vec<f64>,
    /// CPU time of this process (all threads: driver, executors, DataFusion) over the timed
    /// iterations, per engine; empty where `/proc` is missing.
    faisca_cpu_ms: Option<f64>,
    unfused_cpu_ms: Option<f64>,
    datafusion_cpu_ms: Option<f64>,
    stages: usize,
    tasks: u32,
}

#[derive(Serialize)]
struct TpchReport {
    scale_factor: f64,
    master: String,
    cluster_cores: usize,
    iterations: usize,
    machine: String,
    queries: Vec<QueryReport>,
    faisca_total_ms: f64,
    unfused_total_ms: f64,
    datafusion_total_ms: f64,
    ratio: f64,
    fusion_speedup: f64,
    /// CPU time of all queries' timed iterations, per engine (see [`QueryReport`]).
    faisca_cpu_total_ms: Option<f64>,
    unfused_cpu_total_ms: Option<f64>,
    datafusion_cpu_total_ms: Option<f64>,
}

/// A short description of this machine.
/// A session on `master` (with `conf`) and a single-process DataFusion reference with as many
/// partitions as the cluster has cores (with `reference_conf`), both with TPC-H `lineitem` of
/// `dir` registered. Returns them and the cluster's cores.
pub async fn lineitem_engines(
    master: &str,
    app_name: &str,
    conf: &[String],
    reference_conf: &[String],
    dir: &std::path::Path,
) -> Result<(faisca::Session, SessionContext, usize)> {
    let session = crate::session(master, app_name, conf).await?;
    let executors = session
        .wait_for_executors(1, session.config().executor_wait_timeout())
        .await?;
    let cores: usize = executors
        .iter()
        .map(|e| e.cores as usize)
        .sum::<usize>()
        .max(1);
    let mut reference = SessionConfig::new().with_target_partitions(cores);
    for (k, v) in parse_key_values(reference_conf, "--reference-conf")? {
        reference
            .options_mut()
            .set(&k, &v)
            .with_context(|| format!("--reference-conf {k}={v}"))?;
    }
    let ctx = SessionContext::new_with_config(reference);
    let ddl = crate::tpch::data::create_tables_sql(dir)
        .into_iter()
        .find(|d| d.contains("lineitem"))
        .context("no lineitem table in the TPC-H data")?;
    session.execute_sql(&ddl).await?;
    ctx.sql(&ddl).await?.collect().await?;
    Ok((session, ctx, cores))
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} vCPU, {model}, {}", std::env::consts::OS)
}

async fn session_for(master: &str, conf: &[String]) -> Result<(Session, usize)> {
    let session = crate::session(master, "faisca bench", conf).await?;
    let executors = session
        .wait_for_executors(1, session.config().executor_wait_timeout())
        .await?;
    let cores = executors
        .iter()
        .map(|e| e.cores as usize)
        .sum::<usize>()
        .max(1);
    Ok((session, cores))
}

/// Run one statement on the cluster; returns (rows, stages, tasks).
async fn run_faisca(session: &Session, sql: &str) -> Result<(usize, usize, u32)> {
    let result = session.execute_sql(sql).await?;
    let stages = result.stages.clone().unwrap_or_default();
    let batches = faisca::client::collect(result.batches).await?;
    Ok((
        batches.iter().map(|b| b.num_rows()).sum(),
        stages.len(),
        stages.iter().map(|s| s.tasks).sum(),
    ))
}

async fn run_datafusion(ctx: &SessionContext, sql: &str) -> Result<usize> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// The TPC-H queries `--queries` names (all 22 when it names none), checked.
pub(crate) fn wanted_queries(asked: &[usize]) -> Result<Vec<usize>> {
    let wanted: Vec<usize> = if asked.is_empty() {
        (1..=22).collect()
    } else {
        asked.to_vec()
    };
    if let Some(bad) = wanted.iter().find(|q| queries::query(**q).is_none()) {
        bail!("invalid query number {bad} in --queries: expected numbers from 1 to 22");
    }
    Ok(wanted)
}

/// `faisca bench tpch`.
pub async fn tpch(args: TpchBenchArgs) -> Result<()> {
    let sf = args.sf;
    let (dir, _) = data::prepare(args.data.clone(), sf).await?;
    let wanted = wanted_queries(&args.queries)?;
    let (session, cores) = session_for(&args.master, &args.conf).await?;
    let mut reference = SessionConfig::new().with_target_partitions(cores);
    for (k, v) in parse_key_values(&args.reference_conf, "--reference-conf")? {
        reference
            .options_mut()
            .set(&k, &v)
            .with_context(|| format!("--reference-conf {k}={v}"))?;
    }
    let ctx = SessionContext::new_with_config(reference);
    for ddl in data::create_tables_sql(&dir) {
        session.execute_sql(&ddl).await?;
        ctx.sql(&ddl).await?.collect().await?;
    }
    let mut reports = Vec::new();
    eprintln!(
        "TPC-H SF{sf}: Faísca on {} ({cores} cores) with and without fusion vs DataFusion ({cores} partitions), {} iterations",
        args.master, args.iterations
    );
    println!(
        "{:>5} {:>10} {:>11} {:>14} {:>7} {:>8} {:>11} {:>5} {:>7} {:>6}",
        "query",
        "fused ms",
        "unfused ms",
        "datafusion ms",
        "ratio",
        "speedup",
        "paired",
        "cpu",
        "stages",
        "tasks"
    );
    let codegen = |on: bool| format!("SET faisca.codegen.enabled = {on}");
    for q in wanted {
        let sql = queries::query(q).expect("checked above");
        // Warm-up (also checks that every engine returns the same number of rows).
        session.execute_sql(&codegen(false)).await?;
        let (unfused_rows, _, _) = run_faisca(&session, sql)
            .await
            .with_context(|| format!("Q{q} on Faísca without fusion"))?;
        session.execute_sql(&codegen(true)).await?;
        let (rows, stages, tasks) = run_faisca(&session, sql)
            .await
            .with_context(|| format!("Q{q} on Faísca"))?;
        let df_rows = run_datafusion(&ctx, sql)
            .await
            .with_context(|| format!("Q{q} on DataFusion"))?;
        if rows != df_rows || unfused_rows != df_rows {
            bail!(
                "Q{q}: Faísca returned {rows} rows ({unfused_rows} without fusion), DataFusion {df_rows}"
            );
        }
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut cpu = [Some(Duration::ZERO); 3];
        for i in 0..args.iterations.max(1) {
            // Rotate which engine goes first, so none always runs on a warmer cache.
            for k in 0..3 {
                let engine = (i + k) % 3;
                if engine < 2 {
                    session.execute_sql(&codegen(engine == 0)).await?;
                }
                let cpu_before = process_cpu();
                let t = Instant::now();
                if engine < 2 {
                    run_faisca(&session, sql).await?;
                } else {
                    run_datafusion(&ctx, sql).await?;
                }
                times[engine].push(t.elapsed());
                cpu[engine] = match (cpu[engine], cpu_before, process_cpu()) {
                    (Some(total), Some(before), Some(after)) => {
                        Some(total + after.saturating_sub(before))
                    }
                    _ => None,
                };
            }
        }
        session.execute_sql(&codegen(true)).await?;
        let [f_times, u_times, d_times] = times;
        let (f, u, d) = (median(&f_times), median(&u_times), median(&d_times));
        let ratio = f.as_secs_f64() / d.as_secs_f64().max(1e-9);
        let speedup = u.as_secs_f64() / f.as_secs_f64().max(1e-9);
        let paired = paired_ratios(&u_times, &f_times);
        let cpu_ratio = match (cpu[1], cpu[0]) {
            (Some(u), Some(f)) if !f.is_zero() => {
                format!("{:.2}", u.as_secs_f64() / f.as_secs_f64())
            }
            _ => "-".into(),
        };
        let (lo, hi) = paired.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        println!(
            "{q:>5} {:>10.1} {:>11.1} {:>14.1} {ratio:>7.2} {speedup:>8.2} {:>11} {cpu_ratio:>5} {stages:>7} {tasks:>6}",
            ms(f),
            ms(u),
            ms(d),
            format!("{lo:.2}-{hi:.2}")
        );
        reports.push(QueryReport {
            query: q,
            rows,
            faisca_ms: f_times.iter().map(|t| ms(*t)).collect(),
            unfused_ms: u_times.iter().map(|t| ms(*t)).collect(),
            datafusion_ms: d_times.iter().map(|t| ms(*t)).collect(),
            faisca_median_ms: ms(f),
            unfused_median_ms: ms(u),
            datafusion_median_ms: ms(d),
            ratio,
            fusion_speedup: speedup,
            fusion_speedup_paired: paired,
            faisca_cpu_ms: cpu[0].map(ms),
            unfused_cpu_ms: cpu[1].map(ms),
            datafusion_cpu_ms: cpu[2].map(ms),
            stages,
            tasks,
        });
    }
    let f_total: f64 = reports.iter().map(|r| r.faisca_median_ms).sum();
    let u_total: f64 = reports.iter().map(|r| r.unfused_median_ms).sum();
    let d_total: f64 = reports.iter().map(|r| r.datafusion_median_ms).sum();
    let cpu_total =
        |cpu: fn(&QueryReport) -> Option<f64>| -> Option<f64> { reports.iter().map(cpu).sum() };
    let (f_cpu, u_cpu, d_cpu) = (
        cpu_total(|r| r.faisca_cpu_ms),
        cpu_total(|r| r.unfused_cpu_ms),
        cpu_total(|r| r.datafusion_cpu_ms),
    );
    let cpu_ratio = match (u_cpu, f_cpu) {
        (Some(u), Some(f)) if f > 0.0 => format!("{:.2}", u / f),
        _ => "-".into(),
    };
    println!(
        "{:>5} {:>10.1} {:>11.1} {:>14.1} {:>7.2} {:>8.2} {:>11} {cpu_ratio:>5}",
        "total",
        f_total,
        u_total,
        d_total,
        f_total / d_total.max(1e-9),
        u_total / f_total.max(1e-9),
        ""
    );
    let report = TpchReport {
        scale_factor: sf,
        master: args.master.clone(),
        cluster_cores: cores,
        iterations: args.iterations,
        machine: machine(),
        queries: reports,
        faisca_total_ms: f_total,
        unfused_total_ms: u_total,
        datafusion_total_ms: d_total,
        ratio: f_total / d_total.max(1e-9),
        fusion_speedup: u_total / f_total.max(1e-9),
        faisca_cpu_total_ms: f_cpu,
        unfused_cpu_total_ms: u_cpu,
        datafusion_cpu_total_ms: d_cpu,
    };
    write_json(&args.output, &report)?;
    session.stop().await;
    Ok(())
}

/// Write a benchmark's JSON report to `path` (its directory made if needed) and say where.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

#[derive(Serialize)]
struct OverheadReport {
    master: String,
    machine: String,
    iterations: usize,
    empty_job_median_ms: f64,
    one_task_median_ms: f64,
    many_tasks: usize,
    many_tasks_median_ms: f64,
    per_task_overhead_ms: f64,
}

/// `faisca bench overhead`: `SELECT 1` round trips, and the same scan as 1 task vs N tasks.
pub async fn overhead(args: OverheadBenchArgs) -> Result<()> {
    let (session, _) = session_for(&args.master, &[]).await?;
    let dir = tempfile::tempdir()?;
    write_small_files(dir.path(), args.tasks)?;
    let location = format!("{}/", dir.path().display());
    session
        .execute_sql(&format!(
            "CREATE EXTERNAL TABLE small STORED AS PARQUET LOCATION '{location}'"
        ))
        .await?;
    let iterations = args.iterations.max(1);
    let time = |sql: &'static str| {
        let session = session.clone();
        async move {
            run_faisca(&session, sql).await?;
            let mut times = Vec::with_capacity(iterations);
            let mut tasks = 0;
            for _ in 0..iterations {
                let t = Instant::now();
                tasks = run_faisca(&session, sql).await?.2;
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((median(&times), tasks))
        }
    };
    let (empty, _) = time("SELECT 1").await?;
    // All files in one task (they pack), then one task per file.
    session
        .execute_sql("SET faisca.files.openCostInBytes = 0")
        .await?;
    let (one, one_tasks) = time("SELECT sum(v) FROM small").await?;
    session
        .execute_sql("SET faisca.files.maxPartitionBytes = 1")
        .await?;
    let (many, many_tasks) = time("SELECT sum(v) FROM small").await?;
    let per_task = (ms(many) - ms(one)) / (many_tasks.saturating_sub(one_tasks).max(1)) as f64;
    println!("empty job (SELECT 1)          {:>8.3} ms", ms(empty));
    println!(
        "scan, {one_tasks:>3} task(s) + final    {:>8.3} ms",
        ms(one)
    );
    println!(
        "scan, {many_tasks:>3} tasks + final       {:>8.3} ms",
        ms(many)
    );
    println!("per extra task                {per_task:>8.3} ms");
    let report = OverheadReport {
        master: args.master.clone(),
        machine: machine(),
        iterations,
        empty_job_median_ms: ms(empty),
        one_task_median_ms: ms(one),
        many_tasks: many_tasks as usize,
        many_tasks_median_ms: ms(many),
        per_task_overhead_ms: per_task,
    };
    write_json(&args.output, &report)?;
    session.stop().await;
    Ok(())
}

fn write_small_files(dir: &Path, count: usize) -> Result<()> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    for i in 0..count {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )?;
        let file = std::fs::File::create(dir.join(format!("part-{i:05}.parquet")))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
        w.write(&batch)?;
        w.close()?;
    }
    Ok(())
}
