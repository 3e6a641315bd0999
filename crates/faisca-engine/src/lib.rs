//! What runs inside a task.
//!
//! A task executes one partition of a stage plan (a DataFusion physical plan, decoded with
//! [`codec::FaiscaCodec`]) and writes what it produces as shuffle output:
//!
//! * [`shuffle::writer`] partitions the task's batches (DataFusion's `BatchPartitioner`, so the
//!   hash of a row is the same one `RepartitionExec` computes), buffers them as compressed Arrow IPC
//!   streams, spills when the buffer grows past `faisca.shuffle.spillBytes`, and leaves one data file
//!   plus one index file per task attempt.
//! * [`shuffle::reader::ShuffleReaderExec`] is the leaf that stands where the planner cut the plan:
//!   it reads its partition of a finished stage, from local files directly or from other executors
//!   with Arrow Flight `DoGet`. Where to read comes from the task's [`shuffle::ShuffleEnv`], which
//!   travels in the `TaskContext`.
//! * [`shuffle::frames`] turns stored IPC bytes into Flight messages without decoding them.
//! * [`rpc`] holds the gRPC server and client settings both processes share.
//! * [`codec`] encodes stage plans (with their output partitioning) and schemas for the wire;
//!   [`logical_codec`] encodes DataFrame logical plans between clients and the driver.
//! * [`udf`] holds the user-defined functions every process of a program registers;
//!   [`functions`] Faísca's built-in ones (`from_json`).
//! * [`kafka`]: Kafka tables and the scan node that reads planned offset ranges.
//! * [`sink`] writes a write job's files (one writer per task, under `_temporary/`) and holds the
//!   commit protocol the driver runs when every task succeeded.
//! * [`filter_pushdown`] keeps DataFusion's physical filter pushdown from moving a filter onto
//!   another column of the same name.
//! * [`window_filter`] carries window aggregates' `FILTER` as an argument (DataFusion's own
//!   filter cannot be encoded).
//! * [`yielding`] makes a decoded plan's leaves yield between batches, so that a cancelled task
//!   stops promptly.

pub mod codec;
pub mod filter_pushdown;
pub mod functions;
pub mod kafka;
pub mod logical_codec;
pub mod pipeline;
pub mod rpc;
pub mod scan_files;
pub mod session_config;
pub mod shuffle;
pub mod sink;
pub mod udf;
pub mod window_filter;
pub mod yielding;
