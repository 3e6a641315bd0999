//! The harnesses: Flight tickets and RPC messages (what any peer of the driver's or an
//! executor's port can send), the DataFrame plan bytes a client sends the driver, the stage plan
//! bytes (with fused pipelines) an executor decodes, configuration values, and Kafka record
//! values as `from_json` and `from_avro` read them (with a Schema Registry's framing and answers),
//! the checkpoint logs a restarted Kafka batch source or streaming query reads, and a write's
//! commit manifest (which must never make a commit touch a file outside its destination).

use std::sync::{Arc, LazyLock};

use arbitrary::Unstructured;
use datafusion::execution::TaskContext;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use faisca::driver::logical_codec::{DriverLogicalCodec, SourceRegistry};
use faisca_common::FaiscaConfig;
use faisca_proto::{
    ExecutePlanRequest, ExecuteSqlRequest, ExecutorMessage, LaunchTask, RegisterTableRequest,
    ResultTicket, ShuffleTicket, StartStreamingQueryRequest, TaskLogTicket, ticket,
};
use prost::Message;

use super::{Harness, fuzz};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A session with a small CSV table `t(a, b, c)` and an in-memory one `m(k, v)`; the CSV file
/// lives as long as the process.
fn session() -> SessionContext {
    static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = std::iter::once("a,b,c\n".to_string())
            .chain((0..50).map(|i| format!("{i},{},x{}\n", i % 7, i % 3)))
            .collect();
        std::fs::write(dir.path().join("t.csv"), rows).unwrap();
        dir
    });
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    runtime().block_on(async {
        ctx.register_csv(
            "t",
            DIR.path().join("t.csv").to_str().unwrap(),
            CsvReadOptions::new(),
        )
        .await
        .unwrap();
        ctx.sql("CREATE TABLE m(k INT, v VARCHAR) AS VALUES (1, 'a'), (2, NULL), (3, 'c')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
    });
    ctx
}

const QUERIES: &[&str] = &[
    "SELECT a, b FROM t WHERE b > 2 AND c LIKE 'x%'",
    "SELECT b, count(*), sum(a), avg(a) FROM t WHERE a % 2 = 0 GROUP BY b",
    "SELECT b, CASE WHEN a > 10 THEN 'big' ELSE c END AS d FROM t ORDER BY a DESC LIMIT 5",
    "SELECT t.a, m.v FROM t JOIN m ON t.b = m.k",
    "SELECT a, row_number() OVER (PARTITION BY b ORDER BY a) FROM t",
    "SELECT k, v FROM m WHERE v IS NOT NULL UNION ALL SELECT b, c FROM t",
];

fn ticket_seeds() -> Vec<Vec<u8>> {
    [
        ticket::Kind::Result(ResultTicket {
            job_id: "job-1".into(),
        }),
        ticket::Kind::Shuffle(ShuffleTicket {
            job_id: "job-1".into(),
            stage_id: 2,
            map_partition: 3,
            attempt: 1,
            reduce_partition: 4,
            uncompressed: true,
        }),
        ticket::Kind::TaskLog(TaskLogTicket {
            job_id: "job-1".into(),
            stage_id: 1,
            partition: 0,
            attempt: 0,
        }),
    ]
    .into_iter()
    .map(|kind| faisca_proto::encode_ticket(kind).to_vec())
    .collect()
}

/// A Flight ticket, as the driver's and every executor's Flight service decode it.
const FLIGHT_TICKET: Harness = Harness {
    name: "flight_ticket",
    test: "hostile::harnesses::flight_tickets",
    seeds: ticket_seeds,
    run: |input| {
        let _ = faisca_proto::decode_ticket(input);
    },
};

