//! Keys of executor allocation: dynamic allocation (`faisca.dynamicAllocation.*`), the executor
//! pod size (`faisca.executor.memoryOverhead`), and the Kubernetes launcher
//! (`faisca.kubernetes.*`), with Spark's names under `faisca.`.
//!
//! Two families are open-ended: `faisca.kubernetes.executor.label.<name>` and
//! `faisca.kubernetes.executor.annotation.<name>`. Their `<name>` keeps its case (Kubernetes label
//! keys are case-sensitive); the prefix matches in any case.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{FaiscaConfig, KeySpec, ValueKind, keys, parse_bytes, parse_duration};

/// Prefix of executor pod label keys.
pub const EXECUTOR_LABEL_PREFIX: &str = "faisca.kubernetes.executor.label.";
/// Prefix of executor pod annotation keys.
pub const EXECUTOR_ANNOTATION_PREFIX: &str = "faisca.kubernetes.executor.annotation.";

fn optional_bytes(text: &str) -> bool {
    text.is_empty() || parse_bytes(text).is_ok()
}

fn optional_duration(text: &str) -> bool {
    text.is_empty() || parse_duration(text).is_ok()
}

fn count_or_unlimited(text: &str) -> bool {
    text.eq_ignore_ascii_case("unlimited") || text.parse::<u32>().is_ok()
}

fn ratio(text: &str) -> bool {
    text.parse::<f64>()
        .is_ok_and(|r| r > 0.0 && r <= 1.0 && r.is_finite())
}

fn any_text(_: &str) -> bool {
    true
}

/// Whether `text` is a Kubernetes name prefix: lower-case letters, digits and `-`, starting with
/// a letter, at most 40 characters (room for `-exec-<id>` in a 63-character label value).
fn pod_name_prefix(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 40
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !text.ends_with('-'))
}

const TEXT: ValueKind = ValueKind::Rule {
    expected: "any text",
    valid: any_text,
};

