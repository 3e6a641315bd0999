//! The Kubernetes launcher end to end: a real `faisca driver --master k8s://…` process against
//! the test API server (`faisca_kube_standin::api`), whose kubelet stand-in runs
//! the real `faisca executor` process of each pod. Waits are on conditions with generous
//! deadlines; nothing here measures time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faisca_bench::tpch::queries;
use serde_json::Value;

use crate::cli::{Processes, faisca_status_lines, start_driver_from};
use crate::common::{faisca_bin, normalized_rows, tpch_expected, tpch_session};
use faisca_kube_standin::{KubeApi, Kubelet, KubeletOptions, kubeconfig};

const NAMESPACE: &str = "faisca-test";

/// An API server, its kubelet, and a kubeconfig for them.
struct Cluster {
    api: KubeApi,
    url: String,
    kubeconfig: std::path::PathBuf,
    _kubelet: Kubelet,
    _server: AbortOnDrop,
    _dir: tempfile::TempDir,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn cluster(capacity: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::default();
    let (url, server) = api.serve().await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&url)).unwrap();
    let kubelet = Kubelet::start(
        api.clone(),
        KubeletOptions {
            bin_dir: faisca_bin().parent().unwrap().to_path_buf(),
            dir: dir.path().join("pods"),
            capacity,
            env: vec![(
                "KUBECONFIG".into(),
                kubeconfig.to_string_lossy().into_owned(),
            )],
        },
    );
    Cluster {
        api,
        url,
        kubeconfig,
        _kubelet: kubelet,
        _server: AbortOnDrop(server),
        _dir: dir,
    }
}

fn kubeconfig_text(url: &str) -> String {
    kubeconfig(url, NAMESPACE)
}

