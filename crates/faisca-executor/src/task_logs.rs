//! Task logs: the last log lines of each task attempt, kept in memory for the driver's web UI.
//!
//! Every task runs inside a `task` span carrying its executor, job, stage, partition and attempt
//! (see [`crate::connection`]). [`TaskLogLayer`], a `tracing` layer the process installs beside
//! its log output (the `faisca` binary does; a program running executors in-process can add it
//! too), finds that span above each log event and appends the formatted line to the executor's
//! [`store`]. Each executor keeps the last `faisca.ui.taskLogLines` lines per attempt (each cut
//! at `faisca.ui.taskLogMaxLineBytes`) and at most `faisca.ui.taskLogMaxBytes` in all, dropping the oldest attempts' lines first; lines of an
//! executor that did not [`register`] (or stopped) are not kept. The executor's Flight service
//! answers a task log ticket from [`lines`].
//!
//! The store is shared by every thread that logs, so it sits behind a mutex held only to push or
//! copy lines.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use faisca_common::config::TaskLogLimits;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The name of the span a task runs in.
pub const TASK_SPAN: &str = "task";

/// One task attempt on one executor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskAttemptId {
    /// The job's id.
    pub job: String,
    /// The stage within the job.
    pub stage: u32,
    /// The task (partition).
    pub partition: u32,
    /// The attempt.
    pub attempt: u32,
}

/// The lines kept of one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLog {
    /// The lines, oldest first.
    pub lines: VecDeque<String>,
    /// Earlier lines not kept (beyond `faisca.ui.taskLogLines`, or dropped for the byte limit).
    pub dropped: u64,
    bytes: usize,
}

/// One executor's task logs.
#[derive(Debug)]
struct ExecutorLogs {
    max_lines: usize,
    max_bytes: usize,
    max_line_bytes: usize,
    tasks: HashMap<TaskAttemptId, TaskLog>,
    /// Attempts in the order of their first kept line: the front is dropped first.
    order: VecDeque<TaskAttemptId>,
    bytes: usize,
}

/// What a kept line costs beside its text (its `String`, its slot in the ring).
const LINE_OVERHEAD: usize = 32;
/// What a kept attempt costs beside its lines (its two keys, its map entry, its ring).
const ATTEMPT_OVERHEAD: usize = 192;

fn line_cost(line: &str) -> usize {
    line.len() + LINE_OVERHEAD
}

impl ExecutorLogs {
    fn push(&mut self, task: &TaskAttemptId, mut line: String) {
        if self.max_lines == 0 || self.max_bytes == 0 {
            return;
        }
        if line.len() > self.max_line_bytes {
            let mut cut = self.max_line_bytes;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …(cut)");
        }
        line.shrink_to_fit();
        let size = line_cost(&line);
        let log = match self.tasks.get_mut(task) {
            Some(log) => log,
            None => {
                let cost = ATTEMPT_OVERHEAD + 2 * task.job.len();
                self.order.push_back(task.clone());
                self.bytes += cost;
                let log = self.tasks.entry(task.clone()).or_default();
                log.bytes = cost;
                log
            }
        };
        log.lines.push_back(line);
        log.bytes += size;
        self.bytes += size;
        if log.lines.len() > self.max_lines {
            let old = log.lines.pop_front().map_or(0, |l| line_cost(&l));
            log.bytes -= old;
            log.dropped += 1;
            self.bytes -= old;
        }
        self.shrink(task);
    }

    /// Drop the oldest attempts' lines until the bytes fit; the attempt being logged loses its
    /// own oldest lines only when it alone is over the limit.
    fn shrink(&mut self, current: &TaskAttemptId) {
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.front().cloned() else {
                return;
            };
            if &oldest == current {
                if self.order.len() > 1 {
                    // Keep the current attempt; drop the next oldest instead.
                    self.order.rotate_left(1);
                    continue;
                }
                let Some(log) = self.tasks.get_mut(current) else {
                    return;
                };
                let Some(old) = log.lines.pop_front() else {
                    return;
                };
                log.bytes -= line_cost(&old);
                log.dropped += 1;
                self.bytes -= line_cost(&old);
                continue;
            }
            self.order.pop_front();
            if let Some(log) = self.tasks.remove(&oldest) {
                self.bytes -= log.bytes;
            }
        }
    }
}

