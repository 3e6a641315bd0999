//! `faisca driver`, `faisca executor` and `faisca sql`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use faisca::driver::launcher::ExecutorLauncher;
use faisca::driver::launcher::processes::{ProcessLauncher, ProcessLauncherOptions};
use faisca::driver::{DriverOptions, DriverServer};
use faisca::executor::{Executor, ExecutorOptions};
use faisca::{FaiscaConfig, Session};
use faisca_common::config::{parse_bytes, parse_key_values};
use faisca_kubernetes::{KubernetesLauncher, Master};

use crate::output::{self, Format};
use crate::script::split_statements;

/// `faisca driver`.
#[derive(Debug, clap::Args)]
pub struct DriverArgs {
    /// Address to listen on for clients and executors (gRPC and Arrow Flight share it).
    #[arg(long, default_value = "127.0.0.1:7077")]
    pub bind: String,
    /// Host name clients and executors use to reach the driver (default: the bound IP).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Serve plain-HTTP `/healthz` and `/readyz` on this port (same interface as --bind).
    #[arg(long, value_name = "PORT")]
    pub health_port: Option<u16>,
    /// Serve Prometheus metrics (`/metrics` only; HTTPS with --tls-cert) on this port (same interface as
    /// --bind): jobs, stages and tasks by state, task durations, shuffle, memory, executors.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Launch N executors as child processes of the driver on this host (the same as
    /// `--conf faisca.executor.instances=N`; their size: faisca.executor.cores and
    /// faisca.executor.memory). They are replaced when they die and stop with the driver.
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// Work directory of the executors the driver launches.
    #[arg(long, default_value = "/tmp/faisca-work")]
    pub work_dir: PathBuf,
    /// Launch executors as pods: k8s://https://HOST:PORT (the Kubernetes API server; k8s:// alone
    /// takes it from the kubeconfig, or in a pod from its service account). Pods reach the
    /// driver at --advertise-address. faisca.executor.instances (2 by default here) or dynamic
    /// allocation sets how many.
    #[arg(long, value_name = "k8s://URL")]
    pub master: Option<String>,
    /// With a k8s:// master: print the executor pod the driver would create (YAML) and exit,
    /// contacting nothing and binding nothing.
    #[arg(long, requires = "master")]
    pub dry_run: bool,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Configuration `key=value` (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// `faisca executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The driver: faisca://host:port or http://host:port.
    #[arg(long, env = "FAISCA_DRIVER_URL")]
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
    #[arg(long, env = "FAISCA_EXECUTOR_ID")]
    pub id: Option<String>,
    /// Serve plain-HTTP `/healthz` and `/readyz` on this port (same interface as --bind); ready
    /// once registered with the driver.
    #[arg(long, value_name = "PORT")]
    pub health_port: Option<u16>,
    /// Serve Prometheus metrics (`/metrics` only; HTTPS with --tls-cert) on this port (same interface as
    /// --bind): this executor's tasks, shuffle bytes, memory pool and task logs.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Configuration `key=value` (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Exit when standard input reaches its end: a parent that holds the other end of the pipe
    /// (a driver launching its executors) takes the executor with it when it dies, even by
    /// SIGKILL.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
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
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Print the distributed plan of the last statement instead of running it.
    #[arg(long)]
    pub explain: bool,
}

/// The Kubernetes launcher for `master`, checked against the cluster (an error names what is
/// missing: kubeconfig, API server, rights, template).
pub async fn kubernetes_launcher(
    master: &Master,
    config: &FaiscaConfig,
    app_id: Option<String>,
) -> Result<Box<dyn ExecutorLauncher>> {
    let app_id = app_id.unwrap_or_else(faisca_kubernetes::new_app_id);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let launcher = tokio::select! {
        launcher = KubernetesLauncher::connect(master, config, &app_id) => launcher?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted while connecting to Kubernetes"),
        _ = terminate.recv() => bail!("stopped (SIGTERM) while connecting to Kubernetes"),
    };
    eprintln!("faisca driver: executors are pods of application {app_id}");
    Ok(Box::new(launcher))
}

/// With a k8s:// master and neither `faisca.executor.instances` nor dynamic allocation set: two
/// executors, Spark's default on Kubernetes.
pub fn kubernetes_defaults(config: &mut FaiscaConfig) -> Result<()> {
    if config.executor_instances() == 0 && !config.dynamic_allocation().enabled {
        config.set(faisca_common::config::keys::EXECUTOR_INSTANCES.name, "2")?;
    }
    Ok(())
}

/// Warn when executor pods are told to reach the driver at a loopback address: that works only
/// where the pods share this host's network (a stand-in, a single-node test cluster).
pub fn warn_if_pods_cannot_reach(driver_address: &str) {
    let host = driver_address
        .rsplit_once(':')
        .map_or(driver_address, |(host, _)| host)
        .trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        eprintln!(
            "warning: executor pods will reach the driver at {driver_address}, a loopback address; in a cluster, set the driver's advertised address to one pods can reach (--advertise-address, or --driver-advertise-address for faisca submit)"
        );
    }
}

