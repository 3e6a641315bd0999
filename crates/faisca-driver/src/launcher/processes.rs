//! The `processes` launcher: executors as child processes of the driver on its host
//! (`faisca driver --executors N`, or `faisca.executor.instances`: the driver actor asks for that
//! many when it starts).
//!
//! Each executor runs in a numbered *slot*. An executor that dies is replaced in its slot, up to
//! `faisca.executor.maxFailures` times per slot; one that exits with status 0 (it was
//! decommissioned by a SIGTERM from outside) is replaced without counting a failure. Releasing an
//! executor, or asking for fewer, sends SIGTERM: the executor decommissions and its slot closes
//! when it exits.
//!
//! Children die with the driver, however it ends: on a normal stop they get SIGTERM and, after
//! `faisca.executor.stopTimeout`, SIGKILL; a child's standard input is a pipe whose other end
//! only the driver holds, and `faisca executor --exit-on-stdin-eof` exits when it closes, which
//! the kernel does when the driver dies, even by SIGKILL. (Linux's parent-death signal is not
//! used: it fires when the *thread* that forked the child ends, and the async runtime's
//! blocking threads come and go.) An executor that never reaches its driver gives up after
//! `faisca.executor.registrationTimeout`.
//!
//! Every child is watched by a task of its own, which owns the process: signals are sent from
//! that task while the process cannot have been reaped yet, so a signal never reaches a
//! recycled process id. Once a child ended, its task removes the child's work directory (one that
//! was killed could not).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use faisca_common::config::AuthSettings;
use faisca_common::{Error, ExecutorId, FaiscaConfig, Result};
use futures::FutureExt;
use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::{ExecutorLauncher, LauncherCommand, LauncherContext, LauncherEvents};

/// How the `processes` launcher starts executors.
#[derive(Debug, Clone)]
pub struct ProcessLauncherOptions {
    /// The `faisca` executable (or a program built on `faisca_cli::main`), run as
    /// `PROGRAM executor …`.
    pub program: PathBuf,
    /// Task slots of each (`faisca.executor.cores`).
    pub cores: u32,
    /// Memory pool of each, in bytes (`faisca.executor.memory`).
    pub memory_bytes: u64,
    /// Work directory of the executors (each makes its own subdirectory).
    pub work_dir: PathBuf,
    /// `--conf` pairs every executor gets: the driver's configuration, less object-store
    /// settings and secrets (sessions bring those to tasks; a command line is visible to `ps`).
    pub conf: Vec<(String, String)>,
    /// Replacements per slot (`faisca.executor.maxFailures`).
    pub max_failures: u32,
    /// Time between SIGTERM and SIGKILL when the driver stops (`faisca.executor.stopTimeout`).
    pub stop_timeout: Duration,
    /// What the executors authenticate with: the cluster secret reaches them in their
    /// environment (`FAISCA_AUTH_SECRET`), never on a command line.
    pub auth: AuthSettings,
}

impl ProcessLauncherOptions {
    /// The options a driver configuration asks for; an error when its cluster secret file
    /// cannot be read.
    pub fn from_config(program: PathBuf, work_dir: PathBuf, config: &FaiscaConfig) -> Result<Self> {
        let conf = super::executor_conf(config);
        Ok(ProcessLauncherOptions {
            program,
            cores: config.executor_cores(),
            memory_bytes: config.executor_memory(),
            work_dir,
            conf,
            max_failures: config.executor_max_failures(),
            stop_timeout: config.executor_stop_timeout(),
            auth: config.auth_settings()?,
        })
    }
}

/// The `processes` launcher. See the module docs.
#[derive(Debug)]
pub struct ProcessLauncher {
    options: ProcessLauncherOptions,
}

impl ProcessLauncher {
    /// A launcher for `options`; the program must exist.
    pub fn new(options: ProcessLauncherOptions) -> Result<Self> {
        if !options.program.is_file() {
            return Err(Error::user(format!(
                "cannot launch executors: {} is not a file (expected the faisca executable)",
                options.program.display()
            )));
        }
        Ok(ProcessLauncher { options })
    }
}

impl ExecutorLauncher for ProcessLauncher {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn run(self: Box<Self>, context: LauncherContext) -> BoxFuture<'static, ()> {
        let supervisor = Supervisor {
            options: self.options,
            driver_url: context.driver_url,
            events: context.events,
            app: ExecutorId::random().0[..8].to_string(),
            launched: 0,
            slots: Vec::new(),
            children: JoinSet::new(),
        };
        supervisor.run(context.commands).boxed()
    }
}