/// `faisca.dynamicAllocation.enabled`.
pub const DYN_ENABLED: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.enabled",
    default: "false",
    kind: ValueKind::Bool,
    doc: "Scale the executors a launcher starts with the work: more while tasks wait, fewer when executors sit idle (needs a launcher: --executors or a k8s:// master).",
};
/// `faisca.dynamicAllocation.minExecutors`.
pub const DYN_MIN: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.minExecutors",
    default: "0",
    kind: ValueKind::Count,
    doc: "Dynamic allocation never goes below this many executors.",
};
/// `faisca.dynamicAllocation.maxExecutors`.
pub const DYN_MAX: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.maxExecutors",
    default: "unlimited",
    kind: ValueKind::Rule {
        expected: "a non-negative integer or 'unlimited'",
        valid: count_or_unlimited,
    },
    doc: "Dynamic allocation never asks for more than this many executors.",
};
/// `faisca.dynamicAllocation.initialExecutors`.
pub const DYN_INITIAL: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.initialExecutors",
    default: "0",
    kind: ValueKind::Count,
    doc: "Executors asked for at start with dynamic allocation: the largest of this, minExecutors and faisca.executor.instances.",
};
/// `faisca.dynamicAllocation.executorIdleTimeout`.
pub const DYN_IDLE_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.executorIdleTimeout",
    default: "60s",
    kind: ValueKind::Duration,
    doc: "An executor without tasks for this long is decommissioned (unless it holds shuffle output a running job needs).",
};
/// `faisca.dynamicAllocation.schedulerBacklogTimeout`.
pub const DYN_BACKLOG_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.schedulerBacklogTimeout",
    default: "1s",
    kind: ValueKind::Duration,
    doc: "Tasks waiting this long for a slot make dynamic allocation ask for more executors.",
};
/// `faisca.dynamicAllocation.sustainedSchedulerBacklogTimeout`.
pub const DYN_SUSTAINED_BACKLOG_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.sustainedSchedulerBacklogTimeout",
    default: "",
    kind: ValueKind::Rule {
        expected: "a duration such as 1s, or empty for schedulerBacklogTimeout",
        valid: optional_duration,
    },
    doc: "While the backlog lasts, the next (doubled) request follows after this long. Empty: schedulerBacklogTimeout.",
};
/// `faisca.dynamicAllocation.executorAllocationRatio`.
pub const DYN_RATIO: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.executorAllocationRatio",
    default: "1.0",
    kind: ValueKind::Rule {
        expected: "a number in (0, 1], e.g. 0.5",
        valid: ratio,
    },
    doc: "Fraction of the executors full parallelism would need that dynamic allocation asks for.",
};
/// `faisca.dynamicAllocation.shuffleTracking.enabled`.
pub const DYN_SHUFFLE_TRACKING: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.shuffleTracking.enabled",
    default: "true",
    kind: ValueKind::Bool,
    doc: "Keep an idle executor while it holds shuffle output a running job still needs.",
};
/// `faisca.dynamicAllocation.shuffleTracking.timeout`.
pub const DYN_SHUFFLE_TRACKING_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.dynamicAllocation.shuffleTracking.timeout",
    default: "",
    kind: ValueKind::Rule {
        expected: "a duration such as 10m, or empty for no limit",
        valid: optional_duration,
    },
    doc: "An idle executor holding needed shuffle output is decommissioned after this long anyway (its output re-runs elsewhere). Empty: kept while needed.",
};
/// `faisca.executor.memoryOverhead`.
pub const EXECUTOR_MEMORY_OVERHEAD: KeySpec = KeySpec {
    name: "faisca.executor.memoryOverhead",
    default: "",
    kind: ValueKind::Rule {
        expected: "a size such as 384m, or empty for max(384m, 10% of faisca.executor.memory)",
        valid: optional_bytes,
    },
    doc: "Memory of an executor pod beyond faisca.executor.memory (buffers, the process itself): the pod's request and limit are the sum.",
};
/// `faisca.kubernetes.namespace`.
pub const K8S_NAMESPACE: KeySpec = KeySpec {
    name: "faisca.kubernetes.namespace",
    default: "default",
    kind: TEXT,
    doc: "Namespace of the executor (and cluster-mode driver) pods.",
};
/// `faisca.kubernetes.container.image`.
pub const K8S_IMAGE: KeySpec = KeySpec {
    name: "faisca.kubernetes.container.image",
    default: "faisca:latest",
    kind: TEXT,
    doc: "Image of executor and driver pods (deploy/docker/Dockerfile builds it).",
};
/// `faisca.kubernetes.container.image.pullPolicy`.
pub const K8S_PULL_POLICY: KeySpec = KeySpec {
    name: "faisca.kubernetes.container.image.pullPolicy",
    default: "IfNotPresent",
    kind: ValueKind::Choice(&["Always", "IfNotPresent", "Never"]),
    doc: "imagePullPolicy of the pods' Faísca container.",
};
/// `faisca.kubernetes.executor.podTemplateFile`.
pub const K8S_POD_TEMPLATE: KeySpec = KeySpec {
    name: "faisca.kubernetes.executor.podTemplateFile",
    default: "",
    kind: TEXT,
    doc: "A Pod (YAML or JSON) that executor pods start from: its volumes, tolerations, sidecars, node selectors are kept; Faísca's labels, container name, command and env win.",
};
/// `faisca.kubernetes.executor.podNamePrefix`.
pub const K8S_POD_NAME_PREFIX: KeySpec = KeySpec {
    name: "faisca.kubernetes.executor.podNamePrefix",
    default: "",
    kind: ValueKind::Rule {
        expected: "lower-case letters, digits and '-', starting with a letter, at most 40 characters",
        valid: pod_name_prefix,
    },
    doc: "Executor pods are named <prefix>-exec-<id>. Empty: the application id.",
};
/// `faisca.kubernetes.authenticate.executor.serviceAccountName`.
pub const K8S_EXECUTOR_SERVICE_ACCOUNT: KeySpec = KeySpec {
    name: "faisca.kubernetes.authenticate.executor.serviceAccountName",
    default: "",
    kind: TEXT,
    doc: "Service account of executor pods. Empty: the template's, else the namespace's default.",
};
/// `faisca.kubernetes.authenticate.driver.serviceAccountName`.
pub const K8S_DRIVER_SERVICE_ACCOUNT: KeySpec = KeySpec {
    name: "faisca.kubernetes.authenticate.driver.serviceAccountName",
    default: "",
    kind: TEXT,
    doc: "Service account of the driver pod `faisca submit --deploy-mode cluster` creates; it needs rights on pods. Empty: the namespace's default.",
};
/// `faisca.kubernetes.allocation.batch.size`.
pub const K8S_BATCH_SIZE: KeySpec = KeySpec {
    name: "faisca.kubernetes.allocation.batch.size",
    default: "5",
    kind: ValueKind::Count,
    doc: "Executor pods created per allocation round.",
};
/// `faisca.kubernetes.allocation.batch.delay`.
pub const K8S_BATCH_DELAY: KeySpec = KeySpec {
    name: "faisca.kubernetes.allocation.batch.delay",
    default: "1s",
    kind: ValueKind::Duration,
    doc: "Time between allocation rounds.",
};
/// `faisca.kubernetes.allocation.executor.timeout`.
pub const K8S_EXECUTOR_TIMEOUT: KeySpec = KeySpec {
    name: "faisca.kubernetes.allocation.executor.timeout",
    default: "600s",
    kind: ValueKind::Duration,
    doc: "An executor pod not running this long after it was created is deleted and replaced.",
};
/// `faisca.kubernetes.executor.deleteOnTermination`.
pub const K8S_DELETE_ON_TERMINATION: KeySpec = KeySpec {
    name: "faisca.kubernetes.executor.deleteOnTermination",
    default: "true",
    kind: ValueKind::Bool,
    doc: "Delete executor pods that ended (false: keep them, with their logs, until the driver stops).",
};
/// `faisca.kubernetes.executor.apiPollingInterval`.
pub const K8S_API_POLLING_INTERVAL: KeySpec = KeySpec {
    name: "faisca.kubernetes.executor.apiPollingInterval",
    default: "30s",
    kind: ValueKind::Duration,
    doc: "Interval of the full list of executor pods beside the watch (catches missed events).",
};
/// `faisca.kubernetes.driver.pod.name`.
pub const K8S_DRIVER_POD_NAME: KeySpec = KeySpec {
    name: "faisca.kubernetes.driver.pod.name",
    default: "",
    kind: TEXT,
    doc: "The driver's own pod, when it runs in the cluster: executor pods get an ownerReference to it, so they go when it goes.",
};

