//! Pieces every Faísca crate shares.
//!
//! * [`Error`] / [`Result`]: one error type that says whose fault a failure is ([`Fault`]: the user's,
//!   an external system's, or ours) and whether retrying can help. It converts to and from gRPC
//!   statuses so that an error keeps its meaning across processes.
//! * [`ids`]: typed identifiers for jobs, stages, tasks, executors and sessions.
//! * [`config`]: [`FaiscaConfig`], every `faisca.*` key with its default, parsed case-insensitively
//!   from string pairs, plus the size (`512m`, `4g`) and duration (`30s`, `500ms`) parsers.
//! * [`redact`]: [`Redaction`], the one rule for which option and configuration values are
//!   secrets, and how they are masked in messages, logs and statement text.
//! * [`tls`]: rustls server and client configurations built from `faisca.ssl.*`, reloaded when
//!   their certificate files change ([`reload`]).
//! * [`auth`]: who a call's credential belongs to (the cluster secret, user tokens).
//! * [`locations`]: where sessions may read and write (`faisca.sql.allowedLocations`).
//!
//! Nothing here does I/O but reading certificate, secret and token files.

pub mod auth;
pub mod config;
pub mod depth;
pub mod error;
pub mod ids;
pub mod locations;
pub mod redact;
pub mod reload;
pub mod tls;

pub use config::FaiscaConfig;
pub use error::{Error, Fault, FetchFailure, Result, decode_guarded};
pub use ids::{ExecutorId, JobId, SessionId, StageId};
pub use redact::Redaction;

/// Version of the driver ↔ executor protocol. An executor speaking another version is refused
/// at registration with an error that names both versions.
pub const PROTOCOL_VERSION: u32 = 1;