/// One executor slot.
#[derive(Debug)]
struct Slot {
    /// The executor running in it now.
    current: Option<Running>,
    /// Executors of this slot that died.
    failures: u32,
    /// Released or scaled down: not replaced; closed once its executor exited.
    released: bool,
    /// Failed more than `faisca.executor.maxFailures` times: stays empty.
    given_up: bool,
}

impl Slot {
    fn wanted(&self) -> bool {
        !self.released && !self.given_up
    }
}

#[derive(Debug)]
struct Running {
    id: ExecutorId,
    /// Signals for the task that owns the process.
    signals: mpsc::UnboundedSender<Signal>,
    /// Held open for the child's life: it closes when the driver dies.
    _stdin: Option<ChildStdin>,
}

/// What a child's task reports when its process ended: `(slot, executor, status)`.
type Exit = (usize, ExecutorId, std::io::Result<ExitStatus>);

struct Supervisor {
    options: ProcessLauncherOptions,
    driver_url: String,
    events: LauncherEvents,
    /// Prefix of this driver's executor ids, so that drivers sharing a work dir never clash.
    app: String,
    /// Executors launched so far (numbers their ids).
    launched: u64,
    slots: Vec<Slot>,
    children: JoinSet<Exit>,
}

impl Supervisor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<LauncherCommand>) {
        loop {
            tokio::select! {
                // Commands first: once the driver let go, an executor that exits is not replaced.
                biased;
                command = commands.recv() => match command {
                    Some(LauncherCommand::RequestTotal(total)) => self.request_total(total),
                    Some(LauncherCommand::Release(id)) => self.release(&id),
                    None => break,
                },
                Some(exit) = self.children.join_next() => match exit {
                    Ok((slot, id, status)) if commands.is_closed() => {
                        self.slots[slot].current = None;
                        info!(executor = %id, "executor exited as its driver stops ({})", describe(&status));
                    }
                    Ok((slot, id, status)) => self.exited(slot, &id, status),
                    Err(e) => error!("an executor's watcher task failed: {e}"),
                },
            }
        }
        self.stop_all().await;
    }

    fn request_total(&mut self, total: usize) {
        let wanted = self.slots.iter().filter(|s| s.wanted()).count();
        if total > wanted {
            for _ in wanted..total {
                self.slots.push(Slot {
                    current: None,
                    failures: 0,
                    released: false,
                    given_up: false,
                });
                self.launch(self.slots.len() - 1);
            }
        } else {
            // The newest go first.
            let surplus = wanted - total;
            let newest: Vec<usize> = (0..self.slots.len())
                .rev()
                .filter(|&i| self.slots[i].wanted())
                .take(surplus)
                .collect();
            for i in newest {
                self.release_slot(i, "fewer executors requested");
            }
        }
    }

    fn release(&mut self, id: &ExecutorId) {
        let slot = self
            .slots
            .iter()
            .position(|s| s.current.as_ref().is_some_and(|r| &r.id == id));
        match slot {
            Some(i) => self.release_slot(i, "released by the driver"),
            None => {
                warn!(executor = %id, "cannot release an executor this launcher is not running")
            }
        }
    }

    /// SIGTERM the slot's executor (it decommissions) and do not replace it.
    fn release_slot(&mut self, slot: usize, why: &str) {
        let entry = &mut self.slots[slot];
        entry.released = true;
        if let Some(running) = &entry.current {
            info!(executor = %running.id, "stopping a launched executor ({why}): SIGTERM");
            let _ = running.signals.send(Signal::SIGTERM);
        }
    }

    /// Start an executor in `slot`; a failure to start counts as a failure of the slot.
    fn launch(&mut self, slot: usize) {
        loop {
            self.launched += 1;
            let id = ExecutorId(format!("{}-{}", self.app, self.launched));
            match self.spawn(&id) {
                Ok(mut child) => {
                    let pid = child.id();
                    let (signals, receiver) = mpsc::unbounded_channel();
                    let stdin = child.stdin.take();
                    info!(executor = %id, pid, slot = slot + 1, "launched an executor process");
                    let watched = id.clone();
                    let dir = self.options.work_dir.join(&id.0);
                    self.children.spawn(async move {
                        let status = watch(child, receiver).await;
                        // An executor removes its directory when it stops; not one that was killed.
                        let _ = tokio::fs::remove_dir_all(dir).await;
                        (slot, watched, status)
                    });
                    self.slots[slot].current = Some(Running {
                        id,
                        signals,
                        _stdin: stdin,
                    });
                    return;
                }
                Err(e) => {
                    let reason = format!(
                        "cannot start {} executor: {e}",
                        self.options.program.display()
                    );
                    self.events.executor_exited(&id, reason.clone(), false);
                    if !self.failed(slot, &id, &reason) {
                        return;
                    }
                }
            }
        }
    }

    fn spawn(&self, id: &ExecutorId) -> std::io::Result<Child> {
        let o = &self.options;
        let mut command = Command::new(&o.program);
        command
            .arg("executor")
            .args(["--driver", &self.driver_url])
            .args(["--id", &id.0])
            .args(["--cores", &o.cores.to_string()])
            .args(["--memory", &o.memory_bytes.to_string()])
            .arg("--work-dir")
            .arg(&o.work_dir)
            .arg("--exit-on-stdin-eof");
        for (key, value) in &o.conf {
            command.arg("--conf").arg(format!("{key}={value}"));
        }
        // The executor's credential is the cluster secret, not a user's token.
        command.env_remove(faisca_common::config::security::AUTH_TOKEN_ENV);
        if let Some(secret) = &o.auth.secret {
            command.env(faisca_common::config::security::AUTH_SECRET_ENV, secret);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
    }

    /// Count a failure of `slot`'s executor; returns whether the slot gets a replacement.
    fn failed(&mut self, slot: usize, id: &ExecutorId, reason: &str) -> bool {
        let max = self.options.max_failures;
        let entry = &mut self.slots[slot];
        entry.failures += 1;
        if entry.failures > max {
            entry.given_up = true;
            error!(
                executor = %id,
                slot = slot + 1,
                "{reason}; the slot's executors failed {} times (faisca.executor.maxFailures = {max}): not replacing it",
                entry.failures
            );
            return false;
        }
        warn!(executor = %id, slot = slot + 1, "{reason}; starting a replacement ({} of {max})", entry.failures);
        true
    }

    fn exited(&mut self, slot: usize, id: &ExecutorId, status: std::io::Result<ExitStatus>) {
        let entry = &mut self.slots[slot];
        entry.current = None;
        if entry.released {
            info!(executor = %id, "a released executor exited ({})", describe(&status));
            self.events.executor_exited(id, describe(&status), true);
            return;
        }
        let expected = matches!(&status, Ok(s) if s.success());
        self.events.executor_exited(id, describe(&status), expected);
        let replace = match &status {
            Ok(s) if s.success() => {
                info!(executor = %id, "executor exited with status 0 (decommissioned); starting a replacement");
                true
            }
            _ => self.failed(
                slot,
                id,
                &format!("executor process died ({})", describe(&status)),
            ),
        };
        if replace {
            self.launch(slot);
        }
    }

    /// SIGTERM every executor, wait up to the stop timeout, SIGKILL the rest.
    async fn stop_all(mut self) {
        let mut live: HashSet<ExecutorId> = HashSet::new();
        for slot in &self.slots {
            if let Some(running) = &slot.current {
                let _ = running.signals.send(Signal::SIGTERM);
                live.insert(running.id.clone());
            }
        }
        if live.is_empty() {
            return;
        }
        info!(executors = live.len(), "stopping launched executors");
        let deadline = tokio::time::Instant::now() + self.options.stop_timeout;
        while !live.is_empty() {
            match tokio::time::timeout_at(deadline, self.children.join_next()).await {
                Ok(Some(Ok((_, id, _)))) => {
                    live.remove(&id);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        executors = live.len(),
                        "launched executors still running after faisca.executor.stopTimeout ({:?}): SIGKILL",
                        self.options.stop_timeout
                    );
                    for slot in &self.slots {
                        if let Some(running) = &slot.current
                            && live.contains(&running.id)
                        {
                            let _ = running.signals.send(Signal::SIGKILL);
                        }
                    }
                    while self.children.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
}

/// Wait for `child` to end, sending it the signals that arrive meanwhile.
async fn watch(
    mut child: Child,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> std::io::Result<ExitStatus> {
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    loop {
        tokio::select! {
            status = child.wait() => return status,
            Some(signal) = signals.recv() => {
                // Not reaped yet (only this task waits for it): the id is still this child's.
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(pid, signal);
                }
            }
        }
    }
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}
