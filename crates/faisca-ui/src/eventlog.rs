//! The event log: every [`Event`] of a driver run as JSON lines, written as rolled segments
//! because object stores cannot append.
//!
//! A run's directory is `<faisca.eventLog.dir>/<appId>/`. It holds `appstatus.inprogress` while
//! the driver runs, then `appstatus.complete`, and segments `events_000001.jsonl`,
//! `events_000002.jsonl`, … — each written whole, once, by one `PUT`. A segment is closed when it
//! reaches `faisca.eventLog.rolling.maxFileSize`, when `faisca.eventLog.rolling.maxInterval` has
//! passed since its first event, and when a job ends; so a killed driver's run can be read up to
//! its last closed segment. An executor's heartbeat is written only when what it reports (memory
//! used, shuffle bytes held) changed, so an idle driver's log does not grow. Writing never holds
//! the driver up: events queue on a channel, and a
//! segment the store refuses is tried again with the next one (the run's log is then late, never
//! reordered).

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::events::Event;

/// The marker of a run whose driver has not ended (or was killed).
pub const IN_PROGRESS: &str = "appstatus.inprogress";
/// The marker of a run whose driver ended.
pub const COMPLETE: &str = "appstatus.complete";

/// The name of segment `n` (from 1).
pub fn segment_name(n: u64) -> String {
    format!("events_{n:06}.jsonl")
}

/// The number of a segment's file name, if it is one.
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("events_")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// When a segment is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    /// Bytes of events after which it is closed.
    pub max_bytes: usize,
    /// Time after its first event after which it is closed.
    pub max_interval: Duration,
}

/// A running event log writer.
#[derive(Debug)]
pub struct EventLogWriter {
    sender: mpsc::UnboundedSender<Event>,
    task: JoinHandle<()>,
}

impl EventLogWriter {
    /// Start writing the run `app_id` under `dir` of `store`: the in-progress marker now, the
    /// events posted to [`EventLogWriter::sink`] as they come.
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        dir: &Path,
        app_id: &str,
        rolling: Rolling,
    ) -> faisca_common::Result<Self> {
        let run = dir.clone().join(app_id);
        store
            .put(&run.clone().join(IN_PROGRESS), PutPayload::new())
            .await
            .map_err(|e| {
                faisca_common::Error::external(format!(
                    "cannot start the event log in {run} (faisca.eventLog.dir): {e}"
                ))
            })?;
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_log(store, run, rolling, events));
        Ok(EventLogWriter { sender, task })
    }

    /// Where to post events.
    pub fn sink(&self) -> mpsc::UnboundedSender<Event> {
        self.sender.clone()
    }

    /// Wait (at most `timeout`) until the writer ended: after [`Event::ApplicationEnd`] it
    /// closes the last segment and marks the run complete.
    pub async fn finish(mut self, timeout: Duration) {
        let (sender, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.sender, sender));
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            tracing::warn!("the event log did not finish writing within {timeout:?}");
        }
    }
}

impl Drop for EventLogWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Segments {
    store: Arc<dyn ObjectStore>,
    run: Path,
    next: u64,
    /// Events of the open segment, one JSON line each.
    buffer: Vec<u8>,
    /// Whether a `PUT` failed (the next close tries again).
    failing: bool,
}

impl Segments {
    async fn close(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let path = self.run.clone().join(segment_name(self.next));
        let payload = PutPayload::from(bytes::Bytes::from(self.buffer.clone()));
        match self.store.put(&path, payload).await {
            Ok(_) => {
                self.next += 1;
                self.buffer.clear();
                if self.failing {
                    tracing::info!("the event log writes again ({path})");
                    self.failing = false;
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        "cannot write event log segment {path}: {e}; trying again with the next one"
                    );
                }
                self.failing = true;
            }
        }
    }
}

