//! The `processes` executor launcher: `faisca driver --executors N` starts its executors as child
//! processes, replaces one that dies, scales down through decommission, and leaves no process
//! behind however the driver ends. Child processes are found through `/proc` (their parent).

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use faisca::Session;
use faisca_bench::tpch::queries;

use crate::cli::{Processes, start_driver_from, wait_until};
use crate::common::{faisca_bin, normalized_rows, tpch_expected};

/// Live processes whose parent is `parent` (zombies, already dead, are left out).
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((state, ppid)) = state_and_parent(pid)
            && ppid == parent
            && state != 'Z'
        {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// A process's state letter and parent, from `/proc/PID/stat` (`None` once it is gone).
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    state_and_parent(pid).is_none_or(|(state, _)| state == 'Z')
}

pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// `faisca driver --executors 2` with its executors' work dir under `work`.
pub(crate) fn driver_with_executors(work: &Path) -> (Child, String) {
    let work_dir = work.to_str().unwrap();
    start_driver_from(
        Command::new(faisca_bin()),
        &["--executors", "2", "--work-dir", work_dir],
    )
}

async fn session(address: &str) -> Session {
    crate::common::tpch_session(address, &[], 2).await
}

async fn answer(session: &Session, sql: &str) -> Vec<String> {
    let result = session.execute_sql(sql).await.unwrap();
    normalized_rows(&faisca::client::collect(result.batches).await.unwrap())
}

