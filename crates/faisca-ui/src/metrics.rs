//! `/metrics`: the application's counters and gauges in Prometheus' text format (version
//! 0.0.4), with Prometheus' naming (`faisca_tasks_total{state="success"}`, `_seconds`, `_bytes`).
//!
//! [`Counters`] only grow (the store's retention limits never lower them); gauges are read from
//! the store when the page is rendered.

use std::fmt::Write;

use crate::events::{TaskEnd, TaskOutcome};
use crate::store::AppStore;

/// Upper bounds of the task duration histogram's buckets, in seconds.
pub const TASK_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Counters that only grow.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Jobs submitted.
    pub jobs_submitted: u64,
    /// Jobs that succeeded.
    pub jobs_succeeded: u64,
    /// Jobs that failed or were cancelled.
    pub jobs_failed: u64,
    /// Stages whose every task succeeded.
    pub stages_completed: u64,
    /// Stages active when their job failed.
    pub stages_failed: u64,
    /// Task attempts launched.
    pub tasks_started: u64,
    /// Task attempts that succeeded.
    pub tasks_succeeded: u64,
    /// Task attempts that failed.
    pub tasks_failed: u64,
    /// Task attempts that were stopped.
    pub tasks_killed: u64,
    /// Task durations: count per bucket of [`TASK_DURATION_BUCKETS`] (not cumulative), then
    /// the sum in seconds.
    pub task_duration_buckets: [u64; TASK_DURATION_BUCKETS.len() + 1],
    /// Sum of task durations, in seconds.
    pub task_duration_sum: f64,
    /// Rows successful tasks produced.
    pub task_output_rows: u64,
    /// Bytes successful tasks produced (shuffle output, files).
    pub task_output_bytes: u64,
    /// Named task counters summed over successful attempts (`kafka.recordsRead`, …).
    pub task_metrics: std::collections::BTreeMap<String, u64>,
    /// Executors that registered.
    pub executors_added: u64,
    /// Executors that left.
    pub executors_removed: u64,
    /// Streaming micro-batches that ended.
    pub streaming_batches: u64,
}

impl Counters {
    pub(crate) fn task_ended(&mut self, end: &TaskEnd) {
        self.record_task(
            end.outcome,
            end.duration_ms,
            end.rows_written,
            end.bytes_written,
            &end.metrics,
        );
    }

    /// Count a task attempt that ended as `outcome` after `duration_ms`, having produced `rows`
    /// and `bytes` and counted `metrics` (counted only for a success, as the job sums them).
    pub fn record_task(
        &mut self,
        outcome: TaskOutcome,
        duration_ms: f64,
        rows: u64,
        bytes: u64,
        metrics: &std::collections::BTreeMap<String, u64>,
    ) {
        match outcome {
            TaskOutcome::Success => {
                self.tasks_succeeded += 1;
                self.task_output_rows += rows;
                self.task_output_bytes += bytes;
                for (name, value) in metrics {
                    if !name.ends_with(".max") {
                        *self.task_metrics.entry(name.clone()).or_default() += value;
                    }
                }
            }
            TaskOutcome::Failed => self.tasks_failed += 1,
            TaskOutcome::Killed => self.tasks_killed += 1,
        }
        let seconds = duration_ms.max(0.0) / 1000.0;
        let bucket = TASK_DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(TASK_DURATION_BUCKETS.len());
        self.task_duration_buckets[bucket] += 1;
        self.task_duration_sum += seconds;
    }
}

/// The Prometheus samples a task counter adds to: `kafka.recordsRead` is
/// `faisca_kafka_records_read_total` and `faisca_scanned_rows_total{source="kafka"}`;
/// `scan.<kind>.rows` / `.bytes` are `faisca_scanned_rows_total{source="<kind>"}` /
/// `faisca_scanned_bytes_total{…}`; `shuffle.bytesFetched` is
/// `faisca_shuffle_fetched_bytes_total`; `spill.bytes` is `faisca_spill_bytes_total`.
fn task_metric_names(name: &str) -> Vec<(String, String)> {
    if let Some(rest) = name.strip_prefix("scan.") {
        let Some((kind, what)) = rest.rsplit_once('.') else {
            return vec![];
        };
        let metric = match what {
            "rows" => "faisca_scanned_rows_total",
            "bytes" => "faisca_scanned_bytes_total",
            _ => return vec![],
        };
        return vec![(metric.to_string(), format!("source=\"{}\"", label(kind)))];
    }
    match name {
        "kafka.recordsRead" => vec![
            ("faisca_kafka_records_read_total".to_string(), String::new()),
            (
                "faisca_scanned_rows_total".to_string(),
                "source=\"kafka\"".to_string(),
            ),
        ],
        "shuffle.bytesFetched" => vec![(
            "faisca_shuffle_fetched_bytes_total".to_string(),
            String::new(),
        )],
        "spill.bytes" => vec![("faisca_spill_bytes_total".to_string(), String::new())],
        _ => vec![],
    }
}

