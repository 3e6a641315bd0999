//! The launcher's view of its executor pods, fed by the watch and the periodic full list.
//!
//! A [`PodState`] is what the allocator and lifecycle need of a pod: its executor number, phase,
//! whether it is being deleted, and the reason Kubernetes gives for how it ended or why it
//! cannot start. Pods that disappear (a `Deleted` event, or missing from a full list) leave a
//! tombstone until the lifecycle step has seen it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::pod::{EXECUTOR_CONTAINER, EXECUTOR_ID_LABEL};

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, not running yet (scheduling, pulling the image).
    Pending,
    /// Its containers started.
    Running,
    /// Every container exited 0.
    Succeeded,
    /// A container failed, or the pod was evicted.
    Failed,
    /// The node stopped reporting.
    Unknown,
}

/// Waiting reasons after which a pod will not start without a change by someone.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the launcher knows of one executor pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// The pod's name (= the executor id).
    pub name: String,
    /// The executor number (`faisca-executor-id`).
    pub number: u64,
    /// Its phase.
    pub phase: Phase,
    /// It has a deletion timestamp: it is stopping.
    pub deleting: bool,
    /// How it ended (`OOMKilled (exit code 137)`, `Evicted: ...`), or why it cannot start
    /// (`ImagePullBackOff: ...`); `None` while nothing is wrong.
    pub reason: Option<String>,
    /// It waits for something that will not come (a bad image, a missing secret).
    pub stuck: bool,
}

impl PodState {
    /// The state of `pod`; `None` for a pod without a valid executor number label.
    pub fn of(pod: &Pod) -> Option<PodState> {
        let name = pod.metadata.name.clone()?;
        let number = pod
            .metadata
            .labels
            .as_ref()?
            .get(EXECUTOR_ID_LABEL)?
            .parse()
            .ok()?;
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            Some("Unknown") => Phase::Unknown,
            _ => Phase::Pending,
        };
        let container = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|all| {
                all.iter()
                    .find(|c| c.name == EXECUTOR_CONTAINER)
                    .or(all.first())
            });
        let (container_reason, stuck) = container.map(describe_container).unwrap_or_default();
        let pod_reason = status.and_then(|s| {
            let reason = s.reason.as_deref()?;
            Some(match s.message.as_deref() {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason.to_string(),
            })
        });
        let reason = match (pod_reason, container_reason) {
            (Some(p), Some(c)) => Some(format!("{p}; {c}")),
            (p, c) => p.or(c),
        };
        Some(PodState {
            name,
            number,
            phase,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            reason,
            stuck: stuck && phase == Phase::Pending,
        })
    }

    /// Whether the pod ended (it will not run the executor again).
    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }
}

/// The container's reason text, and whether it is stuck waiting.
fn describe_container(c: &ContainerStatus) -> (Option<String>, bool) {
    let Some(state) = &c.state else {
        return (None, false);
    };
    if let Some(t) = &state.terminated {
        let reason = t.reason.as_deref().unwrap_or("Terminated");
        let mut text = format!("{reason} (exit code {})", t.exit_code);
        if let Some(message) = t.message.as_deref().filter(|m| !m.is_empty()) {
            text.push_str(&format!(": {message}"));
        }
        return (Some(text), false);
    }
    if let Some(w) = &state.waiting
        && let Some(reason) = w.reason.as_deref()
    {
        let text = match w.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        };
        return (Some(text), FATAL_WAITING.contains(&reason));
    }
    (None, false)
}

/// A pod that is gone from the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// Its last known state.
    pub last: PodState,
    /// `deleted` (a watch event) or `missing from the pod list`.
    pub how: &'static str,
}

/// The app's executor pods by executor number, and those that went since the last look.
#[derive(Debug, Default)]
pub struct PodSnapshot {
    pods: BTreeMap<u64, PodState>,
    gone: Vec<Gone>,
}

impl PodSnapshot {
    /// A pod was added or changed.
    pub fn upsert(&mut self, state: PodState) {
        self.pods.insert(state.number, state);
    }

    /// A pod was deleted (its last state).
    pub fn remove(&mut self, state: PodState) {
        self.pods.remove(&state.number);
        self.gone.push(Gone {
            last: state,
            how: "deleted",
        });
    }

    /// A full list: pods missing from it are gone, the listed ones replace what was known.
    pub fn replace(&mut self, listed: Vec<PodState>) {
        let mut fresh: BTreeMap<u64, PodState> =
            listed.into_iter().map(|p| (p.number, p)).collect();
        for (number, last) in std::mem::take(&mut self.pods) {
            if !fresh.contains_key(&number) {
                self.gone.push(Gone {
                    last,
                    how: "missing from the pod list",
                });
            }
        }
        std::mem::swap(&mut self.pods, &mut fresh);
    }

    /// The pods known now.
    pub fn pods(&self) -> impl Iterator<Item = &PodState> {
        self.pods.values()
    }

    /// One pod.
    pub fn get(&self, number: u64) -> Option<&PodState> {
        self.pods.get(&number)
    }

    /// Take the pods that went since the last call.
    pub fn take_gone(&mut self) -> Vec<Gone> {
        std::mem::take(&mut self.gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(number: u64, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("app-exec-{number}"), "labels": {EXECUTOR_ID_LABEL: number.to_string()}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn reasons_come_from_the_pod_and_its_container() {
        let oom = PodState::of(&pod(
            1,
            json!({"phase": "Failed", "containerStatuses": [{
                "name": "executor", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }]}),
        ))
        .unwrap();
        assert_eq!(oom.phase, Phase::Failed);
        assert_eq!(oom.reason.as_deref(), Some("OOMKilled (exit code 137)"));
        let evicted = PodState::of(&pod(
            2,
            json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
        ))
        .unwrap();
        assert_eq!(evicted.reason.as_deref(), Some("Evicted: low on memory"));
        let pull = PodState::of(&pod(
            3,
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "executor", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
            }]}),
        ))
        .unwrap();
        assert!(pull.stuck);
        assert_eq!(
            pull.reason.as_deref(),
            Some("ImagePullBackOff: no such image")
        );
        let creating = PodState::of(&pod(
            4,
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "executor", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }]}),
        ))
        .unwrap();
        assert!(!creating.stuck);
        let unlabelled: Pod = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(PodState::of(&unlabelled), None);
    }

    #[test]
    fn a_full_list_finds_pods_that_vanished() {
        let mut snapshot = PodSnapshot::default();
        for n in [1, 2] {
            snapshot.upsert(PodState::of(&pod(n, json!({"phase": "Running"}))).unwrap());
        }
        snapshot.replace(vec![
            PodState::of(&pod(2, json!({"phase": "Running"}))).unwrap(),
        ]);
        let gone = snapshot.take_gone();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].last.number, 1);
        assert_eq!(gone[0].how, "missing from the pod list");
        assert!(snapshot.take_gone().is_empty());
        assert_eq!(snapshot.pods().count(), 1);
    }
}
