//! The UI's HTTP server and the store's actor.
//!
//! [`UiServer::start`] binds the UI port (the next ones when it is taken, as Spark does), starts
//! an actor that owns the [`AppStore`] and answers every request from it, and hands back an
//! [`EventBus`] through which the driver posts its [`Event`]s. Requests and events reach the
//! actor over one channel, so a page always shows every event posted before it was asked for.
//! Both tasks stop when the server is dropped.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use faisca_common::config::UiSettings;
use faisca_common::{Error, Result};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::events::Event;
use crate::pages::{PageContext, page};
use crate::store::{AppStore, StoreLimits};

/// The stylesheet, embedded.
const CSS: &str = include_str!("../assets/faisca.css");
/// The pages' script, embedded.
const JS: &str = include_str!("../assets/faisca.js");

/// What the store's actor is sent.
enum StoreMessage {
    Request {
        path: String,
        query: String,
        reply: oneshot::Sender<Answer>,
    },
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
        return Answer::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(store),
        );
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
    let cx = PageContext {
        store,
        base,
        history,
    };
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

/// A running UI. It stops when dropped.
#[derive(Debug)]
pub struct UiServer {
    address: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    store: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl UiServer {
    /// Bind as `settings` say and start serving.
    pub async fn start(settings: &UiSettings) -> Result<Self> {
        let listener = bind(settings.bind, settings.port, settings.max_retries, "web UI").await?;
        let address = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel::<StoreMessage>();
        let limits = StoreLimits::from_settings(settings);
        let store = tokio::spawn(run_store(AppStore::new(limits), events_rx, requests_rx));
        let ask: Ask = std::sync::Arc::new(move |path, query| {
            let (reply, answer) = oneshot::channel();
            let _ = requests_tx.send(StoreMessage::Request { path, query, reply });
            answer
        });
        let server = tokio::spawn(serve(listener, ask));
        Ok(UiServer {
            address,
            events: events_tx,
            store,
            server,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its URL (`http://127.0.0.1:4040`; a wildcard bind shows as 127.0.0.1).
    pub fn url(&self) -> String {
        let ip = if self.address.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.address.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.address.port()))
    }

    /// Where to post events.
    pub fn sink(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.server.abort();
        self.store.abort();
    }
}

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
                Some(StoreMessage::Request { path, query, reply }) => {
                    while let Ok(event) = events.try_recv() {
                        store.apply(&event);
                    }
                    let _ = reply.send(answer(&store, &path, &query, "", false));
                }
                None => break,
            },
        }
    }
}

/// How a server asks its actor for an answer to `(path, query)`.
pub(crate) type Ask =
    std::sync::Arc<dyn Fn(String, String) -> oneshot::Receiver<Answer> + Send + Sync>;

/// Serve HTTP on `listener`, answering every `GET` (or `HEAD`) through `ask`, and the embedded
/// assets itself, until the task is aborted (which drops every open connection with it).
pub(crate) async fn serve(listener: TcpListener, ask: Ask) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ask = ask.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let ask = ask.clone();
                        async move { Ok::<_, Infallible>(handle(request, &ask).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle<B>(request: Request<B>, ask: &Ask) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let answer = Answer::text(
            405,
            format!(
                "{} is not allowed: the UI only answers GET and HEAD",
                request.method()
            ),
        );
        return respond(head, answer, &[("allow", "GET, HEAD")]);
    }
    match path.as_str() {
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
    let answer = ask(path, query)
        .await
        .unwrap_or_else(|_| Answer::text(503, "the server is stopping".to_string()));
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
