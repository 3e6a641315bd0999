//! Job control: `faisca submit`, `faisca status`, `faisca kill`, and the progress display.
//!
//! `submit` runs a SQL script's statements in one session. While a statement's job runs, the
//! driver's status of the job is polled and shown: on a terminal one line per stage, redrawn in
//! place; otherwise a plain line whenever a stage's counts change. Ctrl-C kills the job.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use faisca::client::{DriverClient, StatementResult};
use faisca::jobs::{ExecutorStatus, JobInfo, StageInfo};
use faisca::{FaiscaConfig, Session, StreamingQuerySummary};
use faisca_common::config::parse_key_values;
use futures::StreamExt;
use serde_json::json;

use crate::output::{self, Format};
use crate::script::split_statements;

/// Where the driver of `faisca submit` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeployMode {
    /// In the submitting process (with a k8s:// master: executors are pods), or the driver at
    /// --master.
    Client,
    /// In a pod of the cluster (k8s:// masters only): this process follows it to its end.
    Cluster,
}

/// `faisca submit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Masters: faisca://HOST:PORT (a running driver), local[N] (in this process), \
or k8s://https://HOST:PORT (Kubernetes; k8s:// alone: the kubeconfig's server). With k8s://, \
--deploy-mode client (the default) runs the driver here with executor pods, and \
--deploy-mode cluster runs the driver in a pod and follows it, like spark-submit."
)]
pub struct SubmitArgs {
    /// faisca://host:port, http://host:port, local[N], or k8s://https://host:port.
    #[arg(long)]
    pub master: String,
    /// client: the driver runs here (or at --master); cluster: in a pod (k8s:// only).
    #[arg(long, value_enum, default_value = "client")]
    pub deploy_mode: DeployMode,
    /// With k8s:// in client mode: where the driver listens (pods must reach it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub driver_bind: String,
    /// With k8s:// in client mode: the host name executor pods use to reach the driver.
    #[arg(long)]
    pub driver_advertise_address: Option<String>,
    /// With k8s://: the application id (labels of its pods; default: a new one).
    #[arg(long)]
    pub app_id: Option<String>,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Name of the jobs in `faisca status` (default: the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Output format of the last query's rows.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// The SQL script (statements separated by `;`).
    #[arg(value_name = "JOB.sql")]
    pub file: PathBuf,
}

/// `faisca status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The driver: faisca://host:port or http://host:port.
    #[arg(long)]
    pub master: String,
    /// Show this job or streaming query (default: list all jobs and streaming queries).
    #[arg(value_name = "JOB_ID|QUERY_ID", conflicts_with = "executors")]
    pub job: Option<String>,
    /// List the registered executors (active or decommissioning) instead of jobs.
    #[arg(long)]
    pub executors: bool,
    /// Print JSON (one object per job and line) instead of text.
    #[arg(long)]
    pub json: bool,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Client configuration `key=value` (repeatable), e.g. faisca.rpc.connectTimeout.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// `faisca kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The driver: faisca://host:port or http://host:port.
    #[arg(long)]
    pub master: String,
    /// The job to cancel, or the streaming query to stop.
    #[arg(value_name = "JOB_ID|QUERY_ID")]
    pub job: String,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Client configuration `key=value` (repeatable), e.g. faisca.rpc.connectTimeout.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// The command was interrupted with Ctrl-C (the binary exits with status 130).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// `faisca submit`.
pub async fn submit(mut args: SubmitArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read SQL file {}", args.file.display()))?;
    let statements = split_statements(&text);
    if statements.is_empty() {
        bail!(
            "no SQL statement in {} (it holds only whitespace and comments)",
            args.file.display()
        );
    }
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let kubernetes = faisca_kubernetes::Master::parse(&args.master)?;
    match (&kubernetes, args.deploy_mode) {
        (None, DeployMode::Cluster) => bail!(
            "--deploy-mode cluster needs a Kubernetes master (--master k8s://https://HOST:PORT), not '{}'",
            args.master
        ),
        (Some(master), DeployMode::Cluster) => {
            return submit_to_cluster(master, &args, &name, statements.join(";\n")).await;
        }
        _ => {}
    }
    // With k8s:// in client mode, the driver runs in this process with executor pods.
    let mut server = None;
    let master = match &kubernetes {
        Some(master) => {
            let mut config = FaiscaConfig::from_pairs(parse_key_values(&args.conf, "--conf")?)?;
            crate::commands::kubernetes_defaults(&mut config)?;
            let launcher =
                crate::commands::kubernetes_launcher(master, &config, args.app_id.clone()).await?;
            let started = faisca::driver::DriverServer::start(faisca::driver::DriverOptions {
                bind: crate::commands::socket_addr(&args.driver_bind, "--driver-bind")?,
                advertise_host: args.driver_advertise_address.clone(),
                config,
                health_bind: None,
                launcher: Some(launcher),
                ui_by_default: true,
                metrics_bind: None,
            })
            .await?;
            crate::commands::warn_if_pods_cannot_reach(started.address());
            if let Some(url) = started.ui_url() {
                eprintln!("faisca driver web UI at {url}");
            }
            let address = format!("faisca://{}", started.address());
            server = Some(started);
            address
        }
        None => args.master.clone(),
    };
    let result = async {
        let session =
            faisca_bench::session(&master, &format!("faisca submit {name}"), &args.conf).await?;
        let result = run_script(&session, &statements, &name, &args).await;
        session.stop().await;
        result
    }
    .await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    result
}

/// `--deploy-mode cluster`: a driver pod runs the script; follow it and exit with its code.
async fn submit_to_cluster(
    master: &faisca_kubernetes::Master,
    args: &SubmitArgs,
    name: &str,
    script: String,
) -> Result<()> {
    let pairs = parse_key_values(&args.conf, "--conf")?;
    let config = FaiscaConfig::from_pairs(pairs.clone())?;
    let app_id = args
        .app_id
        .clone()
        .unwrap_or_else(faisca_kubernetes::new_app_id);
    let file_name = args
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job.sql".into());
    let submission = faisca_kubernetes::submit::ClusterSubmission {
        name: name.to_string(),
        file_name,
        script,
        conf: pairs,
        format: clap::ValueEnum::to_possible_value(&args.format)
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| "table".into()),
    };
    let follow =
        faisca_kubernetes::submit::submit_cluster(master, &config, &app_id, &submission, |line| {
            eprintln!("{line}")
        });
    let code = tokio::select! {
        code = follow => code?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("no longer following application {app_id}: its driver pod keeps running (kubectl delete pod {app_id}-driver stops it)");
            return Err(Interrupted.into());
        }
    };
    if code != 0 {
        bail!("the driver of application {app_id} failed (exit code {code})");
    }
    Ok(())
}

