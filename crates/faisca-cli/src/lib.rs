//! The `faisca` command-line tool, as a library so that users can build their own `faisca` binary
//! (with their own functions linked in) and tests can call commands directly.
//!
//! * [`cli`]: the command line (clap), one subcommand per module below.
//! * [`commands`]: `driver`, `executor`, `sql`.
//! * [`jobs`]: `submit` (with a live progress display), `status`, `kill`.
//! * [`bench`] and [`demo`]: TPC-H on a cluster against single-process DataFusion, and the
//!   embedded demo; both use [`tpch`] (data generated in-process, the 22 queries).
//!   [`bench_recovery`] times a query while an executor process is killed; [`bench_scan`]
//!   measures Parquet decode throughput; [`bench_write`] partitioned writes; [`bench_kafka`]
//!   Kafka reads against a plain librdkafka consumer; [`local_kafka`] starts a noida-db broker for
//!   them and the examples.
//! * [`output`]: result formats (table, CSV, JSON lines); [`script`]: splitting SQL scripts.
//!
//! Only results go to stdout; logs, progress and errors go to stderr.

pub mod bench;
pub mod bench_kafka;
pub mod bench_kernels;
pub mod bench_recovery;
pub mod bench_scan;
pub mod bench_write;
pub mod cli;
pub mod commands;
pub mod demo;
mod entry;
pub mod jobs;
pub mod local_kafka;
pub mod output;
pub mod script;
pub mod tpch;

pub use cli::{Cli, run};
pub use entry::main;
pub use jobs::Interrupted;
