//! A real browser on the UI: headless Chromium, driven over WebDriver by `chromedriver`
//! (Debian's `chromium` and `chromium-driver`, which the test command installs), loads the
//! pages while a multi-stage TPC-H query runs, one stage held by `faisca.test.taskGate` until the
//! browser has seen it running: the job shows as running,
//! its stage graph has one box per stage, the stage page lists its tasks, and when the job ends
//! the open job page says so without a reload; the streaming page follows a running query's
//! batches, and its stop, without a reload. Screenshots of the pages are saved under the build
//! directory (`target/debug/ui-screenshots/`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{GatedCluster, QUERY, explained_stages};
use crate::cli::Processes;

/// One HTTP request to chromedriver; the answer's JSON.
async fn call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("chromedriver");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // chromedriver keeps connections open whatever the request says: read the head, then as
    // much body as it announces (a length, or chunks up to the last one).
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let body = loop {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "{method} {path}: chromedriver closed the connection early"
        );
        raw.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let head = head.to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        match length {
            Some(length) if body.len() >= length => break body[..length].to_string(),
            None if head.contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n") => {
                break body.to_string();
            }
            _ => {}
        }
    };
    // A chunked body's JSON is between its first and last brace.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|i| i + 1).unwrap_or(body.len());
    serde_json::from_str(&body[start..end])
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

/// A browser session.
struct Browser {
    driver: String,
    session: String,
    _process: Processes,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let program =
            std::env::var("FAISCA_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child: Child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}): the test command installs Debian's chromium and chromium-driver; FAISCA_CHROMEDRIVER names the program")
            });
        let process = Processes(vec![child]);
        let driver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && call("GET", &format!("{driver}/status"), None).await["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let binary =
            std::env::var("FAISCA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let created = call("POST", &format!("{driver}/session"), Some(&capabilities)).await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        Browser {
            driver,
            session,
            _process: process,
            _profile: profile,
        }
    }

    fn url(&self, what: &str) -> String {
        format!("{}/session/{}/{what}", self.driver, self.session)
    }

    async fn open(&self, page: &str) {
        let answer = call("POST", &self.url("url"), Some(&json!({ "url": page }))).await;
        assert!(answer["value"].is_null(), "opening {page}: {answer}");
    }

    /// The value the JavaScript `body` returns in the page.
    async fn eval(&self, body: &str) -> Value {
        let answer = call(
            "POST",
            &self.url("execute/sync"),
            Some(&json!({ "script": body, "args": [] })),
        )
        .await;
        answer["value"].clone()
    }

    /// Wait until `body` returns `true` (a minute at most); `what` says what is awaited.
    async fn wait_for(&self, body: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.eval(body).await == true {
                return;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let answer = call("GET", &self.url("screenshot"), None).await;
        let png = decode_base64(answer["value"].as_str().expect("a screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = crate::common::faisca_bin()
            .parent()
            .unwrap()
            .join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session stops the browser: killing chromedriver alone would leave it
        // running. Plain blocking I/O: this runs on a panic's unwinding too.
        use std::io::{Read, Write};
        let Some(host) = self.driver.strip_prefix("http://") else {
            return;
        };
        if let Ok(mut stream) = std::net::TcpStream::connect(host) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = [0u8; 1024];
                let _ = stream.read(&mut answer);
            }
        }
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_follows_a_running_job_to_its_end() {
    let cluster = GatedCluster::start().await;
    let (session, ui) = (&cluster.session, &cluster.ui);
    let stages = explained_stages(&session.explain_sql(QUERY).await.unwrap());
    let browser = Browser::start().await;
    let result = session.execute_sql(QUERY).await.unwrap();
    let job = cluster.running_job().await;
    let id = job["jobId"].as_u64().unwrap();

    browser.open(&format!("{ui}/jobs/")).await;
    browser
        .wait_for(
            &format!(
                "return document.querySelector('#jobs-running tr[data-job-id=\"{id}\"]') !== null;"
            ),
            "the job among the running ones",
        )
        .await;
    browser.screenshot("jobs.png").await;

    browser
        .open(&format!("{ui}/stages/stage/?id={}", job["stageIds"][0]))
        .await;
    browser
        .wait_for(
            &format!(
                "return document.querySelectorAll('#tasks tbody tr').length === {};",
                stages[0].1
            ),
            "the first stage's tasks",
        )
        .await;
    browser.screenshot("stage.png").await;

    browser.open(&format!("{ui}/jobs/job/?id={id}")).await;
    assert_eq!(
        browser
            .eval("return document.getElementById('job-status').textContent;")
            .await,
        "RUNNING"
    );
    let boxes = browser
        .eval("return document.querySelectorAll('#dag svg g.stage').length;")
        .await;
    assert_eq!(boxes, stages.len(), "one box per stage");
    browser.screenshot("job.png").await;
    // A mark on this page's window: it is gone if the page reloads.
    browser.eval("window.faiscaMark = 1; return true;").await;

    cluster.open_gate();
    faisca::client::collect(result.batches).await.unwrap();
    browser
        .wait_for(
            "return document.getElementById('job-status').textContent === 'SUCCEEDED';",
            "the job succeeded",
        )
        .await;
    assert_eq!(
        browser.eval("return window.faiscaMark === 1;").await,
        true,
        "no reload"
    );
    let complete = browser
        .eval("return Array.from(document.querySelectorAll('#dag svg g.stage')).every(g => g.classList.contains('complete'));")
        .await;
    assert_eq!(complete, true, "every stage box shows complete");
    browser.screenshot("job-succeeded.png").await;
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_page_follows_a_query_without_a_reload() {
    let session = crate::common::tpch_session(
        "local[2]",
        &[("faisca.ui.enabled", "true"), ("faisca.ui.port", "0")],
        2,
    )
    .await;
    let ui = session.ui_url().await.unwrap().unwrap();
    let query = session
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "50")
        .load()
        .await
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("ui_rate_rows")
        .trigger(faisca::Trigger::ProcessingTime(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let browser = Browser::start().await;
    browser.open(&format!("{ui}/streaming/")).await;
    browser
        .wait_for(
            "return document.querySelectorAll('section.query').length === 1;",
            "the query's section",
        )
        .await;
    browser.eval("window.faiscaMark = 1; return true;").await;
    let shown = "Number(document.querySelector('section.query dd.batch').textContent || -1)";
    let first = browser.eval(&format!("return {shown};")).await;
    // Later batches show up: the last batch, and a row per batch in the table.
    browser
        .wait_for(
            &format!(
                "return {shown} >= {} + 2 && document.querySelectorAll('section.query table.batches tbody tr').length >= 3;",
                first.as_f64().unwrap_or(-1.0)
            ),
            "later batches",
        )
        .await;
    browser.screenshot("streaming.png").await;
    query.stop().await.unwrap();
    browser
        .wait_for(
            "return document.querySelector('section.query dd.status').textContent === 'STOPPED';",
            "the query stopped",
        )
        .await;
    assert_eq!(
        browser.eval("return window.faiscaMark === 1;").await,
        true,
        "no reload"
    );
    session.stop().await;
}
