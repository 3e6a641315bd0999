//! `FaiscaConfig`: every `faisca.*` key with its default.
//!
//! Keys are matched case-insensitively (DataFusion lowercases `SET` names). Keys that do not start
//! with `faisca.` (for example `datafusion.execution.batch_size`) are kept as they are and handed to
//! DataFusion's session configuration. An unknown `faisca.*` key or a malformed value is an error
//! that names the key and says what was expected.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Error, Result};

pub mod cluster;
pub mod security;
pub mod ui;
pub use cluster::DynamicAllocation;
pub use security::{AuthSettings, TlsSettings};
pub use ui::{TaskLogLimits, UiSettings};

/// How a value of a key is parsed.
#[derive(Debug, Clone, Copy)]
pub enum ValueKind {
    /// A byte size: `134217728`, `128m`, `4g` (binary units, as in Spark).
    Bytes,
    /// A duration: `30s`, `500ms`, `2m`, or a plain number of milliseconds.
    Duration,
    /// A non-negative integer.
    Count,
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A small rule language of one key; `valid` checks a value, `expected` describes it.
    Rule {
        /// What a valid value looks like, for error messages.
        expected: &'static str,
        /// Whether a value is valid.
        valid: fn(&str) -> bool,
    },
}

/// One documented key.
#[derive(Debug)]
pub struct KeySpec {
    /// The canonical spelling.
    pub name: &'static str,
    /// The default, in the same syntax a user writes.
    pub default: &'static str,
    /// How the value is parsed.
    pub kind: ValueKind,
    /// What the key controls.
    pub doc: &'static str,
}

/// Every `faisca.*` key as a constant: [`FaiscaConfig`]'s accessors name them, so a key that
/// does not exist cannot be read (it does not compile).
pub mod keys {
    use super::{KeySpec, ValueKind, parse_fail_tasks, parse_task_delay, parse_task_gate};

    /// `faisca.files.maxPartitionBytes`.
    pub const FILES_MAX_PARTITION_BYTES: KeySpec = KeySpec {
        name: "faisca.files.maxPartitionBytes",
        default: "128m",
        kind: ValueKind::Bytes,
        doc: "Most bytes of files one scan task reads (Spark's spark.sql.files.maxPartitionBytes).",
    };

    /// `faisca.files.openCostInBytes`.
    pub const FILES_OPEN_COST_IN_BYTES: KeySpec = KeySpec {
        name: "faisca.files.openCostInBytes",
        default: "4m",
        kind: ValueKind::Bytes,
        doc: "Estimated cost of opening a file, in bytes, used when packing small files into tasks.",
    };

    /// `faisca.shuffle.partitions`.
    pub const SHUFFLE_PARTITIONS: KeySpec = KeySpec {
        name: "faisca.shuffle.partitions",
        default: "0",
        kind: ValueKind::Count,
        doc: "Partitions of a shuffle (joins, aggregations). 0: the total executor cores of the cluster when the query is planned.",
    };

    /// `faisca.shuffle.compression`.
    pub const SHUFFLE_COMPRESSION: KeySpec = KeySpec {
        name: "faisca.shuffle.compression",
        default: "lz4",
        kind: ValueKind::Choice(&["lz4", "zstd", "none"]),
        doc: "Compression of shuffle files and of shuffle transfers between hosts (Arrow IPC buffer compression).",
    };

    /// `faisca.shuffle.compressLoopback`.
    pub const SHUFFLE_COMPRESS_LOOPBACK: KeySpec = KeySpec {
        name: "faisca.shuffle.compressLoopback",
        default: "false",
        kind: ValueKind::Bool,
        doc: "Also compress shuffle transfers between executors on one host (a loopback address), where compressing costs CPU and saves no network.",
    };

    /// `faisca.shuffle.spillBytes`.
    pub const SHUFFLE_SPILL_BYTES: KeySpec = KeySpec {
        name: "faisca.shuffle.spillBytes",
        default: "64m",
        kind: ValueKind::Bytes,
        doc: "Shuffle output a task buffers in memory before it writes the buffered part to a spill file.",
    };

    /// `faisca.shuffle.inMemory`.
    pub const SHUFFLE_IN_MEMORY: KeySpec = KeySpec {
        name: "faisca.shuffle.inMemory",
        default: "true",
        kind: ValueKind::Bool,
        doc: "Keep a task's shuffle output in executor memory when its memory reservation allows (files otherwise).",
    };

    /// `faisca.shuffle.fetchConcurrency`.
    pub const SHUFFLE_FETCH_CONCURRENCY: KeySpec = KeySpec {
        name: "faisca.shuffle.fetchConcurrency",
        default: "4",
        kind: ValueKind::Count,
        doc: "Map outputs one shuffle reader fetches at the same time.",
    };

    /// `faisca.rpc.maxMessageSize`.
    pub const RPC_MAX_MESSAGE_SIZE: KeySpec = KeySpec {
        name: "faisca.rpc.maxMessageSize",
        default: "64m",
        kind: ValueKind::Bytes,
        doc: "Largest gRPC message sent or accepted; a stage plan over it fails the job with a clear error.",
    };

