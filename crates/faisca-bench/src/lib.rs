//! `faisca bench`: Faísca against references (single-process DataFusion, a plain librdkafka
//! consumer) on the same data, in the same run, as a library the `faisca` binary links.
//!
//! * [`cluster`]: `faisca bench tpch` (the 22 TPC-H queries) and `faisca bench overhead` (the
//!   empty-job round trip and per-task cost), plus what every benchmark shares: medians, the
//!   machine's description, JSON reports.
//! * [`recovery`]: a TPC-H query with and without an executor process killed part-way.
//! * [`scale`]: from a backlog to the first task on a new executor pod (Kubernetes stand-in).
//! * [`scan`]: Parquet decode throughput; [`write`]: partitioned Parquet writes.
//! * [`kafka`]: Kafka reads, [`kafka_sink`]: Kafka writes, on a noida-db broker ([`local_kafka`] starts one, also for the
//!   examples and tests).
//! * [`streaming`]: a windowed count as a streaming query against the same count as a batch
//!   query, and the latency of a one-record micro-batch.
//! * [`kernels`]: fused pipelines against DataFusion's operators, on in-memory batches.
//! * [`ui`]: what the web UI, metrics, event log and a REST poller cost, and the driver's memory
//!   over many jobs; [`tls`]: TPC-H and a shuffle-bound join over TLS against plain.
//! * [`tpch`]: TPC-H data generated in-process and the 22 queries (also used by `faisca demo`).
//!
//! Each module owns its command's arguments. Benchmarks are commands, not library code: like the
//! CLI they report errors with `anyhow`, and performance targets live here, never in tests.

pub mod cluster;
pub mod kafka;
pub mod kafka_sink;
pub mod kernels;
pub mod local_kafka;
pub mod recovery;
pub mod scale;
pub mod scan;
pub mod streaming;
pub mod tls;
pub mod tpch;
pub mod ui;
pub mod write;

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use faisca::Session;
use faisca_common::config::parse_key_values;

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
    Tpch(cluster::TpchBenchArgs),
    /// Scheduling overhead: empty-job round trip and per-task cost.
    Overhead(cluster::OverheadBenchArgs),
    /// A TPC-H query with and without an executor process killed part-way (recovery cost).
    Recovery(recovery::RecoveryBenchArgs),
    /// From a backlog to the first task on a new executor pod (Kubernetes stand-in, dynamic
    /// allocation), split into Faísca's part and the process start.
    Scale(scale::ScaleBenchArgs),
    /// Parquet decode throughput of TPC-H lineitem (GB/s of Arrow output per core).
    Scan(scan::ScanBenchArgs),
    /// Partitioned Parquet write of TPC-H lineitem, against DataFusion's `COPY`.
    Write(write::WriteBenchArgs),
    /// Kafka → Arrow batches on noida-db, against a plain librdkafka consumer.
    Kafka(kafka::KafkaBenchArgs),
    /// Rows → Kafka records on noida-db (the sink), against a plain librdkafka producer with
    /// the same durable settings.
    KafkaSink(kafka_sink::KafkaSinkBenchArgs),
    /// Kafka → watermark → windowed count → Parquet as a streaming query (`AvailableNow`, ~20
    /// micro-batches) against one batch query of the same count; and a one-record batch's latency.
    Streaming(streaming::StreamingBenchArgs),
    /// What watching costs: TPC-H with the web UI, metrics, event log and a REST poller on
    /// against all off (paired CPU and wall time), and the driver's memory over many jobs.
    Ui(ui::UiBenchArgs),
    /// What TLS costs: TPC-H with every port on TLS against plain (paired CPU and wall time),
    /// and a shuffle-bound join's time over TLS against plain.
    Tls(tls::TlsBenchArgs),
    /// Fused pipelines against DataFusion's filter → projection → partial aggregate chain, on
    /// in-memory TPC-H lineitem batches (Q1 and Q6 shapes), one thread.
    Kernels(kernels::KernelsBenchArgs),
}

/// Run a benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchKind::Tpch(a) => cluster::tpch(a).await,
        BenchKind::Overhead(a) => cluster::overhead(a).await,
        BenchKind::Recovery(a) => recovery::recovery(a).await,
        BenchKind::Scale(a) => scale::scale(a).await,
        BenchKind::Scan(a) => scan::scan(a).await,
        BenchKind::Write(a) => write::write(a).await,
        BenchKind::Kafka(a) => kafka::kafka(a).await,
        BenchKind::KafkaSink(a) => kafka_sink::kafka_sink(a).await,
        BenchKind::Kernels(a) => kernels::kernels(a).await,
        BenchKind::Streaming(a) => streaming::streaming(a).await,
        BenchKind::Ui(a) => ui::ui(a).await,
        BenchKind::Tls(a) => tls::tls(a).await,
    }
}

/// A session on `master` named `app_name`, with `--conf KEY=VALUE` pairs (the CLI's commands
/// open theirs with it too).
pub async fn session(master: &str, app_name: &str, conf: &[String]) -> Result<Session> {
    let session = Session::builder()
        .master(master)
        .app_name(app_name)
        .configs(parse_key_values(conf, "--conf")?)
        .build()
        .await?;
    Ok(session)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(subcommand)]
        which: BenchKind,
    }

    #[test]
    fn arguments_parse() {
        Command::try_parse_from(["bench", "tpch", "--sf", "0.1", "--queries", "1,6"]).unwrap();
        Command::try_parse_from(["bench", "overhead", "--tasks", "10"]).unwrap();
        assert!(Command::try_parse_from(["bench", "tpch", "--queries", "x"]).is_err());
    }
}
