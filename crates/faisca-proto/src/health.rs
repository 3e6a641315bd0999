//! Plain-HTTP health endpoints for probes (Kubernetes' liveness and readiness checks): `GET
//! /healthz` answers 200 while the process runs, `GET /readyz` 200 while the process says it is
//! ready and 503 with the reason otherwise. They are served on a port of their own, apart from
//! gRPC, so that probes keep working when RPC gets TLS and authentication.
//!
//! The process owns a [`ReadinessSender`] and says when it becomes ready or stops being ready;
//! the server only reads it. One request per connection (`Connection: close`), `GET` or `HEAD`,
//! a request head of at most [`MAX_REQUEST_HEAD`] bytes read within `faisca.health.requestTimeout`.

use std::net::SocketAddr;
use std::time::Duration;

use faisca_common::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The most bytes of a request head (request line and headers) the server reads.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Whether a process is ready for work, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready: the driver accepts sessions; an executor is registered and takes tasks.
    Ready,
    /// Not ready, for this reason (shown in `/readyz`'s answer).
    NotReady(&'static str),
}

/// How a process says whether it is ready.
pub type ReadinessSender = watch::Sender<Readiness>;

/// A readiness cell that starts not ready for `reason`.
pub fn readiness(reason: &'static str) -> ReadinessSender {
    watch::Sender::new(Readiness::NotReady(reason))
}

