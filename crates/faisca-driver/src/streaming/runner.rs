//! A streaming query's runner: the loop of micro-batches, each an ordinary job of this driver.
//!
//! Per trigger: choose each source's next offsets; when there is data (or the watermark moved
//! and a stateful query can emit or evict: a batch without data), record the batch in
//! `offsets/<batch>`, plan it (the sources bound to the batch's data, the stateful operator at
//! the batch's state version and watermark), run it as a job, let the sink commit, move the
//! watermark from the job's largest event time, and record `commits/<batch>`. A query that
//! resumes first redoes the batch its checkpoint planned but never committed, with exactly its
//! recorded offsets. The actor owns the runner's task; the runner reports its status and each
//! batch's progress to the actor, which answers status calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::LogicalPlan;
use faisca_common::ids::SessionId;
use faisca_common::{Error, JobId, Result};
use faisca_connectors::kafka::{OffsetRange, TopicPartition};
use faisca_engine::shuffle::FlightClients;
use faisca_engine::streaming_exec::StatefulSpec;
use faisca_engine::task_metrics as metrics;
use faisca_proto::{SourceProgress, StateOperatorProgress, StreamingQueryProgress};
use tokio::sync::watch;
use tracing::{info, warn};

use super::check::OutputMode;
use super::checkpoint::{BatchMetadata, OffsetsEntry, Resume, StreamCheckpoint};
use super::file_sink_log::FileSinkLog;
use super::plan::{QueryShape, apply_stateful, bind, emit};
use super::sources::{FileCursor, KafkaBatchScans, SourceCursor, SourceOffsets};
use super::watermark::{WatermarkPolicy, WatermarkTracker, needs_no_data_batch};
use crate::actor::{DriverHandle, Message, WeakDriverHandle};
use crate::planning::{MicroBatchPlanning, build_job, micro_batch_physical_plan};
use crate::session::Session;

/// When a query's batches run (Spark's triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every interval (0: as soon as the last one ended), while there is data.
    ProcessingTime(Duration),
    /// What is available at start, in as many batches as the sources' limits make, then stop.
    AvailableNow,
    /// One batch of what is available, then stop.
    Once,
}

/// Where a query's rows go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A temporary table of the session named after the query.
    Memory {
        /// The table's name.
        name: String,
    },
    /// A sink that runs in the client (`console`, `foreach_batch`): each batch's rows wait as a
    /// table of the session until the client acknowledges them; at-least-once (a batch the
    /// client had not acknowledged when the query stopped runs again).
    Client {
        /// `console` or `foreachBatch`.
        kind: String,
    },
    /// Files in a directory, exactly once through the sink's log.
    Files {
        /// The write each batch makes (append mode).
        request: crate::write::WriteRequest,
        /// The sink's log.
        log: FileSinkLog,
    },
}

impl Sink {
    /// How progress reports name it.
    pub fn describe(&self) -> String {
        match self {
            Sink::Memory { name } => format!("MemorySink[{name}]"),
            Sink::Client { kind } if kind == "console" => "ConsoleSink".to_string(),
            Sink::Client { .. } => "ForeachBatchSink".to_string(),
            Sink::Files { request, .. } => {
                format!("FileSink[{}, {}]", request.url, request.format)
            }
        }
    }
}

/// A streaming query, ready to run.
pub struct QueryRun {
    /// Its id (from the checkpoint).
    pub id: String,
    /// This run's id.
    pub run_id: String,
    /// Its name (`query_name`), or empty.
    pub name: String,
    /// The session it runs in.
    pub session: Session,
    /// That session's id.
    pub session_id: SessionId,
    /// The streaming plan.
    pub plan: LogicalPlan,
    /// What the plan reads and keeps.
    pub shape: QueryShape,
    /// The output mode.
    pub mode: OutputMode,
    /// Its trigger.
    pub trigger: Trigger,
    /// Its sink.
    pub sink: Sink,
    /// Its checkpoint.
    pub checkpoint: StreamCheckpoint,
    /// Where it resumes.
    pub resume: Resume,
    /// Its state partitions.
    pub state_partitions: u32,
    /// Reads results for the memory sink.
    pub clients: Arc<FlightClients>,
    /// A client sink's acknowledgements of batches: `(batch, the client's error)`. Set by the
    /// actor when it starts the query.
    pub acks: Option<tokio::sync::mpsc::UnboundedReceiver<(u64, Option<String>)>>,
}