    /// `faisca.rpc.connectTimeout`.
    pub const RPC_CONNECT_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.rpc.connectTimeout",
        default: "5s",
        kind: ValueKind::Duration,
        doc: "Timeout of one attempt to open a gRPC connection.",
    };

    /// `faisca.executor.heartbeatInterval`.
    pub const EXECUTOR_HEARTBEAT_INTERVAL: KeySpec = KeySpec {
        name: "faisca.executor.heartbeatInterval",
        default: "2s",
        kind: ValueKind::Duration,
        doc: "How often an executor sends a heartbeat to the driver.",
    };

    /// `faisca.executor.registrationTimeout`.
    pub const EXECUTOR_REGISTRATION_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.executor.registrationTimeout",
        default: "60s",
        kind: ValueKind::Duration,
        doc: "How long an executor keeps retrying to reach the driver at start-up.",
    };

    /// `faisca.executor.instances`.
    pub const EXECUTOR_INSTANCES: KeySpec = KeySpec {
        name: "faisca.executor.instances",
        default: "0",
        kind: ValueKind::Count,
        doc: "Executors the driver launches: child processes on its host (`faisca driver --executors N`), or pods with a k8s:// master; 0: executors are started separately (with dynamic allocation: see initialExecutors).",
    };

    /// `faisca.executor.cores`.
    pub const EXECUTOR_CORES: KeySpec = KeySpec {
        name: "faisca.executor.cores",
        default: "1",
        kind: ValueKind::Count,
        doc: "Task slots of each executor the driver launches.",
    };

    /// `faisca.executor.memory`.
    pub const EXECUTOR_MEMORY: KeySpec = KeySpec {
        name: "faisca.executor.memory",
        default: "1g",
        kind: ValueKind::Bytes,
        doc: "Memory pool of each executor the driver launches.",
    };

    /// `faisca.executor.maxFailures`.
    pub const EXECUTOR_MAX_FAILURES: KeySpec = KeySpec {
        name: "faisca.executor.maxFailures",
        default: "3",
        kind: ValueKind::Count,
        doc: "Times the driver replaces a launched executor that died, per executor slot; after that the slot stays empty.",
    };

    /// `faisca.executor.stopTimeout`.
    pub const EXECUTOR_STOP_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.executor.stopTimeout",
        default: "10s",
        kind: ValueKind::Duration,
        doc: "When the driver stops, how long its launched executors get to exit after SIGTERM before they are killed.",
    };

    /// `faisca.decommission.enabled`.
    pub const DECOMMISSION_ENABLED: KeySpec = KeySpec {
        name: "faisca.decommission.enabled",
        default: "true",
        kind: ValueKind::Bool,
        doc: "On SIGTERM an executor decommissions: it takes no new tasks, finishes its running ones and serves its shuffle output until no running job needs it; otherwise it stops at once.",
    };

    /// `faisca.executor.decommission.gracePeriod`.
    pub const EXECUTOR_DECOMMISSION_GRACE_PERIOD: KeySpec = KeySpec {
        name: "faisca.executor.decommission.gracePeriod",
        default: "30s",
        kind: ValueKind::Duration,
        doc: "Longest a decommissioning executor stays; then it exits and the driver re-runs what is still needed, without counting a failure.",
    };

    /// `faisca.health.requestTimeout`.
    pub const HEALTH_REQUEST_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.health.requestTimeout",
        default: "5s",
        kind: ValueKind::Duration,
        doc: "How long the health endpoints (`--health-port`) wait for a probe's request before closing its connection.",
    };

    /// `faisca.executor.heartbeatTimeout`.
    pub const EXECUTOR_HEARTBEAT_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.executor.heartbeatTimeout",
        default: "10s",
        kind: ValueKind::Duration,
        doc: "An executor silent this long (no heartbeat, no task status) is considered lost, even if its connection stays open.",
    };

    /// `faisca.client.executorWaitTimeout`.
    pub const CLIENT_EXECUTOR_WAIT_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.client.executorWaitTimeout",
        default: "30s",
        kind: ValueKind::Duration,
        doc: "How long a client waits for at least one registered executor before it runs a query.",
    };

    /// `faisca.local.executorMemory`.
    pub const LOCAL_EXECUTOR_MEMORY: KeySpec = KeySpec {
        name: "faisca.local.executorMemory",
        default: "2g",
        kind: ValueKind::Bytes,
        doc: "Memory pool of each in-process executor of a local[N] session.",
    };

    /// `faisca.task.maxAttempts`.
    pub const TASK_MAX_ATTEMPTS: KeySpec = KeySpec {
        name: "faisca.task.maxAttempts",
        default: "4",
        kind: ValueKind::Count,
        doc: "Attempts in all of a task that fails with a retryable error.",
    };

    /// `faisca.stage.maxAttempts`.
    pub const STAGE_MAX_ATTEMPTS: KeySpec = KeySpec {
        name: "faisca.stage.maxAttempts",
        default: "4",
        kind: ValueKind::Count,
        doc: "Times a stage may fail because shuffle input it reads was lost (its map tasks are re-run each time) before the job fails (Spark's spark.stage.maxConsecutiveAttempts).",
    };

    /// `faisca.stage.maxTasks`.
    pub const STAGE_MAX_TASKS: KeySpec = KeySpec {
        name: "faisca.stage.maxTasks",
        default: "100000",
        kind: ValueKind::Count,
        doc: "The most tasks, or shuffle output partitions, one stage may have: a plan asking for more (a huge faisca.shuffle.partitions, a repartition a client sent) is refused before the driver keeps state for each.",
    };

    /// `faisca.driver.retainedJobs`.
    pub const DRIVER_RETAINED_JOBS: KeySpec = KeySpec {
        name: "faisca.driver.retainedJobs",
        default: "1000",
        kind: ValueKind::Count,
        doc: "Finished jobs the driver remembers for `faisca status` (driver-level; the oldest are forgotten first).",
    };

    /// `faisca.driver.retainedTaskFailures`.
    pub const DRIVER_RETAINED_TASK_FAILURES: KeySpec = KeySpec {
        name: "faisca.driver.retainedTaskFailures",
        default: "20",
        kind: ValueKind::Count,
        doc: "Most recent failed task attempts (with their errors) each job keeps for `faisca status` (driver-level).",
    };

    /// `faisca.client.progressInterval`.
    pub const CLIENT_PROGRESS_INTERVAL: KeySpec = KeySpec {
        name: "faisca.client.progressInterval",
        default: "250ms",
        kind: ValueKind::Duration,
        doc: "How often `faisca submit` asks the driver for a running job's progress.",
    };

    /// `faisca.test.failTasks`.
    pub const TEST_FAIL_TASKS: KeySpec = KeySpec {
        name: "faisca.test.failTasks",
        default: "none",
        kind: ValueKind::Rule {
            expected: "none or STAGE:N[:user] (STAGE a stage id or *), e.g. 1:2",
            valid: |v| parse_fail_tasks(v).is_ok(),
        },
        doc: "Fault injection for tests: `STAGE:N` fails the first N attempts of every task of stage STAGE (`*`: every stage) with a retryable error; `STAGE:N:user` with a user error, `STAGE:N:plan` with an internal error another attempt would hit again (neither is retried).",
    };

    /// `faisca.test.taskDelay`.
    pub const TEST_TASK_DELAY: KeySpec = KeySpec {
        name: "faisca.test.taskDelay",
        default: "none",
        kind: ValueKind::Rule {
            expected: "none or STAGE:DURATION (STAGE a stage id or *), e.g. 2:500ms",
            valid: |v| parse_task_delay(v).is_ok(),
        },
        doc: "Fault injection for tests: every task of stage STAGE (`*`: every stage) waits DURATION before it runs.",
    };

    /// `faisca.test.taskGate`.
    pub const TEST_TASK_GATE: KeySpec = KeySpec {
        name: "faisca.test.taskGate",
        default: "none",
        kind: ValueKind::Rule {
            expected: "none or STAGE:PATH (STAGE a stage id or *), e.g. 1:/tmp/open",
            valid: |v| parse_task_gate(v).is_ok(),
        },
        doc: "For tests: every task of stage STAGE (`*`: every stage) waits until the file PATH exists on its executor's host before it runs.",
    };

    /// `faisca.write.commitConcurrency`.
    pub const WRITE_COMMIT_CONCURRENCY: KeySpec = KeySpec {
        name: "faisca.write.commitConcurrency",
        default: "16",
        kind: ValueKind::Count,
        doc: "Files the driver moves to their final names at once when it commits a write.",
    };

    /// `faisca.test.stopCommitAfterManifest`.
    pub const TEST_STOP_COMMIT_AFTER_MANIFEST: KeySpec = KeySpec {
        name: "faisca.test.stopCommitAfterManifest",
        default: "false",
        kind: ValueKind::Bool,
        doc: "Fault injection for tests: a write's commit stops right after recording its manifest, as if the driver died there (the next write to the destination finishes it).",
    };

    /// `faisca.test.stopBeforeSourceCommit`.
    pub const TEST_STOP_BEFORE_SOURCE_COMMIT: KeySpec = KeySpec {
        name: "faisca.test.stopBeforeSourceCommit",
        default: "false",
        kind: ValueKind::Bool,
        doc: "Fault injection for tests: a write job whose output is delivered (or committed) fails before its Kafka sources record their commit, as if the driver died there (the next run redoes that batch).",
    };

    /// `faisca.kafka.requestTimeout`.
    pub const KAFKA_REQUEST_TIMEOUT: KeySpec = KeySpec {
        name: "faisca.kafka.requestTimeout",
        default: "10s",
        kind: ValueKind::Duration,
        doc: "Timeout of each request the driver makes to Kafka brokers when it plans a run (topics, offsets); each is tried fetchOffset.numRetries + 1 times.",
    };

    /// `faisca.kafka.maxRecordsPerTask`.
    pub const KAFKA_MAX_RECORDS_PER_TASK: KeySpec = KeySpec {
        name: "faisca.kafka.maxRecordsPerTask",
        default: "1000000",
        kind: ValueKind::Count,
        doc: "Most offsets one Kafka task reads when the source sets no maxRecordsPerPartition; larger ranges are split.",
    };

    /// `faisca.kafka.maxHeadersPerRecord`.
    pub const KAFKA_MAX_HEADERS_PER_RECORD: KeySpec = KeySpec {
        name: "faisca.kafka.maxHeadersPerRecord",
        default: "1000",
        kind: ValueKind::Count,
        doc: "The most headers a Kafka record read with includeHeaders may carry: a record with more fails its task, naming its topic, partition and offset (a producer, not the reader, decides how many a record has).",
    };

    /// `faisca.streaming.statePartitions`.
    pub const STREAMING_STATE_PARTITIONS: KeySpec = KeySpec {
        name: "faisca.streaming.statePartitions",
        default: "8",
        kind: ValueKind::Count,
        doc: "State partitions of a new streaming query with stateful operators (its shuffle partitions), unless faisca.shuffle.partitions is above 0; a query's checkpoint fixes the number for good.",
    };

    /// `faisca.streaming.stateSnapshotInterval`.
    pub const STREAMING_STATE_SNAPSHOT_INTERVAL: KeySpec = KeySpec {
        name: "faisca.streaming.stateSnapshotInterval",
        default: "10",
        kind: ValueKind::Count,
        doc: "A stateful operator writes its whole state as a snapshot every this many batches (the others write only the changes).",
    };

    /// `faisca.streaming.minBatchesToRetain`.
    pub const STREAMING_MIN_BATCHES_TO_RETAIN: KeySpec = KeySpec {
        name: "faisca.streaming.minBatchesToRetain",
        default: "100",
        kind: ValueKind::Count,
        doc: "Batches of a streaming query's checkpoint (offsets, commits and state versions) kept loadable; older files are removed.",
    };

    /// `faisca.streaming.pollInterval`.
    pub const STREAMING_POLL_INTERVAL: KeySpec = KeySpec {
        name: "faisca.streaming.pollInterval",
        default: "100ms",
        kind: ValueKind::Duration,
        doc: "How long a streaming query with a processing-time trigger of 0 waits before looking for new data again when the last look found none.",
    };

    /// `faisca.streaming.recentProgress`.
    pub const STREAMING_RECENT_PROGRESS: KeySpec = KeySpec {
        name: "faisca.streaming.recentProgress",
        default: "100",
        kind: ValueKind::Count,
        doc: "Progress reports a streaming query keeps for recent_progress() (Spark's spark.sql.streaming.numRecentProgressUpdates).",
    };

    /// `faisca.streaming.memorySink.maxRows`.
    pub const STREAMING_MEMORY_SINK_MAX_ROWS: KeySpec = KeySpec {
        name: "faisca.streaming.memorySink.maxRows",
        default: "10000000",
        kind: ValueKind::Count,
        doc: "The most rows a streaming query's memory sink holds on the driver (all of them in append mode, the last result in complete mode): a batch that would take it past this fails the query, naming the sink, instead of filling the driver's memory. The memory sink is for tests and small results; use a file or Kafka sink for more.",
    };

    /// `faisca.test.streaming.stopAfter`.
    pub const TEST_STREAMING_STOP_AFTER: KeySpec = KeySpec {
        name: "faisca.test.streaming.stopAfter",
        default: "none",
        kind: ValueKind::Choice(&["none", "offsets", "sink", "commit"]),
        doc: "Fault injection for tests: a streaming query's first batch stops (fails the query) right after it wrote its offsets entry, after its sink committed, or after its commit entry, as if the driver died there.",
    };

    /// `faisca.codegen.enabled`.
    pub const CODEGEN_ENABLED: KeySpec = KeySpec {
        name: "faisca.codegen.enabled",
        default: "true",
        kind: ValueKind::Bool,
        doc: "Fuse each stage's chains of filters and projections into one compiled pipeline (PipelineExec); false runs DataFusion's operators one by one.",
    };

    /// `faisca.planner.checkEncoding`.
    pub const PLANNER_CHECK_ENCODING: KeySpec = KeySpec {
        name: "faisca.planner.checkEncoding",
        default: "auto",
        kind: ValueKind::Choice(&["auto", "true", "false"]),
        doc: "Decode every stage plan on the driver before it is sent and compare it with the plan that was encoded, failing the query on a difference (a field the plan codec drops); auto: in debug builds only.",
    };

    /// `faisca.redaction.regex`.
    pub const REDACTION_REGEX: KeySpec = KeySpec {
        name: "faisca.redaction.regex",
        default: crate::redact::DEFAULT_REDACTION_REGEX,
        kind: ValueKind::Rule {
            expected: "a regular expression",
            valid: |v| crate::redact::Redaction::new(v).is_ok(),
        },
        doc: "Keys whose values are secrets (matched anywhere in the key): their values are masked wherever options or configuration are shown or stored (errors, logs, faisca status, EXPLAIN, Kafka checkpoints), also inside statement text (OPTIONS, MAP, SET). Spark's spark.redaction.regex plus Kafka and Schema Registry credentials.",
    };

    /// `faisca.batchSize`.
    pub const BATCH_SIZE: KeySpec = KeySpec {
        name: "faisca.batchSize",
        default: "8192",
        kind: ValueKind::Count,
        doc: "Rows per Arrow batch inside tasks (DataFusion's datafusion.execution.batch_size).",
    };
}

