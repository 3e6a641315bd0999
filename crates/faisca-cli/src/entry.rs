//! [`main`]: the `faisca` binary's entry point, as a function.

use crate::{Cli, Interrupted, run};

/// The whole `faisca` command: parse the command line, run it, exit with its status. A program
/// with its own functions registers them (`faisca::udf`) and then calls this, so that its binary
/// runs as driver, executor and client with the same functions.
pub fn main() {
    let cli = <Cli as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAISCA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