/// Parse `HOST:PORT` for `what` (a flag name in the error).
pub fn socket_addr(text: &str, what: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!("invalid {what} '{text}': expected HOST:PORT, e.g. 127.0.0.1:7077")
        })
}

/// Wait for at least one executor (`faisca.client.executorWaitTimeout`), saying so on stderr
/// when none is registered yet.
pub async fn wait_for_an_executor(session: &Session) -> Result<()> {
    let timeout = session.config().executor_wait_timeout();
    let now = session
        .wait_for_executors(0, std::time::Duration::from_secs(10))
        .await?;
    if !now.is_empty() {
        return Ok(());
    }
    eprintln!(
        "waiting up to {timeout:?} for an executor to register with the driver at {} (faisca.client.executorWaitTimeout)",
        session.driver_address()
    );
    session.wait_for_executors(1, timeout).await?;
    Ok(())
}

/// `faisca driver`: serve until Ctrl-C or SIGTERM.
pub async fn driver(mut args: DriverArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let mut pairs = parse_key_values(&args.conf, "--conf")?;
    if let Some(n) = args.executors {
        pairs.push((
            faisca_common::config::keys::EXECUTOR_INSTANCES
                .name
                .to_string(),
            n.to_string(),
        ));
    }
    let kubernetes = match args.master.as_deref() {
        Some(text) => Some(Master::parse(text)?.with_context(|| {
            format!("invalid --master '{text}': expected k8s://https://HOST:PORT (executors as Kubernetes pods), or k8s:// for the kubeconfig's server")
        })?),
        None => None,
    };
    let mut config = FaiscaConfig::from_pairs(pairs)?;
    if kubernetes.is_some() {
        kubernetes_defaults(&mut config)?;
    }
    let bind = socket_addr(&args.bind, "--bind")?;
    if let Some(master) = &kubernetes
        && args.dry_run
    {
        let host = args
            .advertise_address
            .clone()
            .unwrap_or_else(|| bind.ip().to_string());
        let scheme = if config.tls_settings()?.serves_tls() {
            "faisca+tls"
        } else {
            "http"
        };
        let driver_url = format!("{scheme}://{host}:{}", bind.port());
        let yaml = faisca_kubernetes::dry_run(master, &config, &driver_url)?;
        print!("{yaml}");
        return Ok(());
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let launcher: Option<Box<dyn ExecutorLauncher>> = if let Some(master) = &kubernetes {
        Some(kubernetes_launcher(master, &config, None).await?)
    } else if config.executor_instances() > 0 || config.dynamic_allocation().enabled {
        let program = std::env::current_exe()
            .context("cannot find this program's executable to launch executors with")?;
        let options = ProcessLauncherOptions::from_config(program, args.work_dir, &config)?;
        Some(Box::new(ProcessLauncher::new(options)?))
    } else {
        None
    };
    let server = DriverServer::start(DriverOptions {
        bind,
        advertise_host: args.advertise_address,
        config,
        health_bind: args
            .health_port
            .map(|port| SocketAddr::new(bind.ip(), port)),
        launcher,
        ui_by_default: true,
        metrics_bind: args
            .metrics_port
            .map(|port| SocketAddr::new(bind.ip(), port)),
    })
    .await?;
    eprintln!("faisca driver listening on {}", server.url());
    if kubernetes.is_some() {
        warn_if_pods_cannot_reach(server.address());
    }
    if let Some(url) = server.ui_url() {
        eprintln!("faisca driver web UI at {url}");
    }
    if let Some(health) = server.health_address() {
        eprintln!("faisca driver health endpoints on http://{health}/healthz and /readyz");
    }
    if let Some(metrics) = server.metrics_url() {
        eprintln!("faisca driver metrics on {metrics}");
    }
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    eprintln!("faisca driver stopping");
    server.shutdown().await;
    Ok(())
}

/// `faisca executor`: register and run tasks until the driver goes away, Ctrl-C, or SIGTERM
/// (a graceful decommission when `faisca.decommission.enabled`; a second SIGTERM stops at once).
pub async fn executor(mut args: ExecutorArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let config = FaiscaConfig::from_pairs(parse_key_values(&args.conf, "--conf")?)?;
    let cores = match args.cores {
        Some(0) => bail!("invalid --cores 0: expected at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
    };
    let memory_bytes =
        parse_bytes(&args.memory).map_err(|e| anyhow::anyhow!("invalid --memory: {e}"))?;
    let bind = socket_addr(&args.bind, "--bind")?;
    let decommission_enabled = config.decommission_enabled();
    // Listen before registering: a SIGTERM during start-up must not kill the process bare.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let parent_gone = parent_gone(args.exit_on_stdin_eof);
    tokio::pin!(parent_gone);
    // The id is chosen here so that the executor's directory is known if start-up is cut short.
    let id = args
        .id
        .unwrap_or_else(|| faisca_common::ExecutorId::random().0);
    let own_dir = args.work_dir.join(&id);
    let start = Executor::start(ExecutorOptions {
        driver: args.driver.clone(),
        cores,
        memory_bytes,
        work_dir: args.work_dir,
        bind,
        advertise_host: args.advertise_address,
        executor_id: Some(id),
        config,
        health_bind: args
            .health_port
            .map(|port| SocketAddr::new(bind.ip(), port)),
        metrics_bind: args
            .metrics_port
            .map(|port| SocketAddr::new(bind.ip(), port)),
    });
    let cut_short = |why: &str| {
        // Only a directory this executor made: its id is new (or was given for it alone).
        let _ = std::fs::remove_dir_all(&own_dir);
        eprintln!("faisca executor stopping before it registered ({why})");
    };
    let mut executor = tokio::select! {
        started = start => started?,
        _ = terminate.recv() => {
            cut_short("SIGTERM");
            return Ok(());
        }
        _ = tokio::signal::ctrl_c() => {
            cut_short("Ctrl-C");
            return Ok(());
        }
        () = &mut parent_gone => {
            cut_short("its launching process is gone");
            bail!(PARENT_GONE);
        }
    };
    eprintln!(
        "faisca executor {} registered with {} ({cores} cores, {}), serving shuffle data on {}",
        executor.id(),
        args.driver,
        args.memory,
        executor.flight_address()
    );
    if let Some(metrics) = executor.metrics_url() {
        eprintln!("faisca executor metrics on {metrics}");
    }
    let decommissioner = executor.decommissioner();
    let mut decommissioning = false;
    let result = loop {
        tokio::select! {
            result = executor.wait() => break result.map_err(anyhow::Error::from),
            _ = terminate.recv() => {
                if decommission_enabled && !decommissioning {
                    eprintln!("faisca executor decommissioning (SIGTERM): no new tasks; a second SIGTERM stops at once");
                    decommissioner.start("SIGTERM");
                    decommissioning = true;
                } else {
                    eprintln!("faisca executor stopping (SIGTERM)");
                    break Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("faisca executor stopping");
                break Ok(());
            }
            () = &mut parent_gone => {
                break Err(anyhow::anyhow!(PARENT_GONE));
            }
        }
    };
    executor.shutdown().await;
    result
}

/// Why an executor with `--exit-on-stdin-eof` stopped.
const PARENT_GONE: &str =
    "the process that launched this executor is gone (its standard input closed)";

/// Resolves when standard input reaches its end, if `watch`; never otherwise.
async fn parent_gone(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    // A blocking read on a thread of its own (the runtime does not wait for it at exit).
    let reader = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 64];
        // Anything the parent writes is ignored; the end (or an error) means it is gone.
        while let Ok(n) = stdin.read(&mut buffer) {
            if n == 0 {
                return;
            }
        }
    });
    let _ = reader.await;
}

