//! `faisca bench kafka`: Kafka → Arrow batches. Records of a fixed size spread over many
//! partitions of a noida-db broker (started here, or given with `--servers`) are read by Faísca
//! (`SELECT count(*), count(value) FROM t` on the cluster: the scan copies every key and value
//! into Arrow batches) and by a plain librdkafka
//! consumer (one `BaseConsumer` assigned every partition, polling and summing payload sizes), in
//! the same run. Reports both rates, and Faísca's records per second per core of CPU time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use faisca::Session;
use faisca_common::config::parse_key_values;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::cluster::{machine, median, write_json};

/// `faisca bench kafka`.
#[derive(Debug, clap::Args)]
pub struct KafkaBenchArgs {
    /// Records to produce and read.
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
    /// Timed runs per reader (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/faisca-bench/kafka.json")]
    pub output: PathBuf,
    /// Configuration `key=value` for the session (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

/// CPU time (user + system) this process has used.
pub(crate) fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 10)
}

/// The brokers a Kafka benchmark uses: `servers`, or a noida-db started for the run (kept
/// running while the returned broker lives), with a client to administer them.
pub(crate) fn brokers(
    servers: &Option<String>,
) -> Result<(
    Option<crate::local_kafka::LocalBroker>,
    String,
    AdminClient<DefaultClientContext>,
)> {
    let (broker, servers) = match servers {
        Some(s) => (None, s.clone()),
        None => {
            let (b, s) = crate::local_kafka::start_noida()?;
            (Some(b), s)
        }
    };
    let admin = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()?;
    Ok((broker, servers, admin))
}

/// Sends `record`, waiting (serving delivery reports every `wait`) while the queue is full.
pub(crate) fn send_waiting<'a>(
    producer: &BaseProducer,
    mut record: BaseRecord<'a, [u8], [u8]>,
    wait: Duration,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(wait);
                record = back;
            }
            Err((e, back)) => bail!("producing to {}: {e}", back.topic),
        }
    }
}

