//! The event log read back: `faisca history` answers as the live UI did, and a run whose driver
//! was SIGKILLed is served as incomplete up to its last closed segment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{QUERY, assert_valid, get, get_json, openapi::OpenApi};
use crate::cli::{Processes, start_driver_with};
use crate::common::{faisca_bin, tpch_session};

/// `faisca history` on `dir` on a free port; returns it and its URL.
fn start_history(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(faisca_bin())
        .args([
            "history",
            "--ui-port",
            "0",
            "--conf",
            "faisca.history.updateInterval=100ms",
        ])
        .arg("--event-log-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faisca history");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("faisca history printed its URL")
            .unwrap();
        if let Some(rest) = line.split("history server at ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, url)
}

/// Whether an event log segment under `dir` (one directory per run) holds a job's end.
fn written_job_end(dir: &std::path::Path) -> bool {
    let runs = std::fs::read_dir(dir).into_iter().flatten().flatten();
    runs.flat_map(|run| {
        std::fs::read_dir(run.path())
            .into_iter()
            .flatten()
            .flatten()
    })
    .filter(|f| f.file_name().to_string_lossy().starts_with("events_"))
    .any(|f| {
        std::fs::read_to_string(f.path()).is_ok_and(|text| text.contains("\"event\":\"jobEnd\""))
    })
}

/// The history server's application list once it lists `count` runs (a minute at most).
async fn applications(url: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let apps = get_json(&format!("{url}/api/v1/applications")).await;
        if apps.as_array().unwrap().len() >= count {
            return apps;
        }
        assert!(
            Instant::now() < deadline,
            "the history server never listed the run: {apps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the REST API says of a run's jobs and stages (every stage with its tasks) and
/// environment.
async fn answers(base: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let jobs = get_json(&format!("{base}/jobs")).await;
    for job in jobs.as_array().unwrap() {
        let id = &job["jobId"];
        out.push((
            format!("jobs/{id}"),
            get_json(&format!("{base}/jobs/{id}")).await,
        ));
        for stage in job["stageIds"].as_array().unwrap() {
            out.push((
                format!("stages/{stage}"),
                get_json(&format!("{base}/stages/{stage}")).await,
            ));
        }
    }
    out.push(("jobs".into(), jobs));
    out.push((
        "environment".into(),
        get_json(&format!("{base}/environment")).await,
    ));
    out
}

#[test]
fn a_missing_event_log_directory_is_an_error_naming_it() {
    let output = Command::new(faisca_bin())
        .args([
            "history",
            "--ui-port",
            "0",
            "--event-log-dir",
            "/no/such/faisca-events",
        ])
        .output()
        .expect("faisca history");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/no/such/faisca-events") && stderr.contains("no such directory"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_server_answers_as_the_live_ui_did() {
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().display().to_string();
    let session = tpch_session(
        "local[2]",
        &[
            ("faisca.ui.enabled", "true"),
            ("faisca.ui.port", "0"),
            ("faisca.eventLog.enabled", "true"),
            ("faisca.eventLog.dir", &dir),
        ],
        2,
    )
    .await;
    for sql in [QUERY, "SELECT count(*) FROM nation"] {
        faisca::client::collect(session.execute_sql(sql).await.unwrap().batches)
            .await
            .unwrap();
    }
    let live = session.ui_url().await.unwrap().unwrap();
    let app_id = get_json(&format!("{live}/api/v1/applications")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let live_answers = answers(&format!("{live}/api/v1/applications/{app_id}")).await;
    assert!(live_answers.len() >= 6, "{live_answers:?}");
    session.stop().await;

    let (history, url) = start_history(logs.path());
    let _history = Processes(vec![history]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let apps = loop {
        let apps = applications(&url, 1).await;
        if apps[0]["attempts"][0]["completed"] == true {
            break apps;
        }
        assert!(
            Instant::now() < deadline,
            "the run never showed as complete: {apps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_valid(&OpenApi::load(), "/applications", &apps);
    assert_eq!(apps[0]["id"], app_id.as_str());
    let read_back = answers(&format!("{url}/api/v1/applications/{app_id}")).await;
    assert_eq!(read_back.len(), live_answers.len());
    for ((what, live), (_, history)) in live_answers.iter().zip(&read_back) {
        assert_eq!(
            live, history,
            "{what} differs between the live UI and the history server"
        );
    }
    let (status, page) = get(&format!("{url}/history/{app_id}/jobs/")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-live=\"false\""),
        "a complete run's pages do not poll"
    );
    let (status, page) = get(&format!("{url}/history/{app_id}/jobs/job/?id=0")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<g class=\"stage "), "{page}");
    let (missing, body) = get(&format!("{url}/api/v1/applications/app-nope/jobs")).await;
    assert_eq!(missing, 404);
    assert!(
        body.contains(&app_id),
        "the error names the known runs: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_drivers_run_is_served_as_incomplete_up_to_its_last_segment() {
    let logs = tempfile::tempdir().unwrap();
    let dir = format!("faisca.eventLog.dir={}", logs.path().display());
    let (driver, address) = start_driver_with(&[
        "--executors",
        "1",
        "--conf",
        "faisca.ui.port=0",
        "--conf",
        "faisca.eventLog.enabled=true",
        "--conf",
        &dir,
    ]);
    let mut processes = Processes(vec![driver]);
    let session = tpch_session(&address, &[], 1).await;
    let rows = faisca::client::collect(session.execute_sql(QUERY).await.unwrap().batches)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    // The job's end closes a segment; once it is on disk, SIGKILL loses nothing of the job.
    assert!(
        crate::cli::wait_until(|| written_job_end(logs.path())),
        "no event log segment ever held the job's end"
    );
    processes.0[0].kill().unwrap();
    processes.0[0].wait().unwrap();

    let (history, url) = start_history(logs.path());
    processes.0.push(history);
    let apps = applications(&url, 1).await;
    assert_eq!(apps[0]["attempts"][0]["completed"], false, "{apps}");
    let app_id = apps[0]["id"].as_str().unwrap();
    let jobs = get_json(&format!("{url}/api/v1/applications/{app_id}/jobs")).await;
    let succeeded: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "SUCCEEDED")
        .collect();
    assert_eq!(succeeded.len(), 1, "{jobs}");
    assert!(
        succeeded[0]["description"]
            .as_str()
            .unwrap()
            .contains("l_returnflag")
    );
    let (_, page) = get(&url).await;
    assert!(page.contains("class=\"state\">incomplete<"), "{page}");
    let (_, jobs_page) = get(&format!("{url}/history/{app_id}/jobs/")).await;
    assert!(jobs_page.contains("incomplete"), "{jobs_page}");
}