/// Whether `key` (lower-case) is an executor pod label or annotation key with a non-empty name.
pub(super) fn is_metadata_key(lower: &str) -> bool {
    [EXECUTOR_LABEL_PREFIX, EXECUTOR_ANNOTATION_PREFIX]
        .iter()
        .any(|p| lower.len() > p.len() && lower.starts_with(&p.to_ascii_lowercase()))
}

/// The stored form of a label or annotation key: the prefix lower-cased, the name as written.
pub(super) fn metadata_key(key: &str) -> String {
    let split = if key
        .to_ascii_lowercase()
        .starts_with(&EXECUTOR_LABEL_PREFIX.to_ascii_lowercase())
    {
        EXECUTOR_LABEL_PREFIX.len()
    } else {
        EXECUTOR_ANNOTATION_PREFIX.len()
    };
    format!("{}{}", key[..split].to_ascii_lowercase(), &key[split..])
}

/// Dynamic allocation settings, read from a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicAllocation {
    /// `enabled`.
    pub enabled: bool,
    /// `minExecutors`.
    pub min_executors: usize,
    /// `maxExecutors` (`usize::MAX`: unlimited).
    pub max_executors: usize,
    /// Executors asked for at start: max(initialExecutors, minExecutors, executor.instances),
    /// capped by `maxExecutors`.
    pub initial_executors: usize,
    /// `executorIdleTimeout`.
    pub idle_timeout: Duration,
    /// `schedulerBacklogTimeout`.
    pub backlog_timeout: Duration,
    /// `sustainedSchedulerBacklogTimeout`.
    pub sustained_backlog_timeout: Duration,
    /// `executorAllocationRatio`.
    pub allocation_ratio: f64,
    /// `shuffleTracking.enabled`.
    pub shuffle_tracking: bool,
    /// `shuffleTracking.timeout` (`None`: no limit).
    pub shuffle_tracking_timeout: Option<Duration>,
}

impl FaiscaConfig {
    fn optional_duration(&self, key: &KeySpec) -> Option<Duration> {
        let raw = self.raw(key);
        (!raw.is_empty()).then(|| parse_duration(raw).expect("validated when set"))
    }

    /// `faisca.dynamicAllocation.*`.
    pub fn dynamic_allocation(&self) -> DynamicAllocation {
        let min = self.count(&DYN_MIN) as usize;
        let max = match self.raw(&DYN_MAX) {
            raw if raw.eq_ignore_ascii_case("unlimited") => usize::MAX,
            raw => raw.parse().expect("validated when set"),
        };
        let backlog = self.duration(&DYN_BACKLOG_TIMEOUT);
        let initial = (self.count(&DYN_INITIAL) as usize)
            .max(min)
            .max(self.executor_instances())
            .min(max);
        DynamicAllocation {
            enabled: self.flag(&DYN_ENABLED),
            min_executors: min,
            max_executors: max.max(min),
            initial_executors: initial,
            idle_timeout: self.duration(&DYN_IDLE_TIMEOUT),
            backlog_timeout: backlog,
            sustained_backlog_timeout: self
                .optional_duration(&DYN_SUSTAINED_BACKLOG_TIMEOUT)
                .unwrap_or(backlog),
            allocation_ratio: self.raw(&DYN_RATIO).parse().expect("validated when set"),
            shuffle_tracking: self.flag(&DYN_SHUFFLE_TRACKING),
            shuffle_tracking_timeout: self.optional_duration(&DYN_SHUFFLE_TRACKING_TIMEOUT),
        }
    }

