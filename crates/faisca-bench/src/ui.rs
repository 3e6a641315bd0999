//! `faisca bench ui`: what watching a cluster costs. TPC-H on `local[N]` with the web UI, its
//! metrics, the executors' task logs and the event log (to local disk) on and a client polling the
//! REST API every 100 ms, against all of it off — alternating, same run, paired by iteration — in process CPU time and
//! wall time; then the driver's memory over many finished jobs, with the UI's retention limits
//! holding.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{machine, median, process_cpu};
use crate::tpch::{data, queries};

/// `faisca bench ui`.
#[derive(Debug, clap::Args)]
pub struct UiBenchArgs {
    /// Scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub sf: f64,
    /// Directory of TPC-H data (generated there if missing; default: the cache directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Executors (one core each) of the local cluster.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Queries to run, e.g. 1,6 (default: all 22).
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<usize>,
    /// Paired runs of the queries, each with everything on and with everything off (0: only
    /// the memory run, in a process that ran nothing before it).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Finished jobs of the memory run (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// How often the client polls the REST API.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub poll: Duration,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/ui.json")]
    pub output: PathBuf,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    faisca_common::config::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, Serialize)]
struct Pair {
    off_ms: f64,
    on_ms: f64,
    off_cpu_ms: f64,
    on_cpu_ms: f64,
    polls: u64,
}

#[derive(Debug, Serialize)]
struct MemoryPoint {
    jobs: usize,
    rss_mib: f64,
    jobs_listed: usize,
    task_log_mib: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    sf: f64,
    executors: usize,
    queries: Vec<usize>,
    poll_ms: f64,
    pairs: Vec<Pair>,
    cpu_ratio_median: f64,
    wall_ratio_median: f64,
    memory: Vec<MemoryPoint>,
}

