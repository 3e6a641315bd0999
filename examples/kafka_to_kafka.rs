//! An incremental Kafka → Kafka job: each run reads the clicks that arrived since the last
//! successful run (`startingOffsets = latest` with a `checkpointLocation`), turns each into a JSON
//! event keyed by user with the DataFrame API and `to_json`, and writes them to another topic with
//! the Kafka sink (durable producer defaults: `acks=all`, idempotence). The source's checkpoint is
//! committed only after every record was confirmed, so a run that dies re-sends at most its own
//! records (at-least-once). At the end the output topic is read back as a table (`asTable`): the
//! latest event per user.
//!
//! `cargo run --example kafka_to_kafka [BOOTSTRAP_SERVERS INPUT_TOPIC OUTPUT_TOPIC]`
//!
//! Without arguments it starts a local noida-db broker on 127.0.0.1 (the one the README's test
//! command installs, or `FAISCA_NOIDA_DB`), creates the topics `clicks` and `click-events` and
//! produces sample clicks (`user,page`) between runs.

use std::time::Duration;

use anyhow::bail;
use faisca::Session;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produce `n` clicks `user,page`, starting at click number `from`.
async fn produce_clicks(servers: &str, topic: &str, from: usize, n: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()?;
    let pages = ["/home", "/search", "/cart", "/checkout"];
    for i in from..from + n {
        let value = format!("user{},{}", i % 37, pages[i % pages.len()]);
        producer
            .send(
                FutureRecord::<str, str>::to(topic).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// One run: new clicks → JSON events keyed by user → the output topic. Returns records sent.
async fn run_once(
    session: &Session,
    servers: &str,
    (input, output): (&str, &str),
    checkpoint: &str,
) -> anyhow::Result<u64> {
    let clicks = session
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", input)
        .option("startingOffsets", "latest")
        .option("checkpointLocation", checkpoint)
        .load()
        .await?;
    let events = clicks.select_expr(&[
        "split_part(CAST(value AS VARCHAR), ',', 1) AS key",
        "to_json(named_struct('user', split_part(CAST(value AS VARCHAR), ',', 1), 'page', split_part(CAST(value AS VARCHAR), ',', 2), 'source', concat(topic, '-', CAST(partition AS VARCHAR), '@', CAST(\"offset\" AS VARCHAR)))) AS value",
    ])?;
    Ok(events
        .write()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("topic", output)
        .option("kafka.compression.type", "lz4")
        .save()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (broker, servers, input, output) = match args.as_slice() {
        [servers, input, output] => (None, servers.clone(), input.clone(), output.clone()),
        [] => {
            let (broker, servers) = faisca_bench::local_kafka::start_noida()?;
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()?;
            admin
                .create_topics(
                    &[
                        NewTopic::new("clicks", 4, TopicReplication::Fixed(1)),
                        NewTopic::new("click-events", 4, TopicReplication::Fixed(1)),
                    ],
                    &AdminOptions::new(),
                )
                .await?;
            (
                Some(broker),
                servers,
                "clicks".to_string(),
                "click-events".to_string(),
            )
        }
        _ => bail!("usage: kafka_to_kafka [BOOTSTRAP_SERVERS INPUT_TOPIC OUTPUT_TOPIC]"),
    };
    let local = broker.is_some();
    let work = tempfile::tempdir()?;
    let checkpoint = format!("file://{}/checkpoints/clicks", work.path().display());
    let session = Session::builder().master("local[2]").build().await?;
    let topics = (input.as_str(), output.as_str());

    if local {
        produce_clicks(&servers, &input, 0, 1_000).await?;
    }
    let first = run_once(&session, &servers, topics, &checkpoint).await?;
    println!("run 1: sent {first} events");
    if local {
        produce_clicks(&servers, &input, 1_000, 250).await?;
    }
    let second = run_once(&session, &servers, topics, &checkpoint).await?;
    println!("run 2: sent {second} events (only the new clicks)");
    let third = run_once(&session, &servers, topics, &checkpoint).await?;
    println!("run 3: sent {third} events (nothing new)");

    // The output topic as the table it describes: each user's latest event.
    let latest = session
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", &servers)
        .option("subscribe", &output)
        .option("asTable", "true")
        .load()
        .await?;
    latest.create_or_replace_temp_view("latest").await?;
    session
        .sql("SELECT CAST(key AS VARCHAR) AS user, CAST(value AS VARCHAR) AS latest_event FROM latest ORDER BY user")
        .await?
        .show_n(5)
        .await?;
    session.stop().await;
    drop(broker);
    Ok(())
}
