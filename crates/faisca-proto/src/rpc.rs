//! gRPC plumbing shared by the driver and executor servers: binding a listener and working out
//! the address to advertise, the accepted-connection stream, server and client settings, and the
//! Flight service (`DoGet` only) both processes run.

use std::net::SocketAddr;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult,
};
use faisca_common::{Error, Result};
use futures::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// HTTP/2 flow-control windows: large enough that one Flight stream is not held back by
/// window updates on loopback or a LAN.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 8 << 20;

/// Bind `bind`; returns the listener and the `host:port` others should use: `advertise_host` if
/// given, else the bound IP (127.0.0.1 when bound to every interface). `what` names the server in
/// errors.
pub async fn bind(
    bind: SocketAddr,
    advertise_host: Option<&str>,
    what: &str,
) -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| Error::user(format!("cannot bind the {what} to {bind}: {e}")))?;
    let local = listener.local_addr()?;
    let host = match advertise_host {
        Some(h) => h.to_string(),
        None if local.ip().is_unspecified() => "127.0.0.1".to_string(),
        None => local.ip().to_string(),
    };
    Ok((listener, format!("{host}:{}", local.port())))
}

/// Accepted connections, with Nagle's algorithm off (small control messages must not wait).
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|s| {
        if let Ok(stream) = &s {
            let _ = stream.set_nodelay(true);
        }
        s
    })
}

/// A tonic server builder with Faísca's settings.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
}

/// An endpoint (client side) with Faísca's settings.
pub fn endpoint(
    url: String,
    connect_timeout: std::time::Duration,
) -> Result<tonic::transport::Endpoint> {
    Ok(tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| Error::user(format!("invalid address '{url}': {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

/// What a Faísca process serves over Arrow Flight: `DoGet` only.
#[tonic::async_trait]
pub trait DoGetHandler: Send + Sync + 'static {
    /// Stream the data a ticket names.
    async fn do_get(
        &self,
        ticket: arrow_flight::Ticket,
    ) -> std::result::Result<BoxedStream<FlightData>, tonic::Status>;
}

/// A Flight service that answers `DoGet` with `H` and every other method with "unimplemented".
pub struct FlightDoGetService<H>(pub H);

#[tonic::async_trait]
impl<H: DoGetHandler> FlightService for FlightDoGetService<H> {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<arrow_flight::Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        self.0.do_get(request.into_inner()).await.map(Response::new)
    }
    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        Err(unsupported("handshake"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        Err(unsupported("list_flights"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(unsupported("get_flight_info"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(unsupported("poll_flight_info"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        Err(unsupported("get_schema"))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        Err(unsupported("do_put"))
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        Err(unsupported("do_action"))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        Err(unsupported("list_actions"))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(unsupported("do_exchange"))
    }
}

/// A boxed response stream of a Flight method.
pub type BoxedStream<T> =
    std::pin::Pin<Box<dyn Stream<Item = std::result::Result<T, tonic::Status>> + Send + 'static>>;

/// The status of a Flight method Faísca does not serve.
pub fn unsupported(method: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!(
        "Flight {method} is not supported: Faísca serves only DoGet (results from the driver, shuffle data from executors)"
    ))
}