/// `GET` of `url` (`http://host:port/path`): the body, when the answer is 200.
async fn get(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").context("an http:// URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}

/// What the job page of a browser asks every `poll`: the job list, then the newest job and
/// each of its stages. Returns the polls made when `stop` fires.
async fn poll_ui(ui: String, poll: Duration, mut stop: tokio::sync::oneshot::Receiver<()>) -> u64 {
    let mut polls = 0;
    let mut ticker = tokio::time::interval(poll);
    let Ok(apps) = get(&format!("{ui}/api/v1/applications")).await else {
        return 0;
    };
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap_or_default();
    let api = format!(
        "{ui}/api/v1/applications/{}",
        apps[0]["id"].as_str().unwrap_or_default()
    );
    loop {
        tokio::select! {
            _ = &mut stop => return polls,
            _ = ticker.tick() => {}
        }
        let Ok(jobs) = get(&format!("{api}/jobs")).await else {
            continue;
        };
        polls += 1;
        let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap_or_default();
        let Some(job) = jobs.get(0) else { continue };
        let _ = get(&format!("{api}/jobs/{}", job["jobId"])).await;
        for stage in job["stageIds"].as_array().into_iter().flatten() {
            let _ = get(&format!("{api}/stages/{stage}?details=false")).await;
        }
    }
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

async fn cluster(
    args: &UiBenchArgs,
    on: bool,
    events: &std::path::Path,
) -> Result<faisca::Session> {
    let mut conf = vec![
        format!("faisca.ui.enabled={on}"),
        "faisca.ui.port=0".to_string(),
    ];
    if on {
        conf.push("faisca.eventLog.enabled=true".to_string());
        conf.push(format!("faisca.eventLog.dir={}", events.display()));
    } else {
        // Executors keep no task log lines either (the layer is installed in both arms).
        conf.push("faisca.ui.taskLogLines=0".to_string());
    }
    let session = crate::session(
        &format!("local[{}]", args.executors),
        "faisca bench ui",
        &conf,
    )
    .await?;
    session
        .wait_for_executors(args.executors, Duration::from_secs(60))
        .await?;
    Ok(session)
}

/// One pass over the queries: wall time, CPU time, polls.
async fn pass(
    args: &UiBenchArgs,
    dir: &std::path::Path,
    wanted: &[usize],
    on: bool,
    events: &std::path::Path,
) -> Result<(Duration, Duration, u64)> {
    let session = cluster(args, on, events).await?;
    for ddl in data::create_tables_sql(dir) {
        session.execute_sql(&ddl).await?;
    }
    let poller = match (on, session.ui_url().await?) {
        (true, Some(ui)) => {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            Some((stop, tokio::spawn(poll_ui(ui, args.poll, stopped))))
        }
        _ => None,
    };
    let cpu_before = process_cpu().unwrap_or_default();
    let start = Instant::now();
    for q in wanted {
        let sql = queries::query(*q).expect("checked");
        let result = session
            .execute_sql(sql)
            .await
            .with_context(|| format!("Q{q}"))?;
        faisca::client::collect(result.batches)
            .await
            .with_context(|| format!("Q{q}"))?;
    }
    let wall = start.elapsed();
    let cpu = process_cpu().unwrap_or_default().saturating_sub(cpu_before);
    let polls = match poller {
        Some((stop, task)) => {
            let _ = stop.send(());
            task.await.unwrap_or(0)
        }
        None => 0,
    };
    session.stop().await;
    Ok((wall, cpu, polls))
}

/// `faisca bench ui`.
pub async fn ui(args: UiBenchArgs) -> Result<()> {
    let (dir, _) = data::prepare(args.data.clone(), args.sf).await?;
    let wanted = crate::cluster::wanted_queries(&args.queries)?;
    let events = tempfile::tempdir()?;
    eprintln!(
        "TPC-H SF{} on local[{}]: web UI + metrics + event log + REST polling every {:?} against all off, {} paired runs",
        args.sf, args.executors, args.poll, args.iterations
    );
    let mut pairs = Vec::new();
    if args.iterations > 0 {
        // Warm-up: the page cache and the allocator, once each way.
        pass(&args, &dir, &wanted, false, events.path()).await?;
        pass(&args, &dir, &wanted, true, events.path()).await?;
        println!(
            "{:>4} {:>10} {:>10} {:>12} {:>12} {:>7} {:>7} {:>6}",
            "run", "off ms", "on ms", "off cpu ms", "on cpu ms", "wall", "cpu", "polls"
        );
    }
    for i in 0..args.iterations {
        // Alternate which goes first.
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut results = [(Duration::ZERO, Duration::ZERO, 0); 2];
        for on in order {
            results[on as usize] = pass(&args, &dir, &wanted, on, events.path()).await?;
        }
        let (off, on) = (results[0], results[1]);
        let pair = Pair {
            off_ms: off.0.as_secs_f64() * 1000.0,
            on_ms: on.0.as_secs_f64() * 1000.0,
            off_cpu_ms: off.1.as_secs_f64() * 1000.0,
            on_cpu_ms: on.1.as_secs_f64() * 1000.0,
            polls: on.2,
        };
        println!(
            "{i:>4} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>7.3} {:>7.3} {:>6}",
            pair.off_ms,
            pair.on_ms,
            pair.off_cpu_ms,
            pair.on_cpu_ms,
            pair.on_ms / pair.off_ms.max(1e-9),
            pair.on_cpu_ms / pair.off_cpu_ms.max(1e-9),
            pair.polls
        );
        pairs.push(pair);
    }
    let ratio = |f: fn(&Pair) -> f64| {
        let r: Vec<Duration> = pairs
            .iter()
            .map(|p| Duration::from_secs_f64(f(p)))
            .collect();
        median(&r).as_secs_f64()
    };
    let cpu_ratio_median = ratio(|p| p.on_cpu_ms / p.off_cpu_ms.max(1e-9));
    let wall_ratio_median = ratio(|p| p.on_ms / p.off_ms.max(1e-9));
    if !pairs.is_empty() {
        println!("median on/off: cpu {cpu_ratio_median:.3}, wall {wall_ratio_median:.3}");
    }

    let mut memory = Vec::new();
    if args.jobs > 0 {
        let session = cluster(&args, true, events.path()).await?;
        for ddl in data::create_tables_sql(&dir) {
            session.execute_sql(&ddl).await?;
        }
        let ui = session.ui_url().await?.context("the UI is on")?;
        let apps: serde_json::Value =
            serde_json::from_str(&get(&format!("{ui}/api/v1/applications")).await?)?;
        let api = format!(
            "{ui}/api/v1/applications/{}",
            apps[0]["id"].as_str().unwrap_or_default()
        );
        let step = (args.jobs / 10).max(1);
        println!(
            "{:>7} {:>9} {:>12} {:>13}",
            "jobs", "RSS MiB", "jobs listed", "task log MiB"
        );
        for done in 0..=args.jobs {
            if done % step == 0 || done == args.jobs {
                let listed: serde_json::Value =
                    serde_json::from_str(&get(&format!("{api}/jobs")).await?)?;
                let point = MemoryPoint {
                    jobs: done,
                    rss_mib: rss_mib(),
                    jobs_listed: listed.as_array().map(Vec::len).unwrap_or(0),
                    // What the local executors (`local-0`, …) keep of their tasks' logs.
                    task_log_mib: (0..args.executors)
                        .map(|i| faisca::executor::task_logs::held_bytes(&format!("local-{i}")))
                        .sum::<usize>() as f64
                        / (1 << 20) as f64,
                };
                println!(
                    "{:>7} {:>9.1} {:>12} {:>13.1}",
                    point.jobs, point.rss_mib, point.jobs_listed, point.task_log_mib
                );
                memory.push(point);
            }
            if done < args.jobs {
                let result = session
                    .execute_sql("SELECT n_regionkey, count(*) FROM nation GROUP BY n_regionkey")
                    .await?;
                faisca::client::collect(result.batches).await?;
            }
        }
        session.stop().await;
    }
    let report = Report {
        machine: machine(),
        sf: args.sf,
        executors: args.executors,
        queries: wanted,
        poll_ms: args.poll.as_secs_f64() * 1000.0,
        pairs,
        cpu_ratio_median,
        wall_ratio_median,
        memory,
    };
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&report)?)?;
    eprintln!("report: {}", args.output.display());
    Ok(())
}
