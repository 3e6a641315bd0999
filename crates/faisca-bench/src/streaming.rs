//! `faisca bench streaming`: a windowed count as a streaming query against the same count as one
//! batch query, same records, same run.
//!
//! Events `key|event_millis|padding` (about `--value-bytes` bytes; `--keys` keys; event times
//! rising over `--event-seconds` seconds with a little jitter) are produced over many partitions of
//! a noida-db broker. The streaming query parses them, puts a 10 s watermark on the event time,
//! counts per 10 s tumbling window and key, and appends to Parquet, `AvailableNow` with
//! `maxOffsetsPerTrigger` cutting about `--batches` batches (plus the final batch without data that
//! writes the last complete windows). The batch query reads the same topic once and writes the same
//! counts (every window: it has no watermark to wait for). Throughput ratio = batch time / stream
//! time (the target is at least 0.70). Then the latency of a batch of one record: a
//! `ProcessingTime(0)` query of the same shape on a topic of its own gets single records, and each
//! batch's `triggerExecution` (trigger to committed) is reported, median and worst.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use faisca::functions::{col, window};
use faisca::{DataFrame, Session, Trigger};
use faisca_common::config::parse_key_values;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use crate::cluster::{machine, median, write_json};
use crate::kafka::{create_topic, process_cpu};

/// `faisca bench streaming`.
#[derive(Debug, clap::Args)]
pub struct StreamingBenchArgs {
    /// Events to produce.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Bytes of each event's value (at least what the key and time take).
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 20)]
    pub partitions: i32,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Event time the events span, in seconds (10 s windows).
    #[arg(long, default_value_t = 200)]
    pub event_seconds: u64,
    /// Micro-batches the streaming query is cut into (`maxOffsetsPerTrigger` = records / batches).
    #[arg(long, default_value_t = 20)]
    pub batches: u64,
    /// Single-record batches timed for the latency.
    #[arg(long, default_value_t = 20)]
    pub latency_batches: usize,
    /// Brokers (default: a noida-db started for the run).
    #[arg(long)]
    pub servers: Option<String>,
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Timed runs of each query (after one warm-up run of each).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Where the Parquet outputs and checkpoints go (default: a temporary directory).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/streaming.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

const BASE_MS: i64 = 1_700_000_000_000;

