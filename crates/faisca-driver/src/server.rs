//! Binding the driver: control gRPC and Arrow Flight on one port.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use faisca_common::{Error, FaiscaConfig, Result};
use faisca_engine::shuffle::FlightClients;
use faisca_proto::driver_service_server::DriverServiceServer;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

use crate::actor::{DriverHandle, spawn_actor};
use crate::flight::DriverFlightService;
use crate::service::DriverServiceImpl;

/// How to start a driver.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Host name clients and executors should use, when it differs from the bound address.
    pub advertise_host: Option<String>,
    /// Driver-level configuration (message sizes, timeouts).
    pub config: FaiscaConfig,
}

/// A running driver.
pub struct DriverServer {
    address: String,
    handle: DriverHandle,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    actor: tokio::task::JoinHandle<()>,
}

impl DriverServer {
    /// Bind and start serving.
    pub async fn start(options: DriverOptions) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| Error::user(format!("cannot bind the driver to {}: {e}", options.bind)))?;
        let local = listener.local_addr()?;
        let host = options
            .advertise_host
            .clone()
            .unwrap_or_else(|| match local.ip() {
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                ip => ip.to_string(),
            });
        let address = format!("{host}:{}", local.port());
        let (handle, actor) = spawn_actor();
        let limit = options.config.max_message_size();
        let clients = Arc::new(FlightClients::new(limit, options.config.connect_timeout()));
        let control = DriverServiceServer::new(DriverServiceImpl::new(handle.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let flight = FlightServiceServer::new(DriverFlightService::new(handle.clone(), clients))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let incoming = TcpListenerStream::new(listener).map(|s| {
            if let Ok(stream) = &s {
                let _ = stream.set_nodelay(true);
            }
            s
        });
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(8 << 20)
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
        Ok(DriverServer {
            address,
            handle,
            shutdown: Some(shutdown_tx),
            server,
            actor,
        })
    }

    /// `host:port` clients and executors connect to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A handle to the actor (for in-process tools and tests).
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Stop serving and stop the actor.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.actor.abort();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
    }
}

impl Drop for DriverServer {
    fn drop(&mut self) {
        self.actor.abort();
        self.server.abort();
    }
}
