//! What runs inside a task, and the stage-plan codec that brings it there.
//!
//! A task executes one partition of a stage plan (a DataFusion physical plan, decoded with
//! [`codec::FaiscaCodec`]) and writes what it produces as shuffle output or as files:
//!
//! * [`shuffle::writer`] partitions the task's batches (DataFusion's `BatchPartitioner`, so the
//!   hash of a row is the same one `RepartitionExec` computes; a fused pipeline from
//!   `faisca-pipeline` splits its rows itself), buffers them as compressed Arrow IPC streams,
//!   spills when the buffer grows past `faisca.shuffle.spillBytes`, and leaves one data file plus
//!   one index file per task attempt.
//! * [`shuffle::reader::ShuffleReaderExec`] is the leaf that stands where the planner cut the plan:
//!   it reads its partition of a finished stage, from local files directly or from other executors
//!   with Arrow Flight `DoGet`. Where to read comes from the task's [`shuffle::ShuffleEnv`], which
//!   travels in the `TaskContext`.
//! * [`shuffle::frames`] turns stored IPC bytes into Flight messages without decoding them.
//! * [`sink`] writes a write job's files (one writer per task, under `_temporary/`); the driver
//!   publishes them (`faisca_driver::commit`).
//! * [`kafka`]: the scan node that reads a task's planned offset ranges, and the table factory
//!   behind `CREATE EXTERNAL TABLE … STORED AS KAFKA`.
//! * [`scan_files`]: the file list of a task's split of a Parquet scan.
//! * [`codec`] encodes stage plans (with their output partitioning, Faísca's nodes and fused
//!   pipelines) and schemas for the wire: the driver encodes, executors decode.
//! * [`session_config`] is the DataFusion configuration every process builds from Faísca's;
//!   [`filter_pushdown`] keeps DataFusion's physical filter pushdown from moving a filter onto
//!   another column of the same name; [`window_filter`] carries window aggregates' `FILTER` as an
//!   argument (DataFusion's own filter cannot be encoded).
//! * [`udf`] holds the user-defined functions every process of a program registers;
//!   [`functions`] Faísca's built-in ones (`from_json`, `from_avro`, `to_json`, `to_avro`).
//! * [`state_store`]: a streaming stateful operator's state for one partition and its versioned
//!   delta and snapshot files in the query's checkpoint (issue 19, being built).
//! * [`streaming_aggregate`]: one micro-batch of a streaming aggregation in one state partition
//!   (partial aggregates merged into the state, rows per output mode, late rows, eviction).
//! * [`streaming_plan`]: logical nodes of streaming queries (`EventTimeWatermark`).
//! * [`task_metrics`]: a task's named counters (e.g. null-key records a topic read as a table
//!   skips), carried in its own `TaskContext` and reported with its status.
//! * [`yielding`] makes a decoded plan's leaves yield between batches, so that a cancelled task
//!   stops promptly.

pub mod codec;
pub mod filter_pushdown;
pub mod functions;
pub mod kafka;
pub mod kafka_table;
pub mod plan_counters;
pub mod scan_files;
pub mod session_config;
pub mod shuffle;
pub mod sink;
pub mod state_store;
pub mod streaming_aggregate;
pub mod streaming_exec;
pub mod streaming_plan;
pub mod streaming_source;
pub mod task_metrics;
pub mod udf;
pub mod window_filter;
pub mod yielding;