static STORE: LazyLock<Mutex<HashMap<String, ExecutorLogs>>> = LazyLock::new(Default::default);

fn store() -> std::sync::MutexGuard<'static, HashMap<String, ExecutorLogs>> {
    // A thread that panicked while holding it left whole lines behind: keep using it.
    STORE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Start keeping the task logs of `executor` within `limits` (`faisca.ui.taskLog*`).
pub fn register(executor: &str, limits: TaskLogLimits) {
    store().insert(
        executor.to_string(),
        ExecutorLogs {
            max_lines: limits.lines,
            max_bytes: limits.bytes,
            max_line_bytes: limits.line_bytes,
            tasks: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        },
    );
}

/// Stop keeping `executor`'s task logs and drop those kept.
pub fn forget(executor: &str) {
    store().remove(executor);
}

/// The lines `executor` kept of `task`; `None` when it keeps none for it.
pub fn lines(executor: &str, task: &TaskAttemptId) -> Option<TaskLog> {
    store().get(executor)?.tasks.get(task).cloned()
}

/// Append `line` to the log of `task` on `executor`, when that executor keeps task logs.
pub fn push(executor: &str, task: &TaskAttemptId, line: String) {
    if let Some(logs) = store().get_mut(executor) {
        logs.push(task, line);
    }
}

/// Whether `executor` keeps task log lines (it registered, with room for some).
pub fn keeps(executor: &str) -> bool {
    store()
        .get(executor)
        .is_some_and(|logs| logs.max_lines > 0 && logs.max_bytes > 0)
}

/// Bytes of task log lines `executor` holds now (with what keeping them costs beside the text).
pub fn held_bytes(executor: &str) -> usize {
    store().get(executor).map_or(0, |logs| logs.bytes)
}

/// A `tracing` layer that keeps every log event inside a `task` span in its executor's task log.
/// Install it beside the log output, with the filter that says which lines tasks keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskLogLayer;

/// What a `task` span says about its attempt.
#[derive(Debug)]
struct TaskSpan {
    executor: String,
    task: TaskAttemptId,
}

#[derive(Default)]
struct TaskSpanFields {
    executor: Option<String>,
    job: Option<String>,
    stage: Option<u32>,
    partition: Option<u32>,
    attempt: Option<u32>,
}

impl Visit for TaskSpanFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = u32::try_from(value).ok();
        match field.name() {
            "stage" => self.stage = value,
            "partition" => self.partition = value,
            "attempt" => self.attempt = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here, formatted as their Display.
        self.record_text(field, format!("{value:?}"));
    }
}

impl TaskSpanFields {
    fn record_text(&mut self, field: &Field, value: String) {
        match field.name() {
            "executor" => self.executor = Some(value),
            "job" => self.job = Some(value),
            _ => {}
        }
    }

    fn into_span(self) -> Option<TaskSpan> {
        Some(TaskSpan {
            executor: self.executor?,
            task: TaskAttemptId {
                job: self.job?,
                stage: self.stage?,
                partition: self.partition?,
                attempt: self.attempt?,
            },
        })
    }
}

/// An event's message and fields as one line's tail: `message key=value …`.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for TaskLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != TASK_SPAN {
            return;
        }
        let mut fields = TaskSpanFields::default();
        attrs.record(&mut fields);
        if let (Some(task), Some(span)) = (fields.into_span(), ctx.span(id)) {
            span.extensions_mut().insert(task);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let extensions = span.extensions();
            let Some(task) = extensions.get::<TaskSpan>() else {
                continue;
            };
            // Formatting costs more than the look-up: skip it when the line would not be kept.
            if keeps(&task.executor) {
                push(&task.executor, &task.task, format_line(event));
            }
            return;
        }
    }
}