/// `text` made safe inside a label value.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A page of Prometheus' text format being written.
#[derive(Debug, Default)]
pub struct PrometheusPage {
    out: String,
}

impl PrometheusPage {
    /// Start a family: its help and type lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family (`labels` without braces; empty for none).
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// A family of one sample without labels.
    pub fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }

    /// The task families of `c`: attempts by state, the duration histogram, rows and bytes
    /// produced, and the named task counters with Prometheus names (scan rows and bytes by
    /// source, shuffle bytes fetched, spill bytes, Kafka records).
    pub fn task_families(&mut self, c: &Counters) {
        let page = self;
        page.family(
            "faisca_tasks_total",
            "counter",
            "Task attempts by state (started: all launched).",
        );
        page.sample("faisca_tasks_total", "state=\"started\"", c.tasks_started);
        page.sample("faisca_tasks_total", "state=\"success\"", c.tasks_succeeded);
        page.sample("faisca_tasks_total", "state=\"failed\"", c.tasks_failed);
        page.sample("faisca_tasks_total", "state=\"killed\"", c.tasks_killed);
        page.family(
            "faisca_task_duration_seconds",
            "histogram",
            "How long task attempts ran on their executors.",
        );
        let mut cumulative = 0;
        for (bound, count) in TASK_DURATION_BUCKETS.iter().zip(&c.task_duration_buckets) {
            cumulative += count;
            page.sample(
                "faisca_task_duration_seconds_bucket",
                &format!("le=\"{bound}\""),
                cumulative,
            );
        }
        cumulative += c.task_duration_buckets[TASK_DURATION_BUCKETS.len()];
        page.sample(
            "faisca_task_duration_seconds_bucket",
            "le=\"+Inf\"",
            cumulative,
        );
        page.sample("faisca_task_duration_seconds_sum", "", c.task_duration_sum);
        page.sample("faisca_task_duration_seconds_count", "", cumulative);
        page.one(
            "faisca_task_output_rows_total",
            "counter",
            "Rows successful task attempts produced.",
            c.task_output_rows,
        );
        page.one(
            "faisca_shuffle_written_bytes_total",
            "counter",
            "Bytes successful task attempts produced (shuffle output and results).",
            c.task_output_bytes,
        );
        let mut families: std::collections::BTreeMap<String, Vec<(String, u64)>> =
            Default::default();
        for (name, value) in &c.task_metrics {
            for (metric, labels) in task_metric_names(name) {
                let samples = families.entry(metric).or_default();
                match samples.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, sum)) => *sum += value,
                    None => samples.push((labels, *value)),
                }
            }
        }
        for metric in [
            "faisca_shuffle_fetched_bytes_total",
            "faisca_spill_bytes_total",
            "faisca_kafka_records_read_total",
        ] {
            families
                .entry(metric.to_string())
                .or_insert_with(|| vec![(String::new(), 0)]);
        }
        for (metric, samples) in families {
            page.family(&metric, "counter", &help_of(&metric));
            for (labels, value) in samples {
                page.sample(&metric, &labels, value);
            }
        }
    }
}

