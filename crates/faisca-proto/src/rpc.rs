//! gRPC plumbing shared by the driver and executor servers: binding a listener and working out
//! the address to advertise, the accepted-connection stream (TLS when the process has a
//! certificate), server settings, the [`ClientTransport`] every client connects with (TLS when
//! `faisca.ssl.*` or the address asks for it), and the Flight service (`DoGet` only) both
//! processes run.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult,
};
use faisca_common::auth::{Authenticator, Principal};
use faisca_common::tls::{ALPN_H2, ClientTls, ServerTls, client, server};
use faisca_common::{Error, FaiscaConfig, Result};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};
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

/// A connection a Faísca server accepted: plain TCP, or TLS over it.
pub enum ServerIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for ServerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerIo::Plain(_) => "ServerIo::Plain",
            ServerIo::Tls(_) => "ServerIo::Tls",
        })
    }
}

/// Who is at the other end of a server's connection, as every request's extensions carry it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the client presented a certificate (verified against `faisca.ssl.caFile`).
    pub client_certificate: bool,
}

impl Connected for ServerIo {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            ServerIo::Plain(tcp) => PeerInfo {
                remote: tcp.connect_info().remote_addr(),
                tls: false,
                client_certificate: false,
            },
            ServerIo::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                PeerInfo {
                    remote: tcp.connect_info().remote_addr(),
                    tls: true,
                    client_certificate: session
                        .peer_certificates()
                        .is_some_and(|certs| !certs.is_empty()),
                }
            }
        }
    }
}

/// Checks every call a server receives before its service sees it, and says who is calling:
///
/// * with `faisca.ssl.clientAuth=required`, a client that presented no certificate is refused;
/// * with authentication on, the call's `authorization: Bearer …` credential must be the
///   cluster secret or a user token; the [`Principal`] it names goes into the request's
///   extensions for the service (without authentication every caller is
///   [`Principal::Cluster`], as before it existed);
/// * on a server for the cluster alone (an executor's Flight port), only the cluster secret.
///
/// Refusals are `UNAUTHENTICATED` (or `PERMISSION_DENIED`) saying what is missing, never what
/// was expected. Add it with `server().layer(tonic::service::InterceptorLayer::new(guard))`.
#[derive(Debug, Clone)]
pub struct PeerGuard {
    client_certificate_required: bool,
    auth: Option<Arc<Authenticator>>,
    cluster_only: Option<&'static str>,
}

impl PeerGuard {
    /// The guard of a server with `tls` and `auth`.
    pub fn new(tls: Option<&ServerTls>, auth: Option<Arc<Authenticator>>) -> Self {
        PeerGuard {
            client_certificate_required: tls.is_some_and(ServerTls::client_certificates_required),
            auth,
            cluster_only: None,
        }
    }

    /// Refuse users: only holders of the cluster secret may call; `what` says what the server
    /// holds, for the refusal.
    pub fn cluster_only(mut self, what: &'static str) -> Self {
        self.cluster_only = Some(what);
        self
    }
}

/// The bearer credential of a call's `authorization` metadata.
fn bearer<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credential.trim())
}

/// Who made the call: what [`PeerGuard`] put into its extensions ([`Principal::Cluster`] when
/// no guard ran, as in a test calling a service directly).
pub fn principal<T>(request: &Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Cluster)
}

impl tonic::service::Interceptor for PeerGuard {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if self.client_certificate_required
            && !request
                .extensions()
                .get::<PeerInfo>()
                .is_some_and(|peer| peer.client_certificate)
        {
            return Err(Status::unauthenticated(
                "this server requires a client certificate (faisca.ssl.clientAuth=required): connect with --tls-cert and --tls-key (faisca.ssl.certFile, faisca.ssl.keyFile) signed by a CA it trusts",
            ));
        }
        let principal = match &self.auth {
            None => Principal::Cluster,
            Some(auth) => auth
                .authenticate(bearer(&request))
                .map_err(|failure| Status::unauthenticated(failure.to_string()))?,
        };
        if let (Some(what), Principal::User(user)) = (self.cluster_only, &principal) {
            return Err(Status::permission_denied(format!(
                "user '{user}' may not call this server: it serves {what} to the driver and executors alone (holders of the cluster secret)"
            )));
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// Adds the caller's credential (`authorization: Bearer …`) to every call of a channel.
#[derive(Clone)]
pub struct AttachCredential(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for AttachCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AttachCredential(*********(redacted))"
        } else {
            "AttachCredential(none)"
        })
    }
}

