//! Binding the driver: control gRPC and Arrow Flight on one port, and (optionally) the
//! plain-HTTP health endpoints on another.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use faisca_common::auth::Authenticator;
use faisca_common::tls::ServerTls;
use faisca_common::{FaiscaConfig, Result};
use faisca_engine::shuffle::FlightClients;
use faisca_proto::driver_service_server::DriverServiceServer;
use faisca_proto::health::{self, HealthServer, Readiness, ReadinessSender};
use faisca_proto::rpc;
use tokio::sync::oneshot;

use crate::actor::{DriverHandle, DriverSettings, spawn_actor};
use crate::flight::DriverFlightService;
use crate::launcher::{ExecutorLauncher, LauncherHandle};
use crate::service::DriverServiceImpl;
use faisca_ui::UiServer;

/// How to start a driver.
pub struct DriverOptions {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Host name clients and executors should use, when it differs from the bound address.
    pub advertise_host: Option<String>,
    /// Driver-level configuration (message sizes, timeouts).
    pub config: FaiscaConfig,
    /// Where to serve the plain-HTTP health endpoints (`/healthz`, `/readyz`); none if `None`.
    pub health_bind: Option<SocketAddr>,
    /// What starts executors for this driver (`faisca driver --executors N`); none: executors
    /// are started separately and register themselves.
    pub launcher: Option<Box<dyn ExecutorLauncher>>,
    /// Whether the web UI is served when `faisca.ui.enabled` is not set (`faisca driver`: yes;
    /// a `local[N]` session: no).
    pub ui_by_default: bool,
    /// Where to serve `/metrics` alone (`--metrics-port`); none if `None`.
    pub metrics_bind: Option<SocketAddr>,
}

/// A running driver.
pub struct DriverServer {
    address: String,
    /// `faisca://` or `faisca+tls://`.
    scheme: &'static str,
    handle: DriverHandle,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    actor: tokio::task::JoinHandle<()>,
    readiness: ReadinessSender,
    health: Option<HealthServer>,
    /// The launcher's task: it ends once the actor let go and the executors it started exited.
    launcher: Option<tokio::task::JoinHandle<()>>,
    /// How long the launcher may take to stop its executors.
    launcher_stop_timeout: std::time::Duration,
    /// The web UI and/or the metrics-only port, when either is served.
    ui: Option<UiServer>,
    /// The event log, when it is written.
    event_log: Option<faisca_ui::EventLogWriter>,
    /// Where the driver's events go, when anything listens.
    bus: Option<faisca_ui::EventBus>,
}

