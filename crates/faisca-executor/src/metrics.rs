//! The executor's own Prometheus metrics (`faisca executor --metrics-port`): its task attempts
//! by state and their durations, what they produced and read (shuffle bytes, scanned rows and
//! bytes by source, spill, Kafka records), and gauges read when the page is rendered: task
//! slots, running tasks, the memory pool, shuffle output held in memory, task log bytes.
//!
//! An actor of its own owns the counters: the connection loop tells it of every launch and
//! every ended attempt, and the metrics port asks it for the page.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::memory_pool::MemoryPool;
use faisca_engine::shuffle::memory::MemoryShuffleStore;
use faisca_proto::{TaskState, TaskStatus};
use faisca_ui::events::TaskOutcome;
use faisca_ui::metrics::{Counters, PrometheusPage};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// What the metrics actor is told.
#[derive(Debug)]
pub enum MetricsMessage {
    /// A task attempt was launched.
    TaskStarted,
    /// A task attempt ended (or was stopped: `None`).
    TaskEnded(Option<Box<TaskStatus>>),
    /// Render the page.
    Render(oneshot::Sender<String>),
}

/// Where the connection loop reports tasks; a no-op when metrics are not served.
#[derive(Debug, Clone, Default)]
pub struct MetricsSink {
    sender: Option<mpsc::UnboundedSender<MetricsMessage>>,
}

impl MetricsSink {
    /// Report `message`.
    pub fn send(&self, message: MetricsMessage) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(message);
        }
    }

    /// Whether anything listens.
    pub fn is_active(&self) -> bool {
        self.sender.is_some()
    }
}

/// Where the gauges are read from.
pub struct Gauges {
    /// This executor's id (its task logs).
    pub executor: String,
    /// Task slots.
    pub cores: u32,
    /// The memory pool.
    pub pool: Arc<dyn MemoryPool>,
    /// The memory pool's limit in bytes.
    pub pool_limit: u64,
    /// Map outputs kept in memory.
    pub shuffle_memory: Arc<MemoryShuffleStore>,
}

/// Start the actor; `metrics` is what the metrics port renders through.
pub fn start(
    gauges: Gauges,
) -> (
    MetricsSink,
    faisca_ui::server::RenderMetrics,
    tokio::task::JoinHandle<()>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let actor = tokio::spawn(run(gauges, receiver));
    let asker = sender.clone();
    let render: faisca_ui::server::RenderMetrics = Arc::new(move || {
        let (reply, page) = oneshot::channel();
        let _ = asker.send(MetricsMessage::Render(reply));
        async move { page.await.ok() }.boxed()
    });
    (
        MetricsSink {
            sender: Some(sender),
        },
        render,
        actor,
    )
}

async fn run(gauges: Gauges, mut receiver: mpsc::UnboundedReceiver<MetricsMessage>) {
    let mut counters = Counters::default();
    let mut running: u64 = 0;
    while let Some(message) = receiver.recv().await {
        match message {
            MetricsMessage::TaskStarted => {
                counters.tasks_started += 1;
                running += 1;
            }
            MetricsMessage::TaskEnded(status) => {
                running = running.saturating_sub(1);
                record(&mut counters, status.as_deref());
            }
            MetricsMessage::Render(reply) => {
                let _ = reply.send(render(&counters, running, &gauges));
            }
        }
    }
}

fn record(counters: &mut Counters, status: Option<&TaskStatus>) {
    let Some(status) = status else {
        counters.record_task(TaskOutcome::Killed, 0.0, 0, 0, &BTreeMap::new());
        return;
    };
    let outcome = if status.state == TaskState::Succeeded as i32 {
        TaskOutcome::Success
    } else {
        TaskOutcome::Failed
    };
    let metrics: BTreeMap<String, u64> = status
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    counters.record_task(
        outcome,
        status.elapsed_micros as f64 / 1000.0,
        status.rows_produced(),
        status.bytes_produced(),
        &metrics,
    );
}

fn render(counters: &Counters, running: u64, gauges: &Gauges) -> String {
    let mut page = PrometheusPage::default();
    page.task_families(counters);
    page.one(
        "faisca_tasks_running",
        "gauge",
        "Task attempts running now.",
        running,
    );
    page.one(
        "faisca_executor_cores",
        "gauge",
        "Task slots of this executor.",
        gauges.cores,
    );
    page.one(
        "faisca_memory_pool_used_bytes",
        "gauge",
        "Memory this executor's tasks hold now.",
        gauges.pool.reserved(),
    );
    page.one(
        "faisca_memory_pool_limit_bytes",
        "gauge",
        "Memory this executor's tasks may use.",
        gauges.pool_limit,
    );
    page.one(
        "faisca_shuffle_held_bytes",
        "gauge",
        "Shuffle output this executor holds in memory.",
        gauges.shuffle_memory.held_bytes(),
    );
    page.one(
        "faisca_task_log_held_bytes",
        "gauge",
        "Task log lines this executor keeps (faisca.ui.taskLogMaxBytes).",
        crate::task_logs::held_bytes(&gauges.executor),
    );
    page.finish()
}
