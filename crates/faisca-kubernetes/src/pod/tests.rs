use super::*;
use faisca_common::FaiscaConfig;

fn settings(pairs: &[(&str, &str)]) -> KubernetesSettings {
    let config = FaiscaConfig::from_pairs(pairs.iter().copied()).unwrap();
    KubernetesSettings::from_config(&config, "faisca-0123abcd")
}

fn executor(number: u64) -> ExecutorPod<'static> {
    ExecutorPod {
        number,
        driver_url: "http://10.0.0.5:7077",
        owner: None,
    }
}

fn as_json(pod: &Pod) -> Value {
    serde_json::to_value(pod).unwrap()
}

fn env_of(pod: &Value) -> BTreeMap<String, Value> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[test]
fn names_labels_env_resources_and_probe_without_a_template() {
    let s = settings(&[
        ("faisca.executor.cores", "2"),
        ("faisca.executor.memory", "2g"),
        ("faisca.kubernetes.executor.label.team", "data"),
        (
            "faisca.kubernetes.executor.annotation.example.com/owner",
            "me",
        ),
        (
            "faisca.kubernetes.authenticate.executor.serviceAccountName",
            "runner",
        ),
        ("faisca.kubernetes.namespace", "spark"),
        ("faisca.shuffle.partitions", "8"),
    ]);
    let pod = as_json(&executor_pod(&s, None, &executor(3)));
    assert_eq!(pod["metadata"]["name"], "faisca-0123abcd-exec-3");
    assert_eq!(pod["metadata"]["namespace"], "spark");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels[APP_LABEL], "faisca-0123abcd");
    assert_eq!(labels[ROLE_LABEL], "executor");
    assert_eq!(labels[EXECUTOR_ID_LABEL], "3");
    assert_eq!(labels["team"], "data");
    assert_eq!(pod["metadata"]["annotations"]["example.com/owner"], "me");
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "7080");
    assert!(pod["metadata"]["annotations"]["prometheus.io/scheme"].is_null());
    let tls = ExecutorPod {
        driver_url: "faisca+tls://10.0.0.5:7077",
        ..executor(4)
    };
    let tls_pod = as_json(&executor_pod(&s, None, &tls));
    assert_eq!(
        tls_pod["metadata"]["annotations"]["prometheus.io/scheme"],
        "https"
    );
    assert!(pod["metadata"].get("ownerReferences").is_none());
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["serviceAccountName"], "runner");
    let c = &spec["containers"][0];
    assert_eq!(c["name"], "executor");
    assert_eq!(c["image"], "faisca:latest");
    assert_eq!(c["command"], json!(["faisca", "executor"]));
    // Memory: 2 GiB + max(384 MiB, 10% of 2 GiB = 204.8 MiB) = 2432 MiB.
    assert_eq!(c["resources"]["requests"]["memory"], "2432Mi");
    assert_eq!(c["resources"]["limits"]["memory"], "2432Mi");
    assert_eq!(c["resources"]["requests"]["cpu"], "2");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "health");
    let env = env_of(&pod);
    assert_eq!(env["FAISCA_DRIVER_URL"]["value"], "http://10.0.0.5:7077");
    assert_eq!(env["FAISCA_EXECUTOR_ID"]["value"], "faisca-0123abcd-exec-3");
    assert_eq!(
        env["FAISCA_EXECUTOR_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--bind", "$(FAISCA_EXECUTOR_POD_IP):7078"])
    );
    assert!(args.windows(2).any(|w| w == ["--cores", "2"]));
    assert!(args.windows(2).any(|w| w == ["--metrics-port", "7080"]));
    assert!(
        args.windows(2)
            .any(|w| w == ["--conf", "faisca.shuffle.partitions=8"])
    );
    assert!(
        !args.iter().any(|a| a.contains("faisca.kubernetes.")),
        "the launcher's own keys stay with the driver: {args:?}"
    );
}

