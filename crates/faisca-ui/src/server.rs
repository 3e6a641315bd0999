//! The UI's HTTP server and the store's actor.
//!
//! [`UiServer::start`] starts an actor that owns the [`AppStore`] and answers every request
//! from it, binds the UI port (the next ones when it is taken, as Spark does) and, when asked,
//! a metrics-only port (`--metrics-port`: `/metrics` and nothing else), and hands back the sink
//! through which the driver posts its [`Event`]s. Requests and events reach the actor in order,
//! so a page always shows every event posted before it was asked for. A task log page is the one
//! answer the actor cannot give alone: it says which executor to ask, and the request's own task
//! fetches the lines ([`crate::tasklog`]). Everything stops when the server is dropped.
//!
//! [`MetricsServer`] serves `/metrics` from any renderer: the driver's metrics-only port, and
//! an executor's.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use faisca_common::config::UiSettings;
use faisca_common::tls::ServerTls;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::access::{self, Access, Verdict};
use faisca_common::{Error, Result};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::events::Event;
use crate::pages::{PageContext, page};
use crate::store::{AppStore, StoreLimits};
use crate::tasklog::{Reply, TaskLogFetcher};

/// The stylesheet, embedded.
const CSS: &str = include_str!("../assets/faisca.css");
/// The pages' script, embedded.
const JS: &str = include_str!("../assets/faisca.js");

/// What the store's actor is sent.
enum StoreMessage {
    Request {
        path: String,
        query: String,
        viewer: Viewer,
        reply: oneshot::Sender<Reply>,
    },
}

/// Whose view a request gets: `None` everything (authentication off, or the cluster secret),
/// `Some(user)` that user's jobs and streaming queries only ([`AppStore::visible_to`]).
pub(crate) type Viewer = Option<String>;

/// The store as `viewer` may see it.
pub(crate) fn viewed<'a>(
    store: &'a AppStore,
    viewer: &Viewer,
    copy: &'a mut Option<AppStore>,
) -> &'a AppStore {
    match viewer {
        None => store,
        Some(user) => copy.insert(store.visible_to(user)),
    }
}

/// An HTTP answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
    /// Where a redirect points.
    pub location: Option<String>,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Answer::new(
            status,
            "application/json",
            serde_json::to_string_pretty(value).unwrap_or_default(),
        )
    }

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Self {
        Answer::new(status, "text/html; charset=utf-8", body)
    }

    /// Plain text.
    pub fn text(status: u16, body: String) -> Self {
        Answer::new(status, "text/plain; charset=utf-8", body)
    }

    /// A redirect to `location`.
    pub fn redirect(location: String) -> Self {
        Answer {
            location: Some(location),
            ..Answer::text(302, String::new())
        }
    }

    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Answer {
            status,
            content_type,
            body,
            location: None,
        }
    }
}

/// Answer a request for `path` (`query`: the raw query string) from `store`: a page, the REST
/// API, or `/metrics`. `base` prefixes the pages' links; `history` marks a run read back from
/// an event log.
pub fn answer(store: &AppStore, path: &str, query: &str, base: &str, history: bool) -> Answer {
    if path == "/metrics" {
        return Answer::new(200, METRICS_CONTENT_TYPE, crate::metrics::render(store));
    }
    let cx = PageContext {
        store,
        base,
        history,
    };
    if let Some(target) = crate::tasklog::target(path, query, app_id(store)) {
        return crate::tasklog::unavailable(&cx, target);
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        let (status, value) = crate::rest::answer(store, rest, query);
        return Answer::json(status, &value);
    }
    if matches!(
        path,
        "" | "/" | "/jobs" | "/stages" | "/executors" | "/streaming" | "/environment"
    ) {
        let target = if path.len() <= 1 {
            "/jobs/".to_string()
        } else {
            format!("{path}/")
        };
        return Answer::redirect(format!("{base}{target}"));
    }
    match page(&cx, path, query) {
        Some((status, body)) => Answer::html(status, body),
        None => Answer::text(
            404,
            format!(
                "no page {path}: expected /jobs/, /jobs/job/?id=N, /stages/, /stages/stage/?id=N, /executors/, /streaming/, /environment/, /metrics or /api/v1/…"
            ),
        ),
    }
}