/// Every `faisca.*` key. The README's configuration table is this list.
pub const KEYS: &[KeySpec] = &[
    keys::FILES_MAX_PARTITION_BYTES,
    keys::FILES_OPEN_COST_IN_BYTES,
    keys::SHUFFLE_PARTITIONS,
    keys::SHUFFLE_COMPRESSION,
    keys::SHUFFLE_COMPRESS_LOOPBACK,
    keys::SHUFFLE_SPILL_BYTES,
    keys::SHUFFLE_IN_MEMORY,
    keys::SHUFFLE_FETCH_CONCURRENCY,
    keys::RPC_MAX_MESSAGE_SIZE,
    keys::RPC_CONNECT_TIMEOUT,
    keys::EXECUTOR_HEARTBEAT_INTERVAL,
    keys::EXECUTOR_REGISTRATION_TIMEOUT,
    keys::EXECUTOR_INSTANCES,
    keys::EXECUTOR_CORES,
    keys::EXECUTOR_MEMORY,
    keys::EXECUTOR_MAX_FAILURES,
    keys::EXECUTOR_STOP_TIMEOUT,
    keys::DECOMMISSION_ENABLED,
    keys::EXECUTOR_DECOMMISSION_GRACE_PERIOD,
    keys::HEALTH_REQUEST_TIMEOUT,
    keys::EXECUTOR_HEARTBEAT_TIMEOUT,
    keys::CLIENT_EXECUTOR_WAIT_TIMEOUT,
    keys::LOCAL_EXECUTOR_MEMORY,
    keys::TASK_MAX_ATTEMPTS,
    keys::STAGE_MAX_ATTEMPTS,
    keys::STAGE_MAX_TASKS,
    keys::DRIVER_RETAINED_JOBS,
    keys::DRIVER_RETAINED_TASK_FAILURES,
    keys::CLIENT_PROGRESS_INTERVAL,
    keys::TEST_FAIL_TASKS,
    keys::TEST_TASK_DELAY,
    keys::TEST_TASK_GATE,
    keys::WRITE_COMMIT_CONCURRENCY,
    keys::TEST_STOP_COMMIT_AFTER_MANIFEST,
    keys::TEST_STOP_BEFORE_SOURCE_COMMIT,
    keys::KAFKA_REQUEST_TIMEOUT,
    keys::KAFKA_MAX_RECORDS_PER_TASK,
    keys::KAFKA_MAX_HEADERS_PER_RECORD,
    keys::STREAMING_STATE_PARTITIONS,
    keys::STREAMING_STATE_SNAPSHOT_INTERVAL,
    keys::STREAMING_MIN_BATCHES_TO_RETAIN,
    keys::STREAMING_POLL_INTERVAL,
    keys::STREAMING_RECENT_PROGRESS,
    keys::STREAMING_MEMORY_SINK_MAX_ROWS,
    keys::TEST_STREAMING_STOP_AFTER,
    keys::CODEGEN_ENABLED,
    keys::PLANNER_CHECK_ENCODING,
    keys::REDACTION_REGEX,
    keys::BATCH_SIZE,
    cluster::DYN_ENABLED,
    cluster::DYN_MIN,
    cluster::DYN_MAX,
    cluster::DYN_INITIAL,
    cluster::DYN_IDLE_TIMEOUT,
    cluster::DYN_BACKLOG_TIMEOUT,
    cluster::DYN_SUSTAINED_BACKLOG_TIMEOUT,
    cluster::DYN_RATIO,
    cluster::DYN_SHUFFLE_TRACKING,
    cluster::DYN_SHUFFLE_TRACKING_TIMEOUT,
    cluster::EXECUTOR_MEMORY_OVERHEAD,
    cluster::K8S_NAMESPACE,
    cluster::K8S_IMAGE,
    cluster::K8S_PULL_POLICY,
    cluster::K8S_POD_TEMPLATE,
    cluster::K8S_POD_NAME_PREFIX,
    cluster::K8S_EXECUTOR_SERVICE_ACCOUNT,
    cluster::K8S_DRIVER_SERVICE_ACCOUNT,
    cluster::K8S_BATCH_SIZE,
    cluster::K8S_BATCH_DELAY,
    cluster::K8S_EXECUTOR_TIMEOUT,
    cluster::K8S_DELETE_ON_TERMINATION,
    cluster::K8S_API_POLLING_INTERVAL,
    cluster::K8S_DRIVER_POD_NAME,
    ui::UI_ENABLED,
    ui::UI_PORT,
    ui::UI_BIND,
    ui::PORT_MAX_RETRIES,
    ui::UI_RETAINED_JOBS,
    ui::UI_RETAINED_STAGES,
    ui::UI_RETAINED_TASKS,
    ui::UI_RETAINED_DEAD_EXECUTORS,
    ui::UI_TASK_LOG_LINES,
    ui::UI_TASK_LOG_MAX_BYTES,
    ui::UI_TASK_LOG_MAX_LINE_BYTES,
    ui::UI_TASK_LOG_TIMEOUT,
    ui::EVENT_LOG_ENABLED,
    ui::EVENT_LOG_DIR,
    ui::EVENT_LOG_MAX_FILE_SIZE,
    ui::EVENT_LOG_MAX_INTERVAL,
    ui::HISTORY_UPDATE_INTERVAL,
    security::SSL_ENABLED,
    security::SSL_CERT_FILE,
    security::SSL_KEY_FILE,
    security::SSL_CA_FILE,
    security::SSL_CLIENT_AUTH,
    security::SSL_SERVER_NAME,
    security::SSL_RELOAD_INTERVAL,
    security::SSL_HANDSHAKE_TIMEOUT,
    security::SSL_MAX_HANDSHAKES,
    security::AUTH_SECRET,
    security::AUTH_SECRET_FILE,
    security::AUTH_TOKENS_FILE,
    security::AUTH_TOKEN,
    security::METRICS_TOKEN_FILE,
    security::SQL_ALLOWED_LOCATIONS,
    security::SQL_ALLOW_LOCAL_FILES,
    security::PLAN_MAX_DEPTH,
];

