//! The driver's web UI: the REST API answers what ran (stages and task counts as `EXPLAIN`
//! shows them, the rows the client read) in the shape `docs/openapi.json` describes; `/metrics`
//! is well-formed Prometheus text whose counters move by exactly a job's tasks and rows; pages
//! show the job, its stage graph (one `<g class="stage">` per stage) and its tasks; secrets
//! appear nowhere; two drivers on one host each get a UI. `history.rs`: the event log read back.

mod browser;
mod history;
mod openapi;
mod prometheus;
mod task_logs;

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::tpch_session;
use openapi::OpenApi;

const SECRET: &str = "ui-hunter7";

/// A multi-stage TPC-H query: a join and an aggregation.
pub(super) const QUERY: &str = "SELECT l_returnflag, count(*) AS n FROM lineitem JOIN orders ON l_orderkey = o_orderkey \
                     GROUP BY l_returnflag ORDER BY l_returnflag";

/// `GET url` (`http://host:port/path`): status and body.
pub async fn get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the UI");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_string())
}

pub(super) async fn get_json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// `(stage, tasks)` of each stage of an `EXPLAIN`'s distributed plan.
pub(super) fn explained_stages(explain: &str) -> Vec<(u32, u64)> {
    explain
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("Stage ")?;
            let (stage, rest) = rest.split_once(" (tasks=")?;
            let tasks = rest.split([',', ')']).next()?;
            Some((stage.parse().ok()?, tasks.parse().ok()?))
        })
        .collect()
}