/// What a runner tells the actor.
#[derive(Debug, Clone)]
pub enum QueryUpdate {
    /// What it is doing now.
    Status {
        /// Spark's status message.
        message: String,
        /// Whether the last look found data.
        data_available: bool,
        /// Whether a batch is running.
        trigger_active: bool,
    },
    /// A batch ended.
    Progress(Box<StreamingQueryProgress>),
    /// A client sink's batch waits for the client (`None`: no longer).
    Pending(Option<(u64, String)>),
}

/// Runs `query` until it ends or `stop` turns true; tells the actor when it ended.
pub async fn run(query: QueryRun, handle: WeakDriverHandle, stop: watch::Receiver<bool>) {
    let run_id = query.run_id.clone();
    let name = query.id.clone();
    let outcome = Runner::new(query, handle.clone(), stop).run().await;
    if let Err(e) = &outcome {
        warn!(query = %name, "streaming query failed: {e}");
    }
    if let Ok(handle) = handle.upgrade() {
        handle.send(Message::QueryEnded {
            run_id,
            error: outcome.err().map(|e| e.to_string()),
        });
    }
}

struct Runner {
    query: QueryRun,
    /// Values of the query's secret options (its plan's literals): scrubbed from the stage plans
    /// its jobs show in the web UI and the event log.
    secrets: Vec<String>,
    handle: WeakDriverHandle,
    stop: watch::Receiver<bool>,
    cursors: Vec<SourceCursor>,
    tracker: WatermarkTracker,
    /// The watermark the last batch ran with (µs).
    last_run_watermark: i64,
    next_batch: u64,
    /// The memory sink's rows so far.
    memory_rows: Vec<RecordBatch>,
    last_batch_at: Option<Instant>,
    /// When the last batch's trigger started, and the time between the last two triggers
    /// (for the input rate, as Spark's: rows over the time since the previous trigger).
    last_trigger_start: Option<Instant>,
    input_interval: Option<Duration>,
    /// The running trigger's phases, as Spark's `durationMs` names them.
    phases: HashMap<&'static str, Duration>,
    /// The executor that ran each state partition in the last batch (it holds the partition's
    /// state in memory): the next batch's task of that partition prefers it.
    state_executors: Vec<Option<faisca_common::ExecutorId>>,
    /// The running batch's Kafka tasks, when the query reads one Kafka source.
    source_tasks: Option<Vec<Vec<OffsetRange>>>,
    /// The executor that last read each Kafka partition (its consumer may still stand where the
    /// partition's next range starts).
    partition_executors: HashMap<TopicPartition, faisca_common::ExecutorId>,
    /// A file sink's write, planned (destination checked, pending commits finished) by the
    /// first batch that writes and reused by the others.
    file_write: Option<crate::write::FileWrite>,
    /// Whether a `faisca.test.streaming.stopAfter` point may still fire (first batch only).
    stop_hook: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds (`2026-12-03T12:00:00.000Z`), as
/// Spark's progress shows times.
fn rfc3339(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

fn parse_sources(entry: &OffsetsEntry) -> Result<Vec<SourceOffsets>> {
    entry
        .sources
        .iter()
        .map(|line| SourceOffsets::from_line(line))
        .collect()
}

impl Runner {
    /// `job`'s stage plans without the query's secret values.
    fn scrub_secrets(&self, job: &mut crate::scheduler::PlannedJob) {
        if self.secrets.is_empty() {
            return;
        }
        for stage in &mut job.stages {
            stage.operators = faisca_common::redact::scrub(&stage.operators, &self.secrets);
        }
    }

    fn new(query: QueryRun, handle: WeakDriverHandle, stop: watch::Receiver<bool>) -> Self {
        let last: Option<Vec<SourceOffsets>> = match &query.resume.last_committed {
            Some((entry, _)) => parse_sources(entry).ok(),
            None => None,
        };
        let cursors = query
            .shape
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let files = matches!(
                    s.source,
                    faisca_engine::streaming_source::StreamSource::Files(_)
                )
                .then(|| {
                    FileCursor::new(
                        query.session.ctx.runtime_env(),
                        query.checkpoint.store().clone(),
                        query.checkpoint.dir(&format!("sources/{i}")),
                    )
                });
                SourceCursor::new(
                    s.source.clone(),
                    last.as_ref().and_then(|l| l.get(i).cloned()),
                    files,
                    query.session.allowed.clone(),
                )
            })
            .collect();
        let (current, last_run) = match &query.resume.last_committed {
            Some((entry, next)) => (next * 1000, entry.metadata.batch_watermark_ms * 1000),
            None => (0, 0),
        };
        let delays: Vec<Duration> = query.shape.watermark.iter().map(|(_, d)| *d).collect();
        let stop_hook = query
            .session
            .config
            .test_streaming_stop_after()
            .map(str::to_string);
        let secrets = query
            .session
            .config
            .redaction()
            .secret_values_in_plan(&query.plan);
        Runner {
            secrets,
            tracker: WatermarkTracker::new(&delays, WatermarkPolicy::Min, current),
            last_run_watermark: last_run,
            next_batch: query.resume.next_batch_id(),
            cursors,
            query,
            handle,
            stop,
            memory_rows: Vec::new(),
            last_batch_at: None,
            last_trigger_start: None,
            input_interval: None,
            phases: HashMap::new(),
            state_executors: Vec::new(),
            source_tasks: None,
            partition_executors: HashMap::new(),
            file_write: None,
            stop_hook,
        }
    }