async fn run_script(
    session: &Session,
    statements: &[String],
    name: &str,
    args: &SubmitArgs,
) -> Result<()> {
    crate::commands::wait_for_an_executor(session).await?;
    let mut last: Option<(SchemaRef, Vec<RecordBatch>)> = None;
    for (i, statement) in statements.iter().enumerate() {
        let result = session
            .execute_sql_named(statement, name)
            .await
            .with_context(|| format!("statement {} failed", i + 1))?;
        let schema = result.schema.clone();
        let batches = match result.job_id.clone() {
            Some(job) => {
                let interval = session.config().progress_interval();
                run_job(session.client(), &job, result, interval).await?
            }
            None => faisca::client::collect(result.batches).await?,
        };
        if !schema.fields().is_empty() {
            last = Some((schema, batches));
        }
    }
    if let Some((schema, batches)) = last {
        let mut out = std::io::stdout().lock();
        output::write(&mut out, args.format, &schema, &batches)?;
    }
    Ok(())
}

/// Read a job's rows while showing its progress; Ctrl-C kills it.
async fn run_job(
    client: &DriverClient,
    job: &str,
    result: StatementResult,
    interval: Duration,
) -> Result<Vec<RecordBatch>> {
    eprintln!("job {job} submitted");
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut rows = result.batches;
    let mut batches = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    // One listener for the whole loop: a Ctrl-C that arrives between two turns of the loop
    // would be lost by a listener made afresh on each turn.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome: Result<(), faisca_common::Error> = loop {
        tokio::select! {
            batch = rows.next() => match batch {
                Some(Ok(b)) => batches.push(b),
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
            _ = ticker.tick() => {
                if let Ok(info) = client.job(job).await {
                    progress.show(&info);
                }
            }
            _ = &mut ctrl_c => {
                eprintln!("cancelling job {job}");
                drop(rows);
                match client.kill_job(job).await {
                    Ok(_) => eprintln!("job {job} cancelled"),
                    Err(e) => eprintln!("could not cancel job {job}: {e}"),
                }
                return Err(Interrupted.into());
            }
        }
    };
    drop(rows);
    let info = client.job(job).await.ok();
    if let Some(info) = &info {
        progress.show(info);
    }
    match outcome {
        Ok(()) => {
            let count: usize = batches.iter().map(|b| b.num_rows()).sum();
            let elapsed = info.map(|i| i.elapsed).unwrap_or_default();
            eprintln!(
                "job {job} SUCCEEDED in {:.3} s, {count} row(s)",
                elapsed.as_secs_f64()
            );
            Ok(batches)
        }
        Err(e) => {
            eprintln!("job {job} FAILED");
            Err(anyhow::Error::new(e).context(format!("job {job} failed")))
        }
    }
}

