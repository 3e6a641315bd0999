//! Structured streaming end to end on `local[2]`: the rate source, and Kafka on a real broker
//! (noida-db) with watermarks and event-time windows in every output mode against a reference
//! computed here from the produced events, exactly-once file sinks, restarts, and refusals.

use std::collections::BTreeMap;
use std::time::Duration;

use faisca::functions::col;
use faisca::{DataFrame, Session, Trigger};

use crate::kafka_brokers::{Broker, Kind, Record};

async fn session(config: &[(&str, &str)]) -> Session {
    let mut builder = Session::builder().master("local[2]");
    for (k, v) in config {
        builder = builder.config(*k, *v);
    }
    builder.build().await.unwrap()
}

async fn rows(session: &Session, sql: &str) -> Vec<String> {
    let df = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = crate::common::normalized_rows(
        &df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")),
    );
    rows.sort();
    rows
}

/// Waits (bounded) until `check` holds while `query` runs.
async fn eventually<F: std::future::Future<Output = bool>>(
    query: &faisca::StreamingQuery,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !check().await {
        if let Some(e) = query.exception().await.unwrap() {
            panic!("the query failed while waiting for {what}: {e}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            query.status().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_source_counts_from_zero_without_gaps_into_a_memory_table() {
    let session = session(&[]).await;
    let rate = session
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "50")
        .option("numPartitions", "3")
        .load()
        .await
        .unwrap();
    assert!(rate.is_streaming());
    let err = rate.collect().await.unwrap_err().to_string();
    assert!(
        err.contains("Queries with streaming sources must be executed with writeStream.start()"),
        "{err}"
    );
    let query = rate
        .write_stream()
        .format("memory")
        .query_name("rate_rows")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    eventually(&query, "two batches with rows", || async {
        query
            .recent_progress()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.num_input_rows > 0)
            .count()
            >= 2
    })
    .await;
    query.stop().await.unwrap();
    assert!(!query.is_active().await.unwrap());
    let progress = query.recent_progress().await.unwrap();
    let produced: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let counted = rows(
        &session,
        "SELECT count(*), count(DISTINCT value), min(value), max(value) FROM rate_rows",
    )
    .await;
    assert_eq!(
        counted,
        vec![format!("{produced}|{produced}|0|{}", produced - 1)],
        "{progress:?}"
    );
    let last = progress.last().unwrap();
    assert_eq!(last.id, query.id());
    assert!(last.to_json().contains("\"numInputRows\""));
    assert!(session.streams().active().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_sink_past_its_row_limit_fails_the_query_naming_the_limit() {
    let session = session(&[("faisca.streaming.memorySink.maxRows", "60")]).await;
    let query = session
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "100")
        .load()
        .await
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("bounded_rows")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let error = loop {
        if let Some(e) = query.exception().await.unwrap() {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query kept running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        error.contains("memory sink 'bounded_rows'")
            && error.contains("faisca.streaming.memorySink.maxRows (60)"),
        "{error}"
    );
    // What it held before stays readable, within the limit.
    let held = rows(&session, "SELECT count(*) FROM bounded_rows").await;
    assert!(held[0].parse::<u64>().unwrap() <= 60, "{held:?}");
}

/// The start of the 10 s windows the events fall in: a multiple of 10 s.
const BASE_MS: i64 = 1_700_000_000_000;

/// An event: key and event time (ms).
#[derive(Debug, Clone)]
struct Event {
    key: String,
    time_ms: i64,
}

fn record(e: &Event) -> Record {
    Record::new(Some(&e.key), &format!("{}|{}", e.key, e.time_ms))
}

/// Events in event-time order with each at most `jitter_ms` behind the largest before it, over
/// `seconds` seconds from `start_ms`: never late for a watermark delay above the jitter.
fn events(start_ms: i64, seconds: i64, per_second: i64, keys: usize, jitter_ms: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ start_ms as u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..seconds * per_second {
        let t = start_ms + i * 1000 / per_second;
        let jitter = (next() % jitter_ms as u64) as i64;
        out.push(Event {
            key: format!("k{}", next() % keys as u64),
            time_ms: (t - jitter).max(start_ms),
        });
    }
    out
}

/// `(window start ms, key) → count` of `events`, for 10 s windows.
fn counts(events: &[Event]) -> BTreeMap<(i64, String), u64> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts
            .entry((e.time_ms - e.time_ms.rem_euclid(10_000), e.key.clone()))
            .or_default() += 1;
    }
    counts
}

/// Rows as the memory table's query shows them: `start_ms,key,count`.
fn rendered(counts: &BTreeMap<(i64, String), u64>) -> Vec<String> {
    let mut rows: Vec<String> = counts
        .iter()
        .map(|((start, key), n)| format!("{start}|{key}|{n}"))
        .collect();
    rows.sort();
    rows
}

async fn windowed_counts(
    session: &Session,
    servers: &str,
    topic: &str,
    max_offsets: &str,
) -> DataFrame {
    session
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", max_offsets)
        .load()
        .await
        .unwrap()
        .select_expr(&[
            "split_part(CAST(value AS VARCHAR), '|', 1) AS key",
            "to_timestamp_millis(CAST(split_part(CAST(value AS VARCHAR), '|', 2) AS BIGINT)) AS event_time",
        ])
        .unwrap()
        .with_watermark("event_time", "10 seconds")
        .unwrap()
        .group_by(vec![
            faisca::functions::window(col("event_time"), "10 seconds", None).unwrap(),
            col("key"),
        ])
        .unwrap()
        .count()
        .unwrap()
}

const MEMORY_ROWS: &str =
    "SELECT CAST(to_unixtime(get_field(\"window\", 'start')) * 1000 AS BIGINT), key, count FROM ";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windowed_counts_with_a_watermark_match_the_reference_in_append_update_and_complete() {
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("events", 2).await;
    // Phase 1: 60 s of events, each at most 4 s behind the largest before it.
    let first = events(BASE_MS, 60, 20, 5, 4_000);
    let (even, odd): (Vec<_>, Vec<_>) = first
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    for (partition, part) in [(0, even), (1, odd)] {
        let records: Vec<Record> = part.iter().map(|(_, e)| record(e)).collect();
        broker.produce("events", partition, &records).await;
    }
    let session = session(&[("faisca.streaming.statePartitions", "4")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut queries = Vec::new();
    for mode in ["append", "update", "complete"] {
        let query = windowed_counts(&session, &broker.servers, "events", "300")
            .await
            .write_stream()
            .format("memory")
            .query_name(&format!("counts_{mode}"))
            .output_mode(mode)
            .option(
                "checkpointLocation",
                dir.path().join(mode).to_str().unwrap(),
            )
            .trigger(Trigger::AvailableNow)
            .start()
            .await
            .unwrap();
        queries.push((mode, query));
    }
    for (mode, query) in &queries {
        assert!(
            query
                .await_termination(Some(Duration::from_secs(120)))
                .await
                .unwrap(),
            "{mode}"
        );
        let progress = query.recent_progress().await.unwrap();
        // 1200 records, at most 300 a batch: at least four batches with data.
        assert!(
            progress.iter().filter(|p| p.num_input_rows > 0).count() >= 4,
            "{mode}: {progress:?}"
        );
        assert_eq!(
            progress.iter().map(|p| p.num_input_rows).sum::<u64>(),
            1200,
            "{mode}"
        );
    }
    let max_ms = first.iter().map(|e| e.time_ms).max().unwrap();
    let watermark = max_ms - 10_000;
    let all = counts(&first);
    let complete_windows: BTreeMap<_, _> = all
        .iter()
        .filter(|((start, _), _)| start + 10_000 <= watermark)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        rows(&session, &format!("{MEMORY_ROWS}counts_append")).await,
        rendered(&complete_windows),
        "append: windows the watermark passed, once each"
    );
    assert_eq!(
        rows(
            &session,
            "SELECT CAST(to_unixtime(get_field(\"window\", 'start')) * 1000 AS BIGINT), key, max(count) FROM counts_update GROUP BY 1, 2"
        )
        .await,
        rendered(&all),
        "update: each group's latest count"
    );
    assert_eq!(
        rows(&session, &format!("{MEMORY_ROWS}counts_complete")).await,
        rendered(&all),
        "complete: the whole result"
    );
    // Append: the state keeps only the windows the watermark has not passed.
    let append = &queries[0].1;
    let last = append.last_progress().await.unwrap().unwrap();
    assert_eq!(
        last.state_operators[0].num_rows_total,
        (all.len() - complete_windows.len()) as u64,
        "{}",
        last.to_json()
    );
    assert!(last.event_time.contains_key("watermark"));
}

/// Starts the windowed count of `topic` into Parquet at `out` with `config`, `AvailableNow`,
/// and waits for it to end; returns the query's error, if it failed.
async fn run_to_parquet(
    servers: &str,
    topic: &str,
    out: &str,
    checkpoint: &str,
    config: &[(&str, &str)],
) -> (Option<String>, Vec<faisca::StreamingQueryProgress>, String) {
    let session = session(config).await;
    let query = windowed_counts(&session, servers, topic, "250")
        .await
        .select_expr(&[
            "CAST(to_unixtime(get_field(\"window\", 'start')) * 1000 AS BIGINT) AS start_ms",
            "key",
            "count",
        ])
        .unwrap()
        .write_stream()
        .format("parquet")
        .option("path", out)
        .option("checkpointLocation", checkpoint)
        .trigger(Trigger::AvailableNow)
        .start()
        .await
        .unwrap();
    let ended = query
        .await_termination(Some(Duration::from_secs(120)))
        .await;
    let progress = query.recent_progress().await.unwrap();
    (
        ended.err().map(|e| e.to_string()),
        progress,
        query.id().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parquet_sink_holds_each_window_once_across_restarts_stops_after_each_step_and_late_rows()
{
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("clicks", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let checkpoint = dir.path().join("checkpoint");
    let checkpoint = checkpoint.to_str().unwrap();
    let mut produced: Vec<Event> = Vec::new();
    let mut id = None;
    // Each phase adds 20 s of events; a run stopped by a hook is restarted without it.
    for (phase, hook) in ["offsets", "sink", "commit", "none"]
        .into_iter()
        .enumerate()
    {
        let batch = events(BASE_MS + phase as i64 * 20_000, 20, 20, 4, 3_000);
        for partition in [0, 1] {
            let records: Vec<Record> = batch
                .iter()
                .skip(partition)
                .step_by(2)
                .map(record)
                .collect();
            broker.produce("clicks", partition as i32, &records).await;
        }
        produced.extend(batch);
        if hook != "none" {
            let (error, _, _) = run_to_parquet(
                &broker.servers,
                "clicks",
                out,
                checkpoint,
                &[("faisca.test.streaming.stopAfter", hook)],
            )
            .await;
            let error = error.unwrap_or_else(|| panic!("the run stopped after '{hook}' succeeded"));
            assert!(
                error.contains(&format!("stopped after '{hook}'")),
                "{error}"
            );
        }
        let (error, progress, query_id) =
            run_to_parquet(&broker.servers, "clicks", out, checkpoint, &[]).await;
        assert_eq!(error, None, "phase {phase}");
        assert!(!progress.is_empty(), "phase {phase}");
        // The query keeps its id across restarts.
        assert_eq!(id.get_or_insert(query_id.clone()), &query_id);
    }
    // Late rows: events far behind the watermark, each its own window and key.
    let late: Vec<Event> = (0..5)
        .map(|i| Event {
            key: format!("late{i}"),
            time_ms: BASE_MS + i * 10_000,
        })
        .collect();
    broker
        .produce("clicks", 0, &late.iter().map(record).collect::<Vec<_>>())
        .await;
    let (error, progress, _) =
        run_to_parquet(&broker.servers, "clicks", out, checkpoint, &[]).await;
    assert_eq!(error, None);
    let dropped: u64 = progress
        .iter()
        .flat_map(|p| &p.state_operators)
        .map(|s| s.num_rows_dropped_by_watermark)
        .sum();
    assert_eq!(dropped, 5, "{progress:?}");
    assert_eq!(progress.iter().map(|p| p.num_input_rows).sum::<u64>(), 5);

    let max_ms = produced.iter().map(|e| e.time_ms).max().unwrap();
    let expected: BTreeMap<_, _> = counts(&produced)
        .into_iter()
        .filter(|((start, _), _)| start + 10_000 <= max_ms - 10_000)
        .collect();
    let reader = session(&[]).await;
    let written = reader.read().parquet(out).await.unwrap();
    written
        .create_or_replace_temp_view("written")
        .await
        .unwrap();
    assert_eq!(
        rows(&reader, "SELECT start_ms, key, count FROM written").await,
        rendered(&expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processing_time_query_picks_up_records_produced_later() {
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("later", 1).await;
    let session = session(&[]).await;
    let query = session
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", &broker.servers)
        .option("subscribe", "later")
        .load()
        .await
        .unwrap()
        .select_expr(&["CAST(value AS VARCHAR) AS v", "offset"])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("later_rows")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    assert_eq!(session.streams().active().await.unwrap().len(), 1);
    let mut total = 0;
    for n in [10, 7] {
        broker.produce_values("later", 0, "v", n).await;
        total += n as u64;
        eventually(&query, "the new records", || async {
            query
                .recent_progress()
                .await
                .unwrap()
                .iter()
                .map(|p| p.num_input_rows)
                .sum::<u64>()
                == total
        })
        .await;
    }
    let counted = rows(
        &session,
        "SELECT count(*), count(DISTINCT offset) FROM later_rows",
    )
    .await;
    assert_eq!(counted, vec![format!("{total}|{total}")]);
    let last = query.last_progress().await.unwrap().unwrap();
    assert_eq!(last.num_input_rows, 7);
    assert_eq!(last.sources[0].start_offset, r#"{"later":{"0":10}}"#);
    assert_eq!(last.sources[0].end_offset, r#"{"later":{"0":17}}"#);
    assert_eq!(last.sink_num_output_rows, 7);
    query.stop().await.unwrap();
    assert_eq!(query.status().await.unwrap().message, "Stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_spark_refuses_are_refused_at_start_with_its_reasons() {
    let session = session(&[]).await;
    let rate = session.read_stream().format("rate").load().await.unwrap();
    let timed = rate
        .select_expr(&["timestamp AS t", "value % 3 AS k"])
        .unwrap();
    let counted = timed.group_by(vec![col("k")]).unwrap().count().unwrap();
    let start = |df: DataFrame, mode: &'static str, format: &'static str| async move {
        df.write_stream()
            .format(format)
            .query_name("refused")
            .option("path", "/tmp/faisca-refused")
            .option("checkpointLocation", "/tmp/faisca-refused-checkpoint")
            .output_mode(mode)
            .start()
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            start(counted.clone(), "append", "memory").await,
            "Append output mode not supported when there are streaming aggregations on streaming DataFrames/DataSets without watermark",
        ),
        (
            start(timed.clone(), "complete", "memory").await,
            "Complete output mode not supported when there are no streaming aggregations",
        ),
        (
            start(
                timed.sort(vec![col("k").sort(true, true)]).unwrap(),
                "append",
                "memory",
            )
            .await,
            "Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated DataFrame/Dataset in Complete output mode",
        ),
        (
            start(counted.limit(3).unwrap(), "update", "memory").await,
            "Limits are not supported on streaming DataFrames/Datasets in Update output mode",
        ),
        (
            start(counted.clone(), "update", "parquet").await,
            "Data source parquet does not support update output mode",
        ),
        (
            start(timed.clone(), "sideways", "memory").await,
            "unknown output mode 'sideways'",
        ),
        (
            start(
                timed
                    .agg(vec![faisca::functions::count(col("k")).alias("n")])
                    .unwrap(),
                "complete",
                "memory",
            )
            .await,
            "a streaming aggregation without grouping keys",
        ),
    ];
    for (error, reason) in cases {
        assert!(error.contains(reason), "expected «{reason}» in: {error}");
    }
    let batch = session.sql("SELECT 1 AS x").await.unwrap();
    let error = batch
        .write_stream()
        .format("memory")
        .start()
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'writeStream' can be called only on streaming Dataset/DataFrame"),
        "{error}"
    );
    assert!(session.streams().active().await.unwrap().is_empty());
}

fn write_json(dir: &std::path::Path, name: &str, rows: std::ops::Range<i64>) {
    let body: String = rows
        .map(|n| format!("{{\"k\":\"f{name}\",\"n\":{n}}}\n"))
        .collect();
    // Written aside and renamed, as a producer of files should: a reader never sees half a file.
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, body).unwrap();
    std::fs::rename(aside, dir.join(format!("{name}.json"))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_source_reads_new_files_once_each_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let checkpoint = dir.path().join("checkpoint");
    let session = session(&[]).await;
    let missing = session
        .read_stream()
        .format("json")
        .load_path(input.to_str().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("Schema must be specified when creating a streaming source DataFrame"),
        "{missing}"
    );
    write_json(&input, "a", 0..10);
    write_json(&input, "b", 10..25);
    std::fs::write(input.join("_ignored.json"), "{\"k\":\"x\",\"n\":-1}\n").unwrap();
    let start = |name: &'static str| {
        let session = session.clone();
        let input = input.clone();
        let checkpoint = checkpoint.clone();
        async move {
            session
                .read_stream()
                .format("json")
                .option("maxFilesPerTrigger", "1")
                .load_path(input.to_str().unwrap())
                .await
                .unwrap()
                .write_stream()
                .format("memory")
                .query_name(name)
                .option("checkpointLocation", checkpoint.to_str().unwrap())
                .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
                .start()
                .await
                .unwrap()
        }
    };
    let query = start("files_first").await;
    let count = |table: &'static str| {
        let session = session.clone();
        async move {
            rows(
                &session,
                &format!("SELECT count(*), count(DISTINCT n) FROM {table}"),
            )
            .await
        }
    };
    eventually(&query, "both files", || async {
        count("files_first").await == ["25|25"]
    })
    .await;
    // One file a batch: two batches.
    assert_eq!(
        query
            .recent_progress()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.num_input_rows > 0 || p.sink_num_output_rows > 0)
            .count(),
        2
    );
    write_json(&input, "c", 25..30);
    eventually(&query, "the new file", || async {
        count("files_first").await == ["30|30"]
    })
    .await;
    query.stop().await.unwrap();
    // A restart reads only files it has not read.
    write_json(&input, "d", 30..33);
    let query = start("files_second").await;
    eventually(&query, "the file written while stopped", || async {
        count("files_second").await == ["3|3"]
    })
    .await;
    assert_eq!(
        rows(&session, "SELECT min(n), max(n), min(k) FROM files_second").await,
        ["30|32|fd"]
    );
    query.stop().await.unwrap();
}

/// A session of the driver at `address` once `executors` executors registered.
async fn remote_session(address: &str, executors: usize) -> Session {
    let session = Session::builder().master(address).build().await.unwrap();
    session
        .wait_for_executors(executors, Duration::from_secs(60))
        .await
        .unwrap();
    session
}

/// The rows of the Parquet files at `out`, through a new session of `address`.
async fn parquet_rows(address: &str, out: &str) -> Vec<String> {
    let reader = remote_session(address, 0).await;
    let Ok(written) = reader.read().parquet(out).await else {
        return Vec::new();
    };
    written
        .create_or_replace_temp_view("written")
        .await
        .unwrap();
    rows(&reader, "SELECT start_ms, key, count FROM written").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_on_a_driver_process_outlives_its_client_survives_a_killed_executor_and_stops_with_faisca_kill()
 {
    use crate::launcher::{children_of, driver_with_executors, signal};
    let broker = Broker::start(Kind::Noida);
    broker.create_topic("taps", 2).await;
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = driver_with_executors(work.path());
    let _driver = crate::cli::Processes(vec![driver]);
    let driver_pid = _driver.0[0].id();
    let out = work.path().join("out");
    let out = out.to_str().unwrap().to_string();
    let checkpoint = work.path().join("checkpoint");
    let produce = |from: i64| {
        let batch = events(BASE_MS + from * 1000, 20, 20, 3, 3_000);
        let broker = &broker;
        async move {
            for partition in [0usize, 1] {
                let records: Vec<Record> = batch
                    .iter()
                    .skip(partition)
                    .step_by(2)
                    .map(record)
                    .collect();
                broker.produce("taps", partition as i32, &records).await;
            }
            batch
        }
    };
    let mut produced = produce(0).await;
    let session = remote_session(&address, 2).await;
    let query = windowed_counts(&session, &broker.servers, "taps", "200")
        .await
        .select_expr(&[
            "CAST(to_unixtime(get_field(\"window\", 'start')) * 1000 AS BIGINT) AS start_ms",
            "key",
            "count",
        ])
        .unwrap()
        .write_stream()
        .format("parquet")
        .option("path", &out)
        .option("checkpointLocation", checkpoint.to_str().unwrap())
        .query_name("taps_counts")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let id = query.id().to_string();
    eventually(&query, "the first records", || async {
        query
            .recent_progress()
            .await
            .unwrap()
            .iter()
            .map(|p| p.num_input_rows)
            .sum::<u64>()
            == 400
    })
    .await;
    // The client goes; the query stays on the driver.
    drop(query);
    session.stop().await;
    // An executor holding state partitions is killed; the launcher starts another, and the
    // partitions it held are rebuilt from the checkpoint.
    let executors = children_of(driver_pid);
    assert_eq!(executors.len(), 2, "{executors:?}");
    signal(executors[0], "KILL");
    produced.extend(produce(20).await);
    let max_ms = produced.iter().map(|e| e.time_ms).max().unwrap();
    let expected = rendered(
        &counts(&produced)
            .into_iter()
            .filter(|((start, _), _)| start + 10_000 <= max_ms - 10_000)
            .collect(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let written = parquet_rows(&address, &out).await;
        if written == expected {
            break;
        }
        let status = crate::cli::faisca_status_json(&address, &[&id]);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink holds {written:?}, expected {expected:?}; {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = crate::cli::faisca_status_lines(&address, &[]);
    let entry = listed
        .iter()
        .find(|l| l["streamingQuery"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(entry["state"], "active");
    assert_eq!(entry["name"], "taps_counts");
    assert!(
        entry["lastProgress"]["sources"][0]["endOffset"]["taps"].is_object(),
        "{entry}"
    );
    let killed = std::process::Command::new(crate::common::faisca_bin())
        .args(["kill", "--master", &address, &id])
        .output()
        .unwrap();
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert!(String::from_utf8_lossy(&killed.stderr).contains("stopped"));
    let after = crate::cli::faisca_status_lines(&address, &[&id]);
    assert_eq!(after[0]["state"], "stopped", "{after:?}");
    // Nothing was written twice, whatever the executor's loss re-ran.
    assert_eq!(parquet_rows(&address, &out).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreach_batch_runs_in_the_client_once_per_batch_and_its_error_fails_the_query() {
    use std::sync::{Arc, Mutex};
    let session = session(&[]).await;
    let rate = session
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "20")
        .option("numPartitions", "2")
        .load()
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let record = seen.clone();
    let query = rate
        .select_expr(&["value"])
        .unwrap()
        .write_stream()
        .foreach_batch(move |df, batch| {
            let record = record.clone();
            async move {
                let rows = df.count().await?;
                record.lock().unwrap().push((batch, rows));
                Ok(())
            }
        })
        .trigger(Trigger::ProcessingTime(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    eventually(&query, "two batches with rows", || async {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, rows)| *rows > 0)
            .count()
            >= 2
    })
    .await;
    query.stop().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let ids: Vec<u64> = seen.iter().map(|(batch, _)| *batch).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let progress = query.recent_progress().await.unwrap();
    let committed: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    // Every committed batch was handed to the function; one more may have been handed when the
    // stop came (it runs again after a restart).
    let handed: u64 = seen.iter().map(|(_, rows)| rows).sum();
    assert!(handed >= committed, "{seen:?} {progress:?}");
    assert_eq!(
        progress.iter().map(|p| p.batch_id).collect::<Vec<_>>(),
        ids[..progress.len()].to_vec()
    );

    let failing = rate
        .write_stream()
        .foreach_batch(|_, batch| async move {
            Err(faisca::Error::user(format!("no thanks, batch {batch}")))
        })
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let error = failing
        .await_termination(Some(Duration::from_secs(120)))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no thanks, batch"), "{error}");

    // The console sink prints each batch in the client; closing the client's session (a
    // second session of the same driver) stops the query.
    let client = Session::builder()
        .master(session.driver_address())
        .build()
        .await
        .unwrap();
    let console = client
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "20")
        .load()
        .await
        .unwrap()
        .write_stream()
        .format("console")
        .option("numRows", "3")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    eventually(&console, "a printed batch", || async {
        console
            .recent_progress()
            .await
            .unwrap()
            .iter()
            .any(|p| p.num_input_rows > 0)
    })
    .await;
    assert_eq!(
        console.last_progress().await.unwrap().unwrap().sink,
        "ConsoleSink"
    );
    let id = console.id().to_string();
    client.stop().await;
    let mut stopped = false;
    for _ in 0..600 {
        let queries = session.client().streaming_queries(false).await.unwrap();
        if queries.iter().any(|q| q.id == id && !q.active) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "the console query outlived its client's session");
}