    /// `faisca.executor.memoryOverhead`: set, or max(384 MiB, 10% of `faisca.executor.memory`).
    pub fn executor_memory_overhead(&self) -> u64 {
        match self.raw(&EXECUTOR_MEMORY_OVERHEAD) {
            "" => (self.bytes(&keys::EXECUTOR_MEMORY) / 10).max(384 << 20),
            raw => parse_bytes(raw).expect("validated when set"),
        }
    }

    /// The value of a free-text key (`faisca.kubernetes.*`); `None` when empty.
    pub fn text(&self, key: &KeySpec) -> Option<&str> {
        Some(self.raw(key).trim()).filter(|v| !v.is_empty())
    }

    /// `faisca.kubernetes.allocation.batch.size` (at least 1).
    pub fn kubernetes_batch_size(&self) -> usize {
        self.count(&K8S_BATCH_SIZE).max(1) as usize
    }

    /// A duration key of this module.
    pub fn cluster_duration(&self, key: &KeySpec) -> Duration {
        self.duration(key)
    }

    /// `faisca.kubernetes.executor.deleteOnTermination`.
    pub fn kubernetes_delete_on_termination(&self) -> bool {
        self.flag(&K8S_DELETE_ON_TERMINATION)
    }

    /// `faisca.kubernetes.executor.label.*` as `name → value`.
    pub fn executor_pod_labels(&self) -> BTreeMap<String, String> {
        self.with_prefix(EXECUTOR_LABEL_PREFIX)
    }

    /// `faisca.kubernetes.executor.annotation.*` as `name → value`.
    pub fn executor_pod_annotations(&self) -> BTreeMap<String, String> {
        self.with_prefix(EXECUTOR_ANNOTATION_PREFIX)
    }

    fn with_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        let prefix = prefix.to_ascii_lowercase();
        self.pairs()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_allocation_defaults_and_initial() {
        let d = FaiscaConfig::default().dynamic_allocation();
        assert!(!d.enabled);
        assert_eq!(d.max_executors, usize::MAX);
        assert_eq!(d.sustained_backlog_timeout, Duration::from_secs(1));
        assert_eq!(d.shuffle_tracking_timeout, None);
        let c = FaiscaConfig::from_pairs([
            ("faisca.dynamicAllocation.minExecutors", "2"),
            ("faisca.dynamicAllocation.maxExecutors", "3"),
            ("faisca.executor.instances", "5"),
            ("faisca.dynamicAllocation.executorAllocationRatio", "0.5"),
        ])
        .unwrap();
        let d = c.dynamic_allocation();
        assert_eq!(d.initial_executors, 3, "capped by maxExecutors");
        assert_eq!(d.allocation_ratio, 0.5);
        for (key, bad) in [
            ("faisca.dynamicAllocation.executorAllocationRatio", "0"),
            ("faisca.dynamicAllocation.maxExecutors", "many"),
            ("faisca.kubernetes.executor.podNamePrefix", "My_App"),
            ("faisca.kubernetes.container.image.pullPolicy", "Sometimes"),
            ("faisca.executor.memoryOverhead", "lots"),
        ] {
            let error = FaiscaConfig::from_pairs([(key, bad)])
                .unwrap_err()
                .to_string();
            assert!(error.contains(key) && error.contains("expected"), "{error}");
        }
    }

    #[test]
    fn memory_overhead_defaults_to_a_tenth_with_a_floor() {
        let small = FaiscaConfig::from_pairs([("faisca.executor.memory", "1g")]).unwrap();
        assert_eq!(small.executor_memory_overhead(), 384 << 20);
        let big = FaiscaConfig::from_pairs([("faisca.executor.memory", "10g")]).unwrap();
        assert_eq!(big.executor_memory_overhead(), 1 << 30);
        let set = FaiscaConfig::from_pairs([("faisca.executor.memoryOverhead", "1g")]).unwrap();
        assert_eq!(set.executor_memory_overhead(), 1 << 30);
    }

    #[test]
    fn label_and_annotation_names_keep_their_case() {
        let c = FaiscaConfig::from_pairs([
            ("faisca.kubernetes.executor.label.Team", "Data"),
            (
                "FAISCA.kubernetes.executor.annotation.example.com/Owner",
                "me",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.executor_pod_labels().into_iter().collect::<Vec<_>>(),
            vec![("Team".to_string(), "Data".to_string())]
        );
        assert_eq!(
            c.executor_pod_annotations().get("example.com/Owner"),
            Some(&"me".to_string())
        );
        assert!(FaiscaConfig::from_pairs([("faisca.kubernetes.executor.label.", "x")]).is_err());
    }
}