/// A running health server; it stops when dropped.
#[derive(Debug)]
pub struct HealthServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    /// Bind `bind` and serve the endpoints, reading readiness from `readiness`. `what` names the
    /// process in errors.
    pub async fn start(
        bind: SocketAddr,
        readiness: &ReadinessSender,
        request_timeout: Duration,
        what: &str,
    ) -> Result<Self> {
        let listener = TcpListener::bind(bind).await.map_err(|e| {
            Error::user(format!(
                "cannot bind the {what}'s health endpoints to {bind}: {e}"
            ))
        })?;
        let address = listener.local_addr()?;
        let readiness = readiness.subscribe();
        let task = tokio::spawn(serve(listener, readiness, request_timeout));
        Ok(HealthServer { address, task })
    }

    /// [`HealthServer::start`] when `bind` is given (`--health-port`), with the request timeout
    /// of `config`; `None` otherwise.
    pub async fn start_if_asked(
        bind: Option<SocketAddr>,
        readiness: &ReadinessSender,
        config: &faisca_common::FaiscaConfig,
        what: &str,
    ) -> Result<Option<Self>> {
        match bind {
            Some(bind) => {
                let timeout = config.health_request_timeout();
                Ok(Some(Self::start(bind, readiness, timeout, what).await?))
            }
            None => Ok(None),
        }
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept connections until aborted; each is answered by a task of the set, which dies with it.
async fn serve(
    listener: TcpListener,
    readiness: watch::Receiver<Readiness>,
    request_timeout: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let readiness = readiness.clone();
                    connections.spawn(answer(stream, readiness, request_timeout));
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Read one request head and answer it; a peer that sends nothing in time is dropped.
async fn answer(
    mut stream: TcpStream,
    readiness: watch::Receiver<Readiness>,
    request_timeout: Duration,
) {
    let head = match tokio::time::timeout(request_timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        _ => return,
    };
    let current = readiness.borrow().clone();
    let response = respond(&head, &current);
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// The bytes up to the blank line that ends a request head, or up to [`MAX_REQUEST_HEAD`] + 1
/// bytes when there is no such line that soon (an answer of 431 follows).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_REQUEST_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The whole response to a request head.
pub fn respond(head: &[u8], readiness: &Readiness) -> Vec<u8> {
    let (status, body, allow) = route(head, readiness);
    let head_only = head.starts_with(b"HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if allow { "Allow: GET, HEAD\r\n" } else { "" }
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

/// Status line, body and whether to list the allowed methods.
fn route(head: &[u8], readiness: &Readiness) -> (&'static str, String, bool) {
    if head.len() > MAX_REQUEST_HEAD {
        return (
            "431 Request Header Fields Too Large",
            format!("request head over {MAX_REQUEST_HEAD} bytes\n"),
            false,
        );
    }
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(str::trim_end)
        .unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return (
            "400 Bad Request",
            "expected a request line such as 'GET /healthz HTTP/1.1'\n".to_string(),
            false,
        );
    };
    if !version.starts_with("HTTP/1.") {
        return (
            "400 Bad Request",
            format!("unsupported protocol '{version}': expected HTTP/1.0 or HTTP/1.1\n"),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/healthz" && path != "/readyz" {
        return (
            "404 Not Found",
            format!("no endpoint '{path}': expected /healthz or /readyz\n"),
            false,
        );
    }
    if *method != "GET" && *method != "HEAD" {
        return (
            "405 Method Not Allowed",
            format!("method {method} is not allowed: expected GET or HEAD\n"),
            true,
        );
    }
    match (path, readiness) {
        ("/healthz", _) => ("200 OK", "ok\n".to_string(), false),
        (_, Readiness::Ready) => ("200 OK", "ready\n".to_string(), false),
        (_, Readiness::NotReady(why)) => (
            "503 Service Unavailable",
            format!("not ready: {why}\n"),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(request: &str, readiness: &Readiness) -> String {
        let response = String::from_utf8(respond(request.as_bytes(), readiness)).unwrap();
        response.lines().next().unwrap().to_string()
    }

    #[test]
    fn endpoints_answer_by_path_method_and_readiness() {
        let ready = Readiness::Ready;
        let starting = Readiness::NotReady("registering with the driver");
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&get("/healthz"), &starting), "HTTP/1.1 200 OK");
        assert_eq!(status(&get("/readyz"), &ready), "HTTP/1.1 200 OK");
        assert_eq!(status(&get("/readyz?verbose"), &ready), "HTTP/1.1 200 OK");
        assert_eq!(
            status(&get("/readyz"), &starting),
            "HTTP/1.1 503 Service Unavailable"
        );
        let body = String::from_utf8(respond(get("/readyz").as_bytes(), &starting)).unwrap();
        assert!(
            body.ends_with("not ready: registering with the driver\n"),
            "{body}"
        );
        assert_eq!(status(&get("/metrics"), &ready), "HTTP/1.1 404 Not Found");
        let post = status("POST /healthz HTTP/1.1\r\n\r\n", &ready);
        assert_eq!(post, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(
            status("nonsense\r\n\r\n", &ready),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status("GET /healthz SPDY/3\r\n\r\n", &ready),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(&"x".repeat(MAX_REQUEST_HEAD + 1), &ready),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn head_requests_get_no_body() {
        let response = String::from_utf8(respond(
            b"HEAD /healthz HTTP/1.1\r\n\r\n",
            &Readiness::Ready,
        ))
        .unwrap();
        assert!(response.ends_with("\r\n\r\n"), "{response}");
        assert!(response.contains("Content-Length: 3"), "{response}");
    }

    #[tokio::test]
    async fn a_server_answers_over_tcp_and_follows_readiness() {
        let ready = readiness("starting");
        let server = HealthServer::start(
            "127.0.0.1:0".parse().unwrap(),
            &ready,
            Duration::from_secs(5),
            "test",
        )
        .await
        .unwrap();
        let ask = |path: &'static str| {
            let address = server.address();
            async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream
                    .write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer.lines().next().unwrap_or_default().to_string()
            }
        };
        assert_eq!(ask("/healthz").await, "HTTP/1.1 200 OK");
        assert_eq!(ask("/readyz").await, "HTTP/1.1 503 Service Unavailable");
        ready.send_replace(Readiness::Ready);
        assert_eq!(ask("/readyz").await, "HTTP/1.1 200 OK");
        // A peer that never sends its request does not hold the server up.
        let _silent = TcpStream::connect(server.address()).await.unwrap();
        assert_eq!(ask("/healthz").await, "HTTP/1.1 200 OK");
    }
}