/// The reply of a running driver's store to a request: [`answer`], except that a task log is
/// fetched from its executor.
pub fn reply(store: &AppStore, path: &str, query: &str) -> Reply {
    if let Some(target) = crate::tasklog::target(path, query, app_id(store)) {
        let cx = PageContext {
            store,
            base: "",
            history: false,
        };
        return crate::tasklog::live_reply(&cx, target);
    }
    Reply::Done(answer(store, path, query, "", false))
}

fn app_id(store: &AppStore) -> &str {
    store.app.as_ref().map_or("", |a| a.app_id.as_str())
}

/// The answer to `reply`: fetched through `fetcher` when it is a task log, within `timeout`
/// (`faisca.ui.taskLogTimeout`).
pub(crate) async fn complete(
    reply: Reply,
    fetcher: Option<&TaskLogFetcher>,
    timeout: std::time::Duration,
) -> Answer {
    match reply {
        Reply::Done(answer) => answer,
        Reply::Fetch { request, render } => {
            let what = format!(
                "executor {} at {}",
                request.executor_id, request.executor_address
            );
            let lines = match fetcher {
                Some(fetch) => match tokio::time::timeout(timeout, fetch(request)).await {
                    Ok(Ok(lines)) => Ok(lines),
                    Ok(Err(e)) => Err(format!("could not fetch the task log from {what}: {e}")),
                    Err(_) => Err(format!(
                        "{what} did not send the task log within {timeout:?} (faisca.ui.taskLogTimeout)"
                    )),
                },
                None => Err("this server cannot reach executors".to_string()),
            };
            render(lines)
        }
    }
}

/// Where the driver posts events: to the UI, the event log, or both. Cheap to clone; posting
/// never waits.
#[derive(Debug, Clone, Default)]
pub struct EventBus {
    sinks: Vec<mpsc::UnboundedSender<Event>>,
}

