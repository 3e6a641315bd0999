//! Data sources.
//!
//! * [`splits`]: pure, size-based planning of file scan tasks, as Spark does it: large files are
//!   cut at row-group boundaries into pieces of at most `maxSplitBytes`, small files are packed
//!   together, and every file costs `openCostInBytes` extra.
//! * [`parquet_layout`]: reads Parquet footers (through `object_store`) to find the byte ranges
//!   of row groups, which is where a large file may be split.
//!
//! Kafka (offset ranges, checkpoints) and object-store configuration from URLs come with later work.

pub mod parquet_layout;
pub mod splits;