impl AttachCredential {
    fn new(credential: Option<&str>) -> Result<Self> {
        let Some(credential) = credential else {
            return Ok(AttachCredential(None));
        };
        let mut value: MetadataValue<Ascii> = format!("Bearer {credential}").parse().map_err(|_| {
            Error::user(
                "the cluster secret or user token holds characters an HTTP header cannot carry: expected printable ASCII",
            )
        })?;
        value.set_sensitive(true);
        Ok(AttachCredential(Some(value)))
    }
}

impl tonic::service::Interceptor for AttachCredential {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to a Faísca server that carries the caller's credential on every call.
pub type RpcChannel = InterceptedService<Channel, AttachCredential>;

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            ServerIo::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            ServerIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            ServerIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(tcp) => tcp.is_write_vectored(),
            ServerIo::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            ServerIo::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ServerIo::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepted connections, with Nagle's algorithm off (small control messages must not wait).
/// With `tls`, each is handed over once its handshake is done: up to
/// `faisca.ssl.maxHandshakes` run at once, each within `faisca.ssl.handshakeTimeout`; a failed
/// one (a plaintext client, an untrusted client certificate) is logged and closed.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> BoxStream<'static, std::io::Result<ServerIo>> {
    let accepted = TcpListenerStream::new(listener).map(|s| {
        if let Ok(stream) = &s {
            let _ = stream.set_nodelay(true);
        }
        s
    });
    let Some(tls) = tls else {
        return accepted.map_ok(ServerIo::Plain).boxed();
    };
    let limit = tls.max_handshakes();
    accepted
        .map(move |tcp| {
            let tls = tls.clone();
            async move {
                let tcp = tcp?;
                let peer = tcp.peer_addr().ok();
                if !tls.starts_tls(&tcp).await {
                    let limit = tls.handshake_timeout();
                    let _ = tokio::time::timeout(limit, refuse_plaintext(tcp)).await;
                    tracing::debug!(?peer, "a plaintext client was told this port serves TLS");
                    return Err(std::io::Error::other("a plaintext client was refused"));
                }
                match tls.accept(tcp).await {
                    Ok(stream) => Ok(ServerIo::Tls(Box::new(stream))),
                    Err(e) => {
                        tracing::debug!(?peer, "TLS handshake refused: {e}");
                        Err(e)
                    }
                }
            }
        })
        .buffer_unordered(limit)
        .boxed()
}

/// What a plaintext gRPC client of a TLS port is told.
const PLAINTEXT_REFUSED: &str = "this server serves TLS only: connect with faisca+tls://host:port (or https://), with --tls-ca naming the CA that signed its certificate";

/// Answer every gRPC call of a plaintext connection to a TLS port with `UNAVAILABLE` saying
/// so, instead of a bare protocol error; nothing else is served on it.
async fn refuse_plaintext(tcp: TcpStream) {
    let service = hyper::service::service_fn(|_request| async {
        tonic::codegen::http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-message", PLAINTEXT_REFUSED)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
    });
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

/// The server side of a process's gRPC port: its TLS when it serves TLS (`faisca.ssl.certFile`).
pub fn server_tls(config: &FaiscaConfig, what: &'static str) -> Result<Option<Arc<ServerTls>>> {
    ServerTls::new(&config.tls_settings()?, what, ALPN_H2)
}

/// A tonic server builder with Faísca's settings.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
}

