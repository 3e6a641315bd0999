//! A kubelet stand-in for [`crate::api`]: it runs the real process each pod describes.
//!
//! For each new pod it starts the first container's command (`faisca` is the binary under test,
//! as in the image) with its args and env: plain values, `fieldRef`s (`status.podIP`,
//! `metadata.name`, `metadata.namespace`) and `configMapKeyRef`s, and `$(VAR)` expanded in
//! command and args as Kubernetes does. Each pod gets its own loopback IP (127.0.0.N), so
//! executors binding their pod IP on fixed ports do not collide. The pod goes Running when the
//! process starts, and Succeeded or Failed with the exit code when it ends. Deleting a running
//! pod sends SIGTERM, then SIGKILL after its terminationGracePeriodSeconds, and removes the pod
//! once the process is gone. At most `capacity` pods run; the others stay Pending, as on a full
//! cluster.
//!
//! What a container runtime would isolate is approximated: processes share this host's file
//! system (a ConfigMap volume is written to a directory of the pod, and its mount path in the
//! args is replaced by that directory), and a pod's service-account credentials are the test's
//! kubeconfig (`KUBECONFIG`), as the in-cluster token paths are fixed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::api::{Change, KubeApi};

/// Loopback addresses handed out so far, across every test of the binary.
static NEXT_POD_IP: AtomicU32 = AtomicU32::new(0);

fn next_pod_ip() -> String {
    let n = NEXT_POD_IP.fetch_add(1, Ordering::Relaxed);
    format!("127.0.{}.{}", 10 + n / 250, n % 250 + 2)
}

/// How the kubelet runs pods.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// Where the image's programs are (`faisca`).
    pub bin_dir: PathBuf,
    /// Per-pod directories and logs.
    pub dir: PathBuf,
    /// Pods running at once; more stay Pending.
    pub capacity: usize,
    /// Environment every pod gets (the kubeconfig standing in for the service account).
    pub env: Vec<(String, String)>,
}

/// The running kubelet: dropping it stops it, and kills what it started.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    /// Start running the pods of `api`.
    pub fn start(api: KubeApi, options: KubeletOptions) -> Kubelet {
        let changes = api.subscribe();
        let task = tokio::spawn(
            Node {
                api,
                options,
                running: HashMap::new(),
                waiting: VecDeque::new(),
                processes: JoinSet::new(),
            }
            .run(changes),
        );
        Kubelet { task }
    }
}

struct Running {
    pid: u32,
    namespace: String,
    /// SIGTERM was sent.
    stopping: bool,
}

struct Node {
    api: KubeApi,
    options: KubeletOptions,
    running: HashMap<String, Running>,
    /// Pods waiting for capacity: (namespace, name).
    waiting: VecDeque<(String, String)>,
    /// Each process's task: (pod name, exit code).
    processes: JoinSet<(String, i32)>,
}

