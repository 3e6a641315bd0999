//! Executor pod specs: a pure function of the settings, an optional template and the executor.
//!
//! The template is deep-merged with what Faísca sets: objects merge key by key, lists of named
//! things (containers, env, ports, volumes, volume mounts) merge by name, and where both set the
//! same field Faísca's value wins. So a template's volumes, tolerations, node selectors, sidecars
//! and extra env stay, while Faísca's labels, container name, image, command, args, env,
//! resources and probe are the ones the pod gets. The executor container is the template's
//! container named `executor`, else its first one (as in Spark); the others are sidecars.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::error::{KubernetesError, Result};
use crate::settings::KubernetesSettings;

/// Label: the application (driver) a pod belongs to.
pub const APP_LABEL: &str = "faisca-app-id";
/// Label: `executor` or `driver`.
pub const ROLE_LABEL: &str = "faisca-role";
/// Label: the executor's number.
pub const EXECUTOR_ID_LABEL: &str = "faisca-executor-id";
/// The executor role's label value.
pub const EXECUTOR_ROLE: &str = "executor";
/// Name of the executor container.
pub const EXECUTOR_CONTAINER: &str = "executor";
/// Port of the executor's Flight server (shuffle data) on its pod IP.
pub const FLIGHT_PORT: u16 = 7078;
/// Port of the executor's `/healthz` and `/readyz`.
pub const HEALTH_PORT: u16 = 7079;
/// Port of the executor's Prometheus `/metrics` (the pod's `prometheus.io/*` annotations say so).
pub const METRICS_PORT: u16 = 7080;
/// Where the executor keeps its files (an `emptyDir`).
pub const WORK_DIR: &str = "/tmp/faisca-work";

/// What differs between two executor pods of one driver.
#[derive(Debug, Clone)]
pub struct ExecutorPod<'a> {
    /// The executor's number (`faisca-executor-id`); its pod name is also its executor id.
    pub number: u64,
    /// Where the executor registers (`http://host:port`).
    pub driver_url: &'a str,
    /// The driver's pod, when the driver runs in the cluster: executors go with it.
    pub owner: Option<&'a OwnerReference>,
}

/// Read a pod template (YAML or JSON) from `path`.
pub fn load_template(path: &Path) -> Result<Pod> {
    let invalid = |message: String| KubernetesError::Template {
        path: path.display().to_string(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    // Strict booleans: into an untyped value, `y` or `no` must stay strings (the Pod type
    // checks the types after).
    let options = serde_saphyr::options!(strict_booleans: true);
    let value: Value = serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| invalid(format!("not valid YAML or JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid("expected a Pod object (kind: Pod)".into()));
    }
    let mut value = value;
    match value.get("kind") {
        Some(kind) if kind != "Pod" => {
            return Err(invalid(format!("expected kind: Pod, found kind: {kind}")));
        }
        Some(_) => {}
        None => {
            value["kind"] = json!("Pod");
        }
    }
    if value.get("apiVersion").is_none() {
        value["apiVersion"] = json!("v1");
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("not a valid Pod: {e}")))
}

/// The pod of executor `executor`: the template (if any) merged with what Faísca sets.
pub fn executor_pod(
    settings: &KubernetesSettings,
    template: Option<&Pod>,
    executor: &ExecutorPod<'_>,
) -> Pod {
    let ours = ours(settings, executor);
    let merged = match template {
        Some(template) => {
            let mut base = serde_json::to_value(template).expect("a Pod serializes");
            rename_executor_container(&mut base);
            merge(&mut base, ours);
            base
        }
        None => ours,
    };
    let mut pod: Pod = serde_json::from_value(merged).expect("a merged Pod deserializes");
    // What Kubernetes fills in: a template taken from a running pod must not carry it over.
    pod.status = None;
    pod.metadata.uid = None;
    pod.metadata.resource_version = None;
    pod.metadata.creation_timestamp = None;
    pod.metadata.generate_name = None;
    pod
}

/// Render a pod as YAML (`faisca driver --dry-run`).
pub fn to_yaml(pod: &Pod) -> String {
    let mut value = serde_json::to_value(pod).expect("a Pod serializes");
    if let Value::Object(map) = &mut value {
        // `apiVersion` and `kind` first, as people write them.
        let mut ordered = serde_json::Map::new();
        ordered.insert("apiVersion".into(), json!("v1"));
        ordered.insert("kind".into(), json!("Pod"));
        for (k, v) in std::mem::take(map) {
            ordered.entry(k).or_insert(v);
        }
        *map = ordered;
    }
    serde_saphyr::to_string(&value).expect("JSON values serialize to YAML")
}

/// Kubernetes' quantity for `bytes`, in whole MiB (rounded up).
fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(1 << 20))
}

