//! The command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::output::Format;

/// Faísca: a Spark-like distributed dataframe engine on Arrow.
#[derive(Debug, Parser)]
#[command(name = "faisca", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a driver: owns sessions, plans queries and schedules tasks on executors.
    Driver(DriverArgs),
    /// Run an executor: registers with a driver and runs its tasks.
    Executor(ExecutorArgs),
    /// Run SQL statements on a cluster (or on local[N]) and print the rows of the last query.
    Sql(SqlArgs),
    /// Run a SQL script as named jobs, showing each job's progress; exits non-zero if one fails.
    Submit(SubmitArgs),
    /// List the driver's jobs, or show one job's stages, task attempts and failures.
    Status(StatusArgs),
    /// Cancel a running job: its tasks stop and its shuffle data is removed.
    Kill(KillArgs),
    /// Benchmarks against single-process DataFusion.
    Bench(BenchArgs),
    /// Generate TPC-H data, start local[2] and run a few TPC-H queries.
    Demo(DemoArgs),
}

/// `faisca driver`.
#[derive(Debug, clap::Args)]
pub struct DriverArgs {
    /// Address to listen on for clients and executors (gRPC and Arrow Flight share it).
    #[arg(long, default_value = "127.0.0.1:7077")]
    pub bind: String,
    /// Host name clients and executors use to reach the driver (default: the bound IP).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Configuration `key=value` (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// `faisca executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The driver: faisca://host:port or http://host:port.
    #[arg(long)]
    pub driver: String,
    /// Task slots (default: the machine's cores).
    #[arg(long)]
    pub cores: Option<u32>,
    /// Memory for tasks, with Spark's suffixes (512m, 4g = GiB); operators spill beyond it.
    #[arg(long, default_value = "4g")]
    pub memory: String,
    /// Work directory; the executor keeps its files in its own subdirectory.
    #[arg(long, default_value = "/tmp/faisca-work")]
    pub work_dir: PathBuf,
    /// Address for the executor's Flight server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// Host name other processes use to reach this executor (e.g. the pod IP).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Executor id (default: random).
    #[arg(long)]
    pub id: Option<String>,
    /// Configuration `key=value` (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// `faisca sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// SQL text (statements separated by `;`).
    #[arg(
        short = 'e',
        long = "execute",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub execute: Option<String>,
    /// A file of SQL statements.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Print the distributed plan of the last statement instead of running it.
    #[arg(long)]
    pub explain: bool,
}

/// `faisca submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long)]
    pub master: String,
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
    /// Show this job (default: list all jobs).
    #[arg(value_name = "JOB_ID")]
    pub job: Option<String>,
    /// Print JSON (one object per job and line) instead of text.
    #[arg(long)]
    pub json: bool,
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
    /// The job to cancel.
    #[arg(value_name = "JOB_ID")]
    pub job: String,
    /// Client configuration `key=value` (repeatable), e.g. faisca.rpc.connectTimeout.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// `faisca bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchKind,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// The 22 TPC-H queries on the cluster and in single-process DataFusion, same data, same run.
    Tpch(TpchBenchArgs),
    /// Scheduling overhead: empty-job round trip and per-task cost.
    Overhead(OverheadBenchArgs),
    /// A TPC-H query with and without an executor process killed part-way (recovery cost).
    Recovery(RecoveryBenchArgs),
    /// Parquet decode throughput of TPC-H lineitem (GB/s of Arrow output per core).
    Scan(ScanBenchArgs),
    /// Partitioned Parquet write of TPC-H lineitem, against DataFusion's `COPY`.
    Write(WriteBenchArgs),
    /// Kafka → Arrow batches on noida-db, against a plain librdkafka consumer.
    Kafka(KafkaBenchArgs),
    /// Fused pipelines against DataFusion's filter → projection → partial aggregate chain, on
    /// in-memory TPC-H lineitem batches (Q1 and Q6 shapes), one thread.
    Kernels(KernelsBenchArgs),
}