/// An endpoint (client side) with Faísca's settings.
fn endpoint(url: String, connect_timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(url.clone())
        .map_err(|e| Error::user(format!("invalid address '{url}': {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

/// How a process connects to Faísca's gRPC servers (the driver, executors' Flight): the
/// connect timeout, and TLS when on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientTransport {
    connect_timeout: Duration,
    tls: Option<Arc<ClientTls>>,
    credential: AttachCredential,
}

impl ClientTransport {
    /// Plain connections.
    pub fn plain(connect_timeout: Duration) -> Self {
        ClientTransport {
            connect_timeout,
            tls: None,
            credential: AttachCredential(None),
        }
    }

    /// What `config` asks for (`faisca.rpc.connectTimeout`, `faisca.ssl.*`, the credential of
    /// `faisca.authenticate.*`), given whether the address the process was told says TLS
    /// (`faisca+tls://`, `https://`).
    pub fn from_config(config: &FaiscaConfig, address_says_tls: bool) -> Result<Self> {
        let credential = AttachCredential::new(config.auth_settings()?.client_credential())?;
        let settings = config.tls_settings()?;
        let tls = if settings.connects_with_tls(address_says_tls) {
            Some(ClientTls::new(&settings, "TLS client", ALPN_H2)?)
        } else {
            None
        };
        Ok(ClientTransport {
            connect_timeout: config.connect_timeout(),
            tls,
            credential,
        })
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A channel to `address` that connects when first used (and again after a failure).
    pub fn lazy_channel(&self, address: &str) -> Result<RpcChannel> {
        let endpoint = endpoint(crate::endpoint_url(address)?, self.connect_timeout)?;
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector(tls.clone())),
            None => endpoint.connect_lazy(),
        };
        Ok(InterceptedService::new(channel, self.credential.clone()))
    }

    /// A channel to `address`, connected now. The error describes the whole cause (refused,
    /// timed out, the TLS handshake's reason) and hints at a TLS mismatch.
    pub async fn connect(&self, address: &str) -> Result<RpcChannel> {
        let endpoint = endpoint(crate::endpoint_url(address)?, self.connect_timeout)?;
        let connected = match &self.tls {
            Some(tls) => {
                endpoint
                    .connect_with_connector(TlsConnector(tls.clone()))
                    .await
            }
            None => endpoint.connect().await,
        };
        let channel = connected.map_err(|e| Error::external(self.describe(&e)))?;
        Ok(InterceptedService::new(channel, self.credential.clone()))
    }

    /// A transport error with its causes, and what to check when TLS is a likely cause.
    pub fn describe(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let text = error_chain(error);
        let lower = text.to_ascii_lowercase();
        if self.tls.is_some() && lower.contains("invalid peer certificate") {
            format!(
                "{text} (the server's certificate is not trusted: --tls-ca (faisca.ssl.caFile) must name the CA that signed it, and it must name the host connected to, or faisca.ssl.serverName)"
            )
        } else if self.tls.is_some() && lower.contains("certificaterequired") {
            format!(
                "{text} (the server requires a client certificate: --tls-cert and --tls-key, signed by a CA it trusts)"
            )
        } else if self.tls.is_none()
            && (lower.contains("connection reset")
                || lower.contains("broken pipe")
                || lower.contains("frame with invalid size")
                || lower.contains("protocol error"))
        {
            format!(
                "{text} (the server may be serving TLS: connect with faisca+tls://host:port and --tls-ca)"
            )
        } else {
            text
        }
    }
}

/// An error and its sources, `: `-separated, without repeats.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// Connects TCP, then TLS, for a channel (tonic's own TLS is not built: this one reloads its
/// certificates).
#[derive(Clone)]
struct TlsConnector(Arc<ClientTls>);

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp =
                TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
                    .await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(&host, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// What a Faísca process serves over Arrow Flight: `DoGet` only.
#[tonic::async_trait]
pub trait DoGetHandler: Send + Sync + 'static {
    /// Stream the data a ticket names to `caller` (as [`PeerGuard`] authenticated it).
    async fn do_get(
        &self,
        ticket: arrow_flight::Ticket,
        caller: Principal,
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
        let caller = principal(&request);
        self.0
            .do_get(request.into_inner(), caller)
            .await
            .map(Response::new)
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