impl EventBus {
    /// Post `event` to every listener.
    pub fn post(&self, event: Event) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                let _ = sink.send(event.clone());
            }
            let _ = last.send(event);
        }
    }

    /// A bus that also delivers to `sink`.
    pub fn with_sink(mut self, sink: mpsc::UnboundedSender<Event>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Whether nothing listens.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

/// What [`UiServer::start`] serves.
#[derive(Clone)]
pub struct UiOptions {
    /// Ports, bind address and what the store keeps.
    pub settings: UiSettings,
    /// Whether the UI itself is served (on `settings`' port).
    pub serve_ui: bool,
    /// Where to serve `/metrics` alone (`--metrics-port`), if anywhere.
    pub metrics_bind: Option<SocketAddr>,
    /// How task logs are fetched from executors.
    pub task_logs: Option<TaskLogFetcher>,
    /// TLS of the UI and metrics ports (HTTPS), when the driver has a certificate.
    pub tls: Option<Arc<ServerTls>>,
    /// Who may read them (authentication, the metrics token).
    pub access: Access,
}

/// A running UI (and/or metrics-only port). It stops when dropped.
pub struct UiServer {
    address: Option<SocketAddr>,
    events: mpsc::UnboundedSender<Event>,
    store: JoinHandle<()>,
    server: Option<JoinHandle<()>>,
    metrics: Option<MetricsServer>,
    https: bool,
}

impl std::fmt::Debug for UiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiServer")
            .field("address", &self.address)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl UiServer {
    /// Start the store's actor, and bind and serve what `options` ask for.
    pub async fn start(options: UiOptions) -> Result<Self> {
        let settings = &options.settings;
        let listener = if options.serve_ui {
            Some(bind(settings.bind, settings.port, settings.max_retries, "web UI").await?)
        } else {
            None
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel::<StoreMessage>();
        let ask_store = move |path: String, query: String, viewer: Viewer| {
            let (reply, answer) = oneshot::channel();
            let _ = requests_tx.send(StoreMessage::Request {
                path,
                query,
                viewer,
                reply,
            });
            answer
        };
        let metrics = match options.metrics_bind {
            Some(bind) => {
                let ask_store = ask_store.clone();
                let render: RenderMetrics = Arc::new(move || {
                    let reply = ask_store("/metrics".to_string(), String::new(), None);
                    async move {
                        match reply.await {
                            Ok(Reply::Done(answer)) => Some(answer.body),
                            _ => None,
                        }
                    }
                    .boxed()
                });
                Some(
                    MetricsServer::start(
                        bind,
                        "driver",
                        render,
                        options.tls.clone(),
                        options.access.clone(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        let address = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let limits = StoreLimits::from_settings(settings);
        let store = tokio::spawn(run_store(AppStore::new(limits), events_rx, requests_rx));
        let fetcher = options.task_logs.clone();
        let timeout = settings.task_log_timeout;
        let ask: Ask = Arc::new(move |path, query, viewer| {
            let reply = ask_store(path, query, viewer);
            let fetcher = fetcher.clone();
            async move {
                match reply.await {
                    Ok(reply) => complete(reply, fetcher.as_ref(), timeout).await,
                    Err(_) => Answer::text(503, "the server is stopping".to_string()),
                }
            }
            .boxed()
        });
        let https = options.tls.is_some();
        let tls = options.tls.clone();
        let access = Access {
            https,
            ..options.access.clone()
        };
        let server = listener.map(|listener| tokio::spawn(serve(listener, ask, tls, access)));
        Ok(UiServer {
            address,
            events: events_tx,
            store,
            server,
            metrics,
            https,
        })
    }

    /// Where the UI listens, when it is served.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The UI's URL (`http://127.0.0.1:4040`, `https://…` with TLS; a wildcard bind shows as
    /// 127.0.0.1), when it is served.
    pub fn url(&self) -> Option<String> {
        self.address.map(|a| url_of(a, self.https))
    }

    /// The metrics-only port's `/metrics` URL, when it is served.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics.as_ref().map(MetricsServer::url)
    }

    /// Where the metrics-only port listens, when it is served.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::address)
    }

    /// Where to post events.
    pub fn sink(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }
}

/// `http://address` (`https://` when `https`), a wildcard address shown as 127.0.0.1.
pub fn url_of(address: SocketAddr, https: bool) -> String {
    let ip = if address.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        address.ip()
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, address.port()))
}

impl Drop for UiServer {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        self.store.abort();
    }
}

/// Renders the metrics page; `None` when there is nothing to render from any more (stopping).
pub type RenderMetrics = Arc<dyn Fn() -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// A metrics-only port: `GET /metrics` answers what its renderer renders; every other path is
/// a 404 saying so. It stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    address: SocketAddr,
    server: JoinHandle<()>,
    https: bool,
}

impl MetricsServer {
    /// Bind `bind` (exactly: a metrics port is configured, not searched) and serve, over TLS
    /// when `tls`. `what` names the process in errors.
    pub async fn start(
        bind: SocketAddr,
        what: &str,
        render: RenderMetrics,
        tls: Option<Arc<ServerTls>>,
        access: Access,
    ) -> Result<Self> {
        let listener = TcpListener::bind(bind).await.map_err(|e| {
            Error::user(format!(
                "cannot bind the {what}'s metrics port to {bind}: {e} (--metrics-port)"
            ))
        })?;
        let address = listener.local_addr()?;
        let ask: Ask = Arc::new(move |path, _query, _viewer| {
            let render = render.clone();
            async move {
                if path != "/metrics" {
                    return Answer::text(
                        404,
                        format!("no page {path}: this port serves /metrics only"),
                    );
                }
                match render().await {
                    Some(body) => Answer::new(200, METRICS_CONTENT_TYPE, body),
                    None => Answer::text(503, "the process is stopping".to_string()),
                }
            }
            .boxed()
        });
        let https = tls.is_some();
        let access = Access { https, ..access };
        let server = tokio::spawn(serve_routes(listener, ask, false, tls, access));
        Ok(MetricsServer {
            address,
            server,
            https,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its `/metrics` URL.
    pub fn url(&self) -> String {
        format!("{}/metrics", url_of(self.address, self.https))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The content type of Prometheus' text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bind `ip:port`, or the next of `max_retries` ports when one is taken (port 0: any free port).
/// `what` names the server in the error.
pub async fn bind(ip: IpAddr, port: u16, max_retries: u16, what: &str) -> Result<TcpListener> {
    let last = if port == 0 {
        0
    } else {
        port.saturating_add(max_retries)
    };
    let mut candidate = port;
    loop {
        let address = SocketAddr::new(ip, candidate);
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && candidate < last => {
                tracing::debug!("{what}: port {candidate} is taken, trying the next one");
                candidate += 1;
            }
            Err(e) => {
                return Err(Error::user(format!(
                    "cannot bind the {what} to {ip} port {port}{}: {e} (faisca.ui.port, faisca.ui.bind, faisca.port.maxRetries; faisca.ui.enabled=false turns it off)",
                    if last > port {
                        format!(" or the {max_retries} after it")
                    } else {
                        String::new()
                    }
                )));
            }
        }
    }
}

/// The store's actor: takes events and answers requests until both channels close. Before it
/// answers, it takes every event already posted, so an answer reflects them all.
async fn run_store(
    mut store: AppStore,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut requests: mpsc::UnboundedReceiver<StoreMessage>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => store.apply(&event),
                None => break,
            },
            request = requests.recv() => match request {
                Some(StoreMessage::Request {
                    path,
                    query,
                    viewer,
                    reply,
                }) => {
                    while let Ok(event) = events.try_recv() {
                        store.apply(&event);
                    }
                    let mut copy = None;
                    let seen = viewed(&store, &viewer, &mut copy);
                    let _ = reply.send(self::reply(seen, &path, &query));
                }
                None => break,
            },
        }
    }
}

/// How a server gets the answer to `(path, query)`.
pub(crate) type Ask =
    Arc<dyn Fn(String, String, Viewer) -> BoxFuture<'static, Answer> + Send + Sync>;

/// Serve HTTP (HTTPS with `tls`) on `listener`, answering every `GET` (or `HEAD`) through
/// `ask`, and the embedded assets itself, until the task is aborted (which drops every open
/// connection with it).
pub(crate) async fn serve(
    listener: TcpListener,
    ask: Ask,
    tls: Option<Arc<ServerTls>>,
    access: Access,
) {
    serve_routes(listener, ask, true, tls, access).await
}

/// [`serve`], with the embedded assets only when `assets`.
async fn serve_routes(
    listener: TcpListener,
    ask: Ask,
    assets: bool,
    tls: Option<Arc<ServerTls>>,
    access: Access,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let ask = ask.clone();
                let tls = tls.clone();
                let access = access.clone();
                connections.spawn(async move {
                    match tls {
                        None => serve_connection(stream, ask, assets, access).await,
                        Some(tls) if !tls.starts_tls(&stream).await => {
                            refuse_plaintext(stream).await;
                        }
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) if tls.client_certificates_required()
                                && stream.get_ref().1.peer_certificates().is_none_or(|c| c.is_empty()) => {
                                refuse(stream, "403 Forbidden", "This server requires a client certificate (faisca.ssl.clientAuth=required).\n").await;
                            }
                            Ok(stream) => serve_connection(stream, ask, assets, access).await,
                            Err(e) => tracing::debug!(%peer, "TLS handshake refused: {e}"),
                        },
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Tell a plain-HTTP client of an HTTPS port to use `https://`, and close.
async fn refuse_plaintext(stream: tokio::net::TcpStream) {
    let body = "This port serves HTTPS only: use https:// in the address.\n";
    refuse(stream, "400 Bad Request", body).await;
}

/// Answer one HTTP/1.1 response with `status` and the text `body`, and close.
async fn refuse<IO: tokio::io::AsyncWrite + Unpin>(mut stream: IO, status: &str, body: &str) {
    use tokio::io::AsyncWriteExt;
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Answer the requests of one connection.
async fn serve_connection<IO>(io: IO, ask: Ask, assets: bool, access: Access)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let ask = ask.clone();
        let access = access.clone();
        async move { Ok::<_, Infallible>(handle(request, &ask, assets, &access).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// The largest login form read.
const LOGIN_FORM_LIMIT: usize = 8 << 10;

/// `/login` (the form, and its submission) and the check of every other request's credential.
/// `None`: answer the request as usual.
async fn guard(
    request: Request<Incoming>,
    access: &Access,
) -> std::result::Result<Request<Incoming>, Response<Full<Bytes>>> {
    let path = request.uri().path();
    let head = request.method() == Method::HEAD;
    if path == "/login" {
        let html = "text/html; charset=utf-8";
        return Err(match *request.method() {
            Method::GET | Method::HEAD => {
                respond(head, Answer::new(200, html, access::login_page(false)), &[])
            }
            Method::POST => {
                let body = http_body_util::Limited::new(request.into_body(), LOGIN_FORM_LIMIT)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                match access::form_token(&body)
                    .filter(|t| access.verdict("/", Some(t)) == Verdict::Allowed)
                {
                    Some(token) => {
                        let cookie = access.cookie(&token);
                        let answer = Answer {
                            location: Some("/".to_string()),
                            ..Answer::text(303, String::new())
                        };
                        respond(false, answer, &[("set-cookie", cookie.as_str())])
                    }
                    None => respond(false, Answer::new(401, html, access::login_page(true)), &[]),
                }
            }
            _ => respond(
                head,
                Answer::text(405, "only GET and POST are answered at /login".to_string()),
                &[("allow", "GET, HEAD, POST")],
            ),
        });
    }
    match access.verdict(path, access::credential(request.headers()).as_deref()) {
        Verdict::Allowed => Ok(request),
        Verdict::Login => Err(respond(
            head,
            Answer {
                location: Some("/login".to_string()),
                ..Answer::text(303, String::new())
            },
            &[],
        )),
        Verdict::Refused(why) => Err(respond(
            head,
            Answer::text(401, why.to_string()),
            &[("www-authenticate", "Bearer")],
        )),
    }
}

async fn handle(
    request: Request<Incoming>,
    ask: &Ask,
    assets: bool,
    access: &Access,
) -> Response<Full<Bytes>> {
    let request = if access.is_open() {
        request
    } else {
        match guard(request, access).await {
            Ok(request) => request,
            Err(response) => return response,
        }
    };
    let viewer = access.viewer(access::credential(request.headers()).as_deref());
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let answer = Answer::text(
            405,
            format!(
                "{} is not allowed: only GET and HEAD are answered here",
                request.method()
            ),
        );
        return respond(head, answer, &[("allow", "GET, HEAD")]);
    }
    match path.as_str() {
        _ if !assets => {}
        "/static/faisca.css" => {
            return respond(
                head,
                Answer::new(200, "text/css; charset=utf-8", CSS.to_string()),
                &[],
            );
        }
        "/static/faisca.js" => {
            let answer = Answer::new(200, "text/javascript; charset=utf-8", JS.to_string());
            return respond(head, answer, &[]);
        }
        _ => {}
    }
    let answer = ask(path, query, viewer).await;
    respond(head, answer, &[])
}

fn respond(head: bool, answer: Answer, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", answer.content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .header(
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        );
    if let Some(location) = &answer.location {
        builder = builder.header("location", location.as_str());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut fallback = Response::new(Full::new(Bytes::from_static(b"bad response")));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}
