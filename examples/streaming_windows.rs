//! Structured streaming: Kafka → 10-second windowed counts per page with a watermark → Parquet,
//! exactly once. The query reads what is in the topic in batches (`maxOffsetsPerTrigger`), writes
//! each window once the watermark has passed its end, and stops (`AvailableNow`); a second run
//! with the same checkpoint carries on where the first stopped, and its late clicks are dropped.
//!
//! `cargo run --example streaming_windows [BOOTSTRAP_SERVERS TOPIC]`
//!
//! Without arguments it starts a local noida-db broker on 127.0.0.1 (the one the README's test
//! command installs, or `FAISCA_NOIDA_DB`), creates the topic `page_views` and produces sample
//! views (`page,event_millis`) before each run.

use std::time::Duration;

use anyhow::bail;
use faisca::functions::{col, window};
use faisca::{Session, Trigger};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produce `n` views, one every 50 ms of event time from `start_ms`, plus `late` views an hour old.
async fn produce_views(
    servers: &str,
    topic: &str,
    start_ms: i64,
    n: i64,
    late: i64,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()?;
    let pages = ["/home", "/search", "/cart", "/checkout"];
    let views = (0..n)
        .map(|i| (pages[i as usize % pages.len()], start_ms + i * 50))
        .chain((0..late).map(|i| ("/late", start_ms - 3_600_000 + i)));
    for (page, time) in views {
        let value = format!("{page},{time}");
        producer
            .send(
                FutureRecord::to(topic).key(page).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// One run of the query until what is available now is processed; returns the rows dropped as late.
async fn run_once(
    session: &Session,
    servers: &str,
    topic: &str,
    checkpoint: &str,
    lake: &str,
) -> anyhow::Result<u64> {
    let views = session
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", "500")
        .load()
        .await?
        .select_expr(&[
            "split_part(CAST(value AS VARCHAR), ',', 1) AS page",
            "to_timestamp_millis(CAST(split_part(CAST(value AS VARCHAR), ',', 2) AS BIGINT)) AS viewed",
        ])?
        .with_watermark("viewed", "10 seconds")?;
    let counts = views
        .group_by(vec![
            window(col("viewed"), "10 seconds", None)?,
            col("page"),
        ])?
        .count()?
        .select_expr(&[
            "get_field(\"window\", 'start') AS window_start",
            "page",
            "count AS views",
        ])?;
    let query = counts
        .write_stream()
        .format("parquet")
        .option("path", lake)
        .option("checkpointLocation", checkpoint)
        .trigger(Trigger::AvailableNow)
        .start()
        .await?;
    query.await_termination(None).await?;
    let progress = query.recent_progress().await?;
    for p in &progress {
        println!(
            "  batch {:>2}: {:>4} rows in, watermark {}, {} windows in state",
            p.batch_id,
            p.num_input_rows,
            p.event_time
                .get("watermark")
                .map(String::as_str)
                .unwrap_or("-"),
            p.state_operators.first().map_or(0, |s| s.num_rows_total)
        );
    }
    Ok(progress
        .iter()
        .flat_map(|p| &p.state_operators)
        .map(|s| s.num_rows_dropped_by_watermark)
        .sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (broker, servers, topic) = match args.as_slice() {
        [servers, topic] => (None, servers.clone(), topic.clone()),
        [] => {
            let (broker, servers) = faisca_bench::local_kafka::start_noida()?;
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()?;
            admin
                .create_topics(
                    &[NewTopic::new("page_views", 2, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await?;
            (Some(broker), servers, "page_views".to_string())
        }
        _ => bail!("usage: streaming_windows [BOOTSTRAP_SERVERS TOPIC]"),
    };
    let local = broker.is_some();
    let work = tempfile::tempdir()?;
    let lake = format!("{}/page_views", work.path().display());
    let checkpoint = format!("{}/checkpoints/page_views", work.path().display());
    let session = Session::builder().master("local[2]").build().await?;
    // Event time starts at a whole minute, an hour ago.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        / 60_000
        * 60_000
        - 3_600_000;

    if local {
        produce_views(&servers, &topic, start, 1_200, 0).await?;
    }
    println!("run 1:");
    let dropped = run_once(&session, &servers, &topic, &checkpoint, &lake).await?;
    println!("run 1 dropped {dropped} late rows");
    if local {
        produce_views(&servers, &topic, start + 60_000, 600, 3).await?;
    }
    println!("run 2 (carries on from the checkpoint):");
    let dropped = run_once(&session, &servers, &topic, &checkpoint, &lake).await?;
    println!("run 2 dropped {dropped} late rows");

    session
        .read()
        .parquet(&lake)
        .await?
        .create_or_replace_temp_view("page_views")
        .await?;
    session
        .sql("SELECT window_start, page, views FROM page_views ORDER BY window_start, page")
        .await?
        .show_n(12)
        .await?;
    session.stop().await;
    drop(broker);
    Ok(())
}