/// Parsed configuration. Build with [`FaiscaConfig::from_pairs`] or start from
/// [`FaiscaConfig::default`] and [`FaiscaConfig::set`]. Its `Debug` masks secret values.
#[derive(Clone, Default)]
pub struct FaiscaConfig {
    /// `faisca.*` values by lower-cased key, validated; plus other keys verbatim.
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for FaiscaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redaction = self.redaction();
        f.debug_map()
            .entries(self.pairs().map(|(k, v)| (k, redaction.value(k, v))))
            .finish()
    }
}

fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(key))
}

impl FaiscaConfig {
    /// Parse key-value pairs; later pairs override earlier ones.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut config = FaiscaConfig::default();
        for (k, v) in pairs {
            config.set(k.as_ref(), v.as_ref())?;
        }
        Ok(config)
    }

    /// Set one key, validating `faisca.*` keys.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let lower = key.trim().to_ascii_lowercase();
        if lower.starts_with("faisca.store.") {
            if !is_store_key(&lower) {
                return Err(Error::user(format!(
                    "invalid object store key '{key}': expected faisca.store.<s3|gs|az>.<bucket>.<option>, e.g. faisca.store.s3.my-bucket.endpoint"
                )));
            }
            self.values.insert(lower, value.trim().to_string());
        } else if cluster::is_metadata_key(&lower) {
            self.values
                .insert(cluster::metadata_key(key.trim()), value.trim().to_string());
        } else if lower.starts_with("faisca.") {
            let spec = spec(&lower).ok_or_else(|| {
                Error::user(format!(
                    "unknown configuration key '{key}': expected one of {}",
                    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            validate(spec, value.trim())?;
            self.values.insert(lower, value.trim().to_string());
        } else {
            self.values
                .insert(key.trim().to_string(), value.to_string());
        }
        Ok(())
    }

    /// All pairs that were set explicitly (canonical lower-case names for `faisca.*`).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Pairs that are not `faisca.*` keys (handed to DataFusion).
    pub fn other_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().filter(|(k, _)| !k.starts_with("faisca."))
    }

    /// The value of `key`: set, or its default. Every value was validated when set, and a
    /// test checks every default, so the parsers below cannot fail.
    fn raw(&self, key: &KeySpec) -> &str {
        self.values
            .get(&key.name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or(key.default)
    }

    fn bytes(&self, key: &KeySpec) -> u64 {
        parse_bytes(self.raw(key)).expect("validated when set")
    }

    fn duration(&self, key: &KeySpec) -> Duration {
        parse_duration(self.raw(key)).expect("validated when set")
    }

    fn flag(&self, key: &KeySpec) -> bool {
        self.raw(key).eq_ignore_ascii_case("true")
    }

    fn count(&self, key: &KeySpec) -> u64 {
        self.raw(key).parse().expect("validated when set")
    }

    /// `faisca.files.maxPartitionBytes`.
    pub fn max_partition_bytes(&self) -> u64 {
        self.bytes(&keys::FILES_MAX_PARTITION_BYTES).max(1)
    }
    /// `faisca.files.openCostInBytes`.
    pub fn open_cost_in_bytes(&self) -> u64 {
        self.bytes(&keys::FILES_OPEN_COST_IN_BYTES)
    }
    /// `faisca.codegen.enabled`.
    pub fn codegen_enabled(&self) -> bool {
        self.flag(&keys::CODEGEN_ENABLED)
    }
    /// `faisca.planner.checkEncoding`: whether stage plans are decoded and compared on the driver.
    pub fn check_plan_encoding(&self) -> bool {
        match self
            .raw(&keys::PLANNER_CHECK_ENCODING)
            .to_ascii_lowercase()
            .as_str()
        {
            "true" => true,
            "false" => false,
            _ => cfg!(debug_assertions),
        }
    }
    /// `faisca.redaction.regex` as a [`crate::Redaction`] (compiled once per process and
    /// pattern).
    pub fn redaction(&self) -> crate::Redaction {
        crate::Redaction::new(self.raw(&keys::REDACTION_REGEX)).unwrap_or_default()
    }
    /// `faisca.kafka.requestTimeout`.
    pub fn kafka_request_timeout(&self) -> Duration {
        self.duration(&keys::KAFKA_REQUEST_TIMEOUT)
    }
    /// `faisca.kafka.maxRecordsPerTask` (at least 1).
    pub fn kafka_max_records_per_task(&self) -> u64 {
        self.count(&keys::KAFKA_MAX_RECORDS_PER_TASK).max(1)
    }
    /// `faisca.kafka.maxHeadersPerRecord`.
    pub fn kafka_max_headers_per_record(&self) -> usize {
        usize::try_from(self.count(&keys::KAFKA_MAX_HEADERS_PER_RECORD)).unwrap_or(usize::MAX)
    }
    /// State partitions of a new streaming query: `faisca.shuffle.partitions` when above 0,
    /// else `faisca.streaming.statePartitions` (at least 1).
    pub fn streaming_state_partitions(&self) -> u32 {
        let n = self
            .shuffle_partitions()
            .map(|n| n as u64)
            .unwrap_or_else(|| self.count(&keys::STREAMING_STATE_PARTITIONS));
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }
    /// `faisca.streaming.stateSnapshotInterval` (at least 1).
    pub fn streaming_state_snapshot_interval(&self) -> u64 {
        self.count(&keys::STREAMING_STATE_SNAPSHOT_INTERVAL).max(1)
    }
    /// `faisca.streaming.minBatchesToRetain` (at least 2: the batch resumed and the one before).
    pub fn streaming_min_batches_to_retain(&self) -> u64 {
        self.count(&keys::STREAMING_MIN_BATCHES_TO_RETAIN).max(2)
    }
    /// `faisca.streaming.pollInterval`.
    pub fn streaming_poll_interval(&self) -> Duration {
        self.duration(&keys::STREAMING_POLL_INTERVAL)
    }
    /// `faisca.streaming.recentProgress` (at least 1).
    pub fn streaming_recent_progress(&self) -> usize {
        self.count(&keys::STREAMING_RECENT_PROGRESS).max(1) as usize
    }
    /// `faisca.streaming.memorySink.maxRows`.
    pub fn streaming_memory_sink_max_rows(&self) -> u64 {
        self.count(&keys::STREAMING_MEMORY_SINK_MAX_ROWS)
    }
    /// `faisca.test.streaming.stopAfter`: `None`, or `offsets`, `sink` or `commit`.
    pub fn test_streaming_stop_after(&self) -> Option<&str> {
        match self.raw(&keys::TEST_STREAMING_STOP_AFTER) {
            "none" => None,
            point => Some(point),
        }
    }
    /// `faisca.shuffle.partitions`; `None` means "the cluster's total cores".
    pub fn shuffle_partitions(&self) -> Option<usize> {
        match self.count(&keys::SHUFFLE_PARTITIONS) {
            0 => None,
            n => Some(n as usize),
        }
    }
    /// `faisca.shuffle.compression`: `lz4`, `zstd` or `none`.
    pub fn shuffle_compression(&self) -> &str {
        self.raw(&keys::SHUFFLE_COMPRESSION)
    }
    /// `faisca.shuffle.compressLoopback`.
    pub fn shuffle_compress_loopback(&self) -> bool {
        self.flag(&keys::SHUFFLE_COMPRESS_LOOPBACK)
    }
    /// `faisca.shuffle.inMemory`.
    pub fn shuffle_in_memory(&self) -> bool {
        self.flag(&keys::SHUFFLE_IN_MEMORY)
    }
    /// `faisca.shuffle.spillBytes`.
    pub fn shuffle_spill_bytes(&self) -> u64 {
        self.bytes(&keys::SHUFFLE_SPILL_BYTES)
    }
    /// `faisca.shuffle.fetchConcurrency` (at least 1).
    pub fn shuffle_fetch_concurrency(&self) -> usize {
        self.count(&keys::SHUFFLE_FETCH_CONCURRENCY).max(1) as usize
    }
    /// `faisca.rpc.maxMessageSize`.
    pub fn max_message_size(&self) -> usize {
        self.bytes(&keys::RPC_MAX_MESSAGE_SIZE) as usize
    }
    /// `faisca.rpc.connectTimeout`.
    pub fn connect_timeout(&self) -> Duration {
        self.duration(&keys::RPC_CONNECT_TIMEOUT)
    }
    /// `faisca.health.requestTimeout`.
    pub fn health_request_timeout(&self) -> Duration {
        self.duration(&keys::HEALTH_REQUEST_TIMEOUT)
    }
    /// `faisca.executor.heartbeatInterval`.
    pub fn heartbeat_interval(&self) -> Duration {
        self.duration(&keys::EXECUTOR_HEARTBEAT_INTERVAL)
    }
    /// `faisca.executor.heartbeatTimeout`.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.duration(&keys::EXECUTOR_HEARTBEAT_TIMEOUT)
    }
    /// `faisca.executor.registrationTimeout`.
    pub fn registration_timeout(&self) -> Duration {
        self.duration(&keys::EXECUTOR_REGISTRATION_TIMEOUT)
    }
    /// `faisca.executor.instances`.
    pub fn executor_instances(&self) -> usize {
        self.count(&keys::EXECUTOR_INSTANCES) as usize
    }
    /// `faisca.executor.cores` (at least 1).
    pub fn executor_cores(&self) -> u32 {
        self.count(&keys::EXECUTOR_CORES).clamp(1, u32::MAX as u64) as u32
    }
    /// `faisca.executor.memory`, in bytes.
    pub fn executor_memory(&self) -> u64 {
        self.bytes(&keys::EXECUTOR_MEMORY)
    }
    /// `faisca.executor.maxFailures`.
    pub fn executor_max_failures(&self) -> u32 {
        self.count(&keys::EXECUTOR_MAX_FAILURES)
            .min(u32::MAX as u64) as u32
    }
    /// `faisca.executor.stopTimeout`.
    pub fn executor_stop_timeout(&self) -> Duration {
        self.duration(&keys::EXECUTOR_STOP_TIMEOUT)
    }
    /// `faisca.decommission.enabled`.
    pub fn decommission_enabled(&self) -> bool {
        self.flag(&keys::DECOMMISSION_ENABLED)
    }
    /// `faisca.executor.decommission.gracePeriod`.
    pub fn decommission_grace_period(&self) -> Duration {
        self.duration(&keys::EXECUTOR_DECOMMISSION_GRACE_PERIOD)
    }
    /// `faisca.client.executorWaitTimeout`.
    pub fn executor_wait_timeout(&self) -> Duration {
        self.duration(&keys::CLIENT_EXECUTOR_WAIT_TIMEOUT)
    }
    /// `faisca.local.executorMemory`, as written (parse with [`parse_bytes`]).
    pub fn local_executor_memory(&self) -> &str {
        self.raw(&keys::LOCAL_EXECUTOR_MEMORY)
    }
    /// `faisca.task.maxAttempts` (at least 1).
    pub fn task_max_attempts(&self) -> u32 {
        self.count(&keys::TASK_MAX_ATTEMPTS)
            .clamp(1, u32::MAX as u64) as u32
    }
    /// `faisca.batchSize`.
    pub fn batch_size(&self) -> usize {
        self.count(&keys::BATCH_SIZE).max(1) as usize
    }
    /// `faisca.stage.maxAttempts` (at least 1).
    pub fn stage_max_attempts(&self) -> u32 {
        self.count(&keys::STAGE_MAX_ATTEMPTS)
            .clamp(1, u32::MAX as u64) as u32
    }
    /// `faisca.stage.maxTasks` (at least 1).
    pub fn stage_max_tasks(&self) -> usize {
        self.count(&keys::STAGE_MAX_TASKS)
            .clamp(1, usize::MAX as u64) as usize
    }
    /// `faisca.driver.retainedJobs`.
    pub fn retained_jobs(&self) -> usize {
        self.count(&keys::DRIVER_RETAINED_JOBS) as usize
    }
    /// `faisca.driver.retainedTaskFailures`.
    pub fn retained_task_failures(&self) -> usize {
        self.count(&keys::DRIVER_RETAINED_TASK_FAILURES) as usize
    }
    /// `faisca.client.progressInterval` (at least 10 ms).
    pub fn progress_interval(&self) -> Duration {
        self.duration(&keys::CLIENT_PROGRESS_INTERVAL)
            .max(Duration::from_millis(10))
    }
    /// `faisca.write.commitConcurrency` (at least 1).
    pub fn write_commit_concurrency(&self) -> usize {
        (self.count(&keys::WRITE_COMMIT_CONCURRENCY) as usize).max(1)
    }
    /// `faisca.test.stopCommitAfterManifest`.
    pub fn test_stop_commit_after_manifest(&self) -> bool {
        self.flag(&keys::TEST_STOP_COMMIT_AFTER_MANIFEST)
    }
    /// `faisca.test.stopBeforeSourceCommit`.
    pub fn test_stop_before_source_commit(&self) -> bool {
        self.flag(&keys::TEST_STOP_BEFORE_SOURCE_COMMIT)
    }
    /// `faisca.test.failTasks`: the injected task failures, if any.
    pub fn injected_failures(&self) -> Option<InjectedFailures> {
        parse_fail_tasks(self.raw(&keys::TEST_FAIL_TASKS)).expect("validated when set")
    }
    /// `faisca.test.taskDelay`: the injected delay of a stage's tasks, if any.
    pub fn injected_delay(&self) -> Option<InjectedDelay> {
        parse_task_delay(self.raw(&keys::TEST_TASK_DELAY)).expect("validated when set")
    }
    /// `faisca.test.taskGate`: the stages whose tasks wait for a file, and the file.
    pub fn injected_gate(&self) -> Option<(StageSelector, std::path::PathBuf)> {
        parse_task_gate(self.raw(&keys::TEST_TASK_GATE)).expect("validated when set")
    }
}

/// Which stages a fault-injection rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageSelector {
    /// Every stage.
    All,
    /// One stage.
    Stage(u32),
}

