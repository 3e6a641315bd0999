//! Dynamic allocation: how many executors the launcher should keep, and which idle ones go.
//!
//! Spark's rule. The most executors the work could use is
//! `ceil((waiting + running tasks) × executorAllocationRatio / task slots per executor)`. When
//! that falls below the target, the target falls with it at once (not below `minExecutors`):
//! executors requested but not started are cancelled. When tasks have waited for a slot for
//! `schedulerBacklogTimeout`, the target grows by 1, then by 2, 4, … every
//! `sustainedSchedulerBacklogTimeout` while the backlog lasts, never past what the work could
//! use nor `maxExecutors`. An executor without tasks for `executorIdleTimeout` is released (it
//! decommissions), unless that would leave fewer than the target or `minExecutors`, or it holds
//! shuffle output a running job still needs (with `shuffleTracking.enabled`; after
//! `shuffleTracking.timeout`, if set, it goes anyway).
//!
//! [`DynamicAllocator::update`] is pure: the actor calls it with the time and what it knows of
//! its jobs and executors, and acts on the [`Decision`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use faisca_common::ExecutorId;
use faisca_common::config::DynamicAllocation;

/// An active (not decommissioning) executor as dynamic allocation sees it.
#[derive(Debug, Clone)]
pub struct ExecutorLoad {
    /// Its id.
    pub id: ExecutorId,
    /// Tasks running on it.
    pub running: u32,
    /// It holds shuffle output a running job still needs.
    pub holds_needed_output: bool,
}

/// What the driver knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Tasks ready to run that wait for a slot.
    pub waiting_tasks: usize,
    /// Tasks running.
    pub running_tasks: usize,
    /// The active executors.
    pub executors: Vec<ExecutorLoad>,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// A new target, when it changed.
    pub target: Option<usize>,
    /// Idle executors to release.
    pub release: Vec<ExecutorId>,
}

/// See the module docs.
#[derive(Debug)]
pub struct DynamicAllocator {
    settings: DynamicAllocation,
    /// Task slots per executor (`faisca.executor.cores`).
    slots_per_executor: usize,
    target: usize,
    /// The size of the next increase.
    to_add: usize,
    /// When the backlog makes the next increase due; `None` without a backlog.
    add_at: Option<Instant>,
    /// Since when each active executor has had no task.
    idle_since: BTreeMap<ExecutorId, Instant>,
    /// Executors released and not gone yet.
    released: BTreeSet<ExecutorId>,
}

impl DynamicAllocator {
    /// Start at `initialExecutors` (see [`DynamicAllocation::initial_executors`]).
    pub fn new(settings: DynamicAllocation, slots_per_executor: u32) -> Self {
        DynamicAllocator {
            target: settings.initial_executors,
            settings,
            slots_per_executor: slots_per_executor.max(1) as usize,
            to_add: 1,
            add_at: None,
            idle_since: BTreeMap::new(),
            released: BTreeSet::new(),
        }
    }

    /// The executors wanted now.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Executor `id` left (no longer tracked).
    pub fn executor_gone(&mut self, id: &ExecutorId) {
        self.idle_since.remove(id);
        self.released.remove(id);
    }

    /// Decide, at `now`, from `load`.
    pub fn update(&mut self, now: Instant, load: &Load) -> Decision {
        let s = &self.settings;
        let mut decision = Decision::default();
        let work = (load.waiting_tasks + load.running_tasks) as f64 * s.allocation_ratio;
        let max_needed = (work / self.slots_per_executor as f64).ceil() as usize;
        let before = self.target;
        if load.waiting_tasks == 0 {
            self.add_at = None;
            self.to_add = 1;
        } else if self.add_at.is_none() {
            self.add_at = Some(now + s.backlog_timeout);
        }
        if max_needed < self.target {
            self.target = max_needed.max(s.min_executors);
            self.to_add = 1;
        } else if let Some(at) = self.add_at
            && now >= at
        {
            let cap = max_needed.min(s.max_executors);
            let wanted = (self.target + self.to_add).min(cap);
            if wanted > self.target {
                let added = wanted - self.target;
                self.target = wanted;
                self.to_add = if added == self.to_add {
                    self.to_add * 2
                } else {
                    1
                };
            } else {
                self.to_add = 1;
            }
            self.add_at = Some(now + s.sustained_backlog_timeout);
        }
        self.target = self.target.clamp(s.min_executors, s.max_executors);
        if self.target != before {
            decision.target = Some(self.target);
        }
        decision.release = self.idle_to_release(now, load);
        decision
    }

    fn idle_to_release(&mut self, now: Instant, load: &Load) -> Vec<ExecutorId> {
        let active: BTreeSet<&ExecutorId> = load.executors.iter().map(|e| &e.id).collect();
        self.idle_since.retain(|id, _| active.contains(id));
        self.released.retain(|id| active.contains(id));
        let mut remaining = load.executors.len() - self.released.len();
        let floor = self.target.max(self.settings.min_executors);
        let mut release = Vec::new();
        for e in &load.executors {
            if e.running > 0 {
                self.idle_since.remove(&e.id);
                continue;
            }
            let since = *self.idle_since.entry(e.id.clone()).or_insert(now);
            if self.released.contains(&e.id) {
                continue;
            }
            let timeout = if e.holds_needed_output && self.settings.shuffle_tracking {
                match self.settings.shuffle_tracking_timeout {
                    Some(t) => t.max(self.settings.idle_timeout),
                    None => continue,
                }
            } else {
                self.settings.idle_timeout
            };
            if now.saturating_duration_since(since) >= timeout && remaining > floor {
                remaining -= 1;
                self.released.insert(e.id.clone());
                release.push(e.id.clone());
            }
        }
        release
    }
}

#[cfg(test)]
mod tests;
