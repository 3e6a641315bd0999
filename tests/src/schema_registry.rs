//! A minimal Confluent Schema Registry for the tests over HTTP/1.1 on 127.0.0.1, with optional
//! basic authentication, counting the requests it answers: `GET /schemas/ids/{id}` (what a
//! reader uses), `POST /subjects/{subject}/versions` (register) and `POST /subjects/{subject}`
//! (look up), what a writer uses.
//!
//! This stands in for a real registry because none can run here: Confluent's and Apicurio's are
//! JVM applications from Maven repositories this machine cannot reach, and Karapace is not on
//! PyPI. It answers those endpoints with Confluent's status codes and bodies; schemas are the
//! same when their JSON is equal (Confluent compares canonical forms), and it checks no
//! compatibility between a subject's versions.

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
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestRegistry {
    /// A registry holding `schemas` (id, Avro schema JSON); when `basic_auth` is given (the
    /// base64 of `user:password`), requests without it get 401.
    pub fn start(schemas: &[(u32, &str)], basic_auth: Option<&str>) -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            schemas: schemas.iter().map(|(id, s)| (*id, s.to_string())).collect(),
            subjects: HashMap::new(),
        }));
        let auth = basic_auth.map(|a| format!("Basic {a}"));
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop, state) = (requests.clone(), stop.clone(), state.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state, auth.as_deref(), &requests);
                    }
                }
            })
        };
        TestRegistry {
            address,
            requests,
            state,
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

impl TestRegistry {
    /// The ids of `subject`'s versions, oldest first.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.state
            .lock()
            .unwrap()
            .subjects
            .get(subject)
            .cloned()
            .unwrap_or_default()
    }

    /// Registers `schema` under `subject` as a producer would; its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        self.state.lock().unwrap().register(subject, schema)
    }
}

/// Schemas by id, and each subject's versions (ids, oldest first).
struct State {
    schemas: HashMap<u32, String>,
    subjects: HashMap<String, Vec<u32>>,
}

impl State {
    /// The id of a schema equal (as JSON) to `schema`, if one is held.
    fn find(&self, schema: &str) -> Option<u32> {
        let wanted: Option<serde_json::Value> = serde_json::from_str(schema).ok();
        let mut ids: Vec<&u32> = self.schemas.keys().collect();
        ids.sort();
        ids.into_iter().copied().find(|id| {
            let held = &self.schemas[id];
            held == schema
                || (wanted.is_some()
                    && serde_json::from_str::<serde_json::Value>(held).ok() == wanted)
        })
    }

    fn register(&mut self, subject: &str, schema: &str) -> u32 {
        let id = self.find(schema).unwrap_or_else(|| {
            let id = self.schemas.keys().max().map_or(1, |m| m + 1);
            self.schemas.insert(id, schema.to_string());
            id
        });
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
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
    state: &Mutex<State>,
    auth: Option<&str>,
    requests: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = auth.is_none();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
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
    let mut body = vec![0u8; content_length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let posted: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("schema")?.as_str().map(str::to_string));
    let id = path
        .strip_prefix("/schemas/ids/")
        .and_then(|id| id.parse::<u32>().ok());
    let subject = path.strip_prefix("/subjects/").map(|rest| {
        let (subject, versions) = match rest.strip_suffix("/versions") {
            Some(subject) => (subject, true),
            None => (rest, false),
        };
        (percent_decode(subject), versions)
    });
    let mut state = state.lock().unwrap();
    let (status, body) = match (method, id, subject) {
        _ if !authorized => (
            "401 Unauthorized",
            r#"{"error_code":401,"message":"Unauthorized"}"#.to_string(),
        ),
        ("POST", _, Some(_)) if posted.is_none() => (
            "422 Unprocessable Entity",
            r#"{"error_code":42201,"message":"Invalid schema"}"#.to_string(),
        ),
        ("POST", _, Some((subject, true))) => {
            let id = state.register(&subject, posted.as_deref().unwrap_or_default());
            ("200 OK", serde_json::json!({ "id": id }).to_string())
        }
        ("POST", _, Some((subject, false))) => {
            let schema = posted.unwrap_or_default();
            match (state.subjects.get(&subject), state.find(&schema)) {
                (None, _) => (
                    "404 Not Found",
                    format!(r#"{{"error_code":40401,"message":"Subject '{subject}' not found."}}"#),
                ),
                (Some(versions), Some(id)) if versions.contains(&id) => {
                    let version = versions.iter().position(|v| *v == id).unwrap_or(0) + 1;
                    (
                        "200 OK",
                        serde_json::json!({ "subject": subject, "id": id, "version": version, "schema": schema })
                            .to_string(),
                    )
                }
                _ => (
                    "404 Not Found",
                    r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                ),
            }
        }
        ("GET", Some(id), _) => match state.schemas.get(&id) {
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

/// `%XX` escapes decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).unwrap_or_default());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `datum` in the Confluent wire format with schema id `id`.
pub fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}
