//! Pure planning functions: no I/O, no clocks, no network.
//!
//! * [`stages`]: cut a DataFusion physical plan into a [`stages::StageGraph`] at every exchange —
//!   hash (or round-robin) repartitions, single-partition merges (`CoalescePartitionsExec`,
//!   `SortPreservingMergeExec`) and broadcast build sides. Each cut leaves a `ShuffleReaderExec` in the
//!   consumer; each stage runs one task per output partition of its plan.
//! * [`scans`]: find the file scans of a plan, and [`scans::ApplySplits`], the physical optimizer
//!   rule that gives them the task splits computed with `faisca_connectors::splits`.
//! * [`kafka_scans`]: the Kafka sources of a plan, and [`kafka_scans::ApplyKafkaTasks`], which gives
//!   each scan the offset ranges the driver planned for its run.
//! * [`distributable`]: rewrites joins whose partitions share in-process state so that they stay
//!   correct when each partition is a task of its own (run first by [`stages::cut_stages`]).
//! * [`fusion`]: replaces each chain of filters and projections in a stage with a
//!   `PipelineExec`, a compiled pipeline (`faisca.codegen.enabled`).
//! * [`explain`]: the text shown by `EXPLAIN` and `faisca sql --explain`.
//!
//! The driver plans a query twice: a first physical plan shows which files each scan reads; with
//! their sizes (and row groups, read from footers) it computes splits; the second plan runs
//! [`scans::ApplySplits`] before DataFusion's own rules; then [`stages::cut_stages`] and
//! [`fusion::fuse_stages`].

pub mod distributable;
pub mod explain;
pub mod fusion;
pub mod kafka_scans;
pub mod scans;
pub mod stages;