impl StageSelector {
    /// Whether the rule applies to `stage`.
    pub fn matches(self, stage: u32) -> bool {
        match self {
            StageSelector::All => true,
            StageSelector::Stage(s) => s == stage,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "*" => Some(StageSelector::All),
            n => n.parse().ok().map(StageSelector::Stage),
        }
    }
}

/// `faisca.test.failTasks`: fail the first `attempts` attempts of the selected stages' tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFailures {
    /// Stages whose tasks fail.
    pub stages: StageSelector,
    /// Attempts numbered below this fail.
    pub attempts: u32,
    /// What the injected error is.
    pub kind: InjectedFailure,
}

/// The kind of an injected task failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// An external failure a retry may fix.
    Retryable,
    /// The user's fault: no retry.
    User,
    /// An internal error another attempt would hit again (a plan that cannot be built): no retry.
    Plan,
}

/// `faisca.test.taskDelay`: the selected stages' tasks wait before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedDelay {
    /// Stages whose tasks wait.
    pub stages: StageSelector,
    /// How long.
    pub delay: Duration,
}

fn parse_task_gate(
    text: &str,
) -> std::result::Result<Option<(StageSelector, std::path::PathBuf)>, ()> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (stage, path) = text.split_once(':').ok_or(())?;
    if path.trim().is_empty() {
        return Err(());
    }
    Ok(Some((
        StageSelector::parse(stage).ok_or(())?,
        std::path::PathBuf::from(path.trim()),
    )))
}

