//! Faísca for Rust programs: sessions and DataFrames on a Faísca cluster.
//!
//! ```no_run
//! # async fn run() -> faisca::Result<()> {
//! let session = faisca::Session::builder().master("local[2]").build().await?;
//! session.register_parquet("lineitem", "/data/tpch/lineitem.parquet").await?;
//! let df = session.sql("SELECT l_returnflag, count(*) FROM lineitem GROUP BY 1").await?;
//! df.show().await?;
//! # Ok(()) }
//! ```
//!
//! A [`Session`] is a session on a driver: `faisca://host:port` connects to a running cluster,
//! `local[N]` first starts a driver and N one-core executors inside this process ([`local`]) that
//! talk real gRPC on 127.0.0.1 — the same code path as a cluster. The driver owns the session's
//! catalog and plans everything; the client sends SQL and reads results with Arrow Flight
//! ([`client`]). A [`DataFrame`] is a query of the session, run when its rows are asked for; its
//! plan travels to the driver through the client's half of the plan codec ([`logical_codec`]).
//! What the driver says about jobs comes back as [`jobs::JobInfo`]: the protocol's messages stay
//! inside this crate's client.

pub mod client;
mod columns;
pub mod dataframe;
pub mod functions;
mod grouped;
pub mod jobs;
pub mod local;
pub mod logical_codec;
mod reader;
pub mod session;
pub mod streaming;
mod writer;

pub use columns::{IntoColumns, IntoCondition, IntoSorts};
pub use dataframe::DataFrame;
pub use faisca_common::{Error, FaiscaConfig, Result};
pub use functions::{Over, Window, WindowSpec};
pub use grouped::GroupedData;
pub use jobs::{JobInfo, JobState};
pub use reader::DataFrameReader;
pub use session::{Session, SessionBuilder};
pub use streaming::{
    DataStreamReader, DataStreamWriter, StreamingQuery, StreamingQueryManager,
    StreamingQueryProgress, StreamingQueryStatus, StreamingQuerySummary, Trigger,
};
pub use writer::DataFrameWriter;

/// The driver process, for programs (like the `faisca` CLI) that run one.
pub use faisca_driver as driver;
/// User-defined functions: register them before starting sessions, drivers or executors.
pub use faisca_engine::udf;
/// The executor process, for programs that run one.
pub use faisca_executor as executor;

/// DataFusion, whose expressions and logical plans DataFrames are made of.
pub use datafusion;
/// Arrow, as used in Faísca's results.
pub use datafusion::arrow;
/// An expression: what column functions take and return.
pub use datafusion::logical_expr::Expr;
