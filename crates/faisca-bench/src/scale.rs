//! `faisca bench scale`: from a backlog of tasks to the first task on a new executor pod.
//!
//! A driver in this process runs its executors as pods of the Kubernetes stand-in
//! (`faisca-kube-standin`: an API server and a kubelet that starts the real `faisca executor`
//! process of each pod on this host), with dynamic allocation from one executor. Each run
//! submits a TPC-H lineitem aggregation whose 16 reduce tasks are slowed down (a backlog on one
//! slot) and times:
//!
//! * **decision and API**: the backlog begins (tasks wait while the slot is busy, as the job's
//!   status shows it, polled every 5 ms) → the pod's create request reaches the API server
//!   (includes the configured `schedulerBacklogTimeout`, reported beside it, and the allocation
//!   and launcher ticks);
//! * **stand-in kubelet**: create → the process is started (no image pull, no scheduling: this
//!   is not a measure of Kubernetes' own pod start);
//! * **process start and registration**: process started → the executor registered;
//! * **first task**: registered → a task runs there (the driver launches one as the executor
//!   registers, so this is below the 5 ms polling resolution).
//!
//! After each run the new executor idles past `executorIdleTimeout` and is released before the
//! next. Medians over the runs go to stdout and a JSON report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use faisca::Session;
use faisca::driver::{DriverOptions, DriverServer};
use faisca_kube_standin::{KubeApi, Kubelet, KubeletOptions, kubeconfig};
use serde::Serialize;

use crate::cluster::{machine, median};
use crate::tpch::data;

/// `faisca bench scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleBenchArgs {
    /// Scale factor of the TPC-H data scanned.
    #[arg(long, default_value_t = 0.01)]
    pub sf: f64,
    /// Directory of TPC-H data (generated there if missing; default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Timed scale-ups.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// `faisca.dynamicAllocation.schedulerBacklogTimeout`.
    #[arg(long, default_value = "100ms")]
    pub backlog_timeout: String,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/scale.json")]
    pub output: PathBuf,
}

/// One scale-up's parts, in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    /// Submission to the first time tasks waited for a slot (planning, the map stage): context,
    /// not part of the scale-up.
    submit_to_backlog_ms: f64,
    decision_and_api_ms: f64,
    kubelet_ms: f64,
    process_start_ms: f64,
    first_task_ms: f64,
    total_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    backlog_timeout: String,
    iterations: usize,
    median: Sample,
    runs: Vec<Sample>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `faisca bench scale`.