fn ours(settings: &KubernetesSettings, executor: &ExecutorPod<'_>) -> Value {
    let name = settings.pod_name(executor.number);
    let mut labels: BTreeMap<String, String> = settings.labels.clone();
    labels.insert(APP_LABEL.into(), settings.app_id.clone());
    labels.insert(ROLE_LABEL.into(), EXECUTOR_ROLE.into());
    labels.insert(EXECUTOR_ID_LABEL.into(), executor.number.to_string());
    let memory = mebibytes(settings.memory_bytes + settings.memory_overhead_bytes);
    let mut args = vec![
        "--driver".to_string(),
        "$(FAISCA_DRIVER_URL)".into(),
        "--id".into(),
        "$(FAISCA_EXECUTOR_ID)".into(),
        "--bind".into(),
        format!("$(FAISCA_EXECUTOR_POD_IP):{FLIGHT_PORT}"),
        "--advertise-address".into(),
        "$(FAISCA_EXECUTOR_POD_IP)".into(),
        "--health-port".into(),
        HEALTH_PORT.to_string(),
        "--metrics-port".into(),
        METRICS_PORT.to_string(),
        "--cores".into(),
        settings.cores.to_string(),
        "--memory".into(),
        settings.memory_bytes.to_string(),
        "--work-dir".into(),
        WORK_DIR.into(),
    ];
    for (key, value) in &settings.conf {
        args.push("--conf".into());
        args.push(format!("{key}={value}"));
    }
    let field =
        |path: &str| json!({"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let mut env = vec![
        json!({"name": "FAISCA_DRIVER_URL", "value": executor.driver_url}),
        json!({"name": "FAISCA_EXECUTOR_ID", "value": name}),
        json!({"name": "FAISCA_APP_ID", "value": settings.app_id}),
    ];
    for (var, path) in [
        ("FAISCA_EXECUTOR_POD_IP", "status.podIP"),
        ("FAISCA_EXECUTOR_POD_NAME", "metadata.name"),
    ] {
        let mut entry = field(path);
        entry["name"] = json!(var);
        env.push(entry);
    }
    let container = json!({
        "name": EXECUTOR_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["faisca", "executor"],
        "args": args,
        "env": env,
        "ports": [
            {"name": "flight", "containerPort": FLIGHT_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": settings.cores.to_string(), "memory": memory},
            "limits": {"memory": memory},
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 5,
        },
        "volumeMounts": [{"name": "faisca-work", "mountPath": WORK_DIR}],
    });
    let mut metadata = json!({
        "name": name,
        "namespace": settings.namespace,
        "labels": labels,
    });
    // Scraped by a Prometheus that follows the common annotations; the user's
    // (faisca.kubernetes.executor.annotation.*) win.
    let mut annotations: BTreeMap<String, String> = [
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", METRICS_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Executors of a TLS driver serve their metrics over HTTPS too (the same certificate files).
    if executor.driver_url.starts_with("faisca+tls://") {
        annotations.insert("prometheus.io/scheme".to_string(), "https".to_string());
    }
    annotations.extend(settings.annotations.clone());
    metadata["annotations"] = json!(annotations);
    if let Some(owner) = executor.owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "faisca-work", "emptyDir": {}}],
        // SIGTERM starts a decommission that may last the grace period: leave it the time.
        "terminationGracePeriodSeconds": settings.decommission_grace.as_secs() + 15,
    });
    if let Some(account) = &settings.service_account {
        spec["serviceAccountName"] = json!(account);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Name the template's executor container `executor`: the one so named, else the first.
fn rename_executor_container(template: &mut Value) {
    let Some(containers) = template
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let named = containers
        .iter()
        .any(|c| c.get("name").and_then(Value::as_str) == Some(EXECUTOR_CONTAINER));
    if !named && let Some(first) = containers.first_mut() {
        first["name"] = json!(EXECUTOR_CONTAINER);
    }
}

/// Lists whose items are identified by a key: merged item by item.
fn list_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "ports" | "volumes" | "volumeMounts" => {
            Some("name")
        }
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Merge `ours` into `base`; on a conflict `ours` wins.
fn merge(base: &mut Value, ours: Value) {
    match (base, ours) {
        (Value::Object(base), Value::Object(ours)) => {
            for (key, value) in ours {
                // A probe and an env var are set whole: merged with a template's they could
                // end up with two handlers, or both `value` and `valueFrom`.
                match (base.get_mut(&key), list_key(&key)) {
                    (Some(Value::Array(items)), Some(id)) if value.is_array() => {
                        merge_named(items, value, id, key == "env")
                    }
                    (Some(existing), _) if key == "readinessProbe" => *existing = value,
                    (Some(existing), _) => merge(existing, value),
                    (None, _) => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, ours) => *base = ours,
    }
}

/// Merge a list of named items: an item of `ours` merges into (or, if `replace`, replaces) the
/// base item of the same name, or is added after them; base items no one names stay.
fn merge_named(items: &mut Vec<Value>, ours: Value, id: &str, replace: bool) {
    let Value::Array(ours) = ours else { return };
    for item in ours {
        let key = item.get(id).cloned();
        match items
            .iter_mut()
            .find(|existing| key.is_some() && existing.get(id) == key.as_ref())
        {
            Some(existing) if replace => *existing = item,
            Some(existing) => merge(existing, item),
            None => items.push(item),
        }
    }
}

#[cfg(test)]
mod tests;