fn produce_events(
    servers: &str,
    topic: &str,
    partitions: i32,
    args: (u64, u64, u64, usize),
) -> Result<()> {
    let (records, keys, event_seconds, bytes) = args;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create()?;
    let span_ms = (event_seconds * 1000) as f64;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..records {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let time = BASE_MS + (i as f64 * span_ms / records as f64) as i64 - (seed % 2000) as i64;
        let mut value = format!("k{}|{time}|", seed % keys.max(1));
        while value.len() < bytes {
            value.push('x');
        }
        let key = i.to_le_bytes();
        let record = BaseRecord::to(topic)
            .partition((i % partitions as u64) as i32)
            .key(&key[..])
            .payload(value.as_bytes());
        crate::kafka::send_waiting(&producer, record, Duration::from_millis(10))?;
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// The windowed count of `events` (with a watermark when streaming).
fn counts(events: DataFrame, watermark: bool) -> Result<DataFrame> {
    let parsed = events.select_expr(&[
        "split_part(CAST(value AS VARCHAR), '|', 1) AS key",
        "to_timestamp_millis(CAST(split_part(CAST(value AS VARCHAR), '|', 2) AS BIGINT)) AS event_time",
    ])?;
    let parsed = if watermark {
        parsed.with_watermark("event_time", "10 seconds")?
    } else {
        parsed
    };
    Ok(parsed
        .group_by(vec![
            window(col("event_time"), "10 seconds", None)?,
            col("key"),
        ])?
        .count()?
        .select_expr(&[
            "get_field(\"window\", 'start') AS window_start",
            "key",
            "count",
        ])?)
}

fn kafka_options(servers: &str, topic: &str) -> Vec<(String, String)> {
    vec![
        ("kafka.bootstrap.servers".into(), servers.into()),
        ("subscribe".into(), topic.into()),
        ("startingOffsets".into(), "earliest".into()),
    ]
}

#[derive(Serialize)]
struct StreamingReport {
    machine: String,
    master: String,
    records: u64,
    value_bytes: usize,
    partitions: i32,
    keys: u64,
    max_offsets_per_trigger: u64,
    stream_ms: Vec<f64>,
    stream_cpu_ms: Vec<f64>,
    stream_batches: Vec<u64>,
    /// The last streaming run's phases (Spark's `durationMs` names), summed over its batches.
    stream_phases_ms: std::collections::BTreeMap<String, u64>,
    batch_ms: Vec<f64>,
    batch_cpu_ms: Vec<f64>,
    stream_records_per_s: f64,
    batch_records_per_s: f64,
    throughput_ratio: f64,
    single_record_trigger_ms: Vec<f64>,
    single_record_median_ms: f64,
    single_record_max_ms: f64,
}

/// `faisca bench streaming`.
pub async fn streaming(args: StreamingBenchArgs) -> Result<()> {
    let (_broker, servers, admin) = crate::kafka::brokers(&args.servers)?;
    let topic = format!("bench-stream-{}", std::process::id());
    create_topic(&admin, &topic, args.partitions).await?;
    let t = Instant::now();
    {
        let (servers, topic) = (servers.clone(), topic.clone());
        let spec = (
            args.records,
            args.keys,
            args.event_seconds,
            args.value_bytes,
        );
        let partitions = args.partitions;
        tokio::task::spawn_blocking(move || produce_events(&servers, &topic, partitions, spec))
            .await??;
    }
    eprintln!(
        "produced {} events of {} bytes over {} partitions in {:.1} s",
        args.records,
        args.value_bytes,
        args.partitions,
        t.elapsed().as_secs_f64()
    );
    let scratch_dir = tempfile::tempdir()?;
    let scratch = args
        .scratch
        .clone()
        .unwrap_or_else(|| scratch_dir.path().to_path_buf());
    let mut builder = Session::builder().master(&args.master);
    for (k, v) in parse_key_values(&args.conf, "--conf")? {
        builder = builder.config(k, v);
    }
    let session = builder.build().await?;
    let max_offsets = args.records.div_ceil(args.batches.max(1));
    let mut run = 0;
    let mut next_dir = |what: &str| {
        run += 1;
        scratch.join(format!("{what}-{run}"))
    };

    let stream_once = |out: PathBuf, checkpoint: PathBuf| {
        let session = session.clone();
        let (servers, topic) = (servers.clone(), topic.clone());
        async move {
            let mut reader = session.read_stream().format("kafka");
            for (k, v) in kafka_options(&servers, &topic) {
                reader = reader.option(&k, &v);
            }
            let events = reader
                .option("maxOffsetsPerTrigger", &max_offsets.to_string())
                .load()
                .await?;
            let query = counts(events, true)?
                .write_stream()
                .format("parquet")
                .option("path", out.to_str().unwrap_or_default())
                .option(
                    "checkpointLocation",
                    checkpoint.to_str().unwrap_or_default(),
                )
                .trigger(Trigger::AvailableNow)
                .start()
                .await?;
            query.await_termination(None).await?;
            let progress = query.recent_progress().await?;
            let read: u64 = progress.iter().map(|p| p.num_input_rows).sum();
            // Each phase's milliseconds summed over the run's batches.
            let mut phases = std::collections::BTreeMap::<String, u64>::new();
            for p in &progress {
                for (phase, ms) in &p.duration_ms {
                    *phases.entry(phase.clone()).or_default() += ms;
                }
            }
            Ok::<_, anyhow::Error>((read, progress.len() as u64, phases))
        }
    };
    let batch_once = |out: PathBuf| {
        let session = session.clone();
        let (servers, topic) = (servers.clone(), topic.clone());
        async move {
            let mut reader = session.read().format("kafka");
            for (k, v) in kafka_options(&servers, &topic) {
                reader = reader.option(&k, &v);
            }
            let written = counts(reader.load().await?, false)?
                .write()
                .mode("append")
                .parquet(out.to_str().unwrap_or_default())
                .await?;
            Ok::<_, anyhow::Error>(written)
        }
    };
    // Warm-up of both, then alternate.
    let (read, _, _) = stream_once(next_dir("stream"), next_dir("checkpoint")).await?;
    if read != args.records {
        bail!(
            "the streaming query read {read} records, expected {}",
            args.records
        );
    }
    batch_once(next_dir("batch")).await?;
    let (mut stream, mut stream_cpu, mut batches, mut batch, mut batch_cpu) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut phases = Default::default();
    for i in 0..args.iterations.max(1) {
        for which in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (t, cpu) = (Instant::now(), process_cpu());
            if which == 0 {
                let (read, n, run_phases) =
                    stream_once(next_dir("stream"), next_dir("checkpoint")).await?;
                phases = run_phases;
                stream.push(t.elapsed());
                stream_cpu.push(process_cpu().saturating_sub(cpu));
                batches.push(n);
                if read != args.records {
                    bail!(
                        "the streaming query read {read} records, expected {}",
                        args.records
                    );
                }
            } else {
                batch_once(next_dir("batch")).await?;
                batch.push(t.elapsed());
                batch_cpu.push(process_cpu().saturating_sub(cpu));
            }
        }
    }
    let latencies =
        single_record_latency(&session, &admin, &servers, &scratch, args.latency_batches).await?;
    session.stop().await;
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect::<Vec<_>>()
    };
    let rate = |d: Duration| args.records as f64 / d.as_secs_f64().max(1e-9);
    let (s, b) = (median(&stream), median(&batch));
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let report = StreamingReport {
        machine: machine(),
        master: args.master.clone(),
        records: args.records,
        value_bytes: args.value_bytes,
        partitions: args.partitions,
        keys: args.keys,
        max_offsets_per_trigger: max_offsets,
        stream_ms: ms(&stream),
        stream_cpu_ms: ms(&stream_cpu),
        stream_batches: batches,
        stream_phases_ms: phases,
        batch_ms: ms(&batch),
        batch_cpu_ms: ms(&batch_cpu),
        stream_records_per_s: rate(s),
        batch_records_per_s: rate(b),
        throughput_ratio: rate(s) / rate(b),
        single_record_median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
        single_record_max_ms: sorted.last().copied().unwrap_or_default(),
        single_record_trigger_ms: latencies,
    };
    println!(
        "stream phases (ms, summed over the batches): {:?}",
        report.stream_phases_ms
    );
    println!(
        "stream  {:>8.0} ms  {:>10.0} records/s  ({} batches)\nbatch   {:>8.0} ms  {:>10.0} records/s\nstreaming throughput / batch throughput: {:.2}\nsingle-record batch, trigger to committed: median {:.1} ms, max {:.1} ms",
        s.as_secs_f64() * 1000.0,
        report.stream_records_per_s,
        report.stream_batches.first().copied().unwrap_or_default(),
        b.as_secs_f64() * 1000.0,
        report.batch_records_per_s,
        report.throughput_ratio,
        report.single_record_median_ms,
        report.single_record_max_ms
    );
    write_json(&args.output, &report)
}

