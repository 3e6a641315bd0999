//! The command line: the commands and where each one's arguments and body live (a module per
//! command family; the benchmarks in `faisca-bench`).

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Faísca: a Spark-like distributed dataframe engine on Arrow.
#[derive(Debug, Parser)]
#[command(name = "faisca", version, about)]
pub struct Cli {
    /// How log lines are written on stderr: `text` for people, `json` (one object per line,
    /// with the job, stage and task ids of the line's task as fields) for log collectors.
    /// Executors a driver launches inherit FAISCA_LOG_FORMAT, not the flag.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FAISCA_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a driver: owns sessions, plans queries and schedules tasks on executors.
    Driver(crate::commands::DriverArgs),
    /// Run an executor: registers with a driver and runs its tasks.
    Executor(crate::commands::ExecutorArgs),
    /// Run SQL statements on a cluster (or on local[N]) and print the rows of the last query.
    Sql(crate::commands::SqlArgs),
    /// Run a SQL script as named jobs, showing each job's progress; exits non-zero if one fails.
    Submit(crate::jobs::SubmitArgs),
    /// List the driver's jobs, or show one job's stages, task attempts and failures.
    Status(crate::jobs::StatusArgs),
    /// Cancel a running job: its tasks stop and its shuffle data is removed.
    Kill(crate::jobs::KillArgs),
    /// Serve the web UI and REST API, read-only, for the runs of an event log.
    History(crate::history::HistoryArgs),
    /// Benchmarks against single-process DataFusion.
    Bench(faisca_bench::BenchArgs),
    /// Generate TPC-H data, start local[2] and run a few TPC-H queries.
    Demo(crate::demo::DemoArgs),
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
        Command::History(args) => crate::history::run(args).await,
        Command::Bench(args) => faisca_bench::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_help_names_both_deploy_modes_and_the_kubernetes_master() {
        let help = Cli::try_parse_from(["faisca", "submit", "--help"])
            .unwrap_err()
            .to_string();
        for text in [
            "--deploy-mode",
            "client",
            "cluster",
            "k8s://https://HOST:PORT",
        ] {
            assert!(help.contains(text), "{text} missing from:\n{help}");
        }
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
