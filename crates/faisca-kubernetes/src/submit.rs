//! `faisca submit --deploy-mode cluster`: the driver itself runs in the cluster.
//!
//! Like `spark-submit` in cluster mode: the job file goes into a ConfigMap; a driver pod runs
//! `faisca submit --deploy-mode client` on it, mounted at [`JOB_DIR`], with the user's settings
//! and `faisca.kubernetes.driver.pod.name` set to itself (so its executor pods get an
//! ownerReference to it and go with it). The submitting process follows the pod's phase until
//! it ends, exits with the driver's exit code, removes the ConfigMap, and says where the logs
//! are. Settings whose values are secrets are not passed on a command line; the driver pod gets
//! those from its environment (a Secret, a service account), as the warning says.

use std::collections::BTreeMap;
use std::time::Duration;

use faisca_common::FaiscaConfig;
use faisca_common::config::cluster as keys;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::error::{KubernetesError, Result};
use crate::master::Master;
use crate::pod::{APP_LABEL, ROLE_LABEL};

/// Where the job file is mounted in the driver pod.
pub const JOB_DIR: &str = "/opt/faisca/job";
/// Port the driver pod serves on (gRPC and Flight).
pub const DRIVER_PORT: u16 = 7077;

/// What to submit.
#[derive(Debug, Clone)]
pub struct ClusterSubmission {
    /// The job's name (`--name`).
    pub name: String,
    /// The job file's name (the ConfigMap key).
    pub file_name: String,
    /// The SQL script.
    pub script: String,
    /// The user's `--conf` pairs.
    pub conf: Vec<(String, String)>,
    /// `--format` of the last query's rows in the driver's log (`table`, `csv`, `json`).
    pub format: String,
}

/// The driver pod and ConfigMap of a submission, as pure data (unit-tested).
pub fn driver_objects(
    config: &FaiscaConfig,
    app_id: &str,
    submission: &ClusterSubmission,
) -> (Pod, ConfigMap, Vec<String>) {
    let namespace = config.text(&keys::K8S_NAMESPACE).unwrap_or("default");
    let pod_name = format!("{app_id}-driver");
    let config_map = format!("{app_id}-job");
    let redaction = config.redaction();
    let mut dropped = Vec::new();
    let mut args = vec![
        "submit".to_string(),
        "--master".into(),
        "k8s://".into(),
        "--deploy-mode".into(),
        "client".into(),
        "--driver-bind".into(),
        format!("$(FAISCA_DRIVER_POD_IP):{DRIVER_PORT}"),
        "--driver-advertise-address".into(),
        "$(FAISCA_DRIVER_POD_IP)".into(),
        "--app-id".into(),
        app_id.into(),
        "--name".into(),
        submission.name.clone(),
        "--format".into(),
        submission.format.clone(),
    ];
    for (key, value) in &submission.conf {
        if redaction.is_secret(key) {
            dropped.push(key.clone());
            continue;
        }
        args.push("--conf".into());
        args.push(format!("{key}={value}"));
    }
    args.push("--conf".into());
    args.push(format!("{}={pod_name}", keys::K8S_DRIVER_POD_NAME.name));
    args.push(format!("{JOB_DIR}/{}", submission.file_name));
    let labels: BTreeMap<&str, &str> = [(APP_LABEL, app_id), (ROLE_LABEL, "driver")].into();
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": "driver",
            "image": config.text(&keys::K8S_IMAGE).unwrap_or("faisca:latest"),
            "imagePullPolicy": config.text(&keys::K8S_PULL_POLICY).unwrap_or("IfNotPresent"),
            "command": ["faisca"],
            "args": args,
            "env": [{"name": "FAISCA_DRIVER_POD_IP",
                     "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
            "ports": [{"name": "driver", "containerPort": DRIVER_PORT, "protocol": "TCP"}],
            "volumeMounts": [{"name": "job", "mountPath": JOB_DIR, "readOnly": true}],
        }],
        "volumes": [{"name": "job", "configMap": {"name": config_map}}],
    });
    if let Some(account) = config.text(&keys::K8S_DRIVER_SERVICE_ACCOUNT) {
        spec["serviceAccountName"] = json!(account);
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }))
    .expect("a valid Pod");
    let map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_map, "namespace": namespace, "labels": labels},
        "data": {submission.file_name.clone(): submission.script},
    }))
    .expect("a valid ConfigMap");
    (pod, map, dropped)
}