fn parse_fail_tasks(text: &str) -> std::result::Result<Option<InjectedFailures>, ()> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (stage, attempts, kind) = match parts.as_slice() {
        [stage, n] => (stage, n, InjectedFailure::Retryable),
        [stage, n, kind] if kind.trim().eq_ignore_ascii_case("user") => {
            (stage, n, InjectedFailure::User)
        }
        [stage, n, kind] if kind.trim().eq_ignore_ascii_case("plan") => {
            (stage, n, InjectedFailure::Plan)
        }
        _ => return Err(()),
    };
    Ok(Some(InjectedFailures {
        stages: StageSelector::parse(stage).ok_or(())?,
        attempts: attempts.trim().parse().map_err(|_| ())?,
        kind,
    }))
}

fn parse_task_delay(text: &str) -> std::result::Result<Option<InjectedDelay>, ()> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (stage, delay) = text.split_once(':').ok_or(())?;
    Ok(Some(InjectedDelay {
        stages: StageSelector::parse(stage).ok_or(())?,
        delay: parse_duration(delay).map_err(|_| ())?,
    }))
}

/// Whether `key` (lower-case) is `faisca.store.<s3|gs|az>.<bucket>.<option>`.
pub fn is_store_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("faisca.store.") else {
        return false;
    };
    let parts: Vec<&str> = rest.splitn(3, '.').collect();
    parts.len() == 3
        && ["s3", "gs", "az"].contains(&parts[0])
        && parts.iter().all(|p| !p.is_empty())
}