async fn write_log(
    store: Arc<dyn ObjectStore>,
    run: Path,
    rolling: Rolling,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut segments = Segments {
        store,
        run,
        next: 1,
        buffer: Vec::new(),
        failing: false,
    };
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut reported: std::collections::HashMap<String, (u64, u64)> = Default::default();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = sleep_until(deadline) => {
                segments.close().await;
                deadline = None;
                continue;
            }
        };
        let Some(event) = event else {
            // The driver went away without saying it ended: keep what was written readable.
            segments.close().await;
            return;
        };
        if let Event::ExecutorHeartbeat(beat) = &event {
            let now = (beat.memory_used_bytes, beat.shuffle_bytes_held);
            if reported.insert(beat.id.clone(), now) == Some(now) {
                continue;
            }
        }
        match serde_json::to_vec(&event) {
            Ok(line) => {
                segments.buffer.extend_from_slice(&line);
                segments.buffer.push(b'\n');
            }
            Err(e) => tracing::warn!("an event cannot be written to the event log: {e}"),
        }
        if deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + rolling.max_interval);
        }
        let ends_app = matches!(event, Event::ApplicationEnd { .. });
        if ends_app
            || matches!(event, Event::JobEnd(_))
            || segments.buffer.len() >= rolling.max_bytes
        {
            segments.close().await;
            deadline = None;
        }
        if ends_app {
            let complete = segments.run.clone().join(COMPLETE);
            let marked = segments.store.put(&complete, PutPayload::new()).await;
            let in_progress = segments.run.clone().join(IN_PROGRESS);
            match marked {
                Ok(_) => {
                    let _ = segments.store.delete(&in_progress).await;
                }
                Err(e) => {
                    tracing::warn!("cannot mark the event log {} complete: {e}", segments.run)
                }
            }
            return;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ExecutorHeartbeat, JobEnd, JobOutcome};
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    async fn names(store: &InMemory, run: &Path) -> Vec<String> {
        let mut names: Vec<String> = store
            .list(Some(run))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    async fn read_back(store: &InMemory, run: &Path) -> Vec<Event> {
        let mut events = Vec::new();
        for name in names(store, run).await {
            if segment_number(&name).is_none() {
                continue;
            }
            let bytes = store.get(&run.clone().join(name.as_str())).await.unwrap();
            let bytes = bytes.bytes().await.unwrap();
            for line in std::str::from_utf8(&bytes).unwrap().lines() {
                events.push(serde_json::from_str(line).unwrap());
            }
        }
        events
    }

    fn job_end(job: u64) -> Event {
        Event::JobEnd(JobEnd {
            job,
            time: 1,
            outcome: JobOutcome::Succeeded,
            error: String::new(),
        })
    }

    fn heartbeat(time: u64) -> Event {
        Event::ExecutorHeartbeat(ExecutorHeartbeat {
            id: "executor-1".into(),
            time,
            memory_used_bytes: time,
            shuffle_bytes_held: 2,
        })
    }

    fn rolling(max_bytes: usize, seconds: u64) -> Rolling {
        Rolling {
            max_bytes,
            max_interval: Duration::from_secs(seconds),
        }
    }

    #[tokio::test]
    async fn segments_close_at_job_ends_at_their_size_and_at_the_end() {
        let store = Arc::new(InMemory::new());
        let dir = Path::from("logs");
        let writer = EventLogWriter::start(store.clone(), &dir, "app-1", rolling(300, 3600))
            .await
            .unwrap();
        let run = dir.clone().join("app-1");
        assert_eq!(names(&store, &run).await, vec![IN_PROGRESS]);
        let mut sent = vec![job_end(0)];
        sent.extend((0..6).map(heartbeat));
        sent.push(Event::ApplicationEnd { time: 9 });
        for event in &sent {
            writer.sink().send(event.clone()).unwrap();
        }
        writer.finish(Duration::from_secs(10)).await;
        let found = names(&store, &run).await;
        assert_eq!(found[0], COMPLETE, "{found:?}");
        assert!(!found.contains(&IN_PROGRESS.to_string()), "{found:?}");
        let segments = found.iter().filter(|n| segment_number(n).is_some()).count();
        assert!(
            segments >= 3,
            "a job end, the size and the end close segments: {found:?}"
        );
        assert_eq!(read_back(&store, &run).await, sent);
    }

    #[tokio::test]
    async fn unchanged_heartbeats_are_not_written() {
        let store = Arc::new(InMemory::new());
        let dir = Path::from("logs");
        let writer = EventLogWriter::start(store.clone(), &dir, "app-3", rolling(1 << 20, 3600))
            .await
            .unwrap();
        let same = |time| {
            Event::ExecutorHeartbeat(ExecutorHeartbeat {
                id: "executor-1".into(),
                time,
                memory_used_bytes: 7,
                shuffle_bytes_held: 0,
            })
        };
        for event in [
            same(1),
            same(2),
            heartbeat(3),
            same(4),
            Event::ApplicationEnd { time: 5 },
        ] {
            writer.sink().send(event).unwrap();
        }
        writer.finish(Duration::from_secs(10)).await;
        let run = dir.clone().join("app-3");
        assert_eq!(
            read_back(&store, &run).await,
            vec![
                same(1),
                heartbeat(3),
                same(4),
                Event::ApplicationEnd { time: 5 }
            ]
        );
    }

    #[tokio::test]
    async fn a_quiet_segment_closes_after_the_interval_and_a_lost_driver_leaves_it_in_progress() {
        let store = Arc::new(InMemory::new());
        let dir = Path::from("logs");
        let quick = Rolling {
            max_bytes: 1 << 20,
            max_interval: Duration::from_millis(100),
        };
        let writer = EventLogWriter::start(store.clone(), &dir, "app-2", quick)
            .await
            .unwrap();
        let run = dir.clone().join("app-2");
        writer.sink().send(heartbeat(1)).unwrap();
        // Waits on the segment; the bound only stops a stall.
        for _ in 0..600 {
            if names(&store, &run).await.contains(&segment_name(1)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(read_back(&store, &run).await, vec![heartbeat(1)]);
        writer.sink().send(heartbeat(2)).unwrap();
        // The driver goes away without an end: what it posted is written, the run stays open.
        writer.finish(Duration::from_secs(10)).await;
        assert_eq!(
            names(&store, &run).await,
            vec![IN_PROGRESS.to_string(), segment_name(1), segment_name(2)]
        );
    }
}
