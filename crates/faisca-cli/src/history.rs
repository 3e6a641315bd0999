//! `faisca history`: serve the web UI and REST API, read-only, for the runs of an event log.

use std::net::IpAddr;

use anyhow::{Context, Result};
use faisca::FaiscaConfig;
use faisca_common::config::parse_key_values;

/// `faisca history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The event log directory the drivers wrote (faisca.eventLog.dir): an object-store URL or a
    /// local path.
    #[arg(long, value_name = "URL")]
    pub event_log_dir: String,
    /// Port of the UI (when taken, the next of faisca.port.maxRetries ports).
    #[arg(long, value_name = "PORT", default_value_t = 18080)]
    pub ui_port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Configuration `key=value` (repeatable): store options (faisca.store.*), retention
    /// (faisca.ui.retained*), faisca.history.updateInterval.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// TLS files.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
}

/// Serve until Ctrl-C or SIGTERM.
pub async fn run(mut args: HistoryArgs) -> Result<()> {
    args.tls.add_to(&mut args.conf);
    let config = FaiscaConfig::from_pairs(parse_key_values(&args.conf, "--conf")?)?;
    let mut settings = config.ui_settings();
    settings.port = args.ui_port;
    settings.bind = args.bind;
    // A local directory must exist (an object store's "directory" exists once it holds a run).
    let local = args
        .event_log_dir
        .strip_prefix("file://")
        .or((!args.event_log_dir.contains("://")).then_some(args.event_log_dir.as_str()));
    if let Some(path) = local
        && !std::path::Path::new(path).is_dir()
    {
        anyhow::bail!(
            "--event-log-dir {path}: no such directory; expected the faisca.eventLog.dir the drivers wrote to"
        );
    }
    let (store, dir) =
        faisca_connectors::stores::open_location(&config, &args.event_log_dir, "--event-log-dir")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let server = faisca_ui::HistoryServer::start(
        store,
        dir,
        &args.event_log_dir,
        &settings,
        config.history_update_interval(),
        faisca_common::tls::ServerTls::new(
            &config.tls_settings()?,
            "history server",
            faisca_common::tls::ALPN_HTTP1,
        )?,
        faisca_ui::Access::from_config(
            &config,
            faisca_common::auth::Authenticator::new(&config.auth_settings()?)?,
        )?,
    )
    .await?;
    eprintln!(
        "faisca history server at {} (runs of {})",
        server.url(),
        args.event_log_dir
    );
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
