//! [`main`]: the `faisca` binary's entry point, as a function.

use crate::{Cli, Interrupted, run};

/// Stack of each async worker and blocking thread: DataFusion plans, clones and drops deep
/// plans by recursion, and a plan within `faisca.plan.maxDepth` nests that deep
/// (a 2 MiB stack, tokio's default, ends the process at about 2000 chained operators in a debug
/// build). Address space only: pages are used as the recursion reaches them.
pub const WORKER_STACK_BYTES: usize = 64 << 20;

/// The whole `faisca` command: parse the command line, run it, exit with its status. A program
/// with its own functions registers them (`faisca::udf`) and then calls this, so that its binary
/// runs as driver, executor and client with the same functions.
pub fn main() {
    let cli = <Cli as clap::Parser>::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for background tasks (servers, streams) once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = result {
        if e.downcast_ref::<Interrupted>().is_some() {
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Log to standard error in `format` at the level `FAISCA_LOG` asks for, and keep each task's
/// lines for the web UI (at least Faísca's `info` lines, whatever the output's level).
fn init_logging(format: crate::cli::LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let spec = std::env::var("FAISCA_LOG").ok();
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        crate::cli::LogFormat::Text => output.boxed(),
        // A line's span fields (a task's job, stage, partition and attempt) are its own.
        crate::cli::LogFormat::Json => output
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let output_filter = tracing_subscriber::EnvFilter::new(log_filter(spec.as_deref()));
    let task_filter = tracing_subscriber::EnvFilter::new(task_log_filter(spec.as_deref()));
    tracing_subscriber::registry()
        .with(output.with_filter(output_filter))
        .with(faisca::executor::task_logs::TaskLogLayer.with_filter(task_filter))
        .init();
}

/// The filter of the lines kept per task: `FAISCA_LOG`'s when it asks for more than `info`
/// (`debug`, `trace`, a directive list), else `info` for Faísca's crates.
pub fn task_log_filter(spec: Option<&str>) -> String {
    let spec = spec.map(str::trim).unwrap_or("");
    let quiet = ["", "info", "warn", "error", "off"];
    if quiet.iter().any(|q| q.eq_ignore_ascii_case(spec)) {
        log_filter(Some("info"))
    } else {
        log_filter(Some(spec))
    }
}

/// Faísca's crates, whose logs mask secret values (`faisca.redaction.regex`).
const OWN_CRATES: &[&str] = &[
    "faisca",
    "faisca_bench",
    "faisca_cli",
    "faisca_common",
    "faisca_connectors",
    "faisca_driver",
    "faisca_engine",
    "faisca_executor",
    "faisca_pipeline",
    "faisca_planner",
    "faisca_proto",
    "faisca_ui",
];

/// The log filter for `FAISCA_LOG`: a bare level (`debug`) is for Faísca's own crates, others
/// stay at `warn` (DataFusion's and sqlparser's debug logs print statements and plans with
/// their literals, secrets included); anything else is an `EnvFilter` directive list as given
/// (`FAISCA_LOG=datafusion=debug` asks for those logs knowingly). Unset: `warn`.
pub fn log_filter(spec: Option<&str>) -> String {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return "warn".to_string();
    };
    let levels = ["trace", "debug", "info", "warn", "error", "off"];
    if !levels.iter().any(|l| l.eq_ignore_ascii_case(spec)) {
        return spec.to_string();
    }
    let mut filter = "warn".to_string();
    for name in OWN_CRATES {
        filter.push_str(&format!(",{name}={}", spec.to_ascii_lowercase()));
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::{log_filter, task_log_filter};

    #[test]
    fn tasks_keep_at_least_faiscas_info_lines() {
        assert_eq!(task_log_filter(None), log_filter(Some("info")));
        assert_eq!(task_log_filter(Some("warn")), log_filter(Some("info")));
        assert_eq!(task_log_filter(Some("debug")), log_filter(Some("debug")));
        assert_eq!(
            task_log_filter(Some("faisca_engine=trace")),
            "faisca_engine=trace"
        );
    }

    #[test]
    fn a_bare_level_is_for_our_crates() {
        assert_eq!(log_filter(None), "warn");
        let debug = log_filter(Some("DEBUG"));
        assert!(debug.starts_with("warn,faisca=debug,"), "{debug}");
        assert!(debug.contains("faisca_driver=debug"), "{debug}");
        assert_eq!(log_filter(Some("datafusion=debug")), "datafusion=debug");
    }
}