#[test]
fn a_template_keeps_the_users_fields_and_ours_win() {
    let template: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "ignored",
            "labels": {"faisca-role": "driver", "team": "ml"},
            "annotations": {"note": "kept"},
        },
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "serviceAccountName": "from-template",
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": "someone/else:1",
                    "command": ["sleep"],
                    "env": [
                        {"name": "EXTRA", "value": "1"},
                        {"name": "FAISCA_EXECUTOR_POD_IP", "value": "wrong"},
                    ],
                    "readinessProbe": {"exec": {"command": ["true"]}},
                    "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "1Mi"}},
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                },
                {"name": "sidecar", "image": "proxy:2"},
            ],
        },
    }))
    .unwrap();
    let s = settings(&[]);
    let pod = as_json(&executor_pod(&s, Some(&template), &executor(1)));
    // Ours win.
    assert_eq!(pod["metadata"]["name"], "faisca-0123abcd-exec-1");
    assert_eq!(pod["metadata"]["labels"]["faisca-role"], "executor");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    let c = &containers[0];
    assert_eq!(c["name"], "executor", "the first container became ours");
    assert_eq!(c["image"], "faisca:latest");
    assert_eq!(c["command"], json!(["faisca", "executor"]));
    assert!(c["readinessProbe"].get("exec").is_none(), "{c}");
    assert_eq!(c["resources"]["limits"]["memory"], "1408Mi");
    let env = env_of(&pod);
    assert!(env["FAISCA_EXECUTOR_POD_IP"].get("value").is_none());
    assert!(env["FAISCA_EXECUTOR_POD_IP"].get("valueFrom").is_some());
    // The user's stay.
    assert_eq!(pod["metadata"]["labels"]["team"], "ml");
    assert_eq!(pod["metadata"]["annotations"]["note"], "kept");
    assert_eq!(pod["spec"]["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "spot");
    assert_eq!(pod["spec"]["serviceAccountName"], "from-template");
    assert_eq!(env["EXTRA"]["value"], "1");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["cache", "faisca-work"]);
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/cache", WORK_DIR]);
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(containers[1]["image"], "proxy:2");
}

#[test]
fn an_owner_reference_makes_executors_go_with_their_driver() {
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "driver-pod".into(),
        uid: "1234-5678".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let s = settings(&[]);
    let pod = as_json(&executor_pod(
        &s,
        None,
        &ExecutorPod {
            owner: Some(&owner),
            ..executor(2)
        },
    ));
    let refs = &pod["metadata"]["ownerReferences"];
    assert_eq!(refs[0]["uid"], "1234-5678");
    assert_eq!(refs[0]["kind"], "Pod");
    assert_eq!(refs[0]["name"], "driver-pod");
}

#[test]
fn templates_load_from_yaml_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "spec:\n  nodeSelector:\n    disk: ssd\n  containers:\n    - name: x\n      image: y\n",
    )
    .unwrap();
    let pod = load_template(&good).unwrap();
    assert_eq!(
        pod.spec.unwrap().node_selector.unwrap()["disk"],
        "ssd".to_string()
    );
    for (name, text, expected) in [
        (
            "service.yaml",
            "kind: Service\nspec: {}\n",
            "expected kind: Pod",
        ),
        ("list.yaml", "- a\n- b\n", "expected a Pod object"),
        ("broken.yaml", "spec: [unclosed\n", "not valid YAML"),
        ("wrong.yaml", "spec:\n  containers: 3\n", "not a valid Pod"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let error = load_template(&path).unwrap_err().to_string();
        assert!(error.contains(name) && error.contains(expected), "{error}");
    }
    let missing = load_template(&dir.path().join("missing.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("missing.yaml") && missing.contains("cannot read"),
        "{missing}"
    );
}

#[test]
fn yaml_output_reads_back_as_the_same_pod() {
    let s = settings(&[]);
    let pod = executor_pod(&s, None, &executor(1));
    let yaml = to_yaml(&pod);
    assert!(yaml.starts_with("apiVersion: v1\nkind: Pod\n"), "{yaml}");
    let back: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, as_json(&pod));
}
