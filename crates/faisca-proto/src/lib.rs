//! Faísca's gRPC protocol: what every process (client, driver, executor) needs to talk to the
//! others.
//!
//! * [`v1`]: the messages and services generated from `proto/faisca/v1/faisca.proto`;
//! * conversions between protocol and Rust types (errors ↔ `tonic::Status`, config pairs,
//!   Flight tickets, DataFrame source references);
//! * [`rpc`]: binding a server, the server and client settings, and the `DoGet`-only Flight
//!   service the driver (job results) and executors (shuffle files) both run.
//! * [`health`]: the plain-HTTP `/healthz` and `/readyz` endpoints both processes serve on
//!   `--health-port`, for probes.
//!
//! The protocol is versioned by [`faisca_common::PROTOCOL_VERSION`]; executors send it when they register.

use faisca_common::{Error, FaiscaConfig, Fault as CommonFault};
use prost::Message;

/// Generated code for package `faisca.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("faisca.v1");
}

pub use v1::*;

pub mod health;
pub mod rpc;

/// Metadata key carrying the error's fault on a gRPC status.
const FAULT_KEY: &str = "faisca-fault";
const RETRYABLE_KEY: &str = "faisca-retryable";

/// Convert an error into a gRPC status that keeps its fault and retryability.
pub fn status_from_error(error: &Error) -> tonic::Status {
    let code = match error.fault() {
        CommonFault::User => tonic::Code::InvalidArgument,
        CommonFault::External if error.is_retryable() => tonic::Code::Unavailable,
        CommonFault::External => tonic::Code::FailedPrecondition,
        CommonFault::Internal => tonic::Code::Internal,
    };
    let mut status = tonic::Status::new(code, error.message());
    let fault = match error.fault() {
        CommonFault::User => "user",
        CommonFault::External => "external",
        CommonFault::Internal => "internal",
    };
    status
        .metadata_mut()
        .insert(FAULT_KEY, fault.parse().expect("ascii"));
    status.metadata_mut().insert(
        RETRYABLE_KEY,
        if error.is_retryable() {
            "true"
        } else {
            "false"
        }
        .parse()
        .expect("ascii"),
    );
    status
}

/// Convert a gRPC status back into an error. `what` names the peer or call, for statuses raised by
/// the transport rather than by Faísca (connection refused, message too large).
pub fn error_from_status(status: &tonic::Status, what: &str) -> Error {
    let fault = status
        .metadata()
        .get(FAULT_KEY)
        .and_then(|v| v.to_str().ok());
    let retryable = status
        .metadata()
        .get(RETRYABLE_KEY)
        .and_then(|v| v.to_str().ok())
        == Some("true");
    let message = status.message().to_string();
    match fault {
        Some("user") => Error::User(message),
        Some("external") => Error::External { message, retryable },
        Some("internal") => Error::Internal { message, retryable },
        _ => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                Error::external(format!("{what}: {message} (gRPC {:?})", status.code()))
            }
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => Error::user(format!(
                "{what}: {message} (a message over the gRPC size limit: raise faisca.rpc.maxMessageSize)"
            )),
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition => Error::user(format!("{what}: {message}")),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                Error::user(format!("{what}: {message} (gRPC {:?})", status.code()))
            }
            code => Error::internal(format!("{what}: {message} (gRPC {code:?})")),
        },
    }
}

impl TaskStatus {
    /// Rows the attempt produced: shuffle output, written files' rows, Kafka records sent.
    pub fn rows_produced(&self) -> u64 {
        self.partitions.iter().map(|p| p.rows).sum::<u64>()
            + self.written.iter().map(|f| f.rows).sum::<u64>()
            + self.records_sent
    }

    /// Bytes the attempt produced: shuffle output and written files.
    pub fn bytes_produced(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum::<u64>()
            + self.written.iter().map(|f| f.bytes).sum::<u64>()
    }
}

/// Task error as sent in a [`TaskStatus`].
pub fn task_error(error: &Error) -> TaskError {
    TaskError {
        message: error.message(),
        fault: match error.fault() {
            CommonFault::User => v1::Fault::User as i32,
            CommonFault::External => v1::Fault::External as i32,
            CommonFault::Internal => v1::Fault::Internal as i32,
        },
        retryable: error.is_retryable(),
        fetch_failure: error.fetch_failure().map(|f| v1::FetchFailure {
            stage_id: f.stage_id,
            map_partition: f.map_partition,
            executor_id: f.executor_id.clone(),
        }),
    }
}