pub async fn scale(args: ScaleBenchArgs) -> Result<()> {
    let (dir, _) = data::prepare(args.data.clone(), args.sf).await?;
    let work = tempfile::tempdir()?;
    let api = KubeApi::default();
    let (url, server) = api.serve().await;
    let kubeconfig_path = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig_path, kubeconfig(&url, "default"))?;
    let program = std::env::current_exe().context("finding this program")?;
    let _kubelet = Kubelet::start(
        api.clone(),
        KubeletOptions {
            bin_dir: program
                .parent()
                .context("this program's directory")?
                .to_path_buf(),
            dir: work.path().join("pods"),
            capacity: 8,
            env: vec![],
        },
    );
    let config = faisca::FaiscaConfig::from_pairs([
        ("faisca.dynamicAllocation.enabled", "true"),
        ("faisca.dynamicAllocation.minExecutors", "1"),
        ("faisca.dynamicAllocation.maxExecutors", "2"),
        ("faisca.dynamicAllocation.executorIdleTimeout", "1s"),
        (
            "faisca.dynamicAllocation.schedulerBacklogTimeout",
            args.backlog_timeout.as_str(),
        ),
        ("faisca.kubernetes.allocation.batch.delay", "50ms"),
        ("faisca.executor.memory", "1g"),
    ])?;
    let master = faisca_kubernetes::Master {
        api_server: Some(url.clone()),
        kubeconfig: Some(kubeconfig_path.clone()),
    };
    let launcher =
        faisca_kubernetes::KubernetesLauncher::connect(&master, &config, "faisca-bench0").await?;
    let driver = DriverServer::start(DriverOptions {
        bind: "127.0.0.1:0".parse()?,
        advertise_host: None,
        config,
        health_bind: None,
        launcher: Some(Box::new(launcher)),
        ui_by_default: false,
        metrics_bind: None,
    })
    .await?;
    let address = format!("faisca://{}", driver.address());
    let session = Session::builder()
        .master(&address)
        .config("faisca.shuffle.partitions", "16")
        .config("faisca.test.taskDelay", "*:200ms")
        .build()
        .await?;
    session
        .wait_for_executors(1, Duration::from_secs(60))
        .await?;
    for ddl in data::create_tables_sql(&dir) {
        session.execute_sql(&ddl).await?;
    }
    let client = session.client().clone();
    let mut runs = Vec::new();
    for i in 0..=args.iterations {
        // One executor before each run.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let registered = client
                .executors()
                .await?
                .into_iter()
                .filter(|e| e.is_registered())
                .count();
            if registered == 1 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the cluster did not come back to one executor (still {registered})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before: Vec<String> = client
            .executors()
            .await?
            .into_iter()
            .filter(|e| e.is_registered())
            .map(|e| e.executor_id)
            .collect();
        let created_before = api.with_store(|s| s.pods_created.len());
        let submitted = Instant::now();
        let sql = "select l_returnflag, l_linestatus, count(*), sum(l_quantity) from lineitem group by 1, 2";
        let query = async {
            let result = session.execute_sql(sql).await?;
            faisca::client::collect(result.batches).await
        };
        tokio::pin!(query);
        let mut backlog_at = None;
        let mut registered_at = None;
        let mut first_task_at = None;
        let mut new_id = None;
        loop {
            tokio::select! {
                rows = &mut query => { rows?; break; }
                _ = tokio::time::sleep(Duration::from_millis(5)), if first_task_at.is_none() => {
                    if backlog_at.is_none() {
                        // Tasks waiting while the slots are busy.
                        let waiting = client.list_jobs().await?.iter().any(|job| {
                            job.state == faisca::jobs::JobState::Running
                                && job.stages.iter().any(|s| s.running > 0 && s.tasks > s.done + s.running)
                        });
                        if waiting {
                            backlog_at = Some(Instant::now());
                        }
                    }
                    for e in client.executors().await? {
                        if !e.is_registered() || before.contains(&e.executor_id) {
                            continue;
                        }
                        if registered_at.is_none() {
                            registered_at = Some(Instant::now());
                            new_id = Some(e.executor_id.clone());
                        }
                        if e.running_tasks > 0 && new_id.as_deref() == Some(e.executor_id.as_str()) {
                            first_task_at = Some(Instant::now());
                        }
                    }
                }
            }
        }
        let (Some(backlog), Some(registered), Some(first_task), Some(id)) =
            (backlog_at, registered_at, first_task_at, new_id)
        else {
            bail!("run {i}: no new executor ran a task before the query ended");
        };
        let (created, started) = api.with_store(|s| {
            let created = s.pods_created[created_before..]
                .iter()
                .find(|(_, n)| *n == id)
                .map(|(t, _)| *t);
            let started = s
                .pods_started
                .iter()
                .find(|(_, n)| *n == id)
                .map(|(t, _)| *t);
            (created, started)
        });
        let (Some(created), Some(started)) = (created, started) else {
            bail!("run {i}: the stand-in has no record of pod {id}");
        };
        let sample = Sample {
            submit_to_backlog_ms: ms(backlog.saturating_duration_since(submitted)),
            decision_and_api_ms: ms(created.saturating_duration_since(backlog)),
            kubelet_ms: ms(started.saturating_duration_since(created)),
            process_start_ms: ms(registered.saturating_duration_since(started)),
            first_task_ms: ms(first_task.saturating_duration_since(registered)),
            total_ms: ms(first_task.saturating_duration_since(backlog)),
        };
        if i == 0 {
            eprintln!("warm-up: {sample:?}");
        } else {
            eprintln!("run {i}: {sample:?}");
            runs.push(sample);
        }
    }
    session.stop().await;
    driver.shutdown().await;
    server.abort();
    let pick = |f: fn(&Sample) -> f64| {
        let durations: Vec<Duration> = runs
            .iter()
            .map(|s| Duration::from_secs_f64(f(s) / 1000.0))
            .collect();
        ms(median(&durations))
    };
    let med = Sample {
        submit_to_backlog_ms: pick(|s| s.submit_to_backlog_ms),
        decision_and_api_ms: pick(|s| s.decision_and_api_ms),
        kubelet_ms: pick(|s| s.kubelet_ms),
        process_start_ms: pick(|s| s.process_start_ms),
        first_task_ms: pick(|s| s.first_task_ms),
        total_ms: pick(|s| s.total_ms),
    };
    println!(
        "backlog → first task on a new executor pod (medians of {} runs; Kubernetes stand-in, not Kubernetes' own pod start):",
        runs.len()
    );
    println!(
        "  decision and API (incl. schedulerBacklogTimeout {}): {:>8.1} ms",
        args.backlog_timeout, med.decision_and_api_ms
    );
    println!(
        "  stand-in kubelet (create → process started):  {:>8.1} ms",
        med.kubelet_ms
    );
    println!(
        "  process start and registration:               {:>8.1} ms",
        med.process_start_ms
    );
    println!(
        "  registered → first task (5 ms polling):       {:>8.1} ms",
        med.first_task_ms
    );
    println!(
        "  total, backlog → first task:                  {:>8.1} ms",
        med.total_ms
    );
    println!(
        "  (before the backlog: submission, planning, the map stage: {:.1} ms)",
        med.submit_to_backlog_ms
    );
    let report = Report {
        machine: machine(),
        backlog_timeout: args.backlog_timeout.clone(),
        iterations: runs.len(),
        median: med,
        runs,
    };
    crate::cluster::write_json(&args.output, &report)
}
