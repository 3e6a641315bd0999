//! What `deploy/docker/Dockerfile` promises, checked without building it (no image can be pulled
//! here; building it belongs to the opt-in end-to-end test): a locked build, a runtime stage
//! that runs as a numeric non-root user with tini as PID 1 and `faisca` as the entrypoint, OCI
//! labels, and every shared library the `faisca` binary links provided by the runtime image.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::faisca_bin;

/// A Dockerfile's instructions (continuation lines joined, comments dropped), by stage.
fn stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(&format!("{} ", part.trim())),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions {
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((keyword, rest.trim().to_string()));
        }
    }
    stages
}

fn all<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The Debian package of a shared library the binary links; `None` for one this table does
/// not know (then the runtime stage needs a look, and the table a row).
fn debian_package(library: &str) -> Option<&'static str> {
    let name = library.split(".so").next().unwrap_or(library);
    Some(match name {
        "libc" | "libm" | "libdl" | "libpthread" | "librt" | "ld-linux-x86-64"
        | "ld-linux-aarch64" => "libc6",
        "libgcc_s" => "libgcc-s1",
        "libz" => "zlib1g",
        "libssl" | "libcrypto" => "libssl3",
        _ => return None,
    })
}

#[test]
fn the_dockerfile_builds_locked_and_runs_faisca_as_a_non_root_user_under_tini() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("deploy/docker/Dockerfile")).unwrap();
    let stages = stages(&text);
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &stages[0];
    assert!(
        all(build, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --locked --release")),
        "the build stage builds with --locked"
    );
    let runtime = stages.last().unwrap();

    // A numeric, non-root user (Kubernetes' runAsNonRoot checks it without a passwd entry).
    let user = all(runtime, "USER");
    let user = user.last().expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "the runtime stage runs as root");

    // tini as PID 1, then the faisca binary the stage copied in.
    let entrypoint = all(runtime, "ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint.last().unwrap())
        .expect("ENTRYPOINT in exec (JSON) form, so that signals reach the process");
    assert!(entrypoint[0].ends_with("/tini"), "{entrypoint:?}");
    assert_eq!(entrypoint[1], "--", "{entrypoint:?}");
    let binary = entrypoint.last().unwrap();
    assert!(binary.ends_with("/faisca"), "{entrypoint:?}");
    assert!(
        all(runtime, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=build") && c.ends_with(binary.as_str())),
        "the runtime stage copies the built binary to {binary}"
    );

    // OCI labels.
    let labels = all(runtime, "LABEL").join(" ");
    for label in [
        "title",
        "description",
        "version",
        "licenses",
        "source",
        "revision",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{label}=")),
            "no org.opencontainers.image.{label} label"
        );
    }

    // Every library the binary links comes with the base image or the runtime stage's packages.
    let installed: BTreeSet<&str> = all(runtime, "RUN")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .collect();
    assert!(installed.contains("tini"), "tini is installed");
    let ldd = std::process::Command::new("ldd")
        .arg(faisca_bin())
        .output()
        .expect("ldd runs");
    let linked = String::from_utf8(ldd.stdout).unwrap();
    for library in linked.lines().filter_map(|l| l.split_whitespace().next()) {
        if library.starts_with("linux-vdso") {
            continue;
        }
        let library = library.rsplit('/').next().unwrap();
        let package = debian_package(library).unwrap_or_else(|| {
            panic!("faisca links {library}: install its package in the Dockerfile's runtime stage and name it in tests/src/deploy.rs")
        });
        assert!(
            ["libc6", "libgcc-s1"].contains(&package) || installed.contains(package),
            "faisca links {library}, but the runtime stage does not install {package}"
        );
    }

    // Nothing built goes into the build context.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

#[test]
fn dockerfile_instructions_are_read_by_stage() {
    let stages = stages(
        "# c\nFROM a AS build\nRUN x \\\n    && y\n\nFROM b\nUSER 1:1\nENTRYPOINT [\"/t\"]\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0][1], ("RUN".to_string(), "x && y".to_string()));
    assert_eq!(all(&stages[1], "USER"), ["1:1"]);
}

/// kubernetes-validate, installed by `scripts/test.sh` (its venv also has PyYAML).
fn kubernetes_validate() -> std::path::PathBuf {
    std::env::var_os("FAISCA_KUBERNETES_VALIDATE")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .expect("kubernetes-validate not found: run scripts/test.sh, which installs it (or set FAISCA_KUBERNETES_VALIDATE)")
}

/// `kubectl kustomize` of an overlay.
fn render(overlay: &Path) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
        .expect("kubectl runs (preinstalled on these machines)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        overlay.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn object<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `kubernetes-validate --strict -k 1.33.0` of `yaml`; a warning fails like an error.
pub fn validate_strictly(what: &str, yaml: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let checked = std::process::Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.33.0"])
        .arg(file.path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && !report.contains("WARN") && !report.contains("ERROR"),
        "{what}: kubernetes-validate --strict:\n{report}"
    );
}

/// YAML documents as JSON values (with the PyYAML of kubernetes-validate's venv).
fn objects_of(yaml: &str) -> Vec<serde_json::Value> {
    let python = kubernetes_validate().with_file_name("python");
    let mut convert = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        convert
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
    }
    let json = convert.wait_with_output().unwrap();
    assert!(json.status.success());
    serde_json::from_slice(&json.stdout).unwrap()
}

/// The promises every rendering keeps. `prefix` is the objects' name prefix; `guaranteed`:
/// requests equal limits and executors spread over nodes.
/// The port `flag` in `container`'s args gives, checked to be its declared port `name`.
fn served_port(container: &serde_json::Value, flag: &str, name: &str, at: &str) -> String {
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let port = args
        .windows(2)
        .find(|w| w[0] == flag)
        .unwrap_or_else(|| panic!("{at}: no {flag} in {args:?}"))[1];
    let declared = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{at}: no port named {name}"));
    assert_eq!(declared["containerPort"].to_string(), port, "{at}");
    port.to_string()
}

fn check_promises(what: &str, objects: &[serde_json::Value], prefix: &str, guaranteed: bool) {
    let name = |suffix: &str| format!("{prefix}-{suffix}");
    // Never two drivers; RBAC stays in the namespace.
    let driver = object(objects, "Deployment", &name("driver"));
    assert_eq!(driver["spec"]["replicas"], 1, "{what}");
    assert_eq!(driver["spec"]["strategy"]["type"], "Recreate", "{what}");
    assert!(
        objects
            .iter()
            .all(|o| o["kind"] != "ClusterRole" && o["kind"] != "ClusterRoleBinding"),
        "{what}: no cluster-wide RBAC"
    );
    let verbs = &object(objects, "Role", &name("driver"))["rules"][0]["verbs"];
    for verb in [
        "get",
        "list",
        "watch",
        "create",
        "delete",
        "deletecollection",
    ] {
        assert!(
            verbs.as_array().unwrap().iter().any(|v| v == verb),
            "{what}: {verb}"
        );
    }
    object(objects, "PodDisruptionBudget", &name("executor"));

    // Every container: non-root, read-only root, no privilege escalation, no capabilities,
    // both probes on the health endpoints, memory limited, every emptyDir bounded.
    // Every pod is scraped: its prometheus.io annotations name the container's metrics port,
    // which it serves (--metrics-port).
    for deployment in [name("driver"), name("executor")] {
        let template = &object(objects, "Deployment", &deployment)["spec"]["template"];
        let at = format!("{what} {deployment}");
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{at}");
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{at}");
        let container = &template["spec"]["containers"][0];
        let metrics = served_port(container, "--metrics-port", "metrics", &at);
        assert_eq!(annotations["prometheus.io/port"], metrics, "{at}");
    }
    for deployment in [name("driver"), name("executor")] {
        let pod = &object(objects, "Deployment", &deployment)["spec"]["template"]["spec"];
        let at = format!("{what} {deployment}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{at}");
        assert!(
            pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 30,
            "{at}: longer than the decommission grace period"
        );
        for volume in pod["volumes"].as_array().unwrap() {
            assert!(
                volume["emptyDir"]["sizeLimit"].is_string() || volume["secret"].is_object(),
                "{at}: {volume}"
            );
        }
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{at}"
            );
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
            served_port(container, "--health-port", "health", &at);
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "{at}"
            );
            if guaranteed {
                assert_eq!(
                    container["resources"]["requests"], container["resources"]["limits"],
                    "{at}: requests = limits"
                );
            }
        }
    }
    if guaranteed {
        let executor = &object(objects, "Deployment", &name("executor"))["spec"];
        assert!(
            executor["template"]["spec"]["affinity"]["podAntiAffinity"].is_object(),
            "{what}: executors spread over nodes"
        );
    }
}