fn executor_ids(executors: &[faisca_proto::ExecutorInfo]) -> Vec<String> {
    executors.iter().map(|e| e.executor_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_launches_its_executors_replaces_a_killed_one_and_stops_them_on_sigterm() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = driver_with_executors(work.path());
    let driver_pid = driver.id();
    let mut procs = Processes(vec![driver]);
    let session = session(&address).await;
    let sql = queries::query(3).unwrap();
    let expected = tpch_expected(sql).await;
    assert_eq!(
        answer(&session, sql).await,
        expected,
        "no executor was started by hand"
    );
    let first = children_of(driver_pid);
    assert_eq!(first.len(), 2, "two executor processes: {first:?}");
    let before = executor_ids(
        &session
            .wait_for_executors(2, Duration::from_secs(5))
            .await
            .unwrap(),
    );

    // SIGKILL one: the driver starts a replacement, which registers as a new executor.
    signal(first[0], "KILL");
    assert!(
        wait_until(|| {
            let now = children_of(driver_pid);
            now.len() == 2 && !now.contains(&first[0])
        }),
        "the killed executor was not replaced: {:?}",
        children_of(driver_pid)
    );
    let mut after = Vec::new();
    for _ in 0..600 {
        after = executor_ids(
            &session
                .wait_for_executors(2, Duration::from_secs(60))
                .await
                .unwrap(),
        );
        if after.len() == 2 && after.iter().any(|id| !before.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after.len() == 2 && after.iter().any(|id| !before.contains(id)),
        "the replacement registered: before {before:?}, after {after:?}"
    );
    assert_eq!(
        answer(&session, sql).await,
        expected,
        "after the replacement"
    );
    session.stop().await;

    // SIGTERM the driver: it stops its executors and exits; none is left.
    let children = children_of(driver_pid);
    signal(driver_pid, "TERM");
    let driver = &mut procs.0[0];
    assert!(
        wait_until(|| driver.try_wait().unwrap().is_some()),
        "the driver did not exit on SIGTERM"
    );
    assert!(
        wait_until(|| children.iter().all(|&pid| gone(pid))),
        "executor processes outlived their driver: {children:?}"
    );
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "executor work dirs left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_exit_when_their_driver_is_killed() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = driver_with_executors(work.path());
    let driver_pid = driver.id();
    let mut procs = Processes(vec![driver]);
    let session = Session::builder().master(&address).build().await.unwrap();
    session
        .wait_for_executors(2, Duration::from_secs(60))
        .await
        .unwrap();
    let children = children_of(driver_pid);
    assert_eq!(children.len(), 2, "{children:?}");
    // SIGKILL: the driver cannot stop anything; its executors notice by themselves.
    procs.0[0].kill().unwrap();
    procs.0[0].wait().unwrap();
    assert!(
        wait_until(|| children.iter().all(|&pid| gone(pid))),
        "executor processes outlived their killed driver: {children:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_fewer_executors_decommissions_one_and_does_not_replace_it() {
    use faisca::driver::actor::Message;
    use faisca::driver::launcher::processes::{ProcessLauncher, ProcessLauncherOptions};
    let work = tempfile::tempdir().unwrap();
    let config = faisca::FaiscaConfig::from_pairs([("faisca.executor.instances", "2")]).unwrap();
    let options =
        ProcessLauncherOptions::from_config(faisca_bin(), work.path().to_path_buf(), &config)
            .unwrap();
    let driver = faisca::driver::DriverServer::start(faisca::driver::DriverOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise_host: None,
        config,
        health_bind: None,
        launcher: Some(Box::new(ProcessLauncher::new(options).unwrap())),
        ui_by_default: false,
        metrics_bind: None,
    })
    .await
    .unwrap();
    let session = Session::builder()
        .master(driver.address())
        .build()
        .await
        .unwrap();
    let both = session
        .wait_for_executors(2, Duration::from_secs(60))
        .await
        .unwrap();
    let me = std::process::id();
    let launched = children_of(me)
        .into_iter()
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(driver.address()))
        })
        .collect::<Vec<_>>();
    assert_eq!(launched.len(), 2, "{launched:?}");
    driver.handle().send(Message::RequestExecutors { total: 1 });
    let mut left = both.clone();
    for _ in 0..600 {
        left = session
            .wait_for_executors(1, Duration::from_secs(60))
            .await
            .unwrap();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "one executor left: {left:?}");
    assert_eq!(left[0].state, "active");
    // The other exited (status 0, not replaced): one launched process is gone for good.
    assert!(
        wait_until(|| launched.iter().filter(|&&pid| gone(pid)).count() == 1),
        "{launched:?}"
    );
    session.stop().await;
    driver.shutdown().await;
    assert!(
        wait_until(|| launched.iter().all(|&pid| gone(pid))),
        "{launched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_allocation_scales_executor_processes_with_the_backlog() {
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().to_str().unwrap();
    let (driver, address) = start_driver_from(
        Command::new(faisca_bin()),
        &[
            "--work-dir",
            work_dir,
            "--conf",
            "faisca.dynamicAllocation.enabled=true",
            "--conf",
            "faisca.dynamicAllocation.minExecutors=1",
            "--conf",
            "faisca.dynamicAllocation.maxExecutors=3",
            "--conf",
            "faisca.dynamicAllocation.executorIdleTimeout=1s",
            "--conf",
            "faisca.dynamicAllocation.schedulerBacklogTimeout=200ms",
        ],
    );
    let driver_pid = driver.id();
    let _procs = Processes(vec![driver]);
    // Many slowed-down reduce tasks: a backlog on one executor.
    let config = [
        ("faisca.shuffle.partitions", "12"),
        ("faisca.test.taskDelay", "*:300ms"),
    ];
    let session = crate::common::tpch_session(&address, &config, 1).await;
    assert_eq!(children_of(driver_pid).len(), 1, "minExecutors");
    let sql = "select l_returnflag, count(*), sum(l_quantity) from lineitem group by l_returnflag";
    let expected = tpch_expected(sql).await;
    let query = answer(&session, sql);
    tokio::pin!(query);
    let mut most = 0;
    let rows = loop {
        tokio::select! {
            rows = &mut query => break rows,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                most = most.max(children_of(driver_pid).len());
            }
        }
    };
    assert_eq!(rows, expected);
    assert!(
        most >= 2,
        "the backlog started executor processes (at most {most})"
    );
    assert!(most <= 3, "maxExecutors (at most {most})");
    assert!(
        wait_until(|| children_of(driver_pid).len() == 1),
        "idle executors decommissioned down to minExecutors: {:?}",
        children_of(driver_pid)
    );
    session.stop().await;
}
