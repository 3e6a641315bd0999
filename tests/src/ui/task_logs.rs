//! Task logs and metrics ports, with a driver and an executor as processes of the `faisca`
//! binary (whose log set-up keeps each task's lines): the UI fetches a running and a finished
//! task's lines from the executor, the stage page links them, a lost executor's are gone with
//! it; the driver's and the executor's `--metrics-port` serve `/metrics` alone, and the
//! executor's counters move by exactly the tasks it ran.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::openapi::OpenApi;
use super::prometheus::{delta, parse};
use super::{QUERY, assert_valid, free_port_pair, get, get_json};
use crate::cli::{Processes, start_driver_with, start_executor_with};
use crate::common::tpch_session;

const TASK_LOG_PATH: &str =
    "/applications/{appId}/stages/{stageId}/{stageAttemptId}/tasks/{taskId}/log";

/// Poll `url`'s JSON until `pick` finds something (a minute at most).
async fn wait_for<T>(url: &str, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(url).await;
        if status == 200
            && let Some(found) = pick(&serde_json::from_str(&body).unwrap())
        {
            return found;
        }
        assert!(Instant::now() < deadline, "{url} never showed it: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `(stageId, taskId)` of a running task attempt of the job's stage 1 (the gated one).
fn running_task(stages: &Value) -> Option<(u64, u64)> {
    stages.as_array()?.iter().find_map(|stage| {
        if stage["jobStageIndex"] != 1 {
            return None;
        }
        let tasks = stage["tasks"].as_object()?;
        tasks.values().find(|t| t["status"] == "RUNNING").map(|t| {
            (
                stage["stageId"].as_u64().unwrap(),
                t["taskId"].as_u64().unwrap(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_logs_come_from_their_executor_and_metrics_ports_count_its_tasks() {
    let work = tempfile::tempdir().unwrap();
    let gate = work.path().join("open");
    let driver_metrics = free_port_pair();
    let executor_metrics = driver_metrics + 1;
    let (driver, address) = start_driver_with(&[
        "--conf",
        "faisca.ui.port=0",
        "--metrics-port",
        &driver_metrics.to_string(),
    ]);
    let mut processes = Processes(vec![driver]);
    processes.0.push(start_executor_with(
        &address,
        2,
        work.path(),
        &["--metrics-port", &executor_metrics.to_string()],
    ));
    let rule = format!("1:{}", gate.display());
    let session = tpch_session(&address, &[("faisca.test.taskGate", rule.as_str())], 1).await;
    let ui = session.ui_url().await.unwrap().unwrap();
    let app = get_json(&format!("{ui}/api/v1/applications")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = format!("{ui}/api/v1/applications/{app}");
    let driver_url = format!("http://127.0.0.1:{driver_metrics}/metrics");
    let executor_url = format!("http://127.0.0.1:{executor_metrics}/metrics");
    let executor_before = parse(&get(&executor_url).await.1);
    let driver_before = parse(&get(&driver_url).await.1);

    let result = session.execute_sql(QUERY).await.unwrap();
    let (stage, task) = wait_for(&format!("{api}/stages?details=true"), running_task).await;
    // The running task's lines so far: it started, and waits at the gate.
    let log_url = format!("{api}/stages/{stage}/0/tasks/{task}/log");
    let log = wait_for(&log_url, |log| {
        let text = log["lines"].to_string();
        text.contains("faisca.test.taskGate").then(|| log.clone())
    })
    .await;
    assert_valid(&OpenApi::load(), TASK_LOG_PATH, &log);
    let lines: Vec<&str> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(lines.iter().any(|l| l.contains("task started")), "{log}");
    assert!(
        lines.iter().any(|l| l.contains("faisca.test.taskGate")),
        "{log}"
    );
    assert!(!lines.iter().any(|l| l.contains("task finished")), "{log}");
    let running = parse(&get(&executor_url).await.1);
    assert!(running["faisca_tasks_running"] >= 1.0, "{running:?}");

    std::fs::write(&gate, b"").unwrap();
    let batches = faisca::client::collect(result.batches).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    // The finished task's log ends with what it produced; the stage page links it.
    let log = get_json(&log_url).await;
    let last = log["lines"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        last.contains("task finished") && last.contains("rows="),
        "{log}"
    );
    let (_, stage_page) = get(&format!("{ui}/stages/stage/?id={stage}")).await;
    let link = format!("/stages/stage/log/?id={stage}&amp;taskId={task}");
    assert!(stage_page.contains(&link), "{stage_page}");
    let (status, log_page) = get(&format!("{ui}/stages/stage/log/?id={stage}&taskId={task}")).await;
    assert_eq!(status, 200, "{log_page}");
    assert!(log_page.contains("id=\"task-log\""), "{log_page}");
    assert!(log_page.contains("task finished"), "{log_page}");
    let (status, missing) = get(&format!("{api}/stages/{stage}/0/tasks/999999/log")).await;
    assert_eq!(status, 404, "{missing}");

    // The executor ran every task of the job: its counters moved by exactly the job's tasks,
    // as the driver's did.
    let jobs = get_json(&format!("{api}/jobs")).await;
    let tasks = jobs[0]["numCompletedTasks"].as_u64().unwrap() as f64;
    assert!(tasks >= 3.0, "{jobs}");
    let executor_after = parse(&get(&executor_url).await.1);
    let driver_after = parse(&get(&driver_url).await.1);
    for key in [
        "faisca_tasks_total{state=\"started\"}",
        "faisca_tasks_total{state=\"success\"}",
        "faisca_task_duration_seconds_count",
    ] {
        assert_eq!(
            delta(&executor_before, &executor_after, key),
            tasks,
            "{key}"
        );
        assert_eq!(delta(&driver_before, &driver_after, key), tasks, "{key}");
    }
    let rows = "faisca_task_output_rows_total";
    assert_eq!(
        delta(&executor_before, &executor_after, rows),
        delta(&driver_before, &driver_after, rows)
    );
    assert!(executor_after["faisca_task_log_held_bytes"] > 0.0);
    assert_eq!(driver_after["faisca_jobs_total{state=\"succeeded\"}"], 1.0);
    // A metrics port serves nothing else.
    for url in [&driver_url, &executor_url] {
        let (status, body) = get(&url.replace("/metrics", "/jobs/")).await;
        assert_eq!(status, 404, "{body}");
    }

    // Once the executor is gone, so are its task logs: the UI says so instead of waiting.
    processes.0[1].kill().unwrap();
    processes.0[1].wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(&log_url).await;
        if status == 410 {
            assert!(body.contains("left"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.stop().await;
}
