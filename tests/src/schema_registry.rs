//! A minimal Confluent Schema Registry for the tests: `GET /schemas/ids/{id}` over HTTP/1.1 on
//! 127.0.0.1, with optional basic authentication, counting the requests it answers.
//!
//! This stands in for a real registry because none can run here: Confluent's and Apicurio's are
//! JVM applications from Maven repositories this machine cannot reach, and Karapace is not on
//! PyPI. It answers the one endpoint a reader uses, with Confluent's status codes and bodies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running registry; stops when dropped.
pub struct TestRegistry {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestRegistry {
    /// A registry holding `schemas` (id, Avro schema JSON); when `basic_auth` is given (the
    /// base64 of `user:password`), requests without it get 401.
    pub fn start(schemas: &[(u32, &str)], basic_auth: Option<&str>) -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let schemas: HashMap<u32, String> =
            schemas.iter().map(|(id, s)| (*id, s.to_string())).collect();
        let auth = basic_auth.map(|a| format!("Basic {a}"));
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &schemas, auth.as_deref(), &requests);
                    }
                }
            })
        };
        TestRegistry {
            address,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// How many times `path` was requested.
    pub fn requests(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    schemas: &HashMap<u32, String>,
    auth: Option<&str>,
    requests: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = auth.is_none();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let (Some(expected), Some((name, value))) = (auth, line.split_once(':'))
            && name.eq_ignore_ascii_case("authorization")
            && value.trim() == expected
        {
            authorized = true;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    *requests
        .lock()
        .unwrap()
        .entry(path.to_string())
        .or_default() += 1;
    let id = path
        .strip_prefix("/schemas/ids/")
        .and_then(|id| id.parse::<u32>().ok());
    let (status, body) = match (method, id) {
        _ if !authorized => (
            "401 Unauthorized",
            r#"{"error_code":401,"message":"Unauthorized"}"#.to_string(),
        ),
        ("GET", Some(id)) => match schemas.get(&id) {
            Some(schema) => (
                "200 OK",
                serde_json::json!({ "schema": schema }).to_string(),
            ),
            None => (
                "404 Not Found",
                format!(r#"{{"error_code":40403,"message":"Schema {id} not found"}}"#),
            ),
        },
        _ => (
            "404 Not Found",
            r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#.to_string(),
        ),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `datum` in the Confluent wire format with schema id `id`.
pub fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}
