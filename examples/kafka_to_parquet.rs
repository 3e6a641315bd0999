//! An incremental Kafka → Parquet data-lake job: each run reads the records that arrived since
//! the last successful run (`startingOffsets = latest` with a `checkpointLocation`), shapes them
//! with the DataFrame API and appends them to a Parquet table partitioned by page. A run that dies
//! before its write commits is redone with the same offsets, so every record lands exactly once.
//!
//! `cargo run --example kafka_to_parquet [BOOTSTRAP_SERVERS TOPIC]`
//!
//! Without arguments it starts a local noida-db broker on 127.0.0.1 (the one the README's test
//! command installs, or `FAISCA_NOIDA_DB`), creates the topic `clicks` and produces sample clicks
//! (`user,page,millis`) between runs.

use std::time::Duration;

use anyhow::bail;
use faisca::Session;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produce `n` clicks `user,page,millis`, starting at click number `from`.
async fn produce_clicks(servers: &str, topic: &str, from: usize, n: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()?;
    let pages = ["/home", "/search", "/cart", "/checkout"];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    for i in from..from + n {
        let value = format!(
            "user{},{},{}",
            i % 37,
            pages[i % pages.len()],
            now.as_millis()
        );
        let key = format!("user{}", i % 37);
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// One run of the job: new records → shaped → appended to the lake. Returns the rows written.
async fn run_once(
    session: &Session,
    servers: &str,
    topic: &str,
    checkpoint: &str,
    lake: &str,
) -> anyhow::Result<u64> {
    let clicks = session
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "latest")
        .option("checkpointLocation", checkpoint)
        .load()
        .await?;
    let shaped = clicks.select_expr(&[
        "split_part(CAST(value AS VARCHAR), ',', 1) AS user",
        "split_part(CAST(value AS VARCHAR), ',', 2) AS page",
        "partition",
        "offset",
        "timestamp AS received",
    ])?;
    Ok(shaped
        .write()
        .mode("append")
        .partition_by(["page"])
        .parquet(lake)
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (_broker, servers, topic) = match args.as_slice() {
        [servers, topic] => (None, servers.clone(), topic.clone()),
        [] => {
            let (broker, servers) = faisca_bench::local_kafka::start_noida()?;
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()?;
            admin
                .create_topics(
                    &[NewTopic::new("clicks", 4, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await?;
            (Some(broker), servers, "clicks".to_string())
        }
        _ => bail!("usage: kafka_to_parquet [BOOTSTRAP_SERVERS TOPIC]"),
    };
    let local = _broker.is_some();
    let _ = &_broker;
    let work = tempfile::tempdir()?;
    let lake = format!("{}/clicks", work.path().display());
    let checkpoint = format!("file://{}/checkpoints/clicks", work.path().display());
    let session = Session::builder().master("local[2]").build().await?;

    if local {
        produce_clicks(&servers, &topic, 0, 1_000).await?;
    }
    let first = run_once(&session, &servers, &topic, &checkpoint, &lake).await?;
    println!("run 1: appended {first} clicks");
    if local {
        produce_clicks(&servers, &topic, 1_000, 250).await?;
    }
    let second = run_once(&session, &servers, &topic, &checkpoint, &lake).await?;
    println!("run 2: appended {second} clicks (only the new ones)");
    let third = run_once(&session, &servers, &topic, &checkpoint, &lake).await?;
    println!("run 3: appended {third} clicks (nothing new)");

    session
        .read()
        .parquet(&lake)
        .await?
        .create_or_replace_temp_view("clicks")
        .await?;
    session
        .sql("SELECT page, count(*) AS clicks, count(DISTINCT \"user\") AS users FROM clicks GROUP BY page ORDER BY page")
        .await?
        .show_n(10)
        .await?;
    session.stop().await;
    Ok(())
}