/// Trigger-to-committed milliseconds of `n` batches of one record each.
async fn single_record_latency(
    session: &Session,
    admin: &AdminClient<DefaultClientContext>,
    servers: &str,
    scratch: &std::path::Path,
    n: usize,
) -> Result<Vec<f64>> {
    let topic = format!("bench-latency-{}", std::process::id());
    create_topic(admin, &topic, 1).await?;
    let mut reader = session.read_stream().format("kafka");
    for (k, v) in kafka_options(servers, &topic) {
        reader = reader.option(&k, &v);
    }
    let query = counts(reader.load().await?, true)?
        .write_stream()
        .format("parquet")
        .option(
            "path",
            scratch.join("latency-out").to_str().unwrap_or_default(),
        )
        .option(
            "checkpointLocation",
            scratch
                .join("latency-checkpoint")
                .to_str()
                .unwrap_or_default(),
        )
        .trigger(Trigger::ProcessingTime(Duration::ZERO))
        .start()
        .await?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "0")
        .create()?;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let value = format!("k{i}|{}|", BASE_MS + i as i64 * 1000);
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(value.as_bytes()))
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
        producer.flush(Duration::from_secs(10))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = query.exception().await? {
                bail!("the latency query failed: {e}");
            }
            let progress = query.recent_progress().await?;
            let read: u64 = progress.iter().map(|p| p.num_input_rows).sum();
            if read > i as u64 {
                // The batch that read the record.
                if let Some(p) = progress.iter().rev().find(|p| p.num_input_rows > 0) {
                    latencies.push(
                        p.duration_ms
                            .get("triggerExecution")
                            .copied()
                            .unwrap_or_default() as f64,
                    );
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("record {i} was not processed within a minute");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    query.stop().await?;
    Ok(latencies)
}