    fn actor(&self) -> Result<DriverHandle> {
        self.handle.upgrade()
    }

    fn status(&self, message: &str, data_available: bool, trigger_active: bool) {
        if let Ok(handle) = self.actor() {
            handle.send(Message::QueryUpdate {
                run_id: self.query.run_id.clone(),
                update: QueryUpdate::Status {
                    message: message.to_string(),
                    data_available,
                    trigger_active,
                },
            });
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn hook(&mut self, point: &str) -> Result<()> {
        if self.stop_hook.as_deref() == Some(point) {
            return Err(Error::external_final(format!(
                "the streaming query stopped after '{point}' of batch {} (faisca.test.streaming.stopAfter)",
                self.next_batch
            )));
        }
        Ok(())
    }

    async fn run(mut self) -> Result<()> {
        info!(query = %self.query.id, run = %self.query.run_id, batch = self.next_batch, "streaming query started");
        if let Sink::Memory { name } = &self.query.sink {
            // As Spark's memory sink: the table exists, empty, from the start.
            let schema = Arc::new(self.query.plan.schema().as_arrow().clone());
            let ctx = &self.query.session.ctx;
            ctx.deregister_table(name.as_str())?;
            ctx.register_table(
                name.as_str(),
                Arc::new(MemTable::try_new(schema, vec![Vec::new()])?),
            )?;
        }
        if let Some(redo) = self.query.resume.redo.clone() {
            let offsets = parse_sources(&redo)?;
            // A redo's starts are the ends of the batch before it (its recorded ranges).
            self.run_batch_with_latest(&redo, &offsets, &offsets, &offsets, Instant::now())
                .await?;
        }
        if self.query.trigger == Trigger::AvailableNow {
            let now = now_ms();
            for i in 0..self.cursors.len() {
                let latest = self.cursors[i]
                    .next(now, self.query.session.config.kafka_request_timeout())
                    .await?
                    .latest;
                self.cursors[i].cap = Some(latest);
            }
        }
        loop {
            if self.stopped() {
                break;
            }
            let trigger_start = Instant::now();
            self.phases.clear();
            let now = now_ms();
            self.status("Getting offsets from sources", false, true);
            let timeout = self.query.session.config.kafka_request_timeout();
            let mut batch = Vec::with_capacity(self.cursors.len());
            let mut latest = Vec::with_capacity(self.cursors.len());
            for cursor in &mut self.cursors {
                let next = cursor.next(now, timeout).await?;
                batch.push(next.batch);
                latest.push(next.latest);
            }
            self.phases.insert("latestOffset", trigger_start.elapsed());
            let rows: u64 = batch
                .iter()
                .zip(&self.cursors)
                .map(|(o, c)| o.rows(&c.source))
                .sum();
            let has_data = batch.iter().any(|o| !o.is_empty());
            let ready = has_data && self.ready(rows, trigger_start);
            let no_data_batch = !has_data
                && needs_no_data_batch(
                    self.query.shape.aggregates
                        && self.query.shape.watermark.is_some()
                        && self.query.mode != OutputMode::Complete,
                    self.tracker.current(),
                    self.last_run_watermark,
                );
            let ran = if ready || no_data_batch {
                let entry = OffsetsEntry {
                    batch_id: self.next_batch,
                    metadata: BatchMetadata {
                        batch_watermark_ms: self.tracker.current() / 1000,
                        batch_timestamp_ms: now,
                    },
                    sources: batch
                        .iter()
                        .map(SourceOffsets::to_line)
                        .collect::<Result<_>>()?,
                };
                let starts: Vec<SourceOffsets> = batch.clone();
                self.status("Processing new data", true, true);
                let wal = Instant::now();
                self.query.checkpoint.write_offsets(&entry).await?;
                self.phases.insert("walCommit", wal.elapsed());
                self.hook("offsets")?;
                self.run_batch_with_latest(&entry, &starts, &batch, &latest, trigger_start)
                    .await?;
                true
            } else {
                false
            };
            match self.query.trigger {
                Trigger::Once if ran => {
                    // Spark's Once runs one batch; a batch without data that the watermark
                    // now allows follows it.
                    if self.wants_no_data_batch() {
                        continue;
                    }
                    break;
                }
                Trigger::Once | Trigger::AvailableNow if !ran => break,
                Trigger::Once | Trigger::AvailableNow => continue,
                Trigger::ProcessingTime(interval) => {
                    if ran && self.wants_no_data_batch() {
                        continue;
                    }
                    self.status("Waiting for data to arrive", has_data, false);
                    let wait = if ran {
                        interval.saturating_sub(trigger_start.elapsed())
                    } else {
                        interval
                            .saturating_sub(trigger_start.elapsed())
                            .max(self.query.session.config.streaming_poll_interval())
                    };
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.stop.changed() => {}
                        }
                    }
                }
            }
        }
        self.status("Stopped", false, false);
        info!(query = %self.query.id, run = %self.query.run_id, "streaming query stopped");
        Ok(())
    }

