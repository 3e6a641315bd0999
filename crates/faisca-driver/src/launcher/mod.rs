//! Executor launchers: what starts executors for the driver, replaces those that die, and stops
//! them with it.
//!
//! A launcher runs as a task of its own, driven by [`LauncherCommand`]s it gets through a
//! [`LauncherHandle`]. The driver actor holds the handle: it asks for a total number of
//! executors (today `faisca.executor.instances` at start; dynamic allocation later) and says
//! which executor it may release. Sending never waits, so the actor stays synchronous. A launcher
//! releases an executor the same way Kubernetes stops a pod: SIGTERM, which makes the executor
//! decommission (it leaves once no running job needs it). When the handle is dropped (the
//! driver stops), the launcher stops every executor it started and its task ends.
//!
//! A launcher reports back through [`LauncherEvents`]: an executor it started ended, and why (an
//! exit status, a pod's `OOMKilled`). The actor drops that executor at once if it is still
//! registered and shows the reason in the log, the affected jobs' failures and
//! `faisca status --executors`.
//!
//! Implementations: [`processes`] (child processes of the driver on this host,
//! `faisca driver --executors N`) and the Kubernetes launcher in the `faisca-kubernetes` crate.

pub mod processes;

use faisca_common::{ExecutorId, FaiscaConfig};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// The `--conf` pairs a launched executor gets: the driver's configuration, less object-store
/// settings and secrets (sessions bring those to tasks; a command line is visible to `ps`).
pub fn executor_conf(config: &FaiscaConfig) -> Vec<(String, String)> {
    let redaction = config.redaction();
    config
        .pairs()
        .filter(|(k, _)| {
            // A path, not a secret, though its key says "token": executors' metrics ports need it.
            *k == "faisca.metrics.tokenfile"
                || (!k.starts_with("faisca.store.") && !redaction.is_secret(k))
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the driver asks of a launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LauncherCommand {
    /// Keep this many executors running in all: start more, or release the newest.
    RequestTotal(usize),
    /// The driver no longer needs this executor: decommission it, and do not replace it.
    Release(ExecutorId),
}

/// What a launcher tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LauncherEvent {
    /// An executor the launcher started is gone (its process or pod ended, or it never started).
    ExecutorExited {
        /// The executor.
        id: ExecutorId,
        /// Why, as the launcher knows it: `exit code 137 (OOMKilled)`, `ImagePullBackOff`, ...
        reason: String,
        /// Whether it ended on purpose (released, scaled down, decommissioned): not a failure.
        expected: bool,
    },
}

/// Where a launcher sends [`LauncherEvent`]s; sending never waits.
#[derive(Debug, Clone)]
pub struct LauncherEvents {
    sender: mpsc::UnboundedSender<LauncherEvent>,
}

impl LauncherEvents {
    /// A sender and the receiver its events arrive at.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<LauncherEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (LauncherEvents { sender }, receiver)
    }

    /// Report that executor `id` is gone, and why.
    pub fn executor_exited(&self, id: &ExecutorId, reason: impl Into<String>, expected: bool) {
        let _ = self.sender.send(LauncherEvent::ExecutorExited {
            id: id.clone(),
            reason: reason.into(),
            expected,
        });
    }
}

/// What a launcher gets when it starts.
#[derive(Debug)]
pub struct LauncherContext {
    /// Executors register with the driver here (`http://host:port`).
    pub driver_url: String,
    /// The driver's requests; closed when the driver stops.
    pub commands: mpsc::UnboundedReceiver<LauncherCommand>,
    /// Reports back to the driver.
    pub events: LauncherEvents,
}

/// Something that starts executors for a driver.
pub trait ExecutorLauncher: Send + 'static {
    /// A short name for logs (`processes`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Run until `context.commands` closes, then stop every executor started and return.
    fn run(self: Box<Self>, context: LauncherContext) -> BoxFuture<'static, ()>;
}

/// The driver's end of a running launcher.
#[derive(Debug)]
pub struct LauncherHandle {
    commands: mpsc::UnboundedSender<LauncherCommand>,
    /// The launcher's reports, until the actor takes them.
    events: Option<mpsc::UnboundedReceiver<LauncherEvent>>,
}

impl LauncherHandle {
    /// Start `launcher` on the current runtime. Returns the handle and the launcher's task, which
    /// ends once every handle is dropped and its executors are stopped.
    pub fn start(
        launcher: Box<dyn ExecutorLauncher>,
        driver_url: String,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (events, event_receiver) = LauncherEvents::channel();
        tracing::info!(launcher = launcher.name(), "starting the executor launcher");
        let task = tokio::spawn(launcher.run(LauncherContext {
            driver_url,
            commands: receiver,
            events,
        }));
        let handle = LauncherHandle {
            commands,
            events: Some(event_receiver),
        };
        (handle, task)
    }

    /// The launcher's reports (once; `None` after).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<LauncherEvent>> {
        self.events.take()
    }

    /// Ask for `total` executors in all.
    pub fn request_total(&self, total: usize) {
        let _ = self.commands.send(LauncherCommand::RequestTotal(total));
    }

    /// Let the launcher release `executor` (it decommissions first).
    pub fn release(&self, executor: &ExecutorId) {
        let _ = self
            .commands
            .send(LauncherCommand::Release(executor.clone()));
    }
}
