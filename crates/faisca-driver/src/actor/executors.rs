//! The actor's executors: registration's bookkeeping, departures and their reasons (from
//! streams, heartbeats and launchers), releasing decommissioned executors, and what launchers
//! are asked for (`faisca.executor.instances`, or dynamic allocation's target and releases).

use std::time::Instant;

use faisca_common::ExecutorId;
use faisca_proto::{ClusterInfoResponse, DriverMessage, ExecutorInfo, driver_message};
use tracing::{info, warn};

use super::{Decommission, DriverState, ExecutorEntry};
use crate::allocation::{DynamicAllocator, ExecutorLoad, Load};
use crate::launcher::LauncherHandle;
use crate::scheduler::JobState;

impl DriverState {
    /// Start executors with `launcher`: as many as `faisca.executor.instances` asks for, or
    /// with dynamic allocation `initialExecutors`.
    pub fn set_launcher(&mut self, launcher: LauncherHandle) {
        self.launcher = Some(launcher);
        let dynamic = &self.settings.dynamic_allocation;
        let total = if dynamic.enabled {
            let allocator = DynamicAllocator::new(dynamic.clone(), self.settings.executor_cores);
            let total = allocator.target();
            self.dynamic = Some(allocator);
            info!(
                initial = total,
                min = dynamic.min_executors,
                max = dynamic.max_executors,
                "dynamic allocation enabled"
            );
            total
        } else {
            self.settings.executor_instances
        };
        self.request_total(total);
    }

    /// Ask the launcher for `total` executors, if that changes what it was asked.
    pub(super) fn request_total(&mut self, total: usize) {
        if let Some(launcher) = &self.launcher
            && self.requested_total != Some(total)
        {
            launcher.request_total(total);
            self.requested_total = Some(total);
        }
    }

    /// Dynamic allocation's step: a new target for the launcher, idle executors released.
    pub(super) fn allocation_tick(&mut self, now: Instant) {
        let Some(dynamic) = &mut self.dynamic else {
            return;
        };
        let load = Load {
            waiting_tasks: self.jobs.values().map(JobState::waiting_tasks).sum(),
            running_tasks: self.jobs.values().map(|j| j.running() as usize).sum(),
            executors: self
                .executors
                .iter()
                .filter(|(_, e)| e.decommission.is_none())
                .map(|(id, e)| ExecutorLoad {
                    id: id.clone(),
                    running: e.running,
                    holds_needed_output: self.jobs.values().any(|j| j.needs_executor(id)),
                })
                .collect(),
        };
        let decision = dynamic.update(now, &load);
        if let Some(target) = decision.target {
            info!(
                target,
                waiting = load.waiting_tasks,
                running = load.running_tasks,
                "dynamic allocation: new executor target"
            );
        }
        let target = dynamic.target();
        let launcher = self
            .launcher
            .as_ref()
            .expect("dynamic allocation needs a launcher");
        for id in &decision.release {
            info!(executor = %id, "dynamic allocation: releasing an idle executor");
            launcher.release(id);
        }
        // Executors still active are kept until they are released one by one: the launcher is
        // never asked for fewer, which would make it pick which ones go.
        let active = load.executors.len() - decision.release.len();
        if !decision.release.is_empty() {
            // A release lowers the launcher's own count: say the total again.
            self.requested_total = None;
        }
        self.request_total(target.max(active));
    }

    /// Tell each decommissioning executor that no job needs any more that it may go.
    pub(super) fn release_decommissioned(&mut self) {
        for (id, e) in &mut self.executors {
            let Some(decommission) = &mut e.decommission else {
                continue;
            };
            if decommission.released
                || e.running > 0
                || self.jobs.values().any(|job| job.needs_executor(id))
            {
                continue;
            }
            decommission.released = true;
            info!(executor = %id, "decommissioned executor released: no running job needs it");
            let _ = e.sender.send(Ok(DriverMessage {
                message: Some(driver_message::Message::Release(faisca_proto::Release {})),
            }));
        }
    }

    pub(super) fn cluster_info(&self) -> ClusterInfoResponse {
        let mut executors: Vec<ExecutorInfo> = self
            .executors
            .iter()
            .map(|(id, e)| executor_info(id, e))
            .collect();
        executors.sort_by(|a, b| a.executor_id.cmp(&b.executor_id));
        ClusterInfoResponse {
            executors,
            departed: self.departed.iter().cloned().collect(),
            ui_url: self.settings.ui_url.clone().unwrap_or_default(),
        }
    }