    /// Whether the watermark moved so that a stateful query can emit or evict without new data.
    fn wants_no_data_batch(&self) -> bool {
        needs_no_data_batch(
            self.query.shape.aggregates
                && self.query.shape.watermark.is_some()
                && self.query.mode != OutputMode::Complete,
            self.tracker.current(),
            self.last_run_watermark,
        )
    }

    /// `minOffsetsPerTrigger` and `maxTriggerDelay` of the Kafka sources (not for AvailableNow).
    fn ready(&self, rows: u64, now: Instant) -> bool {
        if self.query.trigger == Trigger::AvailableNow {
            return true;
        }
        self.cursors.iter().all(|c| match &c.source {
            faisca_engine::streaming_source::StreamSource::Kafka(options) => {
                faisca_connectors::kafka::trigger::ready_to_run(
                    rows,
                    options.min_offsets_per_trigger,
                    self.last_batch_at.map(|t| now.saturating_duration_since(t)),
                    options.max_trigger_delay,
                )
            }
            _ => true,
        })
    }

    async fn run_batch_with_latest(
        &mut self,
        entry: &OffsetsEntry,
        starts: &[SourceOffsets],
        offsets: &[SourceOffsets],
        latest: &[SourceOffsets],
        trigger_start: Instant,
    ) -> Result<()> {
        let batch_id = entry.batch_id;
        let watermark = entry.metadata.batch_watermark_ms * 1000;
        for (cursor, offsets) in self.cursors.iter_mut().zip(offsets) {
            cursor.record(batch_id, offsets).await?;
        }
        let planning_start = Instant::now();
        let Some(outcome) = self.execute(entry, offsets, latest).await? else {
            // Stopped while a client sink held the batch: it is not committed, and runs again
            // when the query restarts.
            return Ok(());
        };
        let planning = self
            .phases
            .get("queryPlanning")
            .copied()
            .unwrap_or_default();
        let added = planning_start.elapsed().saturating_sub(planning);
        self.phases.insert("addBatch", added);
        self.hook("sink")?;
        let commit_start = Instant::now();
        let max_event_time = outcome
            .metrics
            .get(metrics::MAX_EVENT_TIME)
            .map(|m| *m as i64);
        let next = self.tracker.batch_ended(&[max_event_time]);
        let next_ms = next.div_euclid(1000);
        self.query
            .checkpoint
            .write_commit(batch_id, next_ms)
            .await?;
        self.hook("commit")?;
        self.stop_hook = None;
        // The tracker keeps whole milliseconds: what the next batch's offsets entry records.
        self.tracker.floor_to_millis();
        self.last_run_watermark = watermark;
        self.next_batch = batch_id + 1;
        self.last_batch_at = Some(Instant::now());
        self.input_interval = self
            .last_trigger_start
            .map(|t| trigger_start.saturating_duration_since(t));
        self.last_trigger_start = Some(trigger_start);
        for (cursor, end) in self.cursors.iter_mut().zip(offsets) {
            cursor.last = Some(end.clone());
        }
        let retain = self.query.session.config.streaming_min_batches_to_retain();
        if batch_id + 1 > retain {
            self.query
                .checkpoint
                .purge_before(batch_id + 1 - retain)
                .await?;
        }
        self.phases.insert("commitOffsets", commit_start.elapsed());
        self.report(
            entry,
            starts,
            offsets,
            latest,
            &outcome,
            trigger_start.elapsed(),
            max_event_time,
        );
        Ok(())
    }