fn validate(spec: &KeySpec, value: &str) -> Result<()> {
    let ok = match spec.kind {
        ValueKind::Bytes => parse_bytes(value).is_ok(),
        ValueKind::Duration => parse_duration(value).is_ok(),
        ValueKind::Count => value.parse::<u64>().is_ok(),
        ValueKind::Bool => value.parse::<bool>().is_ok(),
        ValueKind::Choice(words) => words.iter().any(|w| w.eq_ignore_ascii_case(value)),
        ValueKind::Rule { valid, .. } => valid(value),
    };
    if ok {
        return Ok(());
    }
    let expected = match spec.kind {
        ValueKind::Bytes => "a size such as 134217728, 512k, 128m or 4g".to_string(),
        ValueKind::Duration => "a duration such as 500ms, 30s or 2m".to_string(),
        ValueKind::Count => "a non-negative integer".to_string(),
        ValueKind::Bool => "true or false".to_string(),
        ValueKind::Choice(words) => format!("one of {}", words.join(", ")),
        ValueKind::Rule { expected, .. } => expected.to_string(),
    };
    Err(Error::user(format!(
        "invalid value '{value}' for '{}': expected {expected}",
        spec.name
    )))
}

/// Parse a byte size with Spark's suffixes: `b`, `k`/`kb`, `m`/`mb`, `g`/`gb`, `t`/`tb`
/// (powers of 1024); a bare number is bytes.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let bad = || {
        Error::user(format!(
            "invalid size '{text}': expected a number with an optional unit k, m, g or t (e.g. 512m, 4g)"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parse a duration: `250ms`, `30s`, `2m`, `1h`, `7d`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let bad = || {
        Error::user(format!(
            "invalid duration '{text}': expected a number with a unit ms, s, m, h or d (e.g. 500ms, 30s)"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(match unit.trim() {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        "d" => Duration::from_secs(n.checked_mul(24 * 3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

/// `KEY=VALUE` items (as given to a command's `what` option, e.g. `--conf`) as trimmed pairs.
pub fn parse_key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| Error::user(format!("invalid {what} '{kv}': expected KEY=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_values(&["a.b=1".into(), "c = x=y".into()], "--conf").unwrap(),
            vec![("a.b".into(), "1".into()), ("c".into(), "x=y".into())]
        );
        let err = parse_key_values(&["novalue".into()], "--conf").unwrap_err();
        assert_eq!(err.fault(), crate::Fault::User);
        assert!(
            err.to_string().contains("invalid --conf 'novalue'"),
            "{err}"
        );
        assert!(parse_key_values(&["=1".into()], "--conf").is_err());
    }

    #[test]
    fn debug_masks_secrets_and_the_rule_follows_set() {
        let mut c = FaiscaConfig::from_pairs([
            ("faisca.store.s3.b.secret_access_key", "hunter2"),
            ("faisca.store.s3.b.region", "eu-west-1"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("eu-west-1"),
            "{shown}"
        );
        assert!(c.redaction().is_secret("a.password"));
        c.set("faisca.redaction.regex", "(?i)region").unwrap();
        assert!(!c.redaction().is_secret("a.password"));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("hunter2") && !shown.contains("eu-west-1"),
            "{shown}"
        );
        let e = c
            .set("faisca.redaction.regex", "(")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a regular expression"), "{e}");
    }

    #[test]
    fn every_default_is_valid() {
        for key in KEYS {
            validate(key, key.default).unwrap_or_else(|e| panic!("{}: {e}", key.name));
        }
    }

    #[test]
    fn defaults() {
        let c = FaiscaConfig::default();
        assert_eq!(c.max_partition_bytes(), 128 << 20);
        assert_eq!(c.open_cost_in_bytes(), 4 << 20);
        assert_eq!(c.shuffle_partitions(), None);
        assert_eq!(c.task_max_attempts(), 4);
    }

    #[test]
    fn keys_are_case_insensitive() {
        let c = FaiscaConfig::from_pairs([
            ("FAISCA.FILES.MAXPARTITIONBYTES", "1m"),
            ("faisca.shuffle.partitions", "7"),
        ])
        .unwrap();
        assert_eq!(c.max_partition_bytes(), 1 << 20);
        assert_eq!(c.shuffle_partitions(), Some(7));
    }

    #[test]
    fn errors_name_the_key() {
        let e = FaiscaConfig::from_pairs([("faisca.nope", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("faisca.nope") && e.contains("faisca.files.maxPartitionBytes"),
            "{e}"
        );
        let e = FaiscaConfig::from_pairs([("faisca.files.openCostInBytes", "lots")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("faisca.files.openCostInBytes") && e.contains("expected a size"),
            "{e}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4g").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("4x").is_err());
        assert!(parse_bytes("").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 24 * 3600)
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn fault_injection_rules() {
        let c = FaiscaConfig::from_pairs([
            ("faisca.test.failTasks", "1:2"),
            ("faisca.test.taskDelay", "*:250ms"),
        ])
        .unwrap();
        assert_eq!(
            c.injected_failures(),
            Some(InjectedFailures {
                stages: StageSelector::Stage(1),
                attempts: 2,
                kind: InjectedFailure::Retryable
            })
        );
        let delay = c.injected_delay().unwrap();
        assert!(delay.stages.matches(7));
        assert_eq!(delay.delay, Duration::from_millis(250));
        let user = FaiscaConfig::from_pairs([("faisca.test.failTasks", "*:1:user")]).unwrap();
        assert_eq!(
            user.injected_failures().unwrap().kind,
            InjectedFailure::User
        );
        let plan = FaiscaConfig::from_pairs([("faisca.test.failTasks", "0:1:plan")]).unwrap();
        assert_eq!(
            plan.injected_failures().unwrap().kind,
            InjectedFailure::Plan
        );
        assert_eq!(FaiscaConfig::default().injected_failures(), None);
        let e = FaiscaConfig::from_pairs([("faisca.test.failTasks", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("faisca.test.failTasks") && e.contains("STAGE:N"),
            "{e}"
        );
    }

    #[test]
    fn other_keys_pass_through() {
        let c = FaiscaConfig::from_pairs([("datafusion.execution.batch_size", "1024")]).unwrap();
        assert_eq!(
            c.other_pairs().collect::<Vec<_>>(),
            vec![("datafusion.execution.batch_size", "1024")]
        );
    }
}