/// `faisca bench kernels`.
#[derive(Debug, clap::Args)]
pub struct KernelsBenchArgs {
    /// Scale factor of the generated lineitem batches.
    #[arg(long, default_value_t = 0.5)]
    pub sf: f64,
    /// Timed runs per variant (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/kernels.json")]
    pub output: PathBuf,
}

/// `faisca bench kafka`.
#[derive(Debug, clap::Args)]
pub struct KafkaBenchArgs {
    /// Records to produce and read.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 20)]
    pub partitions: i32,
    /// Brokers (default: a noida-db started for the run).
    #[arg(long)]
    pub servers: Option<String>,
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Timed runs per reader (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/kafka.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

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
}

/// Parse `key=value` pairs.
pub fn parse_conf(conf: &[String]) -> Result<Vec<(String, String)>> {
    conf.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| anyhow::anyhow!("invalid --conf '{kv}': expected KEY=VALUE"))
        })
        .collect()
}

/// Where generated data is cached: `$FAISCA_CACHE_DIR`, `$XDG_CACHE_HOME/faisca`,
/// `$HOME/.cache/faisca`, or the system temp directory.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAISCA_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("faisca");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("faisca");
    }
    std::env::temp_dir().join("faisca-cache")
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Driver(args) => crate::commands::driver(args).await,
        Command::Executor(args) => crate::commands::executor(args).await,
        Command::Sql(args) => crate::commands::sql(args).await,
        Command::Submit(args) => crate::jobs::submit(args).await,
        Command::Status(args) => crate::jobs::status(args).await,
        Command::Kill(args) => crate::jobs::kill(args).await,
        Command::Bench(args) => match args.which {
            BenchKind::Tpch(a) => crate::bench::tpch(a).await,
            BenchKind::Overhead(a) => crate::bench::overhead(a).await,
            BenchKind::Recovery(a) => crate::bench_recovery::recovery(a).await,
            BenchKind::Scan(a) => crate::bench_scan::scan(a).await,
            BenchKind::Write(a) => crate::bench_write::write(a).await,
            BenchKind::Kafka(a) => crate::bench_kafka::kafka(a).await,
            BenchKind::Kernels(a) => crate::bench_kernels::kernels(a).await,
        },
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_pairs() {
        assert_eq!(
            parse_conf(&["a.b=1".into(), "c = x=y".into()]).unwrap(),
            vec![("a.b".into(), "1".into()), ("c".into(), "x=y".into())]
        );
        assert!(parse_conf(&["novalue".into()]).is_err());
        assert!(parse_conf(&["=1".into()]).is_err());
    }

    #[test]
    fn command_line_parses() {
        Cli::try_parse_from([
            "faisca", "sql", "--master", "local[3]", "-e", "select 1", "--format", "csv",
        ])
        .unwrap();
        assert!(Cli::try_parse_from(["faisca", "sql"]).is_err());
        Cli::try_parse_from([
            "faisca",
            "executor",
            "--driver",
            "faisca://h:1",
            "--cores",
            "2",
            "--memory",
            "512m",
        ])
        .unwrap();
        Cli::try_parse_from(["faisca", "bench", "tpch", "--sf", "0.1", "--queries", "1,6"])
            .unwrap();
        Cli::try_parse_from([
            "faisca",
            "submit",
            "--master",
            "faisca://h:1",
            "--name",
            "n",
            "--conf",
            "a=b",
            "j.sql",
        ])
        .unwrap();
        assert!(Cli::try_parse_from(["faisca", "submit", "j.sql"]).is_err());
        Cli::try_parse_from(["faisca", "status", "--master", "h:1", "--json"]).unwrap();
        Cli::try_parse_from(["faisca", "status", "--master", "h:1", "job-1"]).unwrap();
        Cli::try_parse_from(["faisca", "kill", "--master", "h:1", "job-1"]).unwrap();
        assert!(Cli::try_parse_from(["faisca", "kill", "--master", "h:1"]).is_err());
    }
}