/// The error a [`TaskError`] describes.
pub fn error_from_task_error(e: &TaskError) -> Error {
    if let Some(f) = &e.fetch_failure {
        return Error::fetch_failed(
            f.stage_id,
            f.map_partition,
            f.executor_id.clone(),
            e.message.clone(),
        );
    }
    match v1::Fault::try_from(e.fault).unwrap_or(v1::Fault::Internal) {
        v1::Fault::User => Error::User(e.message.clone()),
        v1::Fault::External => Error::External {
            message: e.message.clone(),
            retryable: e.retryable,
        },
        v1::Fault::Internal => Error::Internal {
            message: e.message.clone(),
            retryable: e.retryable,
        },
    }
}

/// Config pairs for the wire.
pub fn config_entries(config: &FaiscaConfig) -> Vec<ConfigEntry> {
    config
        .pairs()
        .map(|(k, v)| ConfigEntry {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// Parse config pairs from the wire.
pub fn config_from_entries(entries: &[ConfigEntry]) -> faisca_common::Result<FaiscaConfig> {
    FaiscaConfig::from_pairs(entries.iter().map(|e| (e.key.as_str(), e.value.as_str())))
}

/// The schema metadata key of a task log answer that counts the earlier lines not kept.
pub const TASK_LOG_LINES_DROPPED: &str = "faisca.linesDropped";

/// Encode a ticket for Flight `DoGet` (the bytes of `arrow_flight::Ticket::ticket`).
pub fn encode_ticket(kind: ticket::Kind) -> bytes::Bytes {
    Ticket { kind: Some(kind) }.encode_to_vec().into()
}

/// Decode a Flight ticket.
pub fn decode_ticket(bytes: &[u8]) -> faisca_common::Result<ticket::Kind> {
    Ticket::decode(bytes)
        .ok()
        .and_then(|t| t.kind)
        .ok_or_else(|| Error::user("malformed Flight ticket: expected a faisca.v1.Ticket with a result, shuffle or task log kind"))
}

/// Normalize a user-given address (`faisca://h:p`, `faisca+tls://h:p`, `http://h:p`,
/// `https://h:p`, `h:p`) into the `http://` URL a channel is built on (TLS is the transport's,
/// see [`rpc::ClientTransport`]).
pub fn endpoint_url(address: &str) -> faisca_common::Result<String> {
    let a = address.trim();
    let rest = ["faisca+tls://", "faisca://", "https://", "http://"]
        .iter()
        .find_map(|scheme| a.strip_prefix(scheme))
        .unwrap_or(a);
    let rest = rest.trim_end_matches('/');
    let valid = match rest.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if !valid || rest.contains('/') || rest.contains("://") {
        return Err(Error::user(format!(
            "invalid address '{address}': expected faisca://host:port, faisca+tls://host:port, http://host:port or https://host:port"
        )));
    }
    Ok(format!("http://{rest}"))
}

/// Whether `address` asks for TLS (`faisca+tls://` or `https://`).
pub fn address_says_tls(address: &str) -> bool {
    let a = address.trim();
    a.starts_with("faisca+tls://") || a.starts_with("https://")
}

/// The bytes of a reference to the driver's source `source_id` (a DataFrame plan's table, see
/// the driver's `logical_codec`).
pub fn encode_source_ref(source_id: u64, streaming: bool) -> Vec<u8> {
    SourceRef {
        source_id,
        streaming,
    }
    .encode_to_vec()
}

/// The source id in a source reference's bytes.
pub fn decode_source_ref(bytes: &[u8]) -> faisca_common::Result<SourceRef> {
    SourceRef::decode(bytes)
        .map_err(|e| Error::user(format!("malformed DataFrame source reference: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            endpoint_url("faisca://127.0.0.1:7077").unwrap(),
            "http://127.0.0.1:7077"
        );
        assert_eq!(
            endpoint_url("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(endpoint_url("h:2").unwrap(), "http://h:2");
        assert!(endpoint_url("nohost").is_err());
        assert!(endpoint_url("faisca://h:99999").is_err());
        for tls in ["faisca+tls://h:3", "https://h:3/"] {
            assert_eq!(endpoint_url(tls).unwrap(), "http://h:3");
            assert!(address_says_tls(tls));
        }
        assert!(!address_says_tls("faisca://h:3"));
        assert!(endpoint_url("https://faisca://h:3").is_err());
    }

    #[test]
    fn errors_round_trip_through_status() {
        for e in [
            Error::user("bad sql"),
            Error::external("s3 down"),
            Error::internal("bug"),
        ] {
            let back = error_from_status(&status_from_error(&e), "test");
            assert_eq!(back.fault(), e.fault());
            assert_eq!(back.message(), e.message());
        }
    }

    #[test]
    fn tickets_round_trip() {
        let t = encode_ticket(ticket::Kind::Result(ResultTicket { job_id: "j".into() }));
        assert!(matches!(decode_ticket(&t).unwrap(), ticket::Kind::Result(r) if r.job_id == "j"));
        assert!(decode_ticket(b"\xff\xff").is_err());
    }
}
