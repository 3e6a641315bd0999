//! A Confluent Schema Registry client for the wire format (a zero magic byte, a 4-byte
//! big-endian schema id, then the Avro datum): writer schemas by id for `from_avro`, and the id
//! of a schema registered (or looked up) under a subject for `to_avro`.
//!
//! A schema id names one schema forever, so fetched schemas and ids are kept for the life of the
//! process, per registry address: each executor asks the registry once per id (or subject and
//! schema), and tasks that miss the same one at the same time share one request (each cache entry is a cell that one fetch
//! fills while the others wait on it). Fetches go through one HTTP client (one connection pool)
//! on one small runtime of the process's own, started at the first miss: `from_avro` is a
//! synchronous function, so a task that misses waits for the answer — off the async workers'
//! duty when it runs on a multi-threaded runtime ([`tokio::task::block_in_place`]) — bounded by
//! the `schemaRegistryTimeout` option.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result as DfResult};
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::OnceCell;

/// The magic byte that starts a Confluent-framed value.
pub const MAGIC: u8 = 0;
/// Bytes before the datum: the magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

/// The timeout of each registry request unless the `schemaRegistryTimeout` option says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The functions whose third argument (a constant map of options) may name a registry.
const REGISTRY_FUNCTIONS: &[&str] = &["from_avro", "to_avro"];

/// Every `schemaRegistryAddress` that `from_avro` and `to_avro` calls in `plan` (subqueries
/// included) will contact, for the driver to check against its allowed locations before the job
/// runs. The options argument is folded to its constant value first (`map(…)` of literals); one
/// that is not constant is refused by the functions themselves.
pub fn registry_addresses(plan: &datafusion::logical_expr::LogicalPlan) -> DfResult<Vec<String>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;

    let simplifier = ExprSimplifier::new(SimplifyContext::builder().build());
    let mut addresses = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && REGISTRY_FUNCTIONS.contains(&call.func.name())
                    && let Some(options) = call.args.get(2)
                    && let Ok(Expr::Literal(value, _)) = simplifier.simplify(options.clone())
                {
                    let pairs = super::option_pairs(call.func.name(), "map(…)", Some(&value))?;
                    addresses.extend(
                        pairs
                            .into_iter()
                            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("schemaRegistryAddress"))
                            .map(|(_, v)| v.trim().to_string()),
                    );
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(addresses)
}

/// The `schemaRegistryAddress` option of `function`: an http(s) URL, without a trailing slash.
pub fn parse_address(function: &str, value: &str) -> DfResult<String> {
    let url = value.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(DataFusionError::Plan(format!(
            "{function} option 'schemaRegistryAddress' is '{value}'; expected an http:// or https:// URL of a Confluent Schema Registry"
        )));
    }
    Ok(url.to_string())
}

/// The `schemaRegistryTimeout` option of `function`: a positive duration.
pub fn parse_timeout(function: &str, value: &str) -> DfResult<Duration> {
    faisca_common::config::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{function} option 'schemaRegistryTimeout' is '{value}'; expected a positive duration such as 30s, 500ms or 2m"
            ))
        })
}

/// Where a registry is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Registry {
    /// The base URL, e.g. `http://127.0.0.1:8081`, without a trailing slash.
    pub address: String,
    /// `user:password` for HTTP basic authentication (Confluent's `basic.auth.user.info`).
    pub user_info: Option<String>,
    /// Timeout of each request.
    pub timeout: Duration,
}

/// Avro schemas (JSON text) by (registry address, schema id), each filled by one fetch.
type SchemaCache = HashMap<(String, u32), Arc<OnceCell<Arc<str>>>>;

/// Schemas fetched (or being fetched) so far.
static SCHEMAS: LazyLock<Mutex<SchemaCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Schema ids by (registry address, subject, schema text, registered rather than looked up),
/// each filled by one request.
type SubjectCache = HashMap<(String, String, String, bool), Arc<OnceCell<u32>>>;

