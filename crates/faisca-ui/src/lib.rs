//! The driver's web UI, REST API and Prometheus metrics.
//!
//! The driver's actor posts an [`events::Event`] for everything that happens to its jobs,
//! stages, tasks, executors and streaming queries on an [`server::EventBus`]. The UI never
//! reads the driver's state: an actor of its own ([`server`]) owns an [`store::AppStore`] built
//! from those events alone, and answers every HTTP request from it:
//!
//! * [`pages`]: HTML at Spark's paths (`/jobs/`, `/jobs/job/?id=N`, `/stages/stage/?id=N`,
//!   `/executors/`, `/streaming/`, `/environment/`), with [`dag`] drawing a job's stage graph
//!   as SVG on the server and a small embedded script (`assets/`) polling the REST API so that
//!   running jobs update without a reload;
//! * [`rest`]: Spark's monitoring API shape under `/api/v1/` (described by `docs/openapi.json`);
//! * [`metrics`]: `/metrics` in Prometheus' text format (also on a metrics-only port);
//! * [`tasklog`]: each task attempt's log lines, fetched from its executor on demand.
//!
//! Because the store is built from events only, the same events read back later build the same
//! answers: [`eventlog`] writes them as rolled JSON-lines segments to any object store, and
//! [`history`] (`faisca history`) serves the same pages and REST API from them. [`store::StoreLimits`] bound what it keeps (`faisca.ui.retained*`), so a long-lived
//! driver's UI does not grow without end. [`format`] and [`summary`] are helpers of the pages
//! and the API.

pub mod access;
pub mod dag;
pub mod eventlog;
pub mod events;
pub mod format;
pub mod history;
pub mod metrics;
pub mod pages;
pub mod rest;
pub mod server;
pub mod store;
pub mod summary;
pub mod tasklog;

pub use access::Access;
pub use eventlog::EventLogWriter;
pub use events::Event;
pub use history::HistoryServer;
pub use server::{EventBus, MetricsServer, UiOptions, UiServer};