    /// Plans and runs the batch's job and lets the sink commit (`None`: the query was stopped
    /// while a client sink held the batch).
    async fn execute(
        &mut self,
        entry: &OffsetsEntry,
        offsets: &[SourceOffsets],
        latest: &[SourceOffsets],
    ) -> Result<Option<BatchOutcome>> {
        let planning = Instant::now();
        let query = &self.query;
        let session = &query.session;
        let mut kafka = KafkaBatchScans::default();
        let default_max = session.config.kafka_max_records_per_task();
        let handle = self.actor()?;
        let cores = handle
            .ask(|reply| Message::ClusterInfo {
                min_executors: 0,
                reply,
            })
            .await?
            .executors
            .iter()
            .map(|e| e.cores as usize)
            .sum::<usize>()
            .max(1);
        let bound: Vec<Arc<dyn TableProvider>> = self
            .cursors
            .iter()
            .zip(offsets.iter().zip(latest))
            .map(|(c, (o, l))| c.bound_table(o, l, default_max, cores, &mut kafka))
            .collect::<Result<_>>()?;
        let source_tasks = match kafka.tasks.len() {
            1 => kafka.tasks.values().next().cloned(),
            _ => None,
        };
        let plan = bind(&query.plan, &query.shape.sources, &bound)?;
        let mut physical = micro_batch_physical_plan(
            session,
            &plan,
            cores,
            MicroBatchPlanning {
                partitions: query.state_partitions as usize,
                kafka_tasks: kafka.tasks,
                kafka_known_ends: kafka.known_ends,
            },
        )
        .await?;
        if query.shape.aggregates {
            let spec = StatefulSpec {
                query_id: query.id.clone(),
                checkpoint: query.checkpoint.url().to_string(),
                operator: 0,
                version: entry.batch_id,
                watermark_micros: query
                    .shape
                    .watermark
                    .as_ref()
                    .map(|_| entry.metadata.batch_watermark_ms * 1000),
                emit: emit(query.mode),
                event_time_key: query.shape.event_time_key,
                snapshot_interval: session.config.streaming_state_snapshot_interval(),
                min_versions_to_retain: session.config.streaming_min_batches_to_retain(),
            };
            physical = apply_stateful(physical, &spec)?;
        }
        let label = if query.name.is_empty() {
            query.id.clone()
        } else {
            query.name.clone()
        };
        self.phases.insert("queryPlanning", planning.elapsed());
        self.source_tasks = source_tasks;
        let sink = self.query.sink.clone();
        match &sink {
            Sink::Client { .. } => {
                let schema = physical.schema();
                let (rows, job_metrics) = self.collect_batch(physical, entry, &label).await?;
                let output: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
                let table = format!("__faisca_batch_{}", self.query.run_id.replace('-', "_"));
                let ctx = &self.query.session.ctx;
                ctx.deregister_table(table.as_str())?;
                ctx.register_table(
                    table.as_str(),
                    Arc::new(MemTable::try_new(schema, vec![rows])?),
                )?;
                let acked = self.wait_for_client(entry.batch_id, &table).await;
                let _ = self.query.session.ctx.deregister_table(table.as_str());
                match acked? {
                    true => Ok(Some(BatchOutcome {
                        metrics: job_metrics,
                        output_rows: output as i64,
                    })),
                    false => Ok(None),
                }
            }
            Sink::Memory { name } => {
                let schema = physical.schema();
                let (rows, job_metrics) = self.collect_batch(physical, entry, &label).await?;
                let output: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
                let held: u64 = if self.query.mode == OutputMode::Complete {
                    0
                } else {
                    self.memory_rows.iter().map(|b| b.num_rows() as u64).sum()
                };
                let limit = self.query.session.config.streaming_memory_sink_max_rows();
                if held.saturating_add(output) > limit {
                    return Err(Error::user(format!(
                        "the memory sink '{name}' would hold {} rows after batch {}, more than faisca.streaming.memorySink.maxRows ({limit}): write the query to a file or Kafka sink, or raise the limit",
                        held.saturating_add(output),
                        entry.batch_id
                    )));
                }
                if self.query.mode == OutputMode::Complete {
                    self.memory_rows = rows;
                } else {
                    self.memory_rows.extend(rows);
                }
                let table = MemTable::try_new(schema, vec![self.memory_rows.clone()])?;
                let ctx = &self.query.session.ctx;
                ctx.deregister_table(name.as_str())?;
                ctx.register_table(name.as_str(), Arc::new(table))?;
                Ok(Some(BatchOutcome {
                    metrics: job_metrics,
                    output_rows: output as i64,
                }))
            }
            Sink::Files { request, log } => {
                if log.is_committed(entry.batch_id).await? {
                    // An earlier run of this batch committed its files: nothing is added, but
                    // the batch still runs (its rows discarded) so that its state and the
                    // watermark move exactly as they did then.
                    info!(query = %self.query.id, batch = entry.batch_id, "the file sink already holds this batch; its rows are not written again");
                    let (_, job_metrics) = self.collect_batch(physical, entry, &label).await?;
                    return Ok(Some(BatchOutcome {
                        metrics: job_metrics,
                        output_rows: 0,
                    }));
                }
                let mut files = match &self.file_write {
                    Some(files) => files.clone(),
                    None => {
                        let planned = crate::write::plan_write(
                            &self.query.session,
                            request.clone(),
                            plan.clone(),
                        )
                        .await?;
                        let crate::write::PlannedWrite::Job { write, .. } = planned else {
                            return Err(Error::internal("an append write was skipped"));
                        };
                        let crate::write::JobWrite::Files(files) = write.as_ref() else {
                            return Err(Error::internal("a file sink planned another write"));
                        };
                        let files = files.as_ref().clone();
                        self.file_write = Some(files.clone());
                        files
                    }
                };
                files.sink_log = Some((log.clone(), entry.batch_id));
                let write = crate::write::JobWrite::Files(Box::new(files));
                let mut job = build_job(
                    &self.query.session,
                    &self.query.session_id,
                    physical,
                    Vec::new(),
                )?;
                job.name = format!("{label} batch {}", entry.batch_id);
                job.sql = format!("streaming query {label}, batch {}", entry.batch_id);
                self.scrub_secrets(&mut job);
                job.schema = crate::write::count_schema();
                job.write = Some(Arc::new(write));
                if let Some(last) = job.stages.last_mut() {
                    last.output_description = "write".to_string();
                }
                let preferred = self.prefer_executors(&mut job);
                let job_id = handle
                    .ask(|reply| Message::SubmitJob { job, reply })
                    .await??;
                let (result, job_metrics) = await_job(&handle, &job_id).await?;
                self.remember_executors(preferred, &result);
                let counts = crate::flight::collect_result(
                    handle.clone(),
                    self.query.clients.clone(),
                    job_id,
                    result,
                )
                .await?;
                let output = counts
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                            .map(|a| a.value(0) as i64)
                    })
                    .unwrap_or(-1);
                Ok(Some(BatchOutcome {
                    metrics: job_metrics,
                    output_rows: output,
                }))
            }
        }
    }

    /// Offers batch `batch` (rows in the session's table `table`) to the client sink and waits
    /// for its acknowledgement: true once acknowledged, false when the query was stopped first;
    /// the client's error fails the query.
    async fn wait_for_client(&mut self, batch: u64, table: &str) -> Result<bool> {
        self.status("Waiting for the client to process the batch", true, true);
        let pending = |update: Option<(u64, String)>| Message::QueryUpdate {
            run_id: self.query.run_id.clone(),
            update: QueryUpdate::Pending(update),
        };
        self.actor()?
            .send(pending(Some((batch, table.to_string()))));
        let acks = self
            .query
            .acks
            .as_mut()
            .ok_or_else(|| Error::internal("a client sink without acknowledgements"))?;
        let outcome = loop {
            tokio::select! {
                ack = acks.recv() => match ack {
                    Some((acked, error)) if acked == batch => break match error {
                        None => Ok(true),
                        Some(e) => Err(Error::user(format!(
                            "the client's function failed on batch {batch}: {e}"
                        ))),
                    },
                    Some(_) => continue,
                    None => break Err(Error::internal("the driver is shutting down")),
                },
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        break Ok(false);
                    }
                }
            }
        };
        if let Ok(handle) = self.actor() {
            handle.send(pending(None));
        }
        outcome
    }

    /// Gives the job's stateful stage the executors holding its partitions' state, and its
    /// Kafka stage the executors that last read each task's partitions; returns those stages.
    fn prefer_executors(&self, job: &mut crate::scheduler::PlannedJob) -> PreferredStages {
        let mut stages = PreferredStages::default();
        if let Some(stage) = job.stages.iter_mut().find(|s| s.stateful) {
            if stage.tasks as usize == self.state_executors.len() {
                stage.preferred = self.state_executors.clone();
            }
            stages.stateful = Some(stage.id);
        }
        if let Some(tasks) = &self.source_tasks
            && let Some(stage) = job.stages.iter_mut().find(|s| s.reads_kafka)
            && stage.tasks as usize == tasks.len()
        {
            stage.preferred = kafka_task_preferences(tasks, &self.partition_executors);
            stages.source = Some(stage.id);
        }
        stages
    }

    /// Remembers where the stateful stage's tasks ran (their partitions' state is there now) and
    /// which executor read each Kafka partition.
    fn remember_executors(&mut self, stages: PreferredStages, result: &crate::actor::JobResult) {
        let executors =
            |stage: Option<u32>| stage.and_then(|s| result.task_executors.get(s as usize));
        if let Some(executors) = executors(stages.stateful) {
            self.state_executors = executors.clone();
        }
        if let (Some(executors), Some(tasks)) = (executors(stages.source), &self.source_tasks) {
            record_kafka_readers(tasks, executors, &mut self.partition_executors);
        }
    }

    /// Runs the batch's job and reads its rows on the driver; returns them and its counters.
    async fn collect_batch(
        &mut self,
        physical: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        entry: &OffsetsEntry,
        label: &str,
    ) -> Result<(Vec<RecordBatch>, HashMap<String, u64>)> {
        let handle = self.actor()?;
        let clients = self.query.clients.clone();
        let mut job = build_job(
            &self.query.session,
            &self.query.session_id,
            physical,
            Vec::new(),
        )?;
        job.name = format!("{label} batch {}", entry.batch_id);
        job.sql = format!("streaming query {label}, batch {}", entry.batch_id);
        self.scrub_secrets(&mut job);
        let preferred = self.prefer_executors(&mut job);
        let job_id = handle
            .ask(|reply| Message::SubmitJob { job, reply })
            .await??;
        let (result, job_metrics) = await_job(&handle, &job_id).await?;
        self.remember_executors(preferred, &result);
        let rows = crate::flight::collect_result(handle.clone(), clients, job_id, result).await?;
        Ok((rows, job_metrics))
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        entry: &OffsetsEntry,
        starts: &[SourceOffsets],
        offsets: &[SourceOffsets],
        latest: &[SourceOffsets],
        outcome: &BatchOutcome,
        took: Duration,
        max_event_time: Option<i64>,
    ) {
        let query = &self.query;
        let seconds = took.as_secs_f64().max(1e-9);
        let since_last = self
            .input_interval
            .map(|d| d.as_secs_f64())
            .unwrap_or(seconds)
            .max(1e-9);
        let mut sources = Vec::new();
        let mut total_rows = 0;
        for (i, cursor) in self.cursors.iter().enumerate() {
            let rows = offsets[i].rows(&cursor.source);
            let rows = match &cursor.source {
                faisca_engine::streaming_source::StreamSource::Kafka(_) => outcome
                    .metrics
                    .get(metrics::KAFKA_RECORDS_READ)
                    .copied()
                    .unwrap_or(rows),
                _ => rows,
            };
            total_rows += rows;
            sources.push(SourceProgress {
                description: cursor.source.identity(),
                start_offset: starts[i].progress_json(true),
                end_offset: offsets[i].progress_json(false),
                latest_offset: latest[i].progress_json(false),
                num_input_rows: rows,
                input_rows_per_second: rows as f64 / since_last,
                processed_rows_per_second: rows as f64 / seconds,
            });
        }
        let metric = |name: &str| outcome.metrics.get(name).copied().unwrap_or_default();
        let state_operators = if query.shape.aggregates {
            vec![StateOperatorProgress {
                operator_name: "stateStoreSave".to_string(),
                num_rows_total: metric(metrics::STATE_ROWS_TOTAL),
                num_rows_updated: metric(metrics::STATE_ROWS_UPDATED),
                num_rows_removed: metric(metrics::STATE_ROWS_REMOVED),
                num_rows_dropped_by_watermark: metric(metrics::STATE_ROWS_DROPPED_BY_WATERMARK),
                memory_used_bytes: metric(metrics::STATE_MEMORY_USED_BYTES),
                num_state_partitions: query.state_partitions as u64,
            }]
        } else {
            Vec::new()
        };
        let mut event_time = HashMap::new();
        if query.shape.watermark.is_some() {
            event_time.insert(
                "watermark".to_string(),
                rfc3339(entry.metadata.batch_watermark_ms),
            );
            if let Some(max) = max_event_time {
                event_time.insert("max".to_string(), rfc3339(max / 1000));
            }
        }
        let progress = StreamingQueryProgress {
            id: query.id.clone(),
            run_id: query.run_id.clone(),
            name: query.name.clone(),
            timestamp: rfc3339(entry.metadata.batch_timestamp_ms),
            batch_id: entry.batch_id,
            num_input_rows: total_rows,
            input_rows_per_second: total_rows as f64 / since_last,
            processed_rows_per_second: total_rows as f64 / seconds,
            duration_ms: self
                .phases
                .iter()
                .map(|(name, d)| (name.to_string(), d.as_millis() as u64))
                .chain([("triggerExecution".to_string(), took.as_millis() as u64)])
                .collect(),
            event_time,
            sources,
            state_operators,
            sink: query.sink.describe(),
            sink_num_output_rows: outcome.output_rows,
        };
        if let Ok(handle) = self.actor() {
            handle.send(Message::QueryUpdate {
                run_id: query.run_id.clone(),
                update: QueryUpdate::Progress(Box::new(progress)),
            });
        }
    }
}

