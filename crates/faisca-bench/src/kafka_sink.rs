//! `faisca bench kafka-sink`: rows → Kafka records. Faísca's sink (`COPY (…) TO 'topic' STORED
//! AS KAFKA` on the cluster: rows generated in the query, one producer per task) against a plain
//! librdkafka producer (one `BaseProducer` sending from memory, then `flush`), with the same
//! durable settings (`acks=all`, `enable.idempotence=true`,
//! `max.in.flight.requests.per.connection=5`, Java's partitioner), in the same run, on a noida-db
//! broker started here (or `--servers`). Each run writes a fresh topic, deleted afterwards (the
//! broker keeps records in memory). Reports both rates and records per CPU-second.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use crate::cluster::{machine, write_json};
use crate::kafka::{RateComparison, create_topic, process_cpu};

/// `faisca bench kafka-sink`.
#[derive(Debug, clap::Args)]
pub struct KafkaSinkBenchArgs {
    /// Records each run writes.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 20)]
    pub partitions: i32,
    /// Brokers (default: a noida-db started for the run).
    #[arg(long)]
    pub servers: Option<String>,
    /// faisca://host:port, http://host:port, or local[N].
    #[arg(long, default_value = "local[2]")]
    pub master: String,
    /// Tasks (producers) of Faísca's write.
    #[arg(long, default_value_t = 1)]
    pub tasks: usize,
    /// Timed runs per writer (after one warm-up run each).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/kafka-sink.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// The producer settings both writers use (Faísca's sink defaults).
const DURABLE: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("max.in.flight.requests.per.connection", "5"),
    ("partitioner", "murmur2_random"),
];

/// The plain producer: `records` records (key: the row number as text, value: `bytes` bytes).
fn plain_producer(servers: &str, topic: &str, records: u64, bytes: usize) -> Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    for (k, v) in DURABLE {
        config.set(*k, *v);
    }
    let producer: BaseProducer = config.create()?;
    let payload = vec![b'x'; bytes];
    let mut key = String::new();
    for i in 0..records {
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "{i}");
        let record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(&payload[..]);
        crate::kafka::send_waiting(&producer, record, Duration::from_millis(1))?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

#[derive(Serialize)]
struct KafkaSinkReport {
    machine: String,
    master: String,
    records: u64,
    value_bytes: usize,
    partitions: i32,
    tasks: usize,
    #[serde(flatten)]
    comparison: RateComparison,
}

async fn delete_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<()> {
    for r in admin.delete_topics(&[topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("deleting topic {t}: {e}"))?;
    }
    Ok(())
}

/// `faisca bench kafka-sink`.
pub async fn kafka_sink(args: KafkaSinkBenchArgs) -> Result<()> {
    let (_broker, servers, admin) = crate::kafka::brokers(&args.servers)?;
    let session = crate::session(&args.master, "bench-kafka-sink", &args.conf).await?;
    let tasks = args.tasks.max(1) as u64;
    let per_task = args.records.div_ceil(tasks);
    // Rows generated in the query, `tasks` partitions of `per_task` rows (the last one fewer).
    let rows = (0..tasks)
        .map(|t| {
            let (start, end) = (t * per_task, ((t + 1) * per_task).min(args.records));
            format!("SELECT unnest(range({start}, {end})) AS n")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut run = 0u32;
    let mut next_topic = || {
        run += 1;
        format!("sink-bench-{}-{run}", std::process::id())
    };
    let (mut ours, mut ours_cpu, mut theirs, mut theirs_cpu) = (vec![], vec![], vec![], vec![]);
    for i in 0..=args.iterations.max(1) {
        for engine in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let topic = next_topic();
            create_topic(&admin, &topic, args.partitions).await?;
            let (t, cpu) = (Instant::now(), process_cpu());
            if engine == 0 {
                let sql = format!(
                    "COPY (SELECT CAST(n AS VARCHAR) AS key, repeat('x', {}) AS value FROM ({rows})) TO '{topic}' STORED AS KAFKA OPTIONS ('kafka.bootstrap.servers' '{servers}')",
                    args.value_bytes
                );
                let batches =
                    faisca::client::collect(session.execute_sql(&sql).await?.batches).await?;
                let sent = batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0);
                if sent != args.records {
                    bail!("Faísca sent {sent} records, expected {}", args.records);
                }
                if i > 0 {
                    ours.push(t.elapsed());
                    ours_cpu.push(process_cpu().saturating_sub(cpu));
                }
            } else {
                let (s, tp) = (servers.clone(), topic.clone());
                let (records, bytes) = (args.records, args.value_bytes);
                tokio::task::spawn_blocking(move || plain_producer(&s, &tp, records, bytes))
                    .await??;
                if i > 0 {
                    theirs.push(t.elapsed());
                    theirs_cpu.push(process_cpu().saturating_sub(cpu));
                }
            }
            delete_topic(&admin, &topic).await?;
        }
    }
    session.stop().await;
    let report = KafkaSinkReport {
        machine: machine(),
        master: args.master.clone(),
        records: args.records,
        value_bytes: args.value_bytes,
        partitions: args.partitions,
        tasks: args.tasks,
        comparison: RateComparison::new(args.records, (&ours, &ours_cpu), (&theirs, &theirs_cpu)),
    };
    report
        .comparison
        .print("Faísca's sink rate / plain producer's rate");
    write_json(&args.output, &report)
}