/// The progress display of one job.
struct Progress {
    terminal: bool,
    /// Lines drawn last time (terminal) or the last line printed per stage (plain).
    last: Vec<String>,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Progress {
            terminal,
            last: Vec::new(),
        }
    }

    fn show(&mut self, info: &JobInfo) {
        let lines: Vec<String> = info
            .stages
            .iter()
            .map(|s| stage_line(s, info.elapsed))
            .collect();
        let mut err = std::io::stderr().lock();
        if self.terminal {
            if !self.last.is_empty() {
                let _ = write!(err, "\x1b[{}A", self.last.len());
            }
            for line in &lines {
                let _ = writeln!(err, "\x1b[2K{line}");
            }
            self.last = lines;
        } else {
            // One plain line per stage whose counts changed (the elapsed time alone does not count).
            self.last.resize(lines.len(), String::new());
            for ((stage, line), slot) in info.stages.iter().zip(&lines).zip(&mut self.last) {
                let key = stage_counts(stage);
                if *slot != key {
                    let _ = writeln!(err, "{line}");
                    *slot = key;
                }
            }
        }
        let _ = err.flush();
    }
}

fn stage_counts(s: &StageInfo) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        s.done, s.running, s.failed_attempts, s.rerun_tasks, s.tasks
    )
}

/// `stage 1: 3/8 tasks done, 2 running, 4.1 s` plus failures and re-runs when there are some.
fn stage_line(s: &StageInfo, elapsed: Duration) -> String {
    let mut line = format!(
        "stage {}: {}/{} tasks done, {} running, {:.1} s",
        s.stage_id,
        s.done,
        s.tasks,
        s.running,
        elapsed.as_secs_f64()
    );
    if s.failed_attempts > 0 {
        line.push_str(&format!(", {} failed attempt(s)", s.failed_attempts));
    }
    if s.rerun_tasks > 0 {
        line.push_str(&format!(", {} task(s) re-run", s.rerun_tasks));
    }
    line
}

async fn connect(master: &str, conf: &[String]) -> Result<DriverClient> {
    let config = FaiscaConfig::from_pairs(parse_key_values(conf, "--conf")?)?;
    Ok(DriverClient::connect(master, &config).await?)
}

/// `faisca status`.
pub async fn status(mut args: StatusArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let client = connect(&args.master, &args.conf).await?;
    let mut out = std::io::stdout().lock();
    if args.executors {
        let executors = client.executors().await?;
        if args.json {
            for e in &executors {
                writeln!(out, "{}", executor_json(e))?;
            }
        } else {
            write_executors(&mut out, &executors)?;
        }
        return Ok(());
    }
    match &args.job {
        Some(job) => match client.job(job).await {
            Ok(info) => {
                if args.json {
                    writeln!(out, "{}", job_json(&info))?;
                } else {
                    write_job(&mut out, &info)?;
                }
            }
            // Not a job: a streaming query's id, or neither (the job's error says so).
            Err(job_error) => match client.streaming_query(job).await {
                Ok(query) => {
                    if args.json {
                        writeln!(out, "{}", query_json(&query))?;
                    } else {
                        write_query(&mut out, &query)?;
                    }
                }
                Err(_) => return Err(job_error.into()),
            },
        },
        None => {
            let jobs = client.list_jobs().await?;
            let queries = client.streaming_queries(false).await?;
            if args.json {
                for info in &jobs {
                    writeln!(out, "{}", job_json(info))?;
                }
                for query in &queries {
                    writeln!(out, "{}", query_json(query))?;
                }
            } else {
                write_job_list(&mut out, &jobs)?;
                if !queries.is_empty() {
                    writeln!(out)?;
                    write_query_list(&mut out, &queries)?;
                }
                if let Some(url) = client.ui_url().await? {
                    writeln!(out, "\nWeb UI: {url}")?;
                }
            }
        }
    }
    Ok(())
}

