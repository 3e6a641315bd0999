//! The executor process.
//!
//! An executor binds an Arrow Flight server (ephemeral port by default) that serves the shuffle
//! files its tasks wrote ([`flight`]), then connects to the driver — retrying until the driver is
//! up or `faisca.executor.registrationTimeout` passes — and registers with its cores and memory over
//! one bidirectional stream ([`connection`]). Down that stream come task launches, cancellations
//! and job clean-ups; up it go heartbeats and task results. Each task ([`task`]) takes its stage's
//! decoded plan (prepared once per stage, [`stage_cache`]), executes its partition under the executor's memory pool (with a spill directory under its
//! own subdirectory of the work dir), and writes its shuffle output.
//!
//! Each task's log lines are kept in memory for the driver's web UI ([`task_logs`], served as a
//! Flight ticket); `--metrics-port` serves the executor's own Prometheus metrics ([`metrics`]).
//!
//! Work dir layout: `<work-dir>/<executor-id>/{shuffle,spill}`; the executor's subdirectory is
//! removed when it stops.
//!
//! Leaving on purpose is a *decommission* ([`Decommissioner`], on SIGTERM): the driver is told and
//! sends no new tasks, running tasks finish, and shuffle output stays served until the driver
//! releases the executor or `faisca.executor.decommission.gracePeriod` ends.

pub mod connection;
pub mod flight;
pub mod metrics;
pub mod stage_cache;
pub mod task;
pub mod task_logs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionStateBuilder, TaskContext};
use faisca_common::auth::Authenticator;
use faisca_common::tls::{ALPN_HTTP1, ServerTls};
use faisca_common::{Error, ExecutorId, FaiscaConfig, Result};
use faisca_engine::shuffle::FlightClients;
use faisca_engine::shuffle::memory::MemoryShuffleStore;
use faisca_proto::health::{self, HealthServer, Readiness, ReadinessSender};
use faisca_proto::rpc;
use tokio::sync::{mpsc, oneshot};

/// How to start an executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The driver's address (`faisca://host:port`, `http://host:port` or `host:port`).
    pub driver: String,
    /// Task slots.
    pub cores: u32,
    /// Memory for task execution (the DataFusion memory pool); beyond it operators spill.
    pub memory_bytes: u64,
    /// Directory under which the executor makes its own subdirectory.
    pub work_dir: PathBuf,
    /// Address for the Flight server (`0.0.0.0:0` picks a free port on every interface).
    pub bind: SocketAddr,
    /// Host name other processes use to reach this executor (default: the bound IP, or
    /// 127.0.0.1 when bound to every interface).
    pub advertise_host: Option<String>,
    /// Executor id (default: random).
    pub executor_id: Option<String>,
    /// Executor-level configuration (heartbeats, timeouts, message sizes).
    pub config: FaiscaConfig,
    /// Where to serve the plain-HTTP health endpoints (`/healthz`, `/readyz`); none if `None`.
    pub health_bind: Option<SocketAddr>,
    /// Where to serve Prometheus metrics (`/metrics`); none if `None`.
    pub metrics_bind: Option<SocketAddr>,
}

/// Shared, read-only state of a running executor, handed to every task.
#[derive(Debug)]
pub struct ExecutorContext {
    /// This executor's id.
    pub id: ExecutorId,
    /// Where shuffle files go.
    pub shuffle_root: PathBuf,
    /// Functions and runtime (memory pool, disk manager, object stores) shared by tasks.
    pub base_task_context: Arc<TaskContext>,
    /// Flight clients to other executors.
    pub clients: Arc<FlightClients>,
    /// Executor-level configuration.
    pub config: FaiscaConfig,
    /// Stages prepared for their tasks.
    pub stages: stage_cache::StageCache,
    /// Map outputs kept in memory.
    pub shuffle_memory: Arc<MemoryShuffleStore>,
    /// Task runtimes by the object-store options of their sessions.
    pub runtimes: faisca_engine::session_config::RuntimesByStores,
    /// Where launches and ends of tasks are counted (a no-op without `--metrics-port`).
    pub metrics: metrics::MetricsSink,
}