/// Each Kafka task's preferred executor: the one that last read the partition of its first
/// range with a known reader (its consumer may stand where that range starts).
fn kafka_task_preferences(
    tasks: &[Vec<OffsetRange>],
    readers: &HashMap<TopicPartition, faisca_common::ExecutorId>,
) -> Vec<Option<faisca_common::ExecutorId>> {
    tasks
        .iter()
        .map(|ranges| {
            ranges
                .iter()
                .find_map(|r| readers.get(&r.topic_partition()))
                .cloned()
        })
        .collect()
}

/// Records which executor read each partition of `tasks` (`executors[i]` ran task `i`).
fn record_kafka_readers(
    tasks: &[Vec<OffsetRange>],
    executors: &[Option<faisca_common::ExecutorId>],
    readers: &mut HashMap<TopicPartition, faisca_common::ExecutorId>,
) {
    for (ranges, executor) in tasks.iter().zip(executors) {
        if let Some(executor) = executor {
            for range in ranges {
                readers.insert(range.topic_partition(), executor.clone());
            }
        }
    }
}

/// The stages of a batch's job given preferred executors.
#[derive(Debug, Default, Clone, Copy)]
struct PreferredStages {
    stateful: Option<u32>,
    source: Option<u32>,
}

/// What a batch's job did.
struct BatchOutcome {
    metrics: HashMap<String, u64>,
    output_rows: i64,
}