    /// Remember that `id` left, and why.
    pub(super) fn record_departure(
        &mut self,
        id: &ExecutorId,
        entry: &ExecutorEntry,
        state: &str,
        reason: &str,
    ) {
        self.post_executor_removed(id, reason, state == "exited");
        let mut info = executor_info(id, entry);
        info.running_tasks = 0;
        info.state = state.to_string();
        info.reason = reason.to_string();
        self.remember_departure(info);
    }

    /// The launcher says executor `id` is gone. If it is still registered it is dropped now
    /// (its stream may take a while to close); if it already left, the launcher's reason is
    /// added to what was recorded (the log, its departure, the jobs' failures).
    pub(super) fn launcher_saw_exit(&mut self, id: &ExecutorId, reason: &str, expected: bool) {
        if let Some(e) = self.executors.get_mut(id) {
            if expected {
                // It left on purpose: dropped as a departure, not a failure.
                e.decommission
                    .get_or_insert(Decommission { released: true });
            }
            self.executor_lost(id, reason);
            return;
        }
        if let Some(departure) = self
            .departed
            .iter_mut()
            .rev()
            .find(|d| d.executor_id == id.0)
        {
            if expected || departure.state == "exited" {
                info!(executor = %id, "its launcher says it ended: {reason}");
            } else {
                warn!(executor = %id, "its launcher says why it was lost: {reason}");
            }
            departure.reason = format!("{reason} (seen first: {})", departure.reason);
            let amended = departure.reason.clone();
            for job in self.jobs.values_mut() {
                job.amend_executor_loss(id, &amended);
            }
            return;
        }
        // It never registered (a pod that never started, a process that died at start-up).
        if expected {
            info!(executor = %id, "an executor that never registered ended: {reason}");
        } else {
            warn!(executor = %id, "an executor failed before it registered: {reason}");
        }
        self.remember_departure(ExecutorInfo {
            executor_id: id.0.clone(),
            state: if expected { "exited" } else { "lost" }.to_string(),
            reason: format!("{reason} (before it registered)"),
            ..Default::default()
        });
    }

    /// Keep `info` among the departed, at most `retained_jobs` of them (the oldest go first).
    fn remember_departure(&mut self, info: ExecutorInfo) {
        self.departed.push_back(info);
        while self.departed.len() > self.settings.retained_jobs.max(1) {
            self.departed.pop_front();
        }
    }

    pub(super) fn answer_cluster_waiters(&mut self) {
        let count = self.executors.len();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cluster_waiters)
            .into_iter()
            .partition(|(min, _)| *min <= count);
        self.cluster_waiters = waiting;
        for (_, reply) in ready {
            let _ = reply.send(self.cluster_info());
        }
    }

    pub(super) fn executor_lost(&mut self, id: &ExecutorId, reason: &str) {
        let Some(entry) = self.executors.remove(id) else {
            return;
        };
        if let Some(dynamic) = &mut self.dynamic {
            dynamic.executor_gone(id);
        }
        if let Some(decommission) = &entry.decommission {
            // It left on purpose: what it still held is re-run without counting a failure.
            info!(executor = %id, released = decommission.released, "decommissioned executor left ({reason})");
            self.record_departure(id, &entry, "exited", reason);
            self.jobs_departed_executor(id);
            return;
        }
        if reason == "stream closed" {
            info!(executor = %id, "executor disconnected");
        } else {
            warn!(executor = %id, "executor lost: {reason}");
        }
        self.record_departure(id, &entry, "lost", reason);
        self.jobs_lost_executor(id, reason);
    }
}

pub(super) fn executor_info(id: &ExecutorId, e: &ExecutorEntry) -> ExecutorInfo {
    ExecutorInfo {
        executor_id: id.0.clone(),
        address: e.flight_address.clone(),
        cores: e.cores,
        memory_bytes: e.memory_bytes,
        running_tasks: e.running,
        state: if e.decommission.is_some() {
            "decommissioning"
        } else {
            "active"
        }
        .to_string(),
        reason: String::new(),
    }
}
