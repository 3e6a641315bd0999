//! Data sources: what Faísca knows about reading files and Kafka, below the engine (it depends
//! on `faisca-common`, and on `faisca-rdkafka-guard` for the connect check of its Kafka
//! clients; the engine's scan nodes and the driver's planning call into it).
//!
//! * [`splits`]: pure, size-based planning of file scan tasks, as Spark does it: large files are
//!   cut at row-group boundaries into pieces of at most `maxSplitBytes`, small files are packed
//!   together, and every file costs `openCostInBytes` extra.
//! * [`parquet_layout`]: reads Parquet footers (through `object_store`) to find the byte ranges
//!   of row groups, which is where a large file may be split.
//!
//! * [`stores`]: object stores by URL (`file`, `s3`, `gs`, `az`, `http(s)`, `memory`), configured
//!   from each process's environment and the session's `faisca.store.*` keys.
//! * [`hidden`]: the store wrapper that makes listings skip `_`/`.` names, as Spark's do.
//! * [`guarded_http`]: the client of `http(s)://` stores, whose DNS resolver refuses a host that
//!   resolves to a metadata address the allowed locations do not name (it connects to exactly
//!   what it checked).
//!
//! * [`file_stream`]: which files a streaming file source reads in a batch (new ones, oldest
//!   first, `maxFilesPerTrigger`, `latestFirst`, `maxFileAge`), as Spark's.
//! * [`log_dir`]: numbered log entries in an object-store directory, listed in order and
//!   created once (the shape of every checkpoint and sink log).
//! * [`rate`]: the `rate` streaming source's arithmetic (values per second with a ramp-up, each
//!   batch's values and timestamps), as Spark's.
//! * [`kafka`]: the Kafka source: options (normalised once where they enter), offset planning, a
//!   query's run with its checkpoint records, task splits, and the range reader executors run.

pub mod file_stream;
pub mod guarded_http;
pub mod hidden;
pub mod kafka;
pub mod log_dir;
pub mod parquet_layout;
pub mod rate;
pub mod splits;
pub mod stores;