/// `faisca sql`.
pub async fn sql(mut args: SqlArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let text = match (&args.execute, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read SQL file {}", path.display()))?,
        (None, None) => bail!("give SQL with -e or a file with -f"),
    };
    let statements = split_statements(&text);
    if statements.is_empty() {
        bail!("no SQL statement to run (the input holds only whitespace and comments)");
    }
    let session = faisca_bench::session(&args.master, "faisca sql", &args.conf).await?;
    // Ctrl-C drops the statement's result stream, which cancels its job on the driver.
    let result = tokio::select! {
        result = run_statements(&session, &statements, &args) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: cancelling the running statement");
            Err(crate::jobs::Interrupted.into())
        }
    };
    session.stop().await;
    result
}

async fn run_statements(session: &Session, statements: &[String], args: &SqlArgs) -> Result<()> {
    wait_for_an_executor(session).await?;
    let mut last: Option<(
        datafusion::arrow::datatypes::SchemaRef,
        Vec<datafusion::arrow::record_batch::RecordBatch>,
    )> = None;
    for (i, statement) in statements.iter().enumerate() {
        let is_last = i + 1 == statements.len();
        if is_last && args.explain {
            let text = session.explain_sql(statement).await?;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            return Ok(());
        }
        let started = Instant::now();
        let result = session
            .execute_sql(statement)
            .await
            .with_context(|| format!("statement {} failed", i + 1))?;
        let schema = result.schema.clone();
        let batches = faisca::client::collect(result.batches)
            .await
            .with_context(|| format!("statement {} failed", i + 1))?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        eprintln!(
            "Time taken: {:.3} s, fetched {rows} row(s)",
            started.elapsed().as_secs_f64()
        );
        if !schema.fields().is_empty() {
            last = Some((schema, batches));
        }
    }
    if let Some((schema, batches)) = last {
        let mut out = std::io::stdout().lock();
        output::write(&mut out, args.format, &schema, &batches)?;
    }
    Ok(())
}
