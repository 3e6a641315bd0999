//! Graceful decommission with real processes: an executor that gets SIGTERM in the middle of a
//! multi-stage TPC-H query takes no new tasks, keeps serving the shuffle output the job still
//! reads, and exits 0 once the driver releases it — the job re-runs nothing. With a grace period
//! shorter than the job, what it held is re-run and the answer is still right.
//!
//! The victim runs alone until it has finished map tasks, so that the job really needs its
//! output; then two more executors join and the victim gets SIGTERM. Every task waits a little
//! (`faisca.test.taskDelay`) so that the job is still running while the test looks.

use std::process::{Child, Command};
use std::time::Duration;

use faisca::jobs::{JobInfo, JobState};
use faisca_bench::tpch::queries;

use crate::cli::{
    Processes, faisca_status_lines, start_driver_with, start_executor_with, wait_until,
};
use crate::common::{normalized_rows, tpch_expected};
use crate::health::{free_port, request};

const QUERY: usize = 9;

/// Several map tasks per table (256 KiB splits), every join shuffled on both sides, three
/// shuffle partitions, and every task taking a moment.
const SETTINGS: &[(&str, &str)] = &[
    ("faisca.files.maxPartitionBytes", "256k"),
    ("faisca.files.openCostInBytes", "0"),
    ("faisca.shuffle.partitions", "3"),
    ("faisca.test.taskDelay", "*:100ms"),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "0",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "0",
    ),
];

struct Outcome {
    info: JobInfo,
    /// The job as `faisca status --json JOB` shows it.
    shown: serde_json::Value,
    /// The victim's exit status.
    exit: std::process::ExitStatus,
    /// `faisca status --executors --json` while the victim was decommissioning.
    shown_decommissioning: bool,
    /// `/readyz` of the victim while it was decommissioning: (status, body).
    readyz: Option<(u16, String)>,
    /// The executors left after the job.
    left: Vec<String>,
    /// The victim among the departed executors in `faisca status --executors --json`.
    departure: Option<serde_json::Value>,
}

fn executor_state(address: &str, id: &str) -> Option<String> {
    faisca_status_lines(address, &["--executors"])
        .into_iter()
        .find(|e| e["executor_id"] == id)
        .map(|e| e["state"].as_str().unwrap().to_string())
}

/// Run TPC-H Q9, SIGTERM executor `victim` (grace period `grace`) once it finished map tasks
/// and two more executors joined; check the answer.
async fn decommission_during_query(grace: &str) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver_with(&[]);
    let mut procs = Processes(vec![driver]);
    let health = free_port();
    let grace_conf = format!("faisca.executor.decommission.gracePeriod={grace}");
    let victim_args = [
        "--id",
        "victim",
        "--health-port",
        &health.to_string(),
        "--conf",
        &grace_conf,
    ];
    let mut victim: Child = start_executor_with(&address, 1, work.path(), &victim_args);
    let session = crate::common::tpch_session(&address, SETTINGS, 1).await;
    let sql = queries::query(QUERY).unwrap();
    let result = session.execute_sql(sql).await.unwrap();
    let job = result.job_id.clone().unwrap();
    // The victim alone has finished map tasks whose output a later stage reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let info = session.client().job(&job).await.unwrap();
        assert_eq!(info.state, JobState::Running, "{info:?}");
        if info
            .stages
            .iter()
            .filter(|s| s.inputs.is_empty())
            .map(|s| s.done)
            .sum::<u32>()
            >= 2
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        procs
            .0
            .push(start_executor_with(&address, 1, work.path(), &[]));
    }
    session
        .wait_for_executors(3, Duration::from_secs(60))
        .await
        .unwrap();
    let sigterm = Command::new("kill")
        .args(["-TERM", &victim.id().to_string()])
        .status()
        .unwrap();
    assert!(sigterm.success());
    // While it decommissions: `faisca status` and `/readyz` say so.
    let mut shown_decommissioning = false;
    let mut readyz = None;
    wait_until(|| {
        if victim.try_wait().unwrap().is_some() {
            return true;
        }
        if !shown_decommissioning {
            shown_decommissioning =
                executor_state(&address, "victim").as_deref() == Some("decommissioning");
        }
        if readyz.is_none()
            && let Some(answer) = request(health, "GET", "/readyz")
            && answer.0 == 503
        {
            readyz = Some(answer);
        }
        shown_decommissioning && readyz.is_some()
    });
    let rows = faisca::client::collect(result.batches).await.unwrap();
    assert_eq!(
        normalized_rows(&rows),
        tpch_expected(sql).await,
        "answer with a decommission"
    );
    let mut exit = None;
    assert!(
        wait_until(|| {
            exit = victim.try_wait().unwrap();
            exit.is_some()
        }),
        "the victim never exited"
    );
    let info = session.client().job(&job).await.unwrap();
    let shown = faisca_status_lines(&address, &[&job]).remove(0);
    let shown_executors = faisca_status_lines(&address, &["--executors"]);
    let left = shown_executors
        .iter()
        .filter(|e| e["state"] == "active" || e["state"] == "decommissioning")
        .map(|e| e["executor_id"].as_str().unwrap().to_string())
        .collect();
    let departure = shown_executors
        .into_iter()
        .find(|e| e["executor_id"] == "victim" && e["state"] == "exited");
    session.stop().await;
    drop(procs);
    Outcome {
        info,
        shown,
        exit: exit.unwrap(),
        shown_decommissioning,
        readyz,
        left,
        departure,
    }
}

fn total(info: &JobInfo, field: impl Fn(&faisca::jobs::StageInfo) -> u32) -> u32 {
    info.stages.iter().map(field).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_executor_serves_its_output_until_released_and_nothing_is_rerun() {
    // A grace period far longer than the job: only a release by the driver ends it.
    let outcome = decommission_during_query("600s").await;
    let info = &outcome.info;
    assert_eq!(info.state, JobState::Succeeded);
    assert_eq!(total(info, |s| s.failed_attempts), 0, "{info:?}");
    assert_eq!(total(info, |s| s.rerun_tasks), 0, "{info:?}");
    assert_eq!(total(info, |s| s.fetch_failures), 0, "{info:?}");
    // `faisca status --json` reports the same.
    for field in ["failed_attempts", "rerun_tasks", "fetch_failures"] {
        let shown: u64 = outcome.shown["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[field].as_u64().unwrap())
            .sum();
        assert_eq!(shown, 0, "{field}: {}", outcome.shown);
    }
    assert_eq!(outcome.exit.code(), Some(0), "the victim exits 0");
    assert!(
        outcome.shown_decommissioning,
        "faisca status showed it decommissioning"
    );
    let (code, body) = outcome
        .readyz
        .expect("/readyz answered while decommissioning");
    assert_eq!(code, 503);
    assert!(body.contains("decommissioning"), "{body}");
    assert!(
        !outcome.left.contains(&"victim".to_string()),
        "gone from faisca status: {:?}",
        outcome.left
    );
    let departure = outcome.departure.expect("listed as departed");
    assert!(
        departure["reason"]
            .as_str()
            .unwrap()
            .contains("stream closed"),
        "{departure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_period_shorter_than_the_job_reruns_what_the_executor_held() {
    let outcome = decommission_during_query("100ms").await;
    let info = &outcome.info;
    assert_eq!(info.state, JobState::Succeeded);
    assert!(
        total(info, |s| s.rerun_tasks) > 0,
        "the victim's needed output ran again: {info:?}"
    );
    assert_eq!(outcome.exit.code(), Some(0), "the victim exits 0");
}
