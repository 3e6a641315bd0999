//! `faisca bench tls`: what TLS and authentication cost. TPC-H on `local[N]` with every port on
//! TLS (the session's channel, the executors' registration, shuffle fetches between executors,
//! results) and a cluster secret checked on every call, against the same cluster in plain TCP
//! without authentication — alternating, same run, paired by iteration — in
//! process CPU time and wall time; and a shuffle-bound join (lineitem ⋈ orders on the order key,
//! both sides hash-partitioned across the executors) timed the same way, as the shuffle's
//! throughput over TLS against plain. The certificates are the caller's (`scripts/bench.sh`
//! makes them with `openssl`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cluster::{machine, median, process_cpu};
use crate::tpch::{data, queries};

/// `faisca bench tls`.
#[derive(Debug, clap::Args)]
pub struct TlsBenchArgs {
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
    /// Paired runs, each with TLS and without.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// PEM certificate of the cluster (it must name 127.0.0.1).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: PathBuf,
    /// Its PEM private key.
    #[arg(long, value_name = "PEM")]
    pub tls_key: PathBuf,
    /// The PEM CA that signed it.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/tls.json")]
    pub output: PathBuf,
}

/// The shuffle-bound query: both inputs are hash-partitioned on the order key and sent across.
const SHUFFLE_QUERY: &str = "SELECT count(*), sum(length(l_comment)) + sum(length(o_comment)) \
     FROM lineitem JOIN orders ON l_orderkey = o_orderkey";

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Times {
    tpch_ms: f64,
    tpch_cpu_ms: f64,
    shuffle_ms: f64,
    shuffle_cpu_ms: f64,
}

#[derive(Debug, Serialize)]
struct Pair {
    plain: Times,
    tls: Times,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    sf: f64,
    executors: usize,
    queries: Vec<usize>,
    pairs: Vec<Pair>,
    tpch_cpu_ratio_median: f64,
    tpch_wall_ratio_median: f64,
    shuffle_wall_ratio_median: f64,
    shuffle_cpu_ratio_median: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One pass: the queries, then the shuffle-bound join, on a fresh cluster.
async fn pass(
    args: &TlsBenchArgs,
    dir: &std::path::Path,
    wanted: &[usize],
    tls: bool,
) -> Result<Times> {
    let mut conf = vec![
        "faisca.ui.enabled=false".to_string(),
        "faisca.ui.taskLogLines=0".to_string(),
    ];
    if tls {
        for (key, path) in [
            ("faisca.ssl.certFile", &args.tls_cert),
            ("faisca.ssl.keyFile", &args.tls_key),
            ("faisca.ssl.caFile", &args.tls_ca),
        ] {
            conf.push(format!("{key}={}", path.display()));
        }
        // Authentication on too: every call carries and checks the cluster secret.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        conf.push(format!(
            "faisca.authenticate.secret=bench-{}-{nanos}",
            std::process::id()
        ));
        // The TPC-H files are local: allowed explicitly, as authentication turns them off.
        conf.push("faisca.sql.allowLocalFiles=true".to_string());
    }
    let master = format!("local[{}]", args.executors);
    let session = crate::session(&master, "faisca bench tls", &conf).await?;
    session
        .wait_for_executors(args.executors, Duration::from_secs(60))
        .await?;
    for ddl in data::create_tables_sql(dir) {
        session.execute_sql(&ddl).await?;
    }
    let mut times = Times::default();
    let run = |sql: &'static str, what: String| {
        let session = session.clone();
        async move {
            let cpu = process_cpu().unwrap_or_default();
            let start = Instant::now();
            let result = session.execute_sql(sql).await.context(what.clone())?;
            faisca::client::collect(result.batches)
                .await
                .context(what)?;
            Ok::<_, anyhow::Error>((
                start.elapsed(),
                process_cpu().unwrap_or_default().saturating_sub(cpu),
            ))
        }
    };
    for q in wanted {
        let (wall, cpu) = run(queries::query(*q).expect("checked"), format!("Q{q}")).await?;
        times.tpch_ms += ms(wall);
        times.tpch_cpu_ms += ms(cpu);
    }
    let (wall, cpu) = run(SHUFFLE_QUERY, "the shuffle join".to_string()).await?;
    times.shuffle_ms = ms(wall);
    times.shuffle_cpu_ms = ms(cpu);
    session.stop().await;
    Ok(times)
}

/// `faisca bench tls`.
pub async fn tls(args: TlsBenchArgs) -> Result<()> {
    let (dir, _) = data::prepare(args.data.clone(), args.sf).await?;
    let wanted = crate::cluster::wanted_queries(&args.queries)?;
    eprintln!(
        "TPC-H SF{} on local[{}], every port on TLS with authentication against plain, {} paired runs",
        args.sf, args.executors, args.iterations
    );
    // Warm-up: the page cache and the allocator, once each way.
    pass(&args, &dir, &wanted, false).await?;
    pass(&args, &dir, &wanted, true).await?;
    println!(
        "{:>4} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}",
        "run", "plain ms", "tls ms", "plain cpu", "tls cpu", "cpu", "shuf ms", "tls shuf", "shuf"
    );
    let mut pairs = Vec::new();
    for i in 0..args.iterations {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut results = [Times::default(); 2];
        for tls in order {
            results[tls as usize] = pass(&args, &dir, &wanted, tls).await?;
        }
        let pair = Pair {
            plain: results[0],
            tls: results[1],
        };
        println!(
            "{i:>4} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.3} {:>9.0} {:>9.0} {:>7.3}",
            pair.plain.tpch_ms,
            pair.tls.tpch_ms,
            pair.plain.tpch_cpu_ms,
            pair.tls.tpch_cpu_ms,
            pair.tls.tpch_cpu_ms / pair.plain.tpch_cpu_ms.max(1e-9),
            pair.plain.shuffle_ms,
            pair.tls.shuffle_ms,
            pair.tls.shuffle_ms / pair.plain.shuffle_ms.max(1e-9),
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
    let report = Report {
        machine: machine(),
        sf: args.sf,
        executors: args.executors,
        queries: wanted,
        tpch_cpu_ratio_median: ratio(|p| p.tls.tpch_cpu_ms / p.plain.tpch_cpu_ms.max(1e-9)),
        tpch_wall_ratio_median: ratio(|p| p.tls.tpch_ms / p.plain.tpch_ms.max(1e-9)),
        shuffle_wall_ratio_median: ratio(|p| p.tls.shuffle_ms / p.plain.shuffle_ms.max(1e-9)),
        shuffle_cpu_ratio_median: ratio(|p| {
            p.tls.shuffle_cpu_ms / p.plain.shuffle_cpu_ms.max(1e-9)
        }),
        pairs,
    };
    println!(
        "median TLS/plain: TPC-H cpu {:.3}, wall {:.3}; shuffle join wall {:.3}, cpu {:.3}",
        report.tpch_cpu_ratio_median,
        report.tpch_wall_ratio_median,
        report.shuffle_wall_ratio_median,
        report.shuffle_cpu_ratio_median
    );
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&report)?)?;
    eprintln!("report: {}", args.output.display());
    Ok(())
}