/// A running executor.
pub struct Executor {
    id: ExecutorId,
    flight_address: String,
    dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    decommission: Decommissioner,
    main: Option<tokio::task::JoinHandle<Result<()>>>,
    server: tokio::task::JoinHandle<()>,
    readiness: Arc<ReadinessSender>,
    health: Option<HealthServer>,
    metrics: Option<(faisca_ui::MetricsServer, tokio::task::JoinHandle<()>)>,
}

impl Executor {
    /// Start the Flight server, register with the driver, and start taking tasks. Returns once
    /// registered, or with the error that prevented it.
    pub async fn start(options: ExecutorOptions) -> Result<Self> {
        if options.cores == 0 {
            return Err(Error::user("executor cores must be at least 1"));
        }
        let id = ExecutorId(
            options
                .executor_id
                .clone()
                .unwrap_or_else(|| ExecutorId::random().0),
        );
        if !id
            .0
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::user(format!(
                "executor id '{id}' may only hold letters, digits, '-' and '_'"
            )));
        }
        let tls = rpc::server_tls(&options.config, "executor")?;
        let http_tls = ServerTls::new(
            &options.config.tls_settings()?,
            "executor metrics",
            ALPN_HTTP1,
        )?;
        let auth = Authenticator::new(&options.config.auth_settings()?)?;
        let metrics_access = faisca_ui::Access::from_config(&options.config, auth.clone())?;
        let transport = rpc::ClientTransport::from_config(
            &options.config,
            faisca_proto::address_says_tls(&options.driver),
        )?;
        if transport.uses_tls() && tls.is_none() {
            return Err(Error::user(format!(
                "the executor reaches its driver ({}) over TLS but has no certificate of its own: other executors and the driver fetch its shuffle data over TLS too, so --tls-cert and --tls-key (faisca.ssl.certFile, faisca.ssl.keyFile) are required",
                options.driver
            )));
        }
        // Served from the start: alive while registering, ready once registered.
        let readiness = Arc::new(health::readiness("registering with the driver"));
        let health = HealthServer::start_if_asked(
            options.health_bind,
            &readiness,
            &options.config,
            "executor",
        )
        .await?;
        let dir = options.work_dir.join(&id.0);
        let shuffle_root = dir.join("shuffle");
        let spill_dir = dir.join("spill");
        for d in [&shuffle_root, &spill_dir] {
            std::fs::create_dir_all(d).map_err(|e| {
                Error::user(format!(
                    "cannot create executor directory {}: {e}",
                    d.display()
                ))
            })?;
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_bytes as usize)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![spill_dir])),
            )
            .build_arc()?;
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(runtime)
            .build();
        faisca_engine::udf::add_registered(&mut state)?;
        let base_task_context = Arc::new(TaskContext::from(&state));
        let shuffle_memory = Arc::new(MemoryShuffleStore::default());
        let (metrics_sink, metrics) = match options.metrics_bind {
            Some(bind) => {
                let gauges = metrics::Gauges {
                    executor: id.0.clone(),
                    cores: options.cores,
                    pool: base_task_context.runtime_env().memory_pool.clone(),
                    pool_limit: options.memory_bytes,
                    shuffle_memory: shuffle_memory.clone(),
                };
                let (sink, render, actor) = metrics::start(gauges);
                match faisca_ui::MetricsServer::start(
                    bind,
                    "executor",
                    render,
                    http_tls,
                    metrics_access,
                )
                .await
                {
                    Ok(server) => (sink, Some((server, actor))),
                    Err(e) => {
                        actor.abort();
                        return Err(e);
                    }
                }
            }
            None => (metrics::MetricsSink::default(), None),
        };
        task_logs::register(&id.0, options.config.task_log_limits());

        let (listener, flight_address) =
            rpc::bind(options.bind, options.advertise_host.as_deref(), "executor").await?;
        let limit = options.config.max_message_size();
        let flight =
            FlightServiceServer::new(rpc::FlightDoGetService(flight::ExecutorFlightService::new(
                id.0.clone(),
                shuffle_root.clone(),
                shuffle_memory.clone(),
                &options.config,
            )))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let (server_stop_tx, server_stop_rx) = oneshot::channel::<()>();
        let guard =
            rpc::PeerGuard::new(tls.as_deref(), auth).cluster_only("shuffle data and task logs");
        let incoming = rpc::incoming(listener, tls);
        let server = tokio::spawn(async move {
            let result = rpc::server()
                .layer(tonic::service::InterceptorLayer::new(guard))
                .add_service(flight)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = server_stop_rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("executor Flight server stopped: {e}");
            }
        });

        let context = Arc::new(ExecutorContext {
            id: id.clone(),
            shuffle_root,
            base_task_context,
            clients: Arc::new(FlightClients::new(limit, transport)),
            config: options.config.clone(),
            stages: stage_cache::StageCache::default(),
            shuffle_memory,
            runtimes: Default::default(),
            metrics: metrics_sink,
        });
        let registration = connection::register(&options, &context, &flight_address).await;
        let connection = match registration {
            Ok(c) => c,
            Err(e) => {
                let _ = server_stop_tx.send(());
                server.abort();
                task_logs::forget(&id.0);
                if let Some((_, actor)) = &metrics {
                    actor.abort();
                }
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (decommission_tx, decommission_rx) = mpsc::unbounded_channel();
        readiness.send_replace(Readiness::Ready);
        let stopped = readiness.clone();
        let main = tokio::spawn(async move {
            let result = connection.run(context, shutdown_rx, decommission_rx).await;
            stopped.send_replace(Readiness::NotReady("the executor left its driver"));
            let _ = server_stop_tx.send(());
            result
        });
        Ok(Executor {
            id,
            flight_address,
            dir,
            shutdown: Some(shutdown_tx),
            decommission: Decommissioner {
                sender: decommission_tx,
                readiness: readiness.clone(),
            },
            main: Some(main),
            server,
            readiness,
            health,
            metrics,
        })
    }

    /// This executor's id.
    pub fn id(&self) -> &ExecutorId {
        &self.id
    }

    /// Where other processes reach its Flight server.
    pub fn flight_address(&self) -> &str {
        &self.flight_address
    }

    /// Where the health endpoints are served, when they are.
    pub fn health_address(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(HealthServer::address)
    }

    /// Where the metrics are served, when they are.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(server, _)| server.address())
    }

    /// The metrics' `/metrics` URL (`https://` with TLS), when they are served.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics.as_ref().map(|(server, _)| server.url())
    }

    /// Wait until the executor stops: `Ok` after [`Executor::shutdown`] or a decommission,
    /// `Err` when the driver connection broke. Cancel-safe: waiting again goes on waiting.
    pub async fn wait(&mut self) -> Result<()> {
        let Some(main) = self.main.as_mut() else {
            return Ok(());
        };
        let result = main.await;
        self.main = None;
        result.map_err(|e| Error::internal(format!("executor loop failed: {e}")))?
    }

    /// What starts this executor's decommission (see [`Decommissioner`]).
    pub fn decommissioner(&self) -> Decommissioner {
        self.decommission.clone()
    }

    /// Stop taking tasks, abort running ones, remove the executor's directory.
    pub async fn shutdown(mut self) {
        self.readiness
            .send_replace(Readiness::NotReady("the executor is stopping"));
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(main) = self.main.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), main).await;
        }
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts an executor's graceful decommission: `/readyz` turns not ready, the driver is told and
/// sends no new tasks, running tasks finish, and the executor keeps serving its shuffle output
/// until the driver releases it (no running job needs it) or
/// `faisca.executor.decommission.gracePeriod` ends; then [`Executor::wait`] returns `Ok`.
#[derive(Debug, Clone)]
pub struct Decommissioner {
    sender: mpsc::UnboundedSender<String>,
    readiness: Arc<ReadinessSender>,
}

impl Decommissioner {
    /// Start decommissioning for `reason` (a second call does nothing more).
    pub fn start(&self, reason: &str) {
        self.readiness
            .send_replace(Readiness::NotReady("decommissioning"));
        let _ = self.sender.send(reason.to_string());
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(main) = &self.main {
            main.abort();
        }
        self.server.abort();
        if let Some((_, actor)) = &self.metrics {
            actor.abort();
        }
        task_logs::forget(&self.id.0);
    }
}
