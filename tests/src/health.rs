//! The plain-HTTP health endpoints of `faisca driver` and `faisca executor` (`--health-port`):
//! alive from the start, ready when the driver accepts sessions and when an executor is
//! registered — real processes, probed over TCP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::cli::{Processes, start_executor_with, wait_until};
use crate::common::faisca_bin;

/// A port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `method path` on 127.0.0.1:`port`: the status code and the body, or `None` if nothing answers.
pub fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: probe\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((status, body))
}

pub fn status(port: u16, path: &str) -> Option<u16> {
    request(port, "GET", path).map(|(status, _)| status)
}

#[test]
fn health_endpoints_follow_a_driver_and_an_executor_through_start_up() {
    let work = tempfile::tempdir().unwrap();
    let driver_port = free_port();
    let (executor_health, driver_health) = (free_port(), free_port());
    let driver_address = format!("127.0.0.1:{driver_port}");

    // An executor started before its driver is alive but not ready.
    let executor = start_executor_with(
        &format!("faisca://{driver_address}"),
        1,
        work.path(),
        &["--health-port", &executor_health.to_string()],
    );
    let mut procs = Processes(vec![executor]);
    assert!(
        wait_until(|| status(executor_health, "/healthz") == Some(200)),
        "the executor's /healthz never answered"
    );
    let (code, body) = request(executor_health, "GET", "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("registering with the driver"), "{body}");

    // The driver is ready once it listens; the executor once it registered.
    let driver = Command::new(faisca_bin())
        .args(["driver", "--bind", &driver_address])
        .args(["--health-port", &driver_health.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(driver);
    assert!(
        wait_until(|| status(driver_health, "/readyz") == Some(200)),
        "the driver never became ready: {:?}",
        request(driver_health, "GET", "/readyz")
    );
    assert_eq!(status(driver_health, "/healthz"), Some(200));
    assert!(
        wait_until(|| status(executor_health, "/readyz") == Some(200)),
        "the executor never became ready: {:?}",
        request(executor_health, "GET", "/readyz")
    );

    // Anything else is refused with a reason; HEAD answers without a body.
    assert_eq!(status(driver_health, "/metrics"), Some(404));
    let (code, body) = request(driver_health, "POST", "/readyz").unwrap();
    assert_eq!(code, 405, "{body}");
    assert_eq!(
        request(executor_health, "HEAD", "/healthz"),
        Some((200, String::new()))
    );
    drop(procs);
}
