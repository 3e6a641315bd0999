//! Writer schemas from a Confluent Schema Registry, by id, for `from_avro` over the Confluent
//! wire format (a zero magic byte, a 4-byte big-endian schema id, then the Avro datum).
//!
//! A schema id names one schema forever, so fetched schemas are kept for the life of the process,
//! per registry address: each executor asks the registry once per id. Fetches are rare and run
//! on a short-lived thread of their own (the function that needs them is synchronous), bounded
//! by the `schemaRegistryTimeout` option.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result as DfResult};

/// The magic byte that starts a Confluent-framed value.
pub const MAGIC: u8 = 0;
/// Bytes before the datum: the magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

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

/// Avro schemas (JSON text) by (registry address, schema id).
type SchemaCache = HashMap<(String, u32), Arc<str>>;

/// Schemas fetched so far.
static SCHEMAS: LazyLock<Mutex<SchemaCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

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
        let key = (self.address.clone(), id);
        if let Some(s) = SCHEMAS.lock().expect("schema cache").get(&key) {
            return Ok(s.clone());
        }
        let fetched: Arc<str> = self.fetch(id)?.into();
        SCHEMAS
            .lock()
            .expect("schema cache")
            .insert(key, fetched.clone());
        Ok(fetched)
    }

    fn fetch(&self, id: u32) -> DfResult<String> {
        let url = format!("{}/schemas/ids/{id}", self.address);
        // A thread of its own: callers are synchronous and may run on a runtime's worker.
        let (status, body) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(self.get(&url))
                })
                .join()
                .unwrap_or_else(|_| Err("the request thread panicked".to_string()))
        })
        .map_err(|e| self.error(&url, &e))?;
        if status.as_u16() == 404 {
            return Err(DataFusionError::Execution(format!(
                "from_avro: the schema registry at '{}' has no schema with id {id} (a value's header names it); expected the registry that the producer registered its schema with",
                self.address
            )));
        }
        if !status.is_success() {
            return Err(self.error(&url, &format!("HTTP {status}: {}", shorten(&body))));
        }
        parse_schema_response(&body).map_err(|why| self.error(&url, &why))
    }

    async fn get(&self, url: &str) -> Result<(reqwest::StatusCode, String), String> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| chain(&e))?;
        let mut request = client
            .get(url)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some(info) = &self.user_info {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| chain(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| chain(&e))?;
        Ok((status, body))
    }

    fn error(&self, url: &str, why: &str) -> DataFusionError {
        DataFusionError::External(
            format!(
                "from_avro: cannot fetch a writer schema from the schema registry ('schemaRegistryAddress' {}): GET {url}: {why}",
                self.address
            )
            .into(),
        )
    }
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
    use super::*;

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