/// The store's metrics as a Prometheus text page.
pub fn render(store: &AppStore) -> String {
    let c = &store.counters;
    let mut page = PrometheusPage::default();
    let running_jobs = store.jobs.values().filter(|j| j.end.is_none()).count();
    page.family(
        "faisca_jobs_total",
        "counter",
        "Jobs by how they ended (submitted: all).",
    );
    page.sample("faisca_jobs_total", "state=\"submitted\"", c.jobs_submitted);
    page.sample("faisca_jobs_total", "state=\"succeeded\"", c.jobs_succeeded);
    page.sample("faisca_jobs_total", "state=\"failed\"", c.jobs_failed);
    page.one(
        "faisca_jobs_running",
        "gauge",
        "Jobs running now.",
        running_jobs,
    );
    page.family(
        "faisca_stages_total",
        "counter",
        "Stages by how they ended.",
    );
    page.sample(
        "faisca_stages_total",
        "state=\"completed\"",
        c.stages_completed,
    );
    page.sample("faisca_stages_total", "state=\"failed\"", c.stages_failed);
    page.task_families(c);
    let running_tasks: u64 = store.jobs.values().map(|j| j.tasks.active).sum();
    page.one(
        "faisca_tasks_running",
        "gauge",
        "Task attempts running now.",
        running_tasks,
    );
    page.one(
        "faisca_scheduler_waiting_tasks",
        "gauge",
        "Tasks of running jobs ready to run but waiting for a slot.",
        store.waiting_tasks(),
    );
    let active: Vec<_> = store
        .executors
        .values()
        .filter(|e| e.removed.is_none())
        .collect();
    page.one(
        "faisca_executors",
        "gauge",
        "Executors registered now.",
        active.len(),
    );
    page.family(
        "faisca_executors_total",
        "counter",
        "Executors that registered, and that left.",
    );
    page.sample(
        "faisca_executors_total",
        "state=\"added\"",
        c.executors_added,
    );
    page.sample(
        "faisca_executors_total",
        "state=\"removed\"",
        c.executors_removed,
    );
    page.one(
        "faisca_executor_cores",
        "gauge",
        "Task slots of the registered executors.",
        active.iter().map(|e| e.added.cores as u64).sum::<u64>(),
    );
    page.one(
        "faisca_memory_pool_used_bytes",
        "gauge",
        "Memory the registered executors' tasks hold (at their last heartbeats).",
        active.iter().map(|e| e.memory_used_bytes).sum::<u64>(),
    );
    page.one(
        "faisca_memory_pool_limit_bytes",
        "gauge",
        "Memory the registered executors' tasks may use.",
        active.iter().map(|e| e.added.memory_bytes).sum::<u64>(),
    );
    page.one(
        "faisca_shuffle_held_bytes",
        "gauge",
        "Shuffle output the registered executors hold (at their last heartbeats).",
        active.iter().map(|e| e.shuffle_bytes_held).sum::<u64>(),
    );
    page.one(
        "faisca_streaming_queries_active",
        "gauge",
        "Streaming query runs active now.",
        store.queries.values().filter(|q| q.ended.is_none()).count(),
    );
    page.one(
        "faisca_streaming_batches_total",
        "counter",
        "Streaming micro-batches that ended.",
        c.streaming_batches,
    );
    page.finish()
}

fn help_of(metric: &str) -> String {
    match metric {
        "faisca_scanned_rows_total" => "Rows read from sources, by kind of source.",
        "faisca_scanned_bytes_total" => "Bytes read from sources, by kind of source.",
        "faisca_shuffle_fetched_bytes_total" => "Shuffle bytes tasks fetched from executors.",
        "faisca_spill_bytes_total" => "Bytes tasks spilled to disk.",
        "faisca_kafka_records_read_total" => "Kafka records read.",
        _ => "A task counter.",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counters_have_prometheus_names() {
        assert_eq!(
            task_metric_names("scan.parquet.rows"),
            vec![(
                "faisca_scanned_rows_total".into(),
                "source=\"parquet\"".into()
            )]
        );
        let kafka = task_metric_names("kafka.recordsRead");
        assert_eq!(kafka[0].0, "faisca_kafka_records_read_total");
        assert_eq!(kafka[1].1, "source=\"kafka\"");
        assert_eq!(task_metric_names("state.numRowsTotal"), vec![]);
    }

    #[test]
    fn an_empty_store_renders_every_family_once() {
        let page = render(&AppStore::default());
        let mut seen = std::collections::BTreeSet::new();
        for line in page.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(seen.insert(name.to_string()), "{name} twice");
        }
        assert!(page.contains("faisca_task_duration_seconds_bucket{le=\"+Inf\"} 0"));
    }
}
