//! The allocator and the lifecycle step: pure decisions over the pod snapshot and a clock.
//!
//! [`Allocator::lifecycle`] turns what happened to pods into executor exits, each reported once
//! with its reason: a pod that failed, succeeded, was deleted or vanished, one stuck on a bad
//! image, and one not running within `faisca.kubernetes.allocation.executor.timeout`.
//! [`Allocator::allocate`] then moves the live pods toward the target: it creates up to
//! `faisca.kubernetes.allocation.batch.size` pods per round once the previous batch showed up in
//! the snapshot, and deletes the newest surplus pods (pending ones first). Deleting a running
//! executor's pod makes Kubernetes send it SIGTERM, which decommissions it. The launcher task
//! performs the returned actions; nothing here waits or talks to the API server, so the rules
//! are unit-tested with a scripted clock and scripted pod states.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::snapshot::{Phase, PodSnapshot, PodState};

/// The allocator's settings.
#[derive(Debug, Clone, Copy)]
pub struct AllocatorSettings {
    /// Pods created per round.
    pub batch_size: usize,
    /// Time between rounds that create pods.
    pub batch_delay: Duration,
    /// A pod not running this long after it was requested is deleted and replaced.
    pub executor_timeout: Duration,
    /// Delete pods that ended.
    pub delete_on_termination: bool,
}

/// An executor whose pod ended or will not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Its number.
    pub number: u64,
    /// Why, for the driver's log and status.
    pub reason: String,
    /// It ended on purpose (released, scaled down, decommissioned and exited 0).
    pub expected: bool,
}

/// What the launcher should do with the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create executor `number`'s pod.
    Create(u64),
    /// Delete executor `number`'s pod.
    Delete(u64),
}

/// See the module docs.
#[derive(Debug)]
pub struct Allocator {
    settings: AllocatorSettings,
    target: usize,
    next_number: u64,
    /// Pods created (or being created) and when; removed once they ended.
    requested: BTreeMap<u64, Instant>,
    /// Pods deleted on purpose: their end is expected.
    releasing: BTreeSet<u64>,
    /// Pods whose end was reported.
    exited: BTreeSet<u64>,
    /// Pods asked to be deleted (not asked again).
    deleted: BTreeSet<u64>,
    last_batch: Option<Instant>,
}

impl Allocator {
    /// An allocator with a target of zero.
    pub fn new(settings: AllocatorSettings) -> Self {
        Allocator {
            settings,
            target: 0,
            next_number: 1,
            requested: BTreeMap::new(),
            releasing: BTreeSet::new(),
            exited: BTreeSet::new(),
            deleted: BTreeSet::new(),
            last_batch: None,
        }
    }

    /// Keep `total` executors.
    pub fn set_target(&mut self, total: usize) {
        self.target = total;
    }

    /// The number of executors wanted.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The driver released executor `number`: its pod is deleted (the executor decommissions)
    /// and not replaced. Returns whether it was one of ours and alive.
    pub fn release(&mut self, number: u64) -> bool {
        if !self.requested.contains_key(&number) || self.releasing.contains(&number) {
            return false;
        }
        self.releasing.insert(number);
        self.target = self.target.saturating_sub(1);
        true
    }