/// `event` as a kept line: time, level, target, message and fields.
fn format_line(event: &Event<'_>) -> String {
    let mut text = EventText::default();
    event.record(&mut text);
    let metadata = event.metadata();
    format!(
        "{} {:>5} {}: {}{}",
        faisca_ui::format::spark_time(faisca_ui::events::now_ms()),
        metadata.level(),
        metadata.target(),
        text.message,
        text.fields
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn limits(lines: usize, bytes: usize) -> TaskLogLimits {
        TaskLogLimits {
            lines,
            bytes,
            line_bytes: 4096,
        }
    }

    fn attempt(partition: u32) -> TaskAttemptId {
        TaskAttemptId {
            job: "j".into(),
            stage: 1,
            partition,
            attempt: 0,
        }
    }

    #[test]
    fn lines_inside_a_task_span_are_kept_per_attempt_and_bounded() {
        register("exec-logs-a", limits(3, 1 << 20));
        let subscriber = tracing_subscriber::registry().with(TaskLogLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any task");
            let span = tracing::error_span!(
                "task",
                executor = "exec-logs-a",
                job = %"j",
                stage = 1u32,
                partition = 7u32,
                attempt = 0u32
            );
            let _entered = span.enter();
            for i in 0..5 {
                tracing::warn!(rows = i, "line {i}");
            }
        });
        let log = lines("exec-logs-a", &attempt(7)).expect("kept");
        assert_eq!(log.lines.len(), 3);
        assert_eq!(log.dropped, 2);
        assert!(log.lines[0].contains("WARN"), "{:?}", log.lines);
        assert!(log.lines[2].ends_with("line 4 rows=4"), "{:?}", log.lines);
        assert_eq!(lines("exec-logs-a", &attempt(8)), None);
        forget("exec-logs-a");
        assert_eq!(lines("exec-logs-a", &attempt(7)), None);
    }

    #[test]
    fn the_byte_limit_drops_the_oldest_attempts_first() {
        let line = "x".repeat(30);
        let (per_line, per_attempt) = (30 + LINE_OVERHEAD, ATTEMPT_OVERHEAD + 2);
        // Room for two attempts of two lines and one more line.
        let limit = 2 * per_attempt + 5 * per_line;
        register("exec-logs-b", limits(100, limit));
        push("exec-logs-b", &attempt(1), line.clone());
        push("exec-logs-b", &attempt(1), line.clone());
        push("exec-logs-b", &attempt(2), line.clone());
        push("exec-logs-b", &attempt(2), line.clone());
        push("exec-logs-b", &attempt(2), line.clone());
        assert_eq!(held_bytes("exec-logs-b"), limit);
        assert_eq!(lines("exec-logs-b", &attempt(1)).unwrap().lines.len(), 2);
        // Over the limit: attempt 1, the oldest, goes entirely.
        push("exec-logs-b", &attempt(2), line.clone());
        assert_eq!(lines("exec-logs-b", &attempt(1)), None);
        assert_eq!(lines("exec-logs-b", &attempt(2)).unwrap().lines.len(), 4);
        assert_eq!(held_bytes("exec-logs-b"), per_attempt + 4 * per_line);
        // An attempt alone over the limit keeps its newest lines.
        for _ in 0..10 {
            push("exec-logs-b", &attempt(2), line.clone());
        }
        let log = lines("exec-logs-b", &attempt(2)).unwrap();
        assert_eq!(log.lines.len(), (limit - per_attempt) / per_line);
        assert_eq!(log.dropped, 14 - log.lines.len() as u64);
        assert!(held_bytes("exec-logs-b") <= limit);
        // An executor that did not register keeps nothing.
        push("exec-logs-none", &attempt(1), line);
        assert_eq!(lines("exec-logs-none", &attempt(1)), None);
        forget("exec-logs-b");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        register("exec-logs-c", limits(10, 1 << 20));
        let subscriber = tracing_subscriber::registry().with(TaskLogLayer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!(
                "task",
                executor = "exec-logs-c",
                job = "j",
                stage = 1u32,
                partition = 1u32,
                attempt = 0u32
            );
            let _entered = span.enter();
            tracing::warn!("{}", "é".repeat(4096));
        });
        let log = lines("exec-logs-c", &attempt(1)).unwrap();
        assert!(log.lines[0].len() <= 4096 + 12);
        assert!(log.lines[0].ends_with("…(cut)"));
        forget("exec-logs-c");
    }
}