/// With authentication on and TLS off, credentials cross every connection in clear: allowed only
/// when the driver listens on, and is reached at, loopback addresses.
fn refuse_credentials_in_clear(options: &DriverOptions) -> Result<()> {
    let advertised_loopback = options.advertise_host.as_deref().is_none_or(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if options.bind.ip().is_loopback() && advertised_loopback {
        return Ok(());
    }
    Err(faisca_common::Error::user(format!(
        "authentication is on (a cluster secret is set) but TLS is off, and the driver would listen on {}{}: the secret and the users' tokens would cross the network in clear. Serve TLS (--tls-cert and --tls-key), or bind and advertise a loopback address",
        options.bind,
        options
            .advertise_host
            .as_deref()
            .map(|h| format!(" (advertised as {h})"))
            .unwrap_or_default()
    )))
}

impl DriverServer {
    /// Bind and start serving.
    pub async fn start(options: DriverOptions) -> Result<Self> {
        let readiness = health::readiness("starting");
        let health = HealthServer::start_if_asked(
            options.health_bind,
            &readiness,
            &options.config,
            "driver",
        )
        .await?;
        let tls = rpc::server_tls(&options.config, "driver")?;
        let auth = Authenticator::new(&options.config.auth_settings()?)?;
        if auth.is_some() && tls.is_none() {
            refuse_credentials_in_clear(&options)?;
        }
        let transport = rpc::ClientTransport::from_config(&options.config, false)?;
        let (listener, address) =
            rpc::bind(options.bind, options.advertise_host.as_deref(), "driver").await?;
        let scheme = if tls.is_some() { "faisca+tls" } else { "http" };
        let (launcher, launcher_task) = match options.launcher {
            Some(launcher) => {
                let (handle, task) =
                    LauncherHandle::start(launcher, format!("{scheme}://{address}"));
                (Some(handle), Some(task))
            }
            None => (None, None),
        };
        let app_id = faisca_ui::events::app_id(
            faisca_ui::events::now_ms(),
            uuid::Uuid::new_v4().as_u128() as u16,
        );
        let limit = options.config.max_message_size();
        let clients = Arc::new(FlightClients::new(limit, transport));
        let serve_ui = options.config.ui_enabled(options.ui_by_default);
        let ui = if serve_ui || options.metrics_bind.is_some() {
            let ui_options = faisca_ui::UiOptions {
                settings: options.config.ui_settings(),
                serve_ui,
                metrics_bind: options.metrics_bind,
                task_logs: Some(crate::task_logs::fetcher(clients.clone())),
                tls: ServerTls::new(
                    &options.config.tls_settings()?,
                    "web UI",
                    faisca_common::tls::ALPN_HTTP1,
                )?,
                access: faisca_ui::Access::from_config(&options.config, auth.clone())?,
            };
            Some(UiServer::start(ui_options).await?)
        } else {
            None
        };
        let event_log = start_event_log(&options.config, &app_id).await?;
        let mut bus = faisca_ui::EventBus::default();
        if let Some(ui) = &ui {
            bus = bus.with_sink(ui.sink());
            if let Some(url) = ui.url() {
                tracing::info!(app = %app_id, "web UI at {url}");
            }
        }
        if let Some(log) = &event_log {
            bus = bus.with_sink(log.sink());
        }
        let bus = (!bus.is_empty()).then_some(bus);
        if let Some(bus) = &bus {
            bus.post(crate::actor::application_start(
                &app_id,
                &address,
                &options.config,
            ));
        }
        let mut settings = DriverSettings::from_config(&options.config);
        settings.allowed_locations = options.config.allowed_locations(auth.is_some());
        settings.ui_url = ui.as_ref().and_then(UiServer::url);
        let (handle, actor) = spawn_actor(settings, launcher, bus.clone());
        let control =
            DriverServiceServer::new(DriverServiceImpl::new(handle.clone(), clients.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
        let flight = FlightServiceServer::new(rpc::FlightDoGetService(DriverFlightService::new(
            handle.clone(),
            clients,
        )))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let guard = rpc::PeerGuard::new(tls.as_deref(), auth);
        let incoming = rpc::incoming(listener, tls);
        let server = tokio::spawn(async move {
            let result = rpc::server()
                .layer(tonic::service::InterceptorLayer::new(guard))
                .add_service(control)
                .add_service(flight)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("driver server stopped: {e}");
            }
        });
        // The listener is bound and the services are up: sessions are accepted from now on.
        readiness.send_replace(Readiness::Ready);
        Ok(DriverServer {
            address,
            scheme: if scheme == "http" {
                "faisca"
            } else {
                "faisca+tls"
            },
            handle,
            shutdown: Some(shutdown_tx),
            server,
            actor,
            readiness,
            health,
            launcher: launcher_task,
            launcher_stop_timeout: options.config.executor_stop_timeout(),
            ui,
            event_log,
            bus,
        })
    }

    /// `host:port` clients and executors connect to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Where the health endpoints are served, when they are.
    pub fn health_address(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(HealthServer::address)
    }

    /// The web UI's URL (`http://127.0.0.1:4040`), when it is served.
    pub fn ui_url(&self) -> Option<String> {
        self.ui.as_ref().and_then(UiServer::url)
    }

    /// Where the metrics-only port listens, when it is served.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.ui.as_ref().and_then(UiServer::metrics_address)
    }

    /// The metrics-only port's `/metrics` URL (`https://` with TLS), when it is served.
    pub fn metrics_url(&self) -> Option<String> {
        self.ui.as_ref().and_then(UiServer::metrics_url)
    }

    /// The address with its scheme: `faisca://host:port`, or `faisca+tls://host:port` when the
    /// driver serves TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// A handle to the actor (for in-process tools and tests).
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Stop serving and stop the actor; executors the driver launched are stopped (SIGTERM,
    /// then SIGKILL after `faisca.executor.stopTimeout`).
    pub async fn shutdown(mut self) {
        self.readiness
            .send_replace(Readiness::NotReady("the driver is stopping"));
        if let Some(bus) = &self.bus {
            bus.post(faisca_ui::Event::ApplicationEnd {
                time: faisca_ui::events::now_ms(),
            });
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Dropping the actor's state closes the executors' streams and lets go of the launcher.
        self.actor.abort();
        let _ = (&mut self.actor).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
        if let Some(log) = self.event_log.take() {
            // The last segment and the run's completion mark.
            log.finish(std::time::Duration::from_secs(10)).await;
        }
        if let Some(launcher) = self.launcher.as_mut() {
            let margin = std::time::Duration::from_secs(5);
            if tokio::time::timeout(self.launcher_stop_timeout + margin, launcher)
                .await
                .is_err()
            {
                tracing::warn!("the executor launcher did not stop in time");
            }
        }
    }
}

/// The event log writer of this run, when `faisca.eventLog.enabled`.
async fn start_event_log(
    config: &FaiscaConfig,
    app_id: &str,
) -> Result<Option<faisca_ui::EventLogWriter>> {
    let Some(dir) = config.event_log_dir()? else {
        return Ok(None);
    };
    let (store, path) =
        faisca_connectors::stores::open_location(config, dir, "faisca.eventLog.dir")?;
    let (max_bytes, max_interval) = config.event_log_rolling();
    let rolling = faisca_ui::eventlog::Rolling {
        max_bytes: max_bytes as usize,
        max_interval,
    };
    let writer = faisca_ui::EventLogWriter::start(store, &path, app_id, rolling).await?;
    tracing::info!(app = %app_id, "event log in {dir}/{app_id}");
    Ok(Some(writer))
}

impl Drop for DriverServer {
    fn drop(&mut self) {
        self.actor.abort();
        self.server.abort();
        // Its children are killed with it (`kill_on_drop`).
        if let Some(launcher) = &self.launcher {
            launcher.abort();
        }
    }
}