fn write_query_list(out: &mut dyn Write, queries: &[StreamingQuerySummary]) -> Result<()> {
    writeln!(
        out,
        "{:<36}  {:<8}  {:>6}  {:>10}  {:>10}  {:<24}  NAME / SINK",
        "STREAMING QUERY", "STATE", "BATCH", "INPUT", "ROWS/S", "WATERMARK"
    )?;
    for q in queries {
        let (batch, input, rate, watermark) = match &q.last_progress {
            Some(p) => (
                p.batch_id.to_string(),
                p.num_input_rows.to_string(),
                format!("{:.1}", p.processed_rows_per_second),
                p.event_time.get("watermark").cloned().unwrap_or_default(),
            ),
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        let label = if q.name.is_empty() {
            q.sink.clone()
        } else {
            format!("{}: {}", q.name, q.sink)
        };
        writeln!(
            out,
            "{:<36}  {:<8}  {batch:>6}  {input:>10}  {rate:>10}  {watermark:<24}  {label}",
            q.id,
            q.state()
        )?;
    }
    Ok(())
}

fn write_query(out: &mut dyn Write, q: &StreamingQuerySummary) -> Result<()> {
    writeln!(out, "streaming query: {}", q.id)?;
    writeln!(out, "run:        {}", q.run_id)?;
    if !q.name.is_empty() {
        writeln!(out, "name:       {}", q.name)?;
    }
    writeln!(out, "state:      {} ({})", q.state(), q.status)?;
    writeln!(out, "sink:       {}", q.sink)?;
    writeln!(out, "checkpoint: {}", q.checkpoint)?;
    if !q.exception.is_empty() {
        writeln!(out, "error:      {}", q.exception)?;
    }
    if let Some(p) = &q.last_progress {
        writeln!(out, "last progress:\n{}", p.to_json())?;
    }
    Ok(())
}

/// A streaming query as `faisca status --json` prints it.
pub fn query_json(q: &StreamingQuerySummary) -> serde_json::Value {
    serde_json::json!({
        "streamingQuery": q.id,
        "runId": q.run_id,
        "name": q.name,
        "state": q.state(),
        "status": q.status,
        "exception": q.exception,
        "sink": q.sink,
        "checkpoint": q.checkpoint,
        "lastProgress": q
            .last_progress
            .as_ref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p.to_json()).ok()),
    })
}

/// `faisca kill`.
pub async fn kill(mut args: KillArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let client = connect(&args.master, &args.conf).await?;
    match client.kill_job(&args.job).await {
        Ok(info) => eprintln!("job {} cancelled", info.job_id),
        // Not a job: stop the streaming query of that id, or report the job's error.
        Err(job_error) => match client.stop_streaming_query(&args.job).await {
            Ok(query) => eprintln!("streaming query {} stopped ({})", query.id, query.status),
            Err(_) => return Err(job_error.into()),
        },
    }
    Ok(())
}

fn write_executors(out: &mut dyn Write, executors: &[ExecutorStatus]) -> Result<()> {
    writeln!(
        out,
        "{:<24}  {:<15}  {:>5}  {:>7}  {:>10}  ADDRESS",
        "EXECUTOR", "STATE", "CORES", "RUNNING", "MEMORY"
    )?;
    for e in executors.iter().filter(|e| e.is_registered()) {
        writeln!(
            out,
            "{:<24}  {:<15}  {:>5}  {:>7}  {:>9}M  {}",
            e.executor_id,
            e.state,
            e.cores,
            e.running_tasks,
            e.memory_bytes >> 20,
            e.address
        )?;
    }
    let departed: Vec<&ExecutorStatus> = executors.iter().filter(|e| !e.is_registered()).collect();
    if !departed.is_empty() {
        writeln!(out, "\nDeparted recently (oldest first):")?;
        writeln!(out, "{:<24}  {:<15}  REASON", "EXECUTOR", "STATE")?;
        for e in departed {
            writeln!(out, "{:<24}  {:<15}  {}", e.executor_id, e.state, e.reason)?;
        }
    }
    Ok(())
}

/// An executor as one JSON object.
pub fn executor_json(e: &ExecutorStatus) -> serde_json::Value {
    json!({
        "executor_id": e.executor_id,
        "state": e.state,
        "address": e.address,
        "cores": e.cores,
        "memory_bytes": e.memory_bytes,
        "running_tasks": e.running_tasks,
        "reason": e.reason,
    })
}

