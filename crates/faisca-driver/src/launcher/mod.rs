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
//! Implementations: [`processes`] (child processes of the driver on this host,
//! `faisca driver --executors N`). The Kubernetes launcher will live in its own crate.

pub mod processes;

use faisca_common::ExecutorId;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// What the driver asks of a launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LauncherCommand {
    /// Keep this many executors running in all: start more, or release the newest.
    RequestTotal(usize),
    /// The driver no longer needs this executor: decommission it, and do not replace it.
    Release(ExecutorId),
}

/// Something that starts executors for a driver.
pub trait ExecutorLauncher: Send + 'static {
    /// A short name for logs (`processes`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Run until `commands` closes, then stop every executor started and return. Executors
    /// register with the driver at `driver_url` (`http://host:port`).
    fn run(
        self: Box<Self>,
        driver_url: String,
        commands: mpsc::UnboundedReceiver<LauncherCommand>,
    ) -> BoxFuture<'static, ()>;
}

/// The driver's end of a running launcher.
#[derive(Debug, Clone)]
pub struct LauncherHandle {
    commands: mpsc::UnboundedSender<LauncherCommand>,
}

impl LauncherHandle {
    /// Start `launcher` on the current runtime. Returns the handle and the launcher's task, which
    /// ends once every handle is dropped and its executors are stopped.
    pub fn start(
        launcher: Box<dyn ExecutorLauncher>,
        driver_url: String,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        tracing::info!(launcher = launcher.name(), "starting the executor launcher");
        let task = tokio::spawn(launcher.run(driver_url, receiver));
        (LauncherHandle { commands }, task)
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