/// Ids registered or looked up so far.
static SUBJECT_IDS: LazyLock<Mutex<SubjectCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The process's registry client: a runtime of one worker thread and one HTTP client, built at
/// the first miss. Either can fail to build (no threads left); the error is the fetch's.
static CLIENT: LazyLock<Result<(Runtime, reqwest::Client), String>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("faisca-schema-registry")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the schema registry client's thread: {e}"))?;
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(NoMetadataAddresses))
        .build()
        .map_err(|e| {
            format!(
                "cannot build the schema registry's HTTP client: {}",
                chain(&e)
            )
        })?;
    Ok((runtime, client))
});

/// The registry client's DNS resolver: a name that resolves to a link-local or cloud metadata
/// address is refused where the connection is made (on every executor), whatever the driver's
/// rule: what the client connects to is what this answered, so the check cannot be raced by a
/// second lookup. (Addresses written as IP literals are not resolved: the driver checks those.)
struct NoMetadataAddresses;

impl reqwest::dns::Resolve for NoMetadataAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(address) = found
                .iter()
                .find(|a| faisca_common::locations::is_metadata_host(&a.ip().to_string()))
            {
                return Err(format!(
                    "the schema registry host '{host}' resolves to {}, a link-local or cloud metadata address: refused",
                    address.ip()
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The schema id of a framed value, or `None` when the value is not in the wire format.
pub fn schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

impl Registry {
    /// The Avro schema (JSON text) with id `id`, fetched once per process.
    pub fn schema(&self, id: u32) -> DfResult<Arc<str>> {
        let cell = SCHEMAS
            .lock()
            .expect("schema cache")
            .entry((self.address.clone(), id))
            .or_default()
            .clone();
        if let Some(schema) = cell.get() {
            return Ok(schema.clone());
        }
        let url = format!("{}/schemas/ids/{id}", self.address);
        let registry = self.clone();
        // Concurrent misses of one id wait on the same cell: one request. A failed fetch leaves
        // the cell empty, so the next miss asks again.
        self.wait(
            "from_avro",
            &format!("GET {url}"),
            move |client| async move {
                cell.get_or_try_init(|| registry.fetch(&client, id))
                    .await
                    .cloned()
            },
        )
    }

    /// The id under which `subject` holds `schema` (Avro JSON text): registered there first when
    /// `register` (as Confluent's serializers do with `auto.register.schemas`, their default;
    /// registering a schema the subject already has gives its id), otherwise looked up. Kept
    /// for the life of the process, per registry, subject and schema text.
    pub fn id_of(&self, subject: &str, schema: &str, register: bool) -> DfResult<u32> {
        let key = (
            self.address.clone(),
            subject.to_string(),
            schema.to_string(),
            register,
        );
        let cell = SUBJECT_IDS
            .lock()
            .expect("subject cache")
            .entry(key)
            .or_default()
            .clone();
        if let Some(id) = cell.get() {
            return Ok(*id);
        }
        let path = encode_path_segment(subject);
        let url = if register {
            format!("{}/subjects/{path}/versions", self.address)
        } else {
            format!("{}/subjects/{path}", self.address)
        };
        let (registry, subject, schema) = (self.clone(), subject.to_string(), schema.to_string());
        let what = format!("POST {url}");
        self.wait("to_avro", &what, move |client| async move {
            cell.get_or_try_init(|| {
                registry.post_schema(&client, &url, &subject, &schema, register)
            })
            .await
            .copied()
        })
    }

    /// Runs `request` on the registry client's runtime and waits for its answer, off the async
    /// workers' duty when called on a multi-threaded runtime, bounded by the timeout.
    fn wait<T, F, Fut>(&self, function: &str, what: &str, request: F) -> DfResult<T>
    where
        T: Send + 'static,
        F: FnOnce(reqwest::Client) -> Fut,
        Fut: std::future::Future<Output = DfResult<T>> + Send + 'static,
    {
        let (runtime, client) = CLIENT.as_ref().map_err(|e| self.error(function, what, e))?;
        let (send, answer) = std::sync::mpsc::channel();
        let request = request(client.clone());
        runtime.spawn(async move {
            let _ = send.send(request.await);
        });
        // The request is bounded by the timeout; the wait has a margin over it.
        let wait = || answer.recv_timeout(self.timeout * 2 + Duration::from_secs(1));
        let answered = match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        };
        answered.map_err(|_| self.error(function, what, "no answer within the timeout"))?
    }

    async fn fetch(&self, client: &reqwest::Client, id: u32) -> DfResult<Arc<str>> {
        let url = format!("{}/schemas/ids/{id}", self.address);
        let what = format!("GET {url}");
        let request = self.authorized(client.get(&url));
        let (status, body) = self
            .send(request)
            .await
            .map_err(|e| self.error("from_avro", &what, &e))?;
        if status.as_u16() == 404 {
            return Err(DataFusionError::Execution(format!(
                "from_avro: the schema registry at '{}' has no schema with id {id} (a value's header names it); expected the registry that the producer registered its schema with",
                self.address
            )));
        }
        if !status.is_success() {
            return Err(self.error(
                "from_avro",
                &what,
                &format!("HTTP {status}: {}", shorten(&body)),
            ));
        }
        parse_schema_response(&body)
            .map(Arc::from)
            .map_err(|why| self.error("from_avro", &what, &why))
    }

    /// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`) or looks it up
    /// (`POST /subjects/{subject}`); the schema's id either way.
    async fn post_schema(
        &self,
        client: &reqwest::Client,
        url: &str,
        subject: &str,
        schema: &str,
        register: bool,
    ) -> DfResult<u32> {
        let what = format!("POST {url}");
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = self
            .authorized(client.post(url))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body);
        let (status, body) = self
            .send(request)
            .await
            .map_err(|e| self.error("to_avro", &what, &e))?;
        if !register && status.as_u16() == 404 {
            return Err(DataFusionError::Execution(format!(
                "to_avro: the schema registry at '{}' has no such schema under subject '{subject}' ({}); register it first, or set the option 'autoRegisterSchemas' to 'true'",
                self.address,
                shorten(&body)
            )));
        }
        if status.as_u16() == 409 || status.as_u16() == 422 {
            return Err(DataFusionError::Execution(format!(
                "to_avro: the schema registry at '{}' refused the schema for subject '{subject}' (HTTP {status}: {}); expected a schema compatible with the subject's earlier versions",
                self.address,
                shorten(&body)
            )));
        }
        if !status.is_success() {
            return Err(self.error(
                "to_avro",
                &what,
                &format!("HTTP {status}: {}", shorten(&body)),
            ));
        }
        parse_id_response(&body).map_err(|why| self.error("to_avro", &what, &why))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request
            .timeout(self.timeout)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        match &self.user_info {
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                request.basic_auth(user, Some(password))
            }
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String), String> {
        let response = request.send().await.map_err(|e| chain(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| chain(&e))?;
        Ok((status, body))
    }

    fn error(&self, function: &str, what: &str, why: &str) -> DataFusionError {
        DataFusionError::External(
            format!(
                "{function}: cannot reach the schema registry ('schemaRegistryAddress' {}): {what}: {why}",
                self.address
            )
            .into(),
        )
    }
}

/// A subject as one URL path segment: characters other than unreserved ones percent-encoded.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The schema id of a registry's answer to a registration or lookup (`{"id": 7, ...}`).
pub fn parse_id_response(body: &str) -> Result<u32, String> {
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", shorten(body)))?;
    json.get("id")
        .and_then(|v| v.as_u64())
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| format!("the answer has no 32-bit \"id\": {}", shorten(body)))
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn shorten(body: &str) -> &str {
    let end = body.char_indices().nth(200).map_or(body.len(), |(i, _)| i);
    &body[..end]
}

/// The Avro schema text of a registry's `GET /schemas/ids/{id}` answer.
pub fn parse_schema_response(body: &str) -> Result<String, String> {
    let json: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", shorten(body)))?;
    if let Some(kind) = json.get("schemaType").and_then(|v| v.as_str())
        && !kind.eq_ignore_ascii_case("AVRO")
    {
        return Err(format!(
            "the schema is of type {kind}; from_avro decodes Avro schemas only"
        ));
    }
    if json
        .get("references")
        .and_then(|v| v.as_array())
        .is_some_and(|r| !r.is_empty())
    {
        return Err(
            "the schema refers to other registered schemas (schema references), which from_avro does not resolve"
                .to_string(),
        );
    }
    json.get("schema")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("the answer has no \"schema\" string: {}", shorten(body)))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_registry_client_refuses_names_of_metadata_addresses() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = |n: &str| reqwest::dns::Name::from_str(n).unwrap();
        let local: Vec<_> = NoMetadataAddresses
            .resolve(name("localhost"))
            .await
            .unwrap()
            .collect();
        assert!(!local.is_empty());
        let error = match NoMetadataAddresses.resolve(name("169.254.169.254")).await {
            Ok(_) => panic!("a metadata address was resolved"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("169.254.169.254") && error.contains("metadata"),
            "{error}"
        );
    }

    use super::*;

    /// A registry on 127.0.0.1 that answers every request for schema 7 after `delay`, and 404
    /// otherwise; returns its address and the number of requests it got.
    fn slow_registry(delay: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                std::thread::sleep(delay);
                let (status, body) = if request_line.contains("/schemas/ids/7 ") {
                    ("200 OK", r#"{"schema":"\"long\""}"#)
                } else {
                    ("404 Not Found", r#"{"error_code":40403}"#)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (address, count)
    }

    #[test]
    fn concurrent_misses_share_one_request_and_failures_are_not_kept() {
        let (address, count) = slow_registry(Duration::from_millis(300));
        let registry = Registry {
            address,
            user_info: None,
            timeout: Duration::from_secs(10),
        };
        let schemas: Vec<Arc<str>> = std::thread::scope(|scope| {
            let tasks: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| registry.schema(7).unwrap()))
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(schemas.iter().all(|s| &**s == "\"long\""));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Kept: no new request.
        registry.schema(7).unwrap();
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A missing schema is an error each time it is asked for, never kept.
        for _ in 0..2 {
            let err = registry.schema(8).unwrap_err().to_string();
            assert!(err.contains("no schema with id 8"), "{err}");
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_miss_on_a_runtime_worker_waits_off_the_workers() {
        let (address, _) = slow_registry(Duration::ZERO);
        let registry = Registry {
            address,
            user_info: None,
            timeout: Duration::from_secs(10),
        };
        let schema = tokio::spawn(async move { registry.schema(7) })
            .await
            .unwrap();
        assert_eq!(&*schema.unwrap(), "\"long\"");
    }

    #[test]
    fn framed_values_name_their_schema() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 42]), Some(258));
        assert_eq!(schema_id(&[0, 0, 0, 1]), None);
        assert_eq!(schema_id(&[1, 0, 0, 0, 1]), None);
    }

    #[test]
    fn registry_answers() {
        assert_eq!(
            parse_schema_response(r#"{"schema":"\"long\""}"#).unwrap(),
            "\"long\""
        );
        assert!(
            parse_schema_response(r#"{"schema":"x","schemaType":"PROTOBUF"}"#)
                .unwrap_err()
                .contains("PROTOBUF")
        );
        assert!(
            parse_schema_response(
                r#"{"schema":"x","references":[{"name":"a","subject":"s","version":1}]}"#
            )
            .unwrap_err()
            .contains("references")
        );
        assert!(
            parse_schema_response("<html>")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