/// The args of a pod template's first container.
fn container_args(template: &serde_json::Value) -> Vec<String> {
    template["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// With TLS and authentication Secrets named (`secured`), every process serves TLS with the
/// mounted certificate, executors reach the driver as `faisca+tls://`, metrics are scraped over
/// HTTPS with the metrics token, the cluster secret is a mounted file on both sides and the user
/// tokens on the driver only; every Secret is mounted read-only. Without them, none of it.
fn check_security(what: &str, objects: &[serde_json::Value], prefix: &str, secured: bool) {
    for component in ["driver", "executor"] {
        let deployment = format!("{prefix}-{component}");
        let template = &object(objects, "Deployment", &deployment)["spec"]["template"];
        let at = format!("{what} {deployment}");
        let args = container_args(template).join(" ");
        let scheme = &template["metadata"]["annotations"]["prometheus.io/scheme"];
        if !secured {
            assert!(!args.contains("--tls-cert"), "{at}: {args}");
            assert!(scheme.is_null(), "{at}");
            continue;
        }
        for expected in [
            "--tls-cert /etc/faisca/tls/tls.crt",
            "--tls-key /etc/faisca/tls/tls.key",
            "--tls-ca /etc/faisca/tls/ca.crt",
            "faisca.ssl.serverName=",
            "faisca.authenticate.secret.file=/etc/faisca/auth/secret",
            "faisca.metrics.tokenFile=/etc/faisca/metrics/token",
        ] {
            assert!(args.contains(expected), "{at}: {expected} in {args}");
        }
        assert_eq!(
            args.contains("faisca.authenticate.tokensFile=/etc/faisca/tokens/tokens"),
            component == "driver",
            "{at}: {args}"
        );
        if component == "executor" {
            assert!(
                args.contains(&format!("--driver faisca+tls://{prefix}-driver:")),
                "{at}: {args}"
            );
        }
        assert_eq!(scheme, "https", "{at}");
        let pod = &template["spec"];
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        for volume in pod["volumes"].as_array().unwrap() {
            if volume["secret"].is_object() {
                let mount = mounts
                    .iter()
                    .find(|m| m["name"] == volume["name"])
                    .unwrap_or_else(|| panic!("{at}: {volume} is not mounted"));
                assert_eq!(mount["readOnly"], true, "{at}: {mount}");
            }
        }
        let scrape = object(
            objects,
            "ConfigMap",
            &format!("{prefix}-prometheus-scrape"),
        )["data"]["scrape-config.yaml"]
            .as_str()
            .unwrap()
            .to_string();
        for expected in [
            "scheme: https",
            "credentials_file: /etc/prometheus/faisca/token",
            "ca_file: /etc/prometheus/faisca/ca.crt",
        ] {
            assert!(scrape.contains(expected), "{at}: {expected} in {scrape}");
        }
        for path in ["/etc/faisca/tls", "/etc/faisca/auth", "/etc/faisca/metrics"] {
            assert!(
                mounts.iter().any(|m| m["mountPath"] == path),
                "{at}: {path}"
            );
        }
    }
}

#[test]
fn every_kubernetes_overlay_renders_validates_and_keeps_its_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for overlay in ["dev", "prod", "secure"] {
        let yaml = render(&root.join("deploy/k8s/overlays").join(overlay));
        validate_strictly(overlay, &yaml);
        let objects = objects_of(&yaml);
        check_promises(overlay, &objects, "faisca", overlay != "dev");
        check_security(overlay, &objects, "faisca", overlay == "secure");
    }
}

/// helm, installed by `scripts/test.sh`.
fn helm() -> std::path::PathBuf {
    std::env::var_os("FAISCA_HELM")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .expect("helm not found: run scripts/test.sh, which installs it (or set FAISCA_HELM)")
}

fn run_helm(args: &[&str], chart: &Path) -> String {
    let out = std::process::Command::new(helm())
        .args(args)
        .arg(chart)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_helm_chart_lints_renders_validates_and_keeps_its_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let chart = root.join("deploy/helm/faisca");
    let every = chart.join("ci/every-option-values.yaml");
    let every = every.to_str().unwrap();
    for (what, values) in [("default values", None), ("every option set", Some(every))] {
        let mut args = vec!["lint", "--strict"];
        args.extend(values.iter().flat_map(|v| ["-f", *v]));
        run_helm(&args, &chart);
        let mut args = vec![
            "template",
            "demo",
            "--kube-version",
            "1.33.0",
            "--namespace",
            "faisca",
        ];
        args.extend(values.iter().flat_map(|v| ["-f", *v]));
        let yaml = run_helm(&args, &chart);
        validate_strictly(what, &yaml);
        let objects = objects_of(&yaml);
        check_promises(what, &objects, "demo-faisca", values.is_some());
        check_security(what, &objects, "demo-faisca", values.is_some());
        if values.is_some() {
            // security.tls.clientAuth: mutual TLS on both sides.
            for component in ["driver", "executor"] {
                let deployment = format!("demo-faisca-{component}");
                let template = &object(&objects, "Deployment", &deployment)["spec"]["template"];
                let args = container_args(template).join(" ");
                assert!(args.contains("faisca.ssl.clientAuth=required"), "{args}");
            }
        }
    }
    // The values schema refuses what the chart cannot render.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "executor:\n  antiAffinity: hard\n").unwrap();
    let out = std::process::Command::new(helm())
        .args(["template", "demo", "-f"])
        .arg(bad.path())
        .arg(&chart)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("antiAffinity"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
