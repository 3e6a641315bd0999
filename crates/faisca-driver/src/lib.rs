//! The driver process.
//!
//! One actor ([`actor::DriverState`]) owns all mutable state: sessions, executors, jobs → stages →
//! tasks. It is driven by [`actor::Message`]s through a synchronous `receive`; anything slow (SQL
//! planning, reading Parquet footers, streaming results) happens outside it, in the gRPC handlers,
//! which talk to it through an [`actor::DriverHandle`] and get answers on oneshot channels.
//!
//! * [`server`] binds one port for both the control service ([`service`]) and the Arrow Flight
//!   service that streams job results to clients ([`flight`]).
//! * [`planning`] turns SQL into a [`scheduler::PlannedJob`]: DataFusion logical and physical
//!   planning, Spark-style file splits, stage cutting, plan encoding.
//! * [`write`](mod@write) plans writes (`COPY`, `INSERT INTO`, DataFrame writers): save modes, the sink of the
//!   job's last stage, and the commit the actor starts once every write task succeeded;
//!   [`commit`] is that commit protocol (manifest, publish, resume, abort).
//! * [`session`] holds a client's session (its DataFusion context and the sources it resolved);
//!   [`logical_codec`] sends DataFrame plans to clients and takes them back.
//! * Kafka sources: a query's runs (`faisca_connectors::kafka::run`) are planned in [`planning`],
//!   kept with the job by the actor, and committed when its output was delivered.
//! * [`streaming`]: structured streaming's driver side (being built: so far the query
//!   checkpoint and where a restarted query resumes).
//! * [`scheduler`] holds the job/stage/task bookkeeping the actor uses to launch tasks on free
//!   executor slots and to react to task results.
//!
//! * [`launcher`] starts executors for the driver when asked (`faisca driver --executors N`:
//!   child processes; pods through the `faisca-kubernetes` crate), replaces those that die,
//!   reports why they ended, and stops them with the driver. [`allocation`] is dynamic
//!   allocation: the number the launcher is asked for follows the backlog of tasks, and idle
//!   executors are released.
//!
//! Executors connect to the driver (never the reverse) over one bidirectional stream each; a
//! broken stream means a lost executor. An executor leaving on purpose (SIGTERM) first
//! *decommissions*: the actor gives it no new tasks and releases it once no job needs its
//! running tasks or shuffle output; what it still held when it left is re-run without counting
//! a failure.

pub mod actor;
pub mod allocation;
pub mod commit;
pub mod diagnose;
pub mod flight;
pub mod launcher;
pub mod logical_codec;
pub mod planning;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod session;
pub mod sources;
pub mod streaming;
pub mod task_logs;
pub mod write;

pub use server::{DriverOptions, DriverServer};