fn produce(servers: &str, topic: &str, partitions: i32, records: u64, bytes: usize) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create()?;
    let payload = vec![b'x'; bytes];
    for i in 0..records {
        let key = i.to_le_bytes();
        let record = BaseRecord::to(topic)
            .partition((i % partitions as u64) as i32)
            .key(&key[..])
            .payload(&payload[..]);
        send_waiting(&producer, record, Duration::from_millis(10))?;
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// The plain consumer: every partition from offset 0 to its end; returns (records, payload bytes).
fn plain_consumer(servers: &str, topic: &str, partitions: i32, records: u64) -> Result<(u64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "faisca-bench-plain")
        .set("enable.auto.commit", "false")
        // noida-db answers a fetch of every partition with all of their records at once.
        .set("receive.message.max.bytes", "2000000000")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < records {
        if Instant::now() > deadline {
            bail!("the plain consumer read {n} of {records} records in 10 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => bail!("plain consumer: {e}"),
            None => {}
        }
    }
    Ok((n, bytes))
}

/// Faísca against a plain librdkafka client over the same records: each run's wall and CPU
/// time, and the rates of the medians.
#[derive(Serialize)]
pub(crate) struct RateComparison {
    faisca_ms: Vec<f64>,
    faisca_cpu_ms: Vec<f64>,
    plain_ms: Vec<f64>,
    plain_cpu_ms: Vec<f64>,
    faisca_records_per_s: f64,
    plain_records_per_s: f64,
    faisca_records_per_cpu_s: f64,
    plain_records_per_cpu_s: f64,
    rate_ratio: f64,
    /// The median runs' milliseconds (Faísca, plain), for the summary line.
    #[serde(skip)]
    median_ms: (f64, f64),
}

impl RateComparison {
    /// The comparison of `records` records handled in each timed run.
    pub(crate) fn new(
        records: u64,
        (ours, ours_cpu): (&[Duration], &[Duration]),
        (theirs, theirs_cpu): (&[Duration], &[Duration]),
    ) -> Self {
        let rate = |d: Duration| records as f64 / d.as_secs_f64().max(1e-9);
        let to_ms = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let (f, p) = (median(ours), median(theirs));
        RateComparison {
            faisca_ms: to_ms(ours),
            faisca_cpu_ms: to_ms(ours_cpu),
            plain_ms: to_ms(theirs),
            plain_cpu_ms: to_ms(theirs_cpu),
            faisca_records_per_s: rate(f),
            plain_records_per_s: rate(p),
            faisca_records_per_cpu_s: rate(median(ours_cpu)),
            plain_records_per_cpu_s: rate(median(theirs_cpu)),
            rate_ratio: rate(f) / rate(p),
            median_ms: (f.as_secs_f64() * 1000.0, p.as_secs_f64() * 1000.0),
        }
    }

    /// Prints both rates and their ratio, `ratio` naming it.
    pub(crate) fn print(&self, ratio: &str) {
        println!(
            "faisca  {:>8.0} ms  {:>10.0} records/s  {:>10.0} records/s per CPU-second\nplain   {:>8.0} ms  {:>10.0} records/s  {:>10.0} records/s per CPU-second\n{ratio}: {:.2}",
            self.median_ms.0,
            self.faisca_records_per_s,
            self.faisca_records_per_cpu_s,
            self.median_ms.1,
            self.plain_records_per_s,
            self.plain_records_per_cpu_s,
            self.rate_ratio
        );
    }
}

/// Creates `topic` with `partitions` partitions (replication 1).
pub(crate) async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct KafkaReport {
    machine: String,
    master: String,
    records: u64,
    value_bytes: usize,
    partitions: i32,
    #[serde(flatten)]
    comparison: RateComparison,
}

/// `faisca bench kafka`.
pub async fn kafka(args: KafkaBenchArgs) -> Result<()> {
    let (_broker, servers, admin) = brokers(&args.servers)?;
    let topic = format!("bench-{}", std::process::id());
    create_topic(&admin, &topic, args.partitions).await?;
    let t = Instant::now();
    {
        let (servers, topic) = (servers.clone(), topic.clone());
        let (partitions, records, bytes) = (args.partitions, args.records, args.value_bytes);
        tokio::task::spawn_blocking(move || produce(&servers, &topic, partitions, records, bytes))
            .await??;
    }
    eprintln!(
        "produced {} records of {} bytes over {} partitions in {:.1} s",
        args.records,
        args.value_bytes,
        args.partitions,
        t.elapsed().as_secs_f64()
    );

    let mut builder = Session::builder().master(&args.master);
    for (k, v) in parse_key_values(&args.conf, "--conf")? {
        builder = builder.config(k, v);
    }
    let session = builder.build().await?;
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE bench STORED AS KAFKA LOCATION '{topic}' OPTIONS ('kafka.bootstrap.servers' '{servers}')"
        ))
        .await?;
    // Every key and value is copied into Arrow batches by the scan; counting costs next to nothing.
    let sql = "SELECT count(*), count(value) FROM bench";
    let expected = format!("{}|{}", args.records, args.records);
    let run_faisca = || async {
        let batches = faisca::client::collect(session.execute_sql(sql).await?.batches).await?;
        let got = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        let row: Vec<String> = got
            .lines()
            .nth(3)
            .unwrap_or_default()
            .split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if row.join("|") != expected {
            bail!("Faísca read {row:?}, expected {expected}");
        }
        Ok::<_, anyhow::Error>(())
    };
    // Warm-up of both, then alternate.
    run_faisca().await?;
    let plain = {
        let (servers, topic) = (servers.clone(), topic.clone());
        let (partitions, records) = (args.partitions, args.records);
        move || plain_consumer(&servers, &topic, partitions, records)
    };
    let p = plain.clone();
    tokio::task::spawn_blocking(p).await??;
    let (mut ours, mut ours_cpu, mut theirs, mut theirs_cpu) = (vec![], vec![], vec![], vec![]);
    for i in 0..args.iterations.max(1) {
        for engine in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (t, cpu) = (Instant::now(), process_cpu());
            if engine == 0 {
                run_faisca().await?;
                ours.push(t.elapsed());
                ours_cpu.push(process_cpu().saturating_sub(cpu));
            } else {
                let p = plain.clone();
                let (n, bytes) = tokio::task::spawn_blocking(p).await??;
                theirs.push(t.elapsed());
                theirs_cpu.push(process_cpu().saturating_sub(cpu));
                if n != args.records || bytes != args.records * args.value_bytes as u64 {
                    bail!("the plain consumer read {n} records, {bytes} bytes");
                }
            }
        }
    }
    session.stop().await;
    let report = KafkaReport {
        machine: machine(),
        master: args.master.clone(),
        records: args.records,
        value_bytes: args.value_bytes,
        partitions: args.partitions,
        comparison: RateComparison::new(args.records, (&ours, &ours_cpu), (&theirs, &theirs_cpu)),
    };
    report
        .comparison
        .print("Faísca's rate / plain consumer's rate");
    write_json(&args.output, &report)
}