    /// Executors that ended since the last call, and pods to delete because of it.
    pub fn lifecycle(
        &mut self,
        now: Instant,
        snapshot: &mut PodSnapshot,
    ) -> (Vec<Exit>, Vec<Action>) {
        let mut exits = Vec::new();
        let mut actions = Vec::new();
        for gone in snapshot.take_gone() {
            let number = gone.last.number;
            let known = self.requested.remove(&number).is_some();
            let reported = self.exited.remove(&number);
            let released = self.releasing.remove(&number);
            self.deleted.remove(&number);
            if reported || !(known || released) {
                continue;
            }
            let reason = match &gone.last.reason {
                Some(r) => format!("pod {} {} ({r})", gone.last.name, gone.how),
                None => format!("pod {} {}", gone.last.name, gone.how),
            };
            exits.push(Exit {
                number,
                reason,
                expected: released || gone.last.phase == Phase::Succeeded,
            });
        }
        let timeout = self.settings.executor_timeout;
        let pods: Vec<PodState> = snapshot.pods().cloned().collect();
        for pod in &pods {
            if self.exited.contains(&pod.number) {
                continue;
            }
            let ended = match pod.phase {
                Phase::Failed | Phase::Succeeded => {
                    let what = if pod.phase == Phase::Failed {
                        "failed"
                    } else {
                        "succeeded"
                    };
                    Some(match &pod.reason {
                        Some(r) => format!("pod {} {what}: {r}", pod.name),
                        None => format!("pod {} {what}", pod.name),
                    })
                }
                Phase::Pending if pod.stuck && !pod.deleting => Some(format!(
                    "pod {} cannot start: {}",
                    pod.name,
                    pod.reason.as_deref().unwrap_or("stuck")
                )),
                Phase::Pending | Phase::Unknown
                    if !pod.deleting
                        && self
                            .requested
                            .get(&pod.number)
                            .is_some_and(|at| now.saturating_duration_since(*at) >= timeout) =>
                {
                    Some(format!(
                        "pod {} not running {timeout:?} after it was created (faisca.kubernetes.allocation.executor.timeout){}",
                        pod.name,
                        pod.reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ))
                }
                _ => None,
            };
            let Some(reason) = ended else { continue };
            let expected = self.releasing.contains(&pod.number) || pod.phase == Phase::Succeeded;
            self.exited.insert(pod.number);
            self.requested.remove(&pod.number);
            exits.push(Exit {
                number: pod.number,
                reason,
                expected,
            });
            // A pod that ended stays for its logs unless deleteOnTermination; one that never
            // ran is deleted in any case (it would hold its resources).
            if (!pod.ended() || self.settings.delete_on_termination)
                && self.deleted.insert(pod.number)
            {
                actions.push(Action::Delete(pod.number));
            }
        }
        // A requested pod the API server never showed within the timeout.
        let lost: Vec<u64> = self
            .requested
            .iter()
            .filter(|(n, at)| {
                snapshot.get(**n).is_none() && now.saturating_duration_since(**at) >= timeout
            })
            .map(|(n, _)| *n)
            .collect();
        for number in lost {
            self.requested.remove(&number);
            exits.push(Exit {
                number,
                reason: format!("pod never appeared within {timeout:?} of its creation"),
                expected: false,
            });
        }
        (exits, actions)
    }

    /// Pods to create or delete to move toward the target.
    pub fn allocate(&mut self, now: Instant, snapshot: &PodSnapshot) -> Vec<Action> {
        let mut actions = Vec::new();
        let alive: Vec<u64> = self.alive_numbers().collect();
        if alive.len() > self.target {
            // The newest first, and among them those not running yet.
            let mut surplus = alive.clone();
            surplus.sort_by_key(|n| {
                let running = snapshot.get(*n).is_some_and(|p| p.phase == Phase::Running);
                (running, std::cmp::Reverse(*n))
            });
            for number in surplus.into_iter().take(alive.len() - self.target) {
                self.releasing.insert(number);
                if self.deleted.insert(number) {
                    actions.push(Action::Delete(number));
                }
            }
            return actions;
        }
        let unseen = self
            .requested
            .keys()
            .any(|n| snapshot.get(*n).is_none() && !self.exited.contains(n));
        let due = self
            .last_batch
            .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.batch_delay);
        if alive.len() < self.target && !unseen && due {
            let count = (self.target - alive.len()).min(self.settings.batch_size);
            for _ in 0..count {
                let number = self.next_number;
                self.next_number += 1;
                self.requested.insert(number, now);
                actions.push(Action::Create(number));
            }
            self.last_batch = Some(now);
        }
        // Pods deleted on purpose that are still there are asked again only once.
        for number in &self.releasing {
            if snapshot.get(*number).is_some() && self.deleted.insert(*number) {
                actions.push(Action::Delete(*number));
            }
        }
        actions
    }

    /// A pod could not be created: forget it (the next round tries again).
    pub fn creation_failed(&mut self, number: u64) {
        self.requested.remove(&number);
    }

    /// Executors alive or on their way (requested, not ended, not released).
    pub fn alive(&self) -> usize {
        self.alive_numbers().count()
    }

    fn alive_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.requested
            .keys()
            .copied()
            .filter(|n| !self.releasing.contains(n) && !self.exited.contains(n))
    }
}

#[cfg(test)]
mod tests;