/// Checks `value` against the answer schema of `path` in the OpenAPI file.
pub(super) fn assert_valid(api: &OpenApi, path: &str, value: &Value) {
    let violations = api.violations(api.response_schema(path), value);
    assert!(
        violations.is_empty(),
        "GET {path} breaks docs/openapi.json: {violations:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_and_metrics_answer_what_ran() {
    let secret_key = "faisca.store.s3.uibucket.secret_access_key";
    let session = tpch_session(
        "local[2]",
        &[
            ("faisca.ui.enabled", "true"),
            ("faisca.ui.port", "0"),
            (secret_key, SECRET),
        ],
        2,
    )
    .await;
    let ui = session
        .ui_url()
        .await
        .unwrap()
        .expect("the session's driver serves a UI");
    let api = OpenApi::load();
    let apps = get_json(&format!("{ui}/api/v1/applications")).await;
    assert_valid(&api, "/applications", &apps);
    let app_id = apps[0]["id"].as_str().unwrap().to_string();
    let base = format!("{ui}/api/v1/applications/{app_id}");
    let before = prometheus::parse(&get(&format!("{ui}/metrics")).await.1);

    let stages = explained_stages(&session.explain_sql(QUERY).await.unwrap());
    assert!(stages.len() >= 3, "a multi-stage query: {stages:?}");
    let batches = faisca::client::collect(session.execute_sql(QUERY).await.unwrap().batches)
        .await
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3, "three return flags");

    // The job as the API shows it: its stages and task counts are EXPLAIN's.
    let jobs = get_json(&format!("{base}/jobs")).await;
    assert_valid(&api, "/applications/{appId}/jobs", &jobs);
    let job = &jobs[0];
    assert!(
        job["description"]
            .as_str()
            .unwrap()
            .contains("l_returnflag"),
        "{job}"
    );
    assert_eq!(job["status"], "SUCCEEDED");
    let total_tasks: u64 = stages.iter().map(|(_, t)| t).sum();
    assert_eq!(job["numTasks"], total_tasks);
    assert_eq!(job["numCompletedTasks"], total_tasks);
    assert_eq!(job["numFailedTasks"], 0);
    let stage_ids: Vec<u64> = job["stageIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(stage_ids.len(), stages.len());
    let job_id = job["jobId"].as_u64().unwrap();
    let one = get_json(&format!("{base}/jobs/{job_id}")).await;
    assert_valid(&api, "/applications/{appId}/jobs/{jobId}", &one);
    assert_eq!(&one, job);

    let mut rows_out = 0;
    let mut fetched = 0;
    for (stage_id, (index, tasks)) in stage_ids.iter().zip(&stages) {
        let attempts = get_json(&format!("{base}/stages/{stage_id}")).await;
        assert_valid(&api, "/applications/{appId}/stages/{stageId}", &attempts);
        let stage = &attempts[0];
        assert_eq!(stage["jobStageIndex"], *index);
        assert_eq!(stage["numTasks"], *tasks, "stage {index}");
        assert_eq!(stage["numCompleteTasks"], *tasks, "stage {index}");
        assert_eq!(stage["status"], "COMPLETE");
        assert_eq!(stage["tasks"].as_object().unwrap().len() as u64, *tasks);
        rows_out += stage["outputRecords"].as_u64().unwrap();
        fetched += stage["shuffleReadBytes"].as_u64().unwrap();
        if !stage["inputStageIndexes"].as_array().unwrap().is_empty() {
            let read = |name: &str| stage["metrics"][name].as_u64().unwrap_or(0);
            assert!(
                read("shuffle.bytesFetched") + read("shuffle.localBytesRead") > 0,
                "a stage that reads a shuffle counts what it read: {stage}"
            );
        }
        let list = get_json(&format!("{base}/stages/{stage_id}/0/taskList?length=1000")).await;
        assert_valid(
            &api,
            "/applications/{appId}/stages/{stageId}/{stageAttemptId}/taskList",
            &list,
        );
        assert_eq!(list.as_array().unwrap().len() as u64, *tasks);
        let summary = get_json(&format!("{base}/stages/{stage_id}/0/taskSummary")).await;
        assert_valid(
            &api,
            "/applications/{appId}/stages/{stageId}/{stageAttemptId}/taskSummary",
            &summary,
        );
    }
    let last = get_json(&format!("{base}/stages/{}/0", stage_ids.last().unwrap())).await;
    assert_valid(
        &api,
        "/applications/{appId}/stages/{stageId}/{stageAttemptId}",
        &last,
    );
    assert_eq!(
        last["outputRecords"], rows as u64,
        "the result stage produced the rows read"
    );

    for (path, spec) in [
        ("stages", "/applications/{appId}/stages"),
        ("executors", "/applications/{appId}/executors"),
        ("allexecutors", "/applications/{appId}/allexecutors"),
        ("environment", "/applications/{appId}/environment"),
        (
            "streaming/queries",
            "/applications/{appId}/streaming/queries",
        ),
    ] {
        let value = get_json(&format!("{base}/{path}")).await;
        assert_valid(&api, spec, &value);
    }
    let executors = get_json(&format!("{base}/executors")).await;
    assert_eq!(executors.as_array().unwrap().len(), 2);
    let environment = get(&format!("{base}/environment")).await.1;
    assert!(
        environment.contains(secret_key),
        "the key is listed: {environment}"
    );

    // /metrics moved by exactly the job's tasks and rows.
    let after = prometheus::parse(&get(&format!("{ui}/metrics")).await.1);
    let delta = |key: &str| prometheus::delta(&before, &after, key);
    assert_eq!(delta("faisca_jobs_total{state=\"succeeded\"}"), 1.0);
    assert_eq!(
        delta("faisca_tasks_total{state=\"success\"}"),
        total_tasks as f64
    );
    assert_eq!(
        delta("faisca_tasks_total{state=\"started\"}"),
        total_tasks as f64
    );
    assert_eq!(
        delta("faisca_task_duration_seconds_count"),
        total_tasks as f64
    );
    assert_eq!(delta("faisca_task_output_rows_total"), rows_out as f64);
    assert_eq!(delta("faisca_shuffle_fetched_bytes_total"), fetched as f64);
    // The scans read every row of both tables (the query filters nothing), as DataFusion counts
    // them, and some bytes.
    let both = crate::common::tpch_expected(
        "SELECT (SELECT count(*) FROM lineitem) + (SELECT count(*) FROM orders)",
    )
    .await;
    let scanned: f64 = both[0].trim().parse().unwrap();
    assert_eq!(
        delta("faisca_scanned_rows_total{source=\"parquet\"}"),
        scanned
    );
    assert!(delta("faisca_scanned_bytes_total{source=\"parquet\"}") > 0.0);
    assert_eq!(after["faisca_executors"], 2.0);
    assert_eq!(after["faisca_tasks_running"], 0.0);

    // The pages: the job with one box per stage, the stage with its tasks.
    let (status, jobs_page) = get(&format!("{ui}/jobs/")).await;
    assert_eq!(status, 200);
    assert!(
        jobs_page.contains(&format!("data-job-id=\"{job_id}\"")),
        "{jobs_page}"
    );
    let (_, job_page) = get(&format!("{ui}/jobs/job/?id={job_id}")).await;
    assert_eq!(
        job_page.matches("<g class=\"stage ").count(),
        stages.len(),
        "{job_page}"
    );
    assert_eq!(
        job_page.matches("<g class=\"edge\"").count(),
        stages.len() - 1
    );
    let (_, stage_page) = get(&format!("{ui}/stages/stage/?id={}", stage_ids[0])).await;
    assert_eq!(
        stage_page.matches("<tr data-task-id=").count() as u64,
        stages[0].1
    );
    assert!(stage_page.contains("Median"), "the summary quantiles");
    assert!(
        stage_page.contains("class=\"timeline\""),
        "the task timeline"
    );
    for path in [
        "/executors/",
        "/environment/",
        "/stages/",
        "/static/faisca.js",
        "/static/faisca.css",
    ] {
        let (status, body) = get(&format!("{ui}{path}")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (missing, _) = get(&format!("{ui}/jobs/job/?id=999999")).await;
    assert_eq!(missing, 404);
    let (unknown, body) = get(&format!("{base}/nope")).await;
    assert_eq!(unknown, 404);
    assert!(body.contains("expected jobs, stages"), "{body}");

    // The secret set in the configuration is nowhere.
    for path in [
        "/environment/",
        "/jobs/",
        &format!("/jobs/job/?id={job_id}"),
        "/metrics",
    ] {
        let (_, body) = get(&format!("{ui}{path}")).await;
        assert!(!body.contains(SECRET), "{path} shows the secret");
    }
    assert!(
        !environment.contains(SECRET),
        "the REST environment shows the secret"
    );
    session.stop().await;
}

/// A `local[2]` cluster with its UI on a free port whose stage 1 tasks wait for a gate file
/// (`faisca.test.taskGate`): a job stays running until the test has looked at it.
pub(super) struct GatedCluster {
    pub session: faisca::Session,
    pub ui: String,
    pub app: String,
    gate: std::path::PathBuf,
    _gate_dir: tempfile::TempDir,
}

impl GatedCluster {
    pub async fn start() -> GatedCluster {
        let gate_dir = tempfile::tempdir().unwrap();
        let gate = gate_dir.path().join("open");
        let rule = format!("1:{}", gate.display());
        let session = tpch_session(
            "local[2]",
            &[
                ("faisca.ui.enabled", "true"),
                ("faisca.ui.port", "0"),
                ("faisca.test.taskGate", rule.as_str()),
            ],
            2,
        )
        .await;
        let ui = session.ui_url().await.unwrap().unwrap();
        let app = get_json(&format!("{ui}/api/v1/applications")).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        GatedCluster {
            session,
            ui,
            app,
            gate,
            _gate_dir: gate_dir,
        }
    }

    /// The first job the REST API lists as running (a minute at most).
    pub async fn running_job(&self) -> Value {
        let url = format!(
            "{}/api/v1/applications/{}/jobs?status=running",
            self.ui, self.app
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(job) = get_json(&url).await.as_array().unwrap().first() {
                return job.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no job showed as running"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Let the held tasks run.
    pub fn open_gate(&self) {
        std::fs::write(&self.gate, b"").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_shows_as_running_then_succeeded() {
    let cluster = GatedCluster::start().await;
    let (session, ui, app_id) = (&cluster.session, &cluster.ui, &cluster.app);
    let result = session.execute_sql(QUERY).await.unwrap();
    let running = cluster.running_job().await;
    assert_eq!(running["status"], "RUNNING");
    let job_id = running["jobId"].as_u64().unwrap();
    let (_, page) = get(&format!("{ui}/jobs/job/?id={job_id}")).await;
    assert!(
        page.contains("<dd id=\"job-status\">RUNNING</dd>"),
        "{page}"
    );
    let (_, jobs_page) = get(&format!("{ui}/jobs/")).await;
    let running_section = jobs_page.split("id=\"jobs-running\"").nth(1).unwrap();
    let running_section = running_section.split("</table>").next().unwrap();
    assert!(
        running_section.contains(&format!("data-job-id=\"{job_id}\"")),
        "{jobs_page}"
    );
    cluster.open_gate();
    faisca::client::collect(result.batches).await.unwrap();
    let job = get_json(&format!("{ui}/api/v1/applications/{app_id}/jobs/{job_id}")).await;
    assert_eq!(job["status"], "SUCCEEDED");
    session.stop().await;
}

/// A port `p` such that `p` and `p + 1` are both free, chosen below Linux's
/// ephemeral range (32768..61000) so that the sockets other tests open on
/// port 0 cannot take `p + 1` between the probe and the second driver.
pub(super) fn free_port_pair() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..1000u64 {
        let port =
            20_000 + ((seed.wrapping_mul(2654435761).wrapping_add(attempt * 7919)) % 12_000) as u16;
        let pair = (
            std::net::TcpListener::bind(("127.0.0.1", port)),
            std::net::TcpListener::bind(("127.0.0.1", port + 1)),
        );
        if let (Ok(_), Ok(_)) = pair {
            return port;
        }
    }
    panic!("no two consecutive free ports in 20000..32001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_driver_on_the_host_takes_the_next_port() {
    let port = free_port_pair().to_string();
    let config = [
        ("faisca.ui.enabled", "true"),
        ("faisca.ui.port", port.as_str()),
    ];
    let first = tpch_session("local[1]", &config, 1).await;
    let second = tpch_session("local[1]", &config, 1).await;
    let first_url = first.ui_url().await.unwrap().unwrap();
    let second_url = second.ui_url().await.unwrap().unwrap();
    let port: u16 = port.parse().unwrap();
    assert_eq!(first_url, format!("http://127.0.0.1:{port}"));
    assert_eq!(second_url, format!("http://127.0.0.1:{}", port + 1));
    for url in [&first_url, &second_url] {
        let (status, _) = get(&format!("{url}/jobs/")).await;
        assert_eq!(status, 200);
    }
    // With no retries left, a taken port is an error naming the keys.
    let taken = match faisca::Session::builder()
        .master("local[1]")
        .config("faisca.ui.enabled", "true")
        .config("faisca.ui.port", port.to_string())
        .config("faisca.port.maxRetries", "0")
        .build()
        .await
    {
        Ok(_) => panic!("port {port} is taken: the session cannot start"),
        Err(e) => e.to_string(),
    };
    assert!(taken.contains("faisca.ui.port"), "{taken}");
    first.stop().await;
    second.stop().await;
}