/// Create the ConfigMap and the driver pod, follow the pod to its end, and return the driver's
/// exit code. `progress` gets a line per phase change.
pub async fn submit_cluster(
    master: &Master,
    config: &FaiscaConfig,
    app_id: &str,
    submission: &ClusterSubmission,
    mut progress: impl FnMut(&str),
) -> Result<i32> {
    let (pod, map, dropped) = driver_objects(config, app_id, submission);
    if !dropped.is_empty() {
        progress(&format!(
            "not passing secret settings on the driver's command line: {}; give the driver pod those through its environment",
            dropped.join(", ")
        ));
    }
    let (client, server) = master.client(config.connect_timeout()).await?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let map_name = map.metadata.name.clone().unwrap_or_default();
    let server = server.as_str();
    let fail = move |action: String| move |e| KubernetesError::from_kube(e, &action, server);
    maps.create(&PostParams::default(), &map)
        .await
        .map_err(fail(format!(
            "create ConfigMap {map_name} in namespace {namespace}"
        )))?;
    if let Err(e) = pods.create(&PostParams::default(), &pod).await {
        let _ = maps.delete(&map_name, &DeleteParams::default()).await;
        return Err(fail(format!(
            "create the driver pod {pod_name} in namespace {namespace}"
        ))(e));
    }
    progress(&format!(
        "driver pod {pod_name} created in namespace {namespace}; its logs: kubectl logs -n {namespace} {pod_name}"
    ));
    let mut last_phase = String::new();
    let code = loop {
        let current = pods
            .get(&pod_name)
            .await
            .map_err(fail(format!("get the driver pod {pod_name}")))?;
        let status = current.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_else(|| "Pending".into());
        if phase != last_phase {
            progress(&format!("driver pod {pod_name}: {phase}"));
            last_phase = phase.clone();
        }
        if phase == "Succeeded" || phase == "Failed" {
            let terminated = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .find_map(|c| c.state.and_then(|s| s.terminated));
            break match terminated {
                Some(t) => {
                    if t.exit_code != 0 {
                        progress(&format!(
                            "driver exited with code {}{}",
                            t.exit_code,
                            t.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                        ));
                    }
                    t.exit_code
                }
                None if phase == "Succeeded" => 0,
                None => 1,
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = maps.delete(&map_name, &DeleteParams::default()).await;
    progress(&format!(
        "driver pod {pod_name} ended; its logs: kubectl logs -n {namespace} {pod_name}"
    ));
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_pod_runs_the_job_from_its_config_map_and_owns_its_executors() {
        let config = FaiscaConfig::from_pairs([
            ("faisca.kubernetes.namespace", "jobs"),
            (
                "faisca.kubernetes.authenticate.driver.serviceAccountName",
                "faisca-driver",
            ),
        ])
        .unwrap();
        let submission = ClusterSubmission {
            name: "nightly".into(),
            file_name: "nightly.sql".into(),
            script: "select 1".into(),
            conf: vec![
                ("faisca.shuffle.partitions".into(), "8".into()),
                (
                    "faisca.store.s3.b.secret_access_key".into(),
                    "hunter2".into(),
                ),
            ],
            format: "csv".into(),
        };
        let (pod, map, dropped) = driver_objects(&config, "faisca-0000aaaa", &submission);
        let pod = serde_json::to_value(pod).unwrap();
        assert_eq!(pod["metadata"]["name"], "faisca-0000aaaa-driver");
        assert_eq!(pod["metadata"]["namespace"], "jobs");
        assert_eq!(pod["metadata"]["labels"]["faisca-role"], "driver");
        assert_eq!(pod["spec"]["serviceAccountName"], "faisca-driver");
        let args: Vec<String> =
            serde_json::from_value(pod["spec"]["containers"][0]["args"].clone()).unwrap();
        let text = args.join(" ");
        assert!(text.contains("--deploy-mode client"), "{text}");
        assert!(text.contains("--format csv"), "{text}");
        assert!(text.contains("faisca.shuffle.partitions=8"), "{text}");
        assert!(
            text.contains("faisca.kubernetes.driver.pod.name=faisca-0000aaaa-driver"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(args.last().unwrap(), "/opt/faisca/job/nightly.sql");
        assert_eq!(dropped, ["faisca.store.s3.b.secret_access_key"]);
        assert_eq!(
            pod["spec"]["volumes"][0]["configMap"]["name"],
            "faisca-0000aaaa-job"
        );
        assert_eq!(map.data.unwrap()["nightly.sql"], "select 1");
    }
}