/// Waits for a job; returns its result and its counters.
async fn await_job(
    handle: &DriverHandle,
    job: &JobId,
) -> Result<(crate::actor::JobResult, HashMap<String, u64>)> {
    let id = job.clone();
    let result = handle
        .ask(|reply| Message::AwaitJob { id, reply })
        .await?
        .map_err(|e| Error::copy_of(&e))?;
    let id = job.clone();
    let info = handle.ask(|reply| Message::GetJob { id, reply }).await??;
    Ok((result, info.metrics.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_tasks_prefer_the_executor_that_last_read_their_partitions() {
        let range = |partition: i32, start: i64| OffsetRange {
            topic: "t".into(),
            partition,
            start,
            end: start + 10,
        };
        let a = faisca_common::ExecutorId::from("a".to_string());
        let b = faisca_common::ExecutorId::from("b".to_string());
        let mut readers = HashMap::new();
        // Batch 1: partitions 0 and 1 on a, 2 on b; the third task's executor is unknown.
        let first = vec![
            vec![range(0, 0), range(1, 0)],
            vec![range(2, 0)],
            vec![range(3, 0)],
        ];
        assert_eq!(
            kafka_task_preferences(&first, &readers),
            vec![None, None, None]
        );
        record_kafka_readers(
            &first,
            &[Some(a.clone()), Some(b.clone()), None],
            &mut readers,
        );
        // Batch 2, packed otherwise: each task follows its first partition with a known reader.
        let second = vec![
            vec![range(3, 10), range(2, 10)],
            vec![range(1, 10)],
            vec![range(4, 0)],
        ];
        assert_eq!(
            kafka_task_preferences(&second, &readers),
            vec![Some(b.clone()), Some(a.clone()), None]
        );
        record_kafka_readers(
            &second,
            &[Some(a.clone()), Some(b.clone()), Some(a.clone())],
            &mut readers,
        );
        assert_eq!(readers.get(&range(2, 0).topic_partition()), Some(&a));
        assert_eq!(readers.get(&range(1, 0).topic_partition()), Some(&b));
        assert_eq!(readers.get(&range(0, 0).topic_partition()), Some(&a));
    }

    #[test]
    fn times_show_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_299_261_007), "2026-12-03T12:01:01.007Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