impl Node {
    async fn run(mut self, mut changes: tokio::sync::broadcast::Receiver<Change>) {
        let mut kills: JoinSet<String> = JoinSet::new();
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) if change.resource == "pods" => self.changed(change, &mut kills),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                Some(Ok((name, code))) = self.processes.join_next() => self.exited(&name, code),
                Some(Ok(name)) = kills.join_next() => {
                    if let Some(r) = self.running.get(&name) {
                        signal(r.pid, "KILL");
                    }
                }
            }
        }
    }

    fn changed(&mut self, change: Change, kills: &mut JoinSet<String>) {
        let pod = change.object;
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match change.kind {
            "DELETED" => {
                if let Some(r) = self.running.get(&name) {
                    signal(r.pid, "KILL");
                }
                self.waiting.retain(|(_, n)| n != &name);
            }
            _ if pod["metadata"].get("deletionTimestamp").is_some() => {
                if let Some(r) = self.running.get_mut(&name)
                    && !r.stopping
                {
                    r.stopping = true;
                    signal(r.pid, "TERM");
                    let grace = pod["spec"]["terminationGracePeriodSeconds"]
                        .as_u64()
                        .unwrap_or(30);
                    let pod_name = name.clone();
                    kills.spawn(async move {
                        tokio::time::sleep(Duration::from_secs(grace)).await;
                        pod_name
                    });
                } else if !self.running.contains_key(&name) {
                    self.api.remove("pods", &namespace, &name);
                }
            }
            "ADDED" if pod["status"]["phase"] == "Pending" => {
                self.waiting.push_back((namespace, name));
                self.start_waiting();
            }
            _ => {}
        }
    }

    /// Start waiting pods while there is capacity.
    fn start_waiting(&mut self) {
        while self.running.len() < self.options.capacity {
            let Some((namespace, name)) = self.waiting.pop_front() else {
                return;
            };
            let Some(pod) = self.api.get("pods", &namespace, &name) else {
                continue;
            };
            self.start(pod);
        }
    }

    fn start(&mut self, mut pod: Value) {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_string();
        let ip = next_pod_ip();
        let container = pod["spec"]["containers"][0].clone();
        let pod_dir = self.options.dir.join(&name);
        std::fs::create_dir_all(&pod_dir).unwrap();
        let env = self.environment(&pod, &container, &ip);
        let mounts = self.config_map_mounts(&pod, &container, &pod_dir);
        let expand = |text: &str| {
            let mut out = expand_vars(text, &env);
            for (mount, dir) in &mounts {
                out = out.replace(mount.as_str(), dir.to_str().unwrap());
            }
            out
        };
        let command: Vec<String> = container["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(container["args"].as_array().into_iter().flatten())
            .map(|v| expand(v.as_str().unwrap_or_default()))
            .collect();
        let program = self.options.bin_dir.join(&command[0]);
        let log = std::fs::File::create(pod_dir.join("log")).unwrap();
        let spawned = tokio::process::Command::new(&program)
            .args(&command[1..])
            .envs(env.iter())
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        let image = container["image"].clone();
        match spawned {
            Ok(mut child) => {
                self.api.with_store(|s| {
                    s.pods_started
                        .push((std::time::Instant::now(), name.clone()))
                });
                let pid = child.id().unwrap();
                self.running.insert(
                    name.clone(),
                    Running {
                        pid,
                        namespace,
                        stopping: false,
                    },
                );
                let pod_name = name.clone();
                self.processes.spawn(async move {
                    let code = match child.wait().await {
                        Ok(status) => status.code().unwrap_or_else(|| {
                            128 + std::os::unix::process::ExitStatusExt::signal(&status)
                                .unwrap_or(0)
                        }),
                        Err(_) => 255,
                    };
                    (pod_name, code)
                });
                pod["status"] = json!({
                    "phase": "Running", "podIP": ip, "hostIP": "127.0.0.1",
                    "containerStatuses": [{"name": container["name"], "image": image, "imageID": "",
                        "ready": true, "restartCount": 0, "state": {"running": {}}}],
                });
            }
            Err(e) => {
                pod["status"] = json!({
                    "phase": "Failed",
                    "containerStatuses": [{"name": container["name"], "image": image, "imageID": "",
                        "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 128, "reason": "StartError", "message": format!("{}: {e}", program.display())}}}],
                });
            }
        }
        self.api.put("pods", pod, "MODIFIED");
    }

    fn exited(&mut self, name: &str, code: i32) {
        let Some(running) = self.running.remove(name) else {
            return;
        };
        if let Some(mut pod) = self.api.get("pods", &running.namespace, name) {
            if pod["metadata"].get("deletionTimestamp").is_some() {
                self.api.remove("pods", &running.namespace, name);
            } else {
                let container = &pod["spec"]["containers"][0];
                let reason = if code == 0 { "Completed" } else { "Error" };
                pod["status"] = json!({
                    "phase": if code == 0 { "Succeeded" } else { "Failed" },
                    "podIP": pod["status"]["podIP"],
                    "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                        "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": code, "reason": reason}}}],
                });
                self.api.put("pods", pod, "MODIFIED");
            }
        }
        self.start_waiting();
    }

    fn environment(&self, pod: &Value, container: &Value, ip: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = var["value"].as_str() {
                Some(v.to_string())
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "status.podIP" => Some(ip.to_string()),
                    "metadata.name" => pod["metadata"]["name"].as_str().map(str::to_string),
                    "metadata.namespace" => {
                        pod["metadata"]["namespace"].as_str().map(str::to_string)
                    }
                    _ => None,
                }
            } else if let Some(r) = var["valueFrom"]["configMapKeyRef"].as_object() {
                let ns = pod["metadata"]["namespace"].as_str().unwrap();
                self.api
                    .get("configmaps", ns, r["name"].as_str().unwrap())
                    .and_then(|cm| {
                        cm["data"][r["key"].as_str().unwrap()]
                            .as_str()
                            .map(str::to_string)
                    })
            } else {
                None
            };
            if let Some(value) = value {
                let value = expand_vars(&value, &env);
                env.insert(name, value);
            }
        }
        env
    }

    /// Write each ConfigMap volume the container mounts to a directory of the pod: `(mount path,
    /// directory)`.
    fn config_map_mounts(
        &self,
        pod: &Value,
        container: &Value,
        pod_dir: &Path,
    ) -> Vec<(String, PathBuf)> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap();
        let mut out = Vec::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let volume = pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"]);
            let Some(cm_name) = volume.and_then(|v| v["configMap"]["name"].as_str()) else {
                continue;
            };
            let dir = pod_dir.join(mount["name"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(cm) = self.api.get("configmaps", ns, cm_name) {
                for (key, value) in cm["data"].as_object().into_iter().flatten() {
                    std::fs::write(dir.join(key), value.as_str().unwrap_or_default()).unwrap();
                }
            }
            out.push((mount["mountPath"].as_str().unwrap().to_string(), dir));
        }
        out
    }
}

/// `$(VAR)` replaced by `env`'s value; unknown ones stay, as in Kubernetes.
fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn signal(pid: u32, name: &str) {
    // The process may have exited already: that is no error here.
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}