impl Cluster {
    /// `faisca driver --master k8s://URL` with the kubeconfig, `--conf` pairs `conf`.
    fn driver(&self, conf: &[(&str, &str)]) -> (Child, String) {
        let mut command = Command::new(faisca_bin());
        command.env("KUBECONFIG", &self.kubeconfig);
        let master = format!("k8s://{}", self.url);
        let mut args = vec!["--master".to_string(), master];
        let base = [
            ("faisca.kubernetes.namespace", NAMESPACE),
            ("faisca.executor.memory", "512m"),
            ("faisca.kubernetes.allocation.batch.delay", "200ms"),
            ("faisca.kubernetes.executor.apiPollingInterval", "2s"),
        ];
        for (k, v) in base.iter().chain(conf) {
            args.push("--conf".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_driver_from(command, &args)
    }

    /// The executor pods, by name, with their phase.
    fn executor_pods(&self) -> Vec<(String, String)> {
        let mut pods: Vec<(String, String)> = self
            .api
            .pods(NAMESPACE, "faisca-role=executor")
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["status"]["phase"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        pods.sort();
        pods
    }
}

/// Poll `done` every 50 ms for up to `limit` (a bound for a stall, not a timing).
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn active_executors(address: &str) -> Vec<Value> {
    faisca_status_lines(address, &["--executors"])
        .into_iter()
        .filter(|e| e["state"] == "active")
        .collect()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn answer(session: &faisca::Session, sql: &str) -> Vec<String> {
    let result = session.execute_sql(sql).await.unwrap();
    normalized_rows(&faisca::client::collect(result.batches).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_runs_replaces_and_removes_its_executor_pods() {
    // Room for two pods: the third stays Pending and is replaced after the creation timeout.
    let cluster = cluster(2).await;
    let (driver, address) = cluster.driver(&[
        ("faisca.executor.instances", "3"),
        ("faisca.kubernetes.allocation.executor.timeout", "3s"),
        // No periodic re-list: a list after the start is the answer to a 410.
        ("faisca.kubernetes.executor.apiPollingInterval", "600s"),
    ]);
    let mut procs = Processes(vec![driver]);
    let session = tpch_session(&address, &[("faisca.test.taskDelay", "*:100ms")], 2).await;
    let pods = cluster.executor_pods();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let pod = &cluster.api.pods(NAMESPACE, "faisca-role=executor")[0];
    assert_eq!(pod["metadata"]["labels"]["faisca-role"], "executor");
    assert!(
        pod["metadata"]["labels"]["faisca-app-id"]
            .as_str()
            .unwrap()
            .starts_with("faisca-")
    );
    // The registered executors are the running pods.
    let running: Vec<String> = pods
        .iter()
        .filter(|(_, p)| p == "Running")
        .map(|(n, _)| n.clone())
        .collect();
    let mut registered: Vec<String> = active_executors(&address)
        .iter()
        .map(|e| e["executor_id"].as_str().unwrap().to_string())
        .collect();
    registered.sort();
    assert_eq!(registered, running);

    let q3 = queries::query(3).unwrap();
    let expected = tpch_expected(q3).await;
    assert_eq!(answer(&session, q3).await, expected);

    // The pending pod is deleted after the creation timeout and replaced, with the reason shown.
    let first_pending = pods.iter().find(|(_, p)| p == "Pending").unwrap().0.clone();
    assert!(
        eventually(Duration::from_secs(60), || {
            !cluster
                .executor_pods()
                .iter()
                .any(|(n, _)| *n == first_pending)
        })
        .await,
        "pending pod {first_pending} deleted"
    );
    assert!(
        eventually(Duration::from_secs(60), || cluster.executor_pods().len()
            == 3)
        .await,
        "a replacement was created: {:?}",
        cluster.executor_pods()
    );
    let departed = faisca_status_lines(&address, &["--executors"]);
    let timed_out = departed
        .iter()
        .find(|e| e["executor_id"] == first_pending.as_str())
        .unwrap_or_else(|| panic!("{first_pending} among the departed: {departed:?}"));
    assert!(
        timed_out["reason"]
            .as_str()
            .unwrap()
            .contains("faisca.kubernetes.allocation.executor.timeout"),
        "{timed_out}"
    );

    // The API server compacts its history and drops the watches: the launcher's resumed watch
    // gets 410 Gone, and it lists the pods again.
    let lists = |api: &KubeApi| {
        api.with_store(|s| {
            s.requests
                .iter()
                .filter(|r| {
                    r.starts_with("GET /api/v1/namespaces/faisca-test/pods?")
                        && !r.contains("watch=true")
                })
                .count()
        })
    };
    let before = lists(&cluster.api);
    cluster.api.compact_and_end_watches();
    assert!(
        eventually(Duration::from_secs(60), || lists(&cluster.api) > before).await,
        "listed again after 410 Gone"
    );

    // A running pod deleted mid-query: the answer is still right and a new pod takes its place.
    let victim = running[0].clone();
    let query = {
        let session = &session;
        async move { answer(session, q3).await }
    };
    let api = cluster.api.clone();
    let address_for_delete = address.clone();
    let victim_for_delete = victim.clone();
    let deleter = async move {
        // Once tasks run, delete the pod as `kubectl delete pod` would.
        let started = eventually(Duration::from_secs(60), || {
            active_executors(&address_for_delete)
                .iter()
                .any(|e| e["running_tasks"].as_u64().unwrap_or(0) > 0)
        })
        .await;
        assert!(started, "tasks started");
        api.delete_pod(NAMESPACE, &victim_for_delete).unwrap();
    };
    let (rows, ()) = tokio::join!(query, deleter);
    assert_eq!(rows, expected, "right after a pod was deleted mid-query");
    assert!(
        eventually(Duration::from_secs(60), || {
            let pods = cluster.executor_pods();
            !pods.iter().any(|(n, _)| *n == victim)
                && pods.iter().filter(|(_, p)| p == "Running").count() == 2
        })
        .await,
        "the deleted pod is replaced: {:?}",
        cluster.executor_pods()
    );
    assert_eq!(
        answer(&session, q3).await,
        expected,
        "right on the replacement"
    );

    // The driver stops: no executor pod is left, and no process of one.
    session.stop().await;
    let driver = procs.0.remove(0);
    sigterm(&driver);
    let mut driver = driver;
    let status = driver.wait().unwrap();
    assert!(status.success(), "driver exit: {status}");
    assert!(
        eventually(Duration::from_secs(60), || cluster
            .executor_pods()
            .is_empty())
        .await,
        "no pod left: {:?}",
        cluster.executor_pods()
    );
    let requests = cluster.api.with_store(|s| s.requests.clone());
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("DELETE /api/v1/namespaces/faisca-test/pods?")),
        "deleted by label: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("watch=true")),
        "watched: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_allocation_follows_the_backlog_and_releases_idle_pods() {
    let cluster = cluster(4).await;
    let (driver, address) = cluster.driver(&[
        ("faisca.dynamicAllocation.enabled", "true"),
        ("faisca.dynamicAllocation.minExecutors", "1"),
        ("faisca.dynamicAllocation.maxExecutors", "3"),
        ("faisca.dynamicAllocation.executorIdleTimeout", "2s"),
        ("faisca.dynamicAllocation.schedulerBacklogTimeout", "200ms"),
    ]);
    let _procs = Processes(vec![driver]);
    // Many reduce tasks, each slowed down: a backlog on one executor.
    let config = [
        ("faisca.shuffle.partitions", "12"),
        ("faisca.test.taskDelay", "*:300ms"),
    ];
    let session = tpch_session(&address, &config, 1).await;
    assert_eq!(
        cluster.executor_pods().len(),
        1,
        "initialExecutors = minExecutors = 1"
    );
    let sql = "select l_returnflag, count(*), sum(l_quantity) from lineitem group by l_returnflag";
    let expected = tpch_expected(sql).await;
    let mut most = 0;
    let query = answer(&session, sql);
    tokio::pin!(query);
    let rows = loop {
        tokio::select! {
            rows = &mut query => break rows,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                most = most.max(active_executors(&address).len());
            }
        }
    };
    assert_eq!(rows, expected);
    assert!(
        most >= 2,
        "the backlog brought more executors (at most {most})"
    );
    assert!(
        cluster.executor_pods().len() <= 3,
        "maxExecutors: {:?}",
        cluster.executor_pods()
    );
    // Idle past the timeout: back to minExecutors, by decommission.
    assert!(
        eventually(Duration::from_secs(90), || cluster.executor_pods().len()
            == 1)
        .await,
        "idle pods released: {:?}",
        cluster.executor_pods()
    );
    let departed: Vec<Value> = faisca_status_lines(&address, &["--executors"])
        .into_iter()
        .filter(|e| e["state"] == "exited")
        .collect();
    assert!(!departed.is_empty(), "released executors left on purpose");
    assert_eq!(
        answer(&session, sql).await,
        expected,
        "right after scaling down"
    );
    session.stop().await;
}

/// `faisca driver` arguments that must fail at start: (stderr, exit status).
fn driver_fails(
    kubeconfig: Option<&Path>,
    home: &Path,
    args: &[&str],
) -> (String, std::process::ExitStatus) {
    let mut command = Command::new(faisca_bin());
    command
        .env("HOME", home)
        .env_remove("KUBERNETES_SERVICE_HOST");
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    let mut child = command
        .args(["driver", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (stderr, status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("faisca driver {args:?} hangs instead of failing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubernetes_settings_fail_at_start_and_name_what_is_wrong() {
    let cluster = cluster(1).await;
    let home = tempfile::tempdir().unwrap();
    let master = format!("k8s://{}", cluster.url);
    let ns = format!("faisca.kubernetes.namespace={NAMESPACE}");
    // No kubeconfig anywhere, not in a pod.
    let missing = home.path().join("no-such-kubeconfig");
    let (stderr, status) = driver_fails(Some(&missing), home.path(), &["--master", &master]);
    assert!(!status.success());
    assert!(
        stderr.contains("kubeconfig") && stderr.contains("no-such-kubeconfig"),
        "{stderr}"
    );
    // An API server nobody listens on.
    let closed = format!("http://127.0.0.1:{}", crate::health::free_port());
    let dead = home.path().join("dead-kubeconfig");
    std::fs::write(&dead, kubeconfig_text(&closed)).unwrap();
    let (stderr, status) = driver_fails(Some(&dead), home.path(), &["--master", "k8s://"]);
    assert!(!status.success());
    assert!(
        stderr.contains("cannot reach the Kubernetes API server") && stderr.contains(&closed),
        "{stderr}"
    );
    // RBAC forbids creating pods.
    cluster.api.with_store(|s| s.forbidden.insert("create"));
    let (stderr, status) = driver_fails(
        Some(&cluster.kubeconfig),
        home.path(),
        &["--master", &master, "--conf", &ns],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("refused to create pods") && stderr.contains("403"),
        "{stderr}"
    );
    cluster.api.with_store(|s| s.forbidden.clear());
    // A template that is not a Pod.
    let template = home.path().join("template.yaml");
    std::fs::write(&template, "kind: Deployment\nspec: {}\n").unwrap();
    let conf = format!(
        "faisca.kubernetes.executor.podTemplateFile={}",
        template.display()
    );
    let (stderr, status) = driver_fails(
        Some(&cluster.kubeconfig),
        home.path(),
        &["--master", &master, "--conf", &conf],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("template.yaml") && stderr.contains("expected kind: Pod"),
        "{stderr}"
    );
    // A master that is not k8s://.
    let (stderr, status) = driver_fails(None, home.path(), &["--master", "yarn"]);
    assert!(!status.success());
    assert!(stderr.contains("invalid --master 'yarn'"), "{stderr}");
    assert!(cluster.executor_pods().is_empty(), "nothing was created");
}

#[test]
fn the_dry_run_prints_a_pod_kubernetes_accepts_and_contacts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.yaml");
    std::fs::write(
        &template,
        "apiVersion: v1\nkind: Pod\nspec:\n  nodeSelector:\n    disk: ssd\n  tolerations:\n    - key: spot\n      operator: Exists\n      effect: NoSchedule\n  containers:\n    - name: main\n      image: ignored\n    - name: sidecar\n      image: proxy:1\n",
    )
    .unwrap();
    let out = Command::new(faisca_bin())
        .env("KUBECONFIG", dir.path().join("none"))
        .args([
            "driver",
            "--master",
            "k8s://https://kubernetes.invalid:6443",
            "--dry-run",
            "--bind",
            "0.0.0.0:7077",
            "--advertise-address",
            "driver.example.svc",
            "--conf",
        ])
        .arg(format!(
            "faisca.kubernetes.executor.podTemplateFile={}",
            template.display()
        ))
        .args([
            "--conf",
            "faisca.kubernetes.driver.pod.name=my-driver",
            "--conf",
            "faisca.kubernetes.executor.label.team=data",
        ])
        .output()
        .unwrap();
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::deploy::validate_strictly("faisca driver --dry-run", &yaml);
    assert!(yaml.contains("http://driver.example.svc:7077"), "{yaml}");
    assert!(
        yaml.contains("disk: ssd") && yaml.contains("sidecar") && yaml.contains("team: data"),
        "{yaml}"
    );
    assert!(yaml.contains("name: my-driver"), "ownerReference: {yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_in_cluster_mode_runs_the_driver_in_a_pod_and_follows_it() {
    let cluster = cluster(2).await;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("nations.sql");
    let mut script: Vec<String> =
        faisca_bench::tpch::data::create_tables_sql(crate::common::tpch_dir());
    script.push("select count(*) as nations from nation".into());
    std::fs::write(&job, script.join(";\n")).unwrap();
    let out = tokio::task::spawn_blocking({
        let (kubeconfig, url, job) = (cluster.kubeconfig.clone(), cluster.url.clone(), job.clone());
        move || {
            Command::new(faisca_bin())
                .env("KUBECONFIG", kubeconfig)
                .args([
                    "submit",
                    "--master",
                    &format!("k8s://{url}"),
                    "--deploy-mode",
                    "cluster",
                ])
                .args([
                    "--conf",
                    &format!("faisca.kubernetes.namespace={NAMESPACE}"),
                ])
                .args([
                    "--conf",
                    "faisca.executor.instances=1",
                    "--conf",
                    "faisca.executor.memory=512m",
                ])
                .args(["--conf", "faisca.kubernetes.allocation.batch.delay=200ms"])
                .arg(job)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let drivers = cluster.api.with_store(|s| s.requests.clone());
    assert!(out.status.success(), "{stderr}\n{drivers:?}");
    assert!(
        stderr.contains("Succeeded") && stderr.contains("kubectl logs -n faisca-test"),
        "{stderr}"
    );
    // The driver pod ran the job: its log has the answer.
    let driver = cluster.api.pods(NAMESPACE, "faisca-role=driver");
    assert_eq!(driver.len(), 1);
    let name = driver[0]["metadata"]["name"].as_str().unwrap();
    let log =
        std::fs::read_to_string(cluster._dir.path().join("pods").join(name).join("log")).unwrap();
    assert!(log.contains("25"), "{log}");
    // Its executors were pods owned by it, and are gone; so is the job's ConfigMap.
    let uid = &driver[0]["metadata"]["uid"];
    let executors: Vec<Value> = cluster
        .api
        .created("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["faisca-role"] == "executor")
        .collect();
    assert!(!executors.is_empty());
    for pod in &executors {
        assert_eq!(&pod["metadata"]["ownerReferences"][0]["uid"], uid, "{pod}");
    }
    assert!(
        cluster.executor_pods().is_empty(),
        "{:?}",
        cluster.executor_pods()
    );
    let app = driver[0]["metadata"]["labels"]["faisca-app-id"]
        .as_str()
        .unwrap();
    assert!(
        cluster
            .api
            .get("configmaps", NAMESPACE, &format!("{app}-job"))
            .is_none()
    );
}