fn write_job_list(out: &mut dyn Write, jobs: &[JobInfo]) -> Result<()> {
    writeln!(
        out,
        "{:<36}  {:<10}  {:>7}  {:>11}  {:>9}  NAME / SQL",
        "JOB", "STATE", "STAGES", "TASKS", "ELAPSED"
    )?;
    for job in jobs {
        let stages_done = job.stages.iter().filter(|s| s.done == s.tasks).count();
        let tasks: u32 = job.stages.iter().map(|s| s.tasks).sum();
        let done: u32 = job.stages.iter().map(|s| s.done).sum();
        let label = if job.name.is_empty() {
            job.sql.clone()
        } else {
            format!("{}: {}", job.name, job.sql)
        };
        writeln!(
            out,
            "{:<36}  {:<10}  {:>7}  {:>11}  {:>8.1}s  {}",
            job.job_id,
            job.state.name(),
            format!("{stages_done}/{}", job.stages.len()),
            format!("{done}/{tasks}"),
            job.elapsed.as_secs_f64(),
            label
        )?;
    }
    Ok(())
}

fn write_job(out: &mut dyn Write, job: &JobInfo) -> Result<()> {
    writeln!(out, "job:      {}", job.job_id)?;
    if !job.name.is_empty() {
        writeln!(out, "name:     {}", job.name)?;
    }
    writeln!(out, "state:    {}", job.state.name())?;
    writeln!(out, "elapsed:  {:.3} s", job.elapsed.as_secs_f64())?;
    writeln!(out, "session:  {}", job.session_id)?;
    writeln!(out, "sql:      {}", job.sql)?;
    if !job.error.is_empty() {
        writeln!(out, "error:    {}", job.error)?;
    }
    writeln!(
        out,
        "\n{:>5}  {:>5}  {:>5}  {:>7}  {:>8}  {:>6}  {:>6}  {:>13}  {:<10}  INPUTS",
        "STAGE",
        "TASKS",
        "DONE",
        "RUNNING",
        "ATTEMPTS",
        "FAILED",
        "RE-RUN",
        "FETCH-FAILURES",
        "OUTPUT"
    )?;
    for s in &job.stages {
        writeln!(
            out,
            "{:>5}  {:>5}  {:>5}  {:>7}  {:>8}  {:>6}  {:>6}  {:>13}  {:<10}  {:?}",
            s.stage_id,
            s.tasks,
            s.done,
            s.running,
            s.attempts,
            s.failed_attempts,
            s.rerun_tasks,
            s.fetch_failures,
            s.output,
            s.inputs
        )?;
    }
    if !job.metrics.is_empty() {
        writeln!(out, "\nmetrics:")?;
        for (name, n) in &job.metrics {
            writeln!(out, "  {name}: {n}")?;
        }
    }
    if !job.failures.is_empty() {
        writeln!(out, "\nfailed attempts (most recent last):")?;
        for f in &job.failures {
            writeln!(
                out,
                "  stage {} task {} attempt {} on {}: {}",
                f.stage_id, f.partition, f.attempt, f.executor_id, f.message
            )?;
        }
    }
    Ok(())
}

/// A job as one JSON object (for scripts and tests).
pub fn job_json(job: &JobInfo) -> serde_json::Value {
    json!({
        "job_id": job.job_id,
        "session_id": job.session_id,
        "user": job.user,
        "name": job.name,
        "sql": job.sql,
        "state": job.state.name(),
        "error": job.error,
        "submitted_unix_ms": job.submitted_unix_ms,
        "elapsed_ms": job.elapsed.as_millis() as u64,
        "stages": job.stages.iter().map(|s| json!({
            "stage_id": s.stage_id,
            "tasks": s.tasks,
            "done": s.done,
            "running": s.running,
            "attempts": s.attempts,
            "failed_attempts": s.failed_attempts,
            "rerun_tasks": s.rerun_tasks,
            "fetch_failures": s.fetch_failures,
            "output": s.output,
            "inputs": s.inputs,
        })).collect::<Vec<_>>(),
        "failures": job.failures.iter().map(|f| json!({
            "stage_id": f.stage_id,
            "partition": f.partition,
            "attempt": f.attempt,
            "executor_id": f.executor_id,
            "message": f.message,
        })).collect::<Vec<_>>(),
        "metrics": job.metrics,
    })
}
