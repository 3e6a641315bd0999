//! The `faisca` command-line tool, as a library so that users can build their own `faisca` binary
//! (with their own functions linked in) and tests can call commands directly.
//!
//! * [`cli`]: the command line (clap): which command runs where.
//! * [`commands`]: `driver`, `executor`, `sql`, with their arguments.
//! * [`jobs`]: `submit` (with a live progress display), `status`, `kill`, with their arguments.
//! * [`demo`]: the embedded demo (TPC-H data generated in-process, a local cluster).
//! * [`history`]: `faisca history`, the web UI of the runs an event log holds.
//! * `faisca bench …` is the `faisca-bench` crate, linked here.
//! * [`tls_args`]: `--tls-cert`, `--tls-key`, `--tls-ca` of every command that serves or connects.
//! * [`output`]: result formats (table, CSV, JSON lines); [`script`]: splitting SQL scripts.
//!
//! The CLI talks to a cluster only through the `faisca` library (sessions, the driver client and
//! its job information); it does not use the planner or the protocol crate.
//!
//! Only results go to stdout; logs, progress and errors go to stderr.

pub mod cli;
pub mod commands;
pub mod demo;
mod entry;
pub mod history;
pub mod jobs;
pub mod output;
pub mod script;
pub mod tls_args;

pub use cli::{Cli, run};
pub use entry::main;
pub use jobs::Interrupted;