/// The first byte picks the message; the rest is its encoding.
fn rpc_seeds() -> Vec<Vec<u8>> {
    let tagged = |tag: u8, bytes: Vec<u8>| [vec![tag], bytes].concat();
    vec![
        tagged(
            0,
            ExecuteSqlRequest {
                session_id: "s".into(),
                sql: "SELECT 1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        tagged(
            1,
            ExecutePlanRequest {
                session_id: "s".into(),
                logical_plan: vec![1, 2, 3],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        tagged(2, ExecutorMessage::default().encode_to_vec()),
        tagged(
            3,
            LaunchTask {
                job_id: "j".into(),
                stage_id: 1,
                partition: 2,
                plan: bytes::Bytes::from_static(&[8, 1]),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        tagged(4, RegisterTableRequest::default().encode_to_vec()),
        tagged(5, StartStreamingQueryRequest::default().encode_to_vec()),
    ]
}

/// RPC messages a peer sends the driver (requests, an executor's stream) or the driver sends
/// an executor (task launches), decoded as tonic decodes them; a task status's error is read
/// back as the driver reads it.
const RPC_MESSAGES: Harness = Harness {
    name: "rpc_messages",
    test: "hostile::harnesses::rpc_messages",
    seeds: rpc_seeds,
    run: |input| {
        let Some((tag, body)) = input.split_first() else {
            return;
        };
        match tag % 6 {
            0 => drop(ExecuteSqlRequest::decode(body)),
            1 => drop(ExecutePlanRequest::decode(body)),
            2 => {
                if let Ok(message) = ExecutorMessage::decode(body)
                    && let Some(faisca_proto::executor_message::Message::TaskStatus(status)) =
                        message.message
                    && let Some(error) = &status.error
                {
                    let _ = faisca_proto::error_from_task_error(error).message();
                }
            }
            3 => drop(LaunchTask::decode(body)),
            4 => drop(RegisterTableRequest::decode(body)),
            _ => drop(StartStreamingQueryRequest::decode(body)),
        }
    },
};

static LOGICAL: LazyLock<(SessionContext, Arc<SourceRegistry>)> =
    LazyLock::new(|| (session(), Arc::new(SourceRegistry::default())));

fn dataframe_plan_seeds() -> Vec<Vec<u8>> {
    let (ctx, sources) = &*LOGICAL;
    let codec = DriverLogicalCodec {
        sources: sources.clone(),
    };
    runtime().block_on(async {
        let mut seeds = Vec::new();
        for sql in QUERIES {
            let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            if let Ok(bytes) = faisca::driver::logical_codec::encode_logical_plan(&plan, &codec) {
                seeds.push(bytes);
            }
        }
        assert!(!seeds.is_empty(), "no DataFrame plan encodes");
        seeds
    })
}

/// A DataFrame plan as a client sends it in `ExecutePlan`, decoded as the driver decodes it.
const DATAFRAME_PLAN: Harness = Harness {
    name: "dataframe_plan",
    test: "hostile::harnesses::dataframe_plans",
    seeds: dataframe_plan_seeds,
    run: |input| {
        let (ctx, sources) = &*LOGICAL;
        let codec = DriverLogicalCodec {
            sources: sources.clone(),
        };
        let task = ctx.task_ctx();
        let _ = faisca::driver::logical_codec::decode_logical_plan(input, &task, &codec, 3000);
    },
};

static PHYSICAL: LazyLock<(SessionContext, Arc<TaskContext>)> = LazyLock::new(|| {
    let ctx = session();
    let task = ctx.task_ctx();
    (ctx, task)
});

fn stage_plan_seeds() -> Vec<Vec<u8>> {
    let (ctx, _) = &*PHYSICAL;
    runtime().block_on(async {
        let mut seeds = Vec::new();
        for sql in QUERIES {
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            // As the driver sends it: with fused pipelines where the stage compiler fuses.
            for plan in [plan.clone(), faisca_planner::fusion::fuse(plan).unwrap()] {
                if let Ok(bytes) = faisca_engine::codec::encode_stage_plan(plan, None) {
                    seeds.push([vec![0], bytes.to_vec()].concat());
                }
            }
        }
        assert!(
            seeds.len() >= 4,
            "too few stage plans encode: {}",
            seeds.len()
        );
        seeds
    })
}

/// A stage plan as an executor decodes a task launch's plan (the first byte says whether the
/// stage is hash-partitioned).
const STAGE_PLAN: Harness = Harness {
    name: "stage_plan",
    test: "hostile::harnesses::stage_plans",
    seeds: stage_plan_seeds,
    run: |input| {
        let Some((hash, plan)) = input.split_first() else {
            return;
        };
        let (_, task) = &*PHYSICAL;
        let _ = faisca_engine::codec::decode_stage_plan(plan, hash % 2 == 1, task);
    },
};

fn config_seeds() -> Vec<Vec<u8>> {
    // Indices into the keys, then values: what `config_pairs` reads back.
    let mut seeds = Vec::new();
    for (i, spec) in faisca_common::config::KEYS.iter().enumerate() {
        let mut seed = vec![1u8, 0, (i % 256) as u8];
        seed.extend(spec.default.as_bytes());
        seed.push(0);
        seeds.push(seed);
    }
    seeds
}

/// `key=value` pairs from `input`: keys mostly known ones, values any text.
fn config_pairs(input: &[u8]) -> arbitrary::Result<Vec<(String, String)>> {
    let mut u = Unstructured::new(input);
    let keys = faisca_common::config::KEYS;
    let mut pairs = Vec::new();
    let count = u.int_in_range(0..=8)?;
    for _ in 0..count {
        let key = if u.ratio(1, 8)? {
            u.arbitrary::<String>()?
        } else {
            let spec = &keys[u.choose_index(keys.len())?];
            if u.ratio(1, 4)? {
                spec.name.to_ascii_uppercase()
            } else {
                spec.name.to_string()
            }
        };
        let value = match u.int_in_range(0..=3)? {
            0 => [
                "-1",
                "0",
                "1e400",
                "18446744073709551616",
                "1k",
                "5 s",
                "1:2:3",
                "NaN",
            ][u.choose_index(8)?]
            .to_string(),
            _ => u.arbitrary::<String>()?,
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Configuration from `--conf`, `SET`, session options: every accessor of a config that was
/// accepted answers (a value validated when set must not panic when read).
const CONFIG_VALUES: Harness = Harness {
    name: "config_values",
    test: "hostile::harnesses::config_values",
    seeds: config_seeds,
    run: |input| {
        let Ok(pairs) = config_pairs(input) else {
            return;
        };
        let Ok(c) = FaiscaConfig::from_pairs(pairs) else {
            return;
        };
        let _ = (
            c.dynamic_allocation(),
            c.executor_memory_overhead(),
            c.kubernetes_batch_size(),
            c.kubernetes_delete_on_termination(),
            c.executor_pod_labels(),
            c.executor_pod_annotations(),
            c.pairs(),
            c.other_pairs(),
            c.max_partition_bytes(),
            c.open_cost_in_bytes(),
            c.codegen_enabled(),
            c.check_plan_encoding(),
        );
        let _ = (
            c.redaction(),
            c.kafka_request_timeout(),
            c.kafka_max_records_per_task(),
            c.streaming_state_partitions(),
            c.streaming_state_snapshot_interval(),
            c.streaming_min_batches_to_retain(),
            c.streaming_poll_interval(),
            c.streaming_recent_progress(),
            c.test_streaming_stop_after(),
            c.shuffle_partitions(),
            c.shuffle_compression(),
            c.shuffle_compress_loopback(),
        );
        let _ = (
            c.shuffle_in_memory(),
            c.shuffle_spill_bytes(),
            c.shuffle_fetch_concurrency(),
            c.max_message_size(),
            c.connect_timeout(),
            c.health_request_timeout(),
            c.heartbeat_interval(),
            c.heartbeat_timeout(),
            c.registration_timeout(),
            c.executor_instances(),
            c.executor_cores(),
            c.executor_memory(),
        );
        let _ = (
            c.executor_max_failures(),
            c.executor_stop_timeout(),
            c.decommission_enabled(),
            c.decommission_grace_period(),
            c.executor_wait_timeout(),
            c.local_executor_memory(),
            c.task_max_attempts(),
            c.batch_size(),
            c.stage_max_attempts(),
            c.retained_jobs(),
            c.retained_task_failures(),
            c.progress_interval(),
        );
        let _ = (
            c.write_commit_concurrency(),
            c.test_stop_commit_after_manifest(),
            c.test_stop_before_source_commit(),
            c.injected_failures(),
            c.injected_delay(),
            c.injected_gate(),
            c.event_log_dir(),
            c.event_log_rolling(),
            c.task_log_limits(),
            c.history_update_interval(),
            c.ui_settings(),
            c.ui_enabled(true),
        );
        let _ = (c.plan_max_depth(), c.allowed_locations(true));
    },
};

#[test]
fn flight_tickets() {
    fuzz(&FLIGHT_TICKET);
}

#[test]
fn rpc_messages() {
    fuzz(&RPC_MESSAGES);
}

#[test]
fn dataframe_plans() {
    fuzz(&DATAFRAME_PLAN);
}

#[test]
fn stage_plans() {
    fuzz(&STAGE_PLAN);
}

#[test]
fn config_values() {
    fuzz(&CONFIG_VALUES);
}

/// An Avro record schema with most of Avro's types, for `from_avro`.
const AVRO_SCHEMA: &str = r#"{"type":"record","name":"r","fields":[
  {"name":"i","type":"int"},
  {"name":"s","type":["null","string"]},
  {"name":"a","type":{"type":"array","items":"long"}},
  {"name":"m","type":{"type":"map","values":"double"}},
  {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
  {"name":"f","type":{"type":"fixed","name":"F","size":4}},
  {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}"#;

/// A Spark DDL schema with nesting, for `from_json`.
const JSON_SCHEMA: &str = "a INT, b ARRAY<STRING>, c STRUCT<d: DOUBLE, t: TIMESTAMP>, m MAP<STRING, BIGINT>, x DECIMAL(10, 2)";

static RECORDS: LazyLock<SessionContext> = LazyLock::new(|| {
    let ctx = SessionContext::new();
    for udf in faisca_engine::functions::builtin_scalar() {
        ctx.register_udf(udf.as_ref().clone());
    }
    ctx
});

/// One Avro datum of [`AVRO_SCHEMA`], encoded by hand (zigzag varints, blocks, a union index).
fn avro_datum() -> Vec<u8> {
    let mut d = vec![0x02]; // i = 1
    d.extend([0x02, 0x04, b'a', b'b']); // s = "ab" (union branch 1)
    d.extend([0x04, 0x0a, 0x0c, 0x00]); // a = [5, 6]
    d.extend([0x02, 0x02, b'k']); // m = {"k": 1.5}
    d.extend(1.5f64.to_le_bytes());
    d.push(0x00);
    d.push(0x02); // e = B
    d.extend([1, 2, 3, 4]); // f
    d.extend([0x04, 0x01, 0x00]); // d = 2.56
    d
}

fn record_seeds() -> Vec<Vec<u8>> {
    let json = br#"{"a": 1, "b": ["x", null], "c": {"d": 1.5, "t": "2026-12-03T10:00:00Z"}, "m": {"k": 7}, "x": 12.34}"#;
    let datum = avro_datum();
    let framed = [vec![0u8, 0, 0, 0, 7], datum.clone()].concat();
    vec![
        [vec![0], json.to_vec()].concat(),
        [vec![1], datum.clone()].concat(),
        [vec![2], datum].concat(),
        [vec![3], framed].concat(),
        [vec![3], br#"{"id": 12}"#.to_vec()].concat(),
        [
            vec![3],
            br#"{"schema": "{\"type\": \"int\"}", "schemaType": "AVRO"}"#.to_vec(),
        ]
        .concat(),
    ]
}

/// Kafka record values (and a Schema Registry's framing and answers) as the functions that read
/// them see them: `from_json` on text, `from_avro` on binary in both modes; the rows are the
/// input whole and (but in FAILFAST mode) in two halves.
const RECORD_VALUES: Harness = Harness {
    name: "record_values",
    test: "hostile::harnesses::record_values",
    seeds: record_seeds,
    run: |input| drop(read_records(input)),
};

/// What [`RECORD_VALUES`] does with `input`: the query's result (`None` for the registry's
/// framing and answers, which are plain functions).
fn read_records(
    input: &[u8],
) -> Option<datafusion::error::Result<Vec<datafusion::arrow::record_batch::RecordBatch>>> {
    use datafusion::arrow::array::{BinaryArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    let (tag, value) = input.split_first()?;
    let half = value.len() / 2;
    // FAILFAST stops at the first bad value: there the value alone; elsewhere also its halves.
    let rows: Vec<&[u8]> = if tag % 4 == 1 {
        vec![value]
    } else {
        vec![value, &value[..half], &value[half..]]
    };
    let sql = match tag % 4 {
        0 => format!("SELECT from_json(t, '{JSON_SCHEMA}') FROM r"),
        1 => format!("SELECT from_avro(v, '{AVRO_SCHEMA}') FROM r"),
        2 => format!("SELECT from_avro(v, '{AVRO_SCHEMA}', map('mode', 'PERMISSIVE')) FROM r"),
        _ => {
            use faisca_engine::functions::schema_registry as registry;
            let text = String::from_utf8_lossy(value);
            let _ = (
                registry::schema_id(value),
                registry::parse_id_response(&text),
                registry::parse_schema_response(&text),
            );
            return None;
        }
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Binary, true),
        Field::new("t", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(BinaryArray::from_iter_values(rows.iter().copied())),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| String::from_utf8_lossy(r).into_owned()),
            )),
        ],
    )
    .unwrap();
    let ctx = &*RECORDS;
    Some(runtime().block_on(async {
        let frame = ctx.read_batch(batch)?;
        let _ = ctx.deregister_table("r");
        ctx.register_table("r", frame.into_view())?;
        ctx.sql(&sql).await?.collect().await
    }))
}

#[test]
fn record_seeds_decode() {
    // The seeds are values the functions read: mutations start from real records.
    for seed in record_seeds().iter().take(3) {
        let batches = read_records(seed).unwrap().unwrap();
        assert!(batches[0].column(0).is_valid(0), "the whole value decodes");
    }
}

#[test]
fn record_values() {
    fuzz(&RECORD_VALUES);
}

/// The files a checkpoint harness input names: `[file id][length: u16 LE][bytes]`, repeated.
const CHECKPOINT_FILES: &[&str] = &[
    "metadata",
    "offsets/0",
    "offsets/1",
    "offsets/2",
    "commits/0",
    "commits/1",
    "commits/2",
    "offsets/18446744073709551615",
    "commits/18446744073709551615",
    "offsets/not-a-number",
];

/// The files `input` names (`[file id][length: u16 LE][bytes]`, repeated; ids index `names`).
fn named_files(input: &[u8], names: &'static [&'static str]) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    let mut rest = input;
    while let [id, low, high, tail @ ..] = rest {
        let len = (u16::from_le_bytes([*low, *high]) as usize).min(tail.len());
        files.push((names[*id as usize % names.len()], tail[..len].to_vec()));
        rest = &tail[len..];
    }
    files
}

/// [`named_files`]' input for `files`.
fn encode_files(files: &[(&str, Vec<u8>)], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let id = names.iter().position(|f| f == name).unwrap();
        out.push(id as u8);
        out.extend((bytes.len() as u16).to_le_bytes());
        out.extend(bytes);
    }
    out
}

/// The files of a checkpoint as Faísca writes them: a Kafka batch source's after two runs,
/// and a streaming query's after two batches.
fn checkpoint_seeds() -> Vec<Vec<u8>> {
    use faisca::driver::streaming::checkpoint::{BatchMetadata, OffsetsEntry, StreamCheckpoint};
    use faisca_connectors::kafka::OffsetRange;
    use faisca_connectors::kafka::checkpoint::Checkpoint;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    runtime().block_on(async {
        async fn read_all(store: Arc<InMemory>) -> Vec<(&'static str, Vec<u8>)> {
            let mut files = Vec::new();
            for name in CHECKPOINT_FILES {
                if let Ok(got) = ObjectStoreExt::get(store.as_ref(), &Path::from(*name)).await {
                    files.push((*name, got.bytes().await.unwrap().to_vec()));
                }
            }
            files
        }
        let kafka_store = Arc::new(InMemory::new());
        let kafka = Checkpoint::new("memory:///k", kafka_store.clone(), Path::from(""));
        let range = |start, end| OffsetRange {
            topic: "t".into(),
            partition: 0,
            start,
            end,
        };
        kafka
            .record_offsets(0, "subscribe=t", &[range(0, 10)])
            .await
            .unwrap();
        kafka.record_commit(0).await.unwrap();
        kafka
            .record_offsets(1, "subscribe=t", &[range(10, 25)])
            .await
            .unwrap();
        let stream_store = Arc::new(InMemory::new());
        let stream = StreamCheckpoint::new("memory:///s", stream_store.clone(), Path::from(""));
        stream.open(&["rate".to_string()], 4).await.unwrap();
        for batch in 0..2 {
            stream
                .write_offsets(&OffsetsEntry {
                    batch_id: batch,
                    metadata: BatchMetadata {
                        batch_watermark_ms: 1000 * batch as i64,
                        batch_timestamp_ms: 1_700_000_000_000,
                    },
                    sources: vec![format!("{{\"offset\": {}}}", batch * 10)],
                })
                .await
                .unwrap();
        }
        stream.write_commit(0, 500).await.unwrap();
        vec![
            encode_files(&read_all(kafka_store).await, CHECKPOINT_FILES),
            encode_files(&read_all(stream_store).await, CHECKPOINT_FILES),
        ]
    })
}

/// Checkpoint files as a restarted Kafka batch source and a restarted streaming query read
/// them: the log's JSON, its numbering, and where the next run starts from it.
const CHECKPOINTS: Harness = Harness {
    name: "checkpoints",
    test: "hostile::harnesses::checkpoints",
    seeds: checkpoint_seeds,
    run: |input| {
        use faisca::driver::streaming::checkpoint::StreamCheckpoint;
        use faisca_connectors::kafka::checkpoint::Checkpoint;
        use object_store::ObjectStoreExt;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        runtime().block_on(async {
            let store = Arc::new(InMemory::new());
            for (name, bytes) in named_files(input, CHECKPOINT_FILES) {
                store.put(&Path::from(name), bytes.into()).await.unwrap();
            }
            let kafka = Checkpoint::new("memory:///k", store.clone(), Path::from(""));
            let _ = kafka.next_run().await;
            let stream = StreamCheckpoint::new("memory:///s", store, Path::from(""));
            if let Ok(resume) = stream.open(&["rate".to_string()], 4).await {
                let _ = resume.next_batch_id();
            }
        });
    },
};

#[test]
fn checkpoint_seeds_resume() {
    // The seeds are checkpoints the readers accept: mutations start from real ones.
    let seeds = checkpoint_seeds();
    assert_eq!(seeds.len(), 2);
    for seed in &seeds {
        assert!(named_files(seed, CHECKPOINT_FILES).len() >= 3);
    }
}

#[test]
fn checkpoints() {
    fuzz(&CHECKPOINTS);
}

/// The files a commit harness input names (under the destination `dest/`, but the last: a file
/// beside the destination that no commit may touch).
const COMMIT_FILES: &[&str] = &[
    "dest/_temporary/j/_manifest.json",
    "dest/_temporary/j/_COMMITTED",
    "dest/_temporary/j/0-0/part-0.parquet",
    "dest/_temporary/k/_manifest.json",
    "dest/a.parquet",
    "dest/b/c.parquet",
    "outside/keep.parquet",
];

fn commit_seeds() -> Vec<Vec<u8>> {
    use faisca::driver::commit::{Manifest, ManifestFile};
    let manifest = Manifest {
        version: 1,
        job: "j".into(),
        mode: "overwrite".into(),
        files: vec![ManifestFile {
            temporary: "_temporary/j/0-0/part-0.parquet".into(),
            path: "part-0.parquet".into(),
            rows: 3,
            bytes: 9,
        }],
        replaced: vec!["a.parquet".into(), "b/c.parquet".into()],
        single_file: false,
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let file = |name: &str, bytes: &[u8]| encode_files(&[(name, bytes.to_vec())], COMMIT_FILES);
    let data = [
        file("dest/_temporary/j/0-0/part-0.parquet", b"new"),
        file("dest/a.parquet", b"old"),
        file("dest/b/c.parquet", b"old"),
        file("outside/keep.parquet", b"keep"),
    ]
    .concat();
    vec![
        [
            file("dest/_temporary/j/_manifest.json", &json),
            data.clone(),
        ]
        .concat(),
        [
            file("dest/_temporary/j/_manifest.json", &json),
            file("dest/_temporary/j/_COMMITTED", b""),
            data,
        ]
        .concat(),
    ]
}

/// A write's commit log as a later write (or a reader) finds it: the manifest's JSON names the
/// files to publish and those they replace. Whatever it says, nothing outside the destination
/// is moved or deleted.
const COMMITS: Harness = Harness {
    name: "commits",
    test: "hostile::harnesses::commits",
    seeds: commit_seeds,
    run: |input| drop(run_commits(input)),
};

/// What [`COMMITS`] does with `input`; the store afterwards.
fn run_commits(input: &[u8]) -> Arc<object_store::memory::InMemory> {
    use faisca_engine::sink::Destination;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};
    runtime().block_on(async {
        let store = Arc::new(InMemory::new());
        for (name, bytes) in named_files(input, COMMIT_FILES) {
            store.put(&Path::from(name), bytes.into()).await.unwrap();
        }
        let outside = Path::from("outside/keep.parquet");
        let before = match store.get(&outside).await {
            Ok(got) => Some(got.bytes().await.unwrap()),
            Err(_) => None,
        };
        let dest = Destination {
            url: "memory:///dest".into(),
            store: store.clone() as Arc<dyn ObjectStore>,
            root: Path::from("dest"),
        };
        let _ = faisca::driver::commit::uncommitted_files(&dest).await;
        let _ = faisca::driver::commit::resume_pending(&dest, 2).await;
        let _ = faisca::driver::commit::abort(&dest, "k").await;
        let after = match store.get(&outside).await {
            Ok(got) => Some(got.bytes().await.unwrap()),
            Err(_) => None,
        };
        assert_eq!(
            before, after,
            "a commit touched a file outside its destination"
        );
        store
    })
}

#[test]
fn commit_seeds_publish() {
    // The seeds are commits a later write finishes: mutations start from real ones.
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    for seed in commit_seeds() {
        let store = run_commits(&seed);
        runtime().block_on(async {
            assert!(store.head(&Path::from("dest/part-0.parquet")).await.is_ok());
            assert!(store.head(&Path::from("dest/a.parquet")).await.is_err());
            assert!(
                store
                    .head(&Path::from("outside/keep.parquet"))
                    .await
                    .is_ok()
            );
        });
    }
}

#[test]
fn commits() {
    fuzz(&COMMITS);
}

/// Inputs of the credential and location checks: the first byte picks the decoder, the rest is
/// its text (lines: a rule, then a location).
fn credential_seeds() -> Vec<Vec<u8>> {
    let tagged = |tag: u8, text: &str| [vec![tag], text.as_bytes().to_vec()].concat();
    vec![
        tagged(0, "token=abc%20d%2B&next=1"),
        tagged(1, "Bearer token-1"),
        tagged(2, "a=b; faisca_token=t-2"),
        tagged(3, "s3://lake/,file:///data/\ns3://lake/t/"),
        tagged(3, "\nhttp://[fd00:ec2::254]:80/latest"),
        tagged(4, "kafka://broker:9092\nbroker:9092, other:1"),
        tagged(5, "# users\ntoken-a,alice\n\ntoken-b , bob,extra\n"),
        tagged(
            6,
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"a\" password=\"p\\\"q\";",
        ),
        tagged(7, "kafka://b:1\nkafka.sasl.password.file\n/etc/x"),
    ]
}

/// What a client sends before it is authenticated — the login form, a bearer header, a cookie —
/// the location rule and locations the driver checks, a tokens file, and the Kafka security
/// options a user writes (`kafka.sasl.jaas.config`): none panics.
const CREDENTIALS: Harness = Harness {
    name: "credentials",
    test: "hostile::harnesses::credentials",
    seeds: credential_seeds,
    run: |input| {
        let Some((tag, body)) = input.split_first() else {
            return;
        };
        let text = String::from_utf8_lossy(body);
        match tag % 8 {
            0 => {
                let _ = faisca_ui::access::form_token(body);
            }
            tag @ (1 | 2) => {
                let name = if tag == 1 { "authorization" } else { "cookie" };
                if let Ok(value) = http::HeaderValue::from_bytes(body) {
                    let mut headers = http::HeaderMap::new();
                    headers.insert(name, value);
                    let _ = faisca_ui::access::credential(&headers);
                }
            }
            5 => {
                let _ = faisca_common::auth::check_tokens_file(std::path::Path::new("t"), body);
            }
            6 => {
                for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
                    let params = std::collections::BTreeMap::from([
                        ("sasl.mechanism".to_string(), mechanism.to_string()),
                        ("sasl.jaas.config".to_string(), text.to_string()),
                    ]);
                    let _ = faisca_connectors::kafka::security::librdkafka_params(&params);
                }
            }
            tag => {
                let mut lines = text.splitn(3, '\n');
                let rule = faisca_common::locations::AllowedLocations::parse(
                    lines.next().unwrap_or_default(),
                );
                let location = lines.next().unwrap_or_default();
                match tag {
                    3 => {
                        let _ = rule.check(location, "location");
                    }
                    4 => {
                        let _ = rule.check_brokers(location);
                    }
                    _ => {
                        let value = lines.next().unwrap_or_default();
                        let _ = rule.check_kafka_options([(location, value)]);
                        let _ = rule.check_resolved(location, "location", &[]);
                        let _ = rule.check_host_addresses(location, "connection", &[]);
                        // A broker's node name, as librdkafka passes it to the connect check.
                        let watch = faisca_connectors::kafka::client::ClientWatch::new(rule);
                        let _ = watch.admit(location, None);
                        let _ = watch.admit(location, "127.0.0.1:9092".parse().ok());
                    }
                }
            }
        }
    },
};

#[test]
fn credentials() {
    fuzz(&CREDENTIALS);
}

fn sql_text_seeds() -> Vec<Vec<u8>> {
    [
        "SELECT 1 + 2 * (3 - x) AS y FROM t WHERE a IN (1, 2, 3)",
        "WITH a AS (SELECT 1 AS x) SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END FROM a, a b",
        "SELECT a, b FROM t UNION ALL SELECT a, b FROM t JOIN u ON t.k = u.k; SELECT 1",
        "SELECT [1, [2, (3)]], {'k': 1} ; SELECT ))) ((( END CASE END",
        "SELECT 'unterminated",
        "SELECT $1 || E'\\n' || U&'\\0041' || X'ff' || $$dollar$$",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// SQL text as the driver bounds its depth before DataFusion parses it
/// (`faisca.plan.maxDepth`), in the dialects a session may choose: never panics.
const SQL_TEXT: Harness = Harness {
    name: "sql_text",
    test: "hostile::harnesses::sql_text",
    seeds: sql_text_seeds,
    run: |input| {
        use datafusion::sql::sqlparser::dialect::dialect_from_str;
        let text = String::from_utf8_lossy(input);
        for name in ["generic", "postgresql", "mysql", "hive", "ansi", "duckdb"] {
            if let Some(dialect) = dialect_from_str(name) {
                let _ = faisca_common::depth::check_sql(&text, dialect.as_ref(), 64);
            }
        }
    },
};

#[test]
fn sql_text() {
    fuzz(&SQL_TEXT);
}
