//! Structured streaming on the driver (issue 19, being built): each micro-batch of a query is a
//! job of this driver. What exists so far:
//!
//! * [`check`]: what a streaming query may do, checked when it starts, with Spark's reasons
//!   (output modes, watermarks, sorting, limits, joins and unions with static data).
//! * [`checkpoint`]: the query's checkpoint — `metadata` (its id and identity), the offset log
//!   written before each batch runs and the commit log written after its sink committed — and
//!   where a restarted query resumes.
//! * [`file_sink_log`]: a streaming file sink's `_faisca_metadata/<batch>` log, the record of
//!   what the output holds (exactly-once: a batch is logged once, unlogged files are not output).
//! * [`watermark`]: event-time watermarks (Spark's rules: the minimum over the query's
//!   watermarks, computed when a batch ends and applied from the next), lateness, window
//!   completion and when a batch without new data runs.

pub mod check;
pub mod checkpoint;
pub mod file_sink_log;
pub mod plan;
pub mod runner;
pub mod sources;
pub mod start;
pub mod watermark;
