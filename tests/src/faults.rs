//! Fault tolerance and job control: injected task failures, executors killed with SIGKILL in the
//! middle of a shuffle, cancellation with `faisca kill` and Ctrl-C, many concurrent jobs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use faisca::Session;
use faisca::jobs::{JobInfo, JobState, StageInfo};
use faisca_bench::tpch::queries;

use crate::cli::{Processes, start_driver_with, start_executor};
use crate::common::{faisca_bin, normalized_rows, tpch_dir, tpch_expected};

async fn session(master: &str, config: &[(&str, &str)]) -> Session {
    crate::common::tpch_session(master, config, 1).await
}

/// Run `sql`, returning its rows and the job's final status.
async fn run(session: &Session, sql: &str) -> (faisca::Result<Vec<RecordBatch>>, JobInfo) {
    let result = session.execute_sql(sql).await.unwrap();
    let job = result.job_id.clone().expect("a query runs as a job");
    let rows = faisca::client::collect(result.batches).await;
    (rows, session.client().job(&job).await.unwrap())
}

fn total(info: &JobInfo, field: impl Fn(&StageInfo) -> u32) -> u32 {
    info.stages.iter().map(field).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_task_failures_are_retried_and_the_answer_is_right() {
    let sql = queries::query(3).unwrap();
    // The first two attempts of every task of every stage fail; the third succeeds.
    let session = session("local[2]", &[("faisca.test.failTasks", "*:2")]).await;
    let (rows, info) = run(&session, sql).await;
    assert_eq!(normalized_rows(&rows.unwrap()), tpch_expected(sql).await);
    assert_eq!(info.state, JobState::Succeeded);
    for stage in &info.stages {
        assert_eq!(stage.attempts, 3 * stage.tasks, "{stage:?}");
        assert_eq!(stage.failed_attempts, 2 * stage.tasks, "{stage:?}");
    }
    assert!(
        info.failures
            .iter()
            .all(|f| f.message.contains("injected failure")),
        "{:?}",
        info.failures
    );
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_fails_the_job_at_once_with_its_message() {
    // A user error, and an internal error another attempt would hit again (a plan an executor
    // cannot build): neither is retried as if it were a fault.
    for kind in ["user", "plan"] {
        non_retryable_error_fails_at_once(kind).await;
    }
}

async fn non_retryable_error_fails_at_once(kind: &str) {
    let rule = format!("0:1:{kind}");
    let session = session("local[2]", &[("faisca.test.failTasks", rule.as_str())]).await;
    let (rows, info) = run(&session, queries::query(1).unwrap()).await;
    let error = rows.unwrap_err().to_string();
    assert!(
        error.contains("injected failure of attempt 0 of task 0/"),
        "{error}"
    );
    assert!(!error.contains("failed 4 times"), "{error}");
    assert_eq!(info.state, JobState::Failed);
    assert!(info.error.contains("injected failure"), "{}", info.error);
    // No task was tried a second time.
    assert!(info.failures.iter().all(|f| f.attempt == 0), "{info:?}");
    assert_eq!(
        total(&info, |s| s.attempts),
        total(&info, |s| s.failed_attempts)
            + total(&info, |s| s.done)
            + total(&info, |s| s.running)
    );
    session.stop().await;
}

/// A shuffle-heavy query: two scans hash-shuffled into a join, an aggregation, a sort.
const SHUFFLE_HEAVY: &str = "SELECT f.g, d.w, count(*) AS n, sum(f.v) AS s \
     FROM facts f JOIN dims d ON f.k = d.k GROUP BY f.g, d.w ORDER BY f.g, d.w";

/// Session settings for [`SHUFFLE_HEAVY`]: one task per file, both join sides shuffled, and every
/// task taking a moment so that an executor can be killed at a chosen point.
const SHUFFLE_HEAVY_CONFIG: &[(&str, &str)] = &[
    ("faisca.files.maxPartitionBytes", "1k"),
    ("faisca.files.openCostInBytes", "0"),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "0",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "0",
    ),
    ("faisca.test.taskDelay", "*:100ms"),
];

/// Write `files` Parquet files of `rows` rows each into `dir`: columns `k` (row number) and the
/// given derived columns.
/// A column computed from the row number.
type DerivedColumn = (&'static str, fn(i64) -> i64);

fn write_table(dir: &Path, files: usize, rows: usize, columns: &[DerivedColumn]) {
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::fs::create_dir_all(dir).unwrap();
    let mut fields = vec![Field::new("k", DataType::Int64, false)];
    fields.extend(
        columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Int64, false)),
    );
    let schema = std::sync::Arc::new(Schema::new(fields));
    for f in 0..files {
        let keys: Vec<i64> = ((f * rows) as i64..((f + 1) * rows) as i64).collect();
        let mut arrays: Vec<ArrayRef> = vec![std::sync::Arc::new(Int64Array::from(keys.clone()))];
        for (_, derive) in columns {
            let values: Vec<i64> = keys.iter().map(|&k| derive(k)).collect();
            arrays.push(std::sync::Arc::new(Int64Array::from(values)));
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        let file = std::fs::File::create(dir.join(format!("part-{f}.parquet"))).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
}

/// Tables `facts` (12 files) and `dims` (6 files) under `dir`, as DDL statements.
fn shuffle_heavy_tables(dir: &Path) -> Vec<String> {
    write_table(
        &dir.join("facts"),
        12,
        4000,
        &[("g", |k| k % 7), ("v", |k| k * 3)],
    );
    write_table(&dir.join("dims"), 6, 8000, &[("w", |k| k % 13)]);
    ["facts", "dims"]
        .iter()
        .map(|t| {
            format!(
                "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}/'",
                dir.join(t).display()
            )
        })
        .collect()
}

/// Poll the job every 10 ms until `ready` holds (at most 60 s).
async fn wait_for_job(session: &Session, job: &str, ready: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = session.client().job(job).await.unwrap();
        if ready(&info) {
            return info;
        }
        assert!(
            info.state == JobState::Running && Instant::now() < deadline,
            "the job ended or stalled before the moment to kill an executor: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stage that reads shuffle output, whose inputs are all complete, has a task running.
fn reading_shuffle(info: &JobInfo) -> bool {
    info.stages.iter().any(|s| {
        s.running > 0
            && !s.inputs.is_empty()
            && s.inputs
                .iter()
                .all(|&i| info.stages[i as usize].done == info.stages[i as usize].tasks)
    })
}

/// A map stage (no inputs) is part done and running.
fn mid_map_stage(info: &JobInfo) -> bool {
    info.stages
        .iter()
        .any(|s| s.inputs.is_empty() && s.done >= 2 && s.running > 0 && s.done < s.tasks)
}

fn status_json(address: &str, job: &str) -> String {
    crate::cli::faisca_status_json(address, &[job])
}

/// A driver and three one-core executor processes, a session, the shuffle-heavy tables and
/// DataFusion's answer to the query.
struct ShuffleHeavyCluster {
    _work: tempfile::TempDir,
    executor_dir: std::path::PathBuf,
    address: String,
    processes: Processes,
    executors: Vec<std::process::Child>,
    session: Session,
    expected: Vec<String>,
}

impl ShuffleHeavyCluster {
    async fn start() -> Self {
        let work = tempfile::tempdir().unwrap();
        let tables = shuffle_heavy_tables(&work.path().join("data"));
        let (driver, address) = start_driver_with(&[]);
        let executor_dir = work.path().join("executors");
        let executors: Vec<_> = (0..3)
            .map(|_| start_executor(&address, 1, &executor_dir))
            .collect();
        let session = session(&address, SHUFFLE_HEAVY_CONFIG).await;
        session
            .wait_for_executors(3, Duration::from_secs(30))
            .await
            .unwrap();
        let ctx = SessionContext::new();
        for ddl in &tables {
            session.execute_sql(ddl).await.unwrap();
            ctx.sql(ddl).await.unwrap().collect().await.unwrap();
        }
        let expected = normalized_rows(
            &ctx.sql(SHUFFLE_HEAVY)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        assert_eq!(expected.len(), 91);
        ShuffleHeavyCluster {
            _work: work,
            executor_dir,
            address,
            processes: Processes(vec![driver]),
            executors,
            session,
            expected,
        }
    }

    /// Run the query, SIGKILL executor `victim` once the job reaches `moment`; returns the job
    /// after checking its answer.
    async fn kill_during(&mut self, moment: fn(&JobInfo) -> bool, victim: usize) -> JobInfo {
        let result = self.session.execute_sql(SHUFFLE_HEAVY).await.unwrap();
        let job = result.job_id.clone().unwrap();
        wait_for_job(&self.session, &job, moment).await;
        self.executors[victim].kill().unwrap();
        let rows = faisca::client::collect(result.batches).await.unwrap();
        assert_eq!(
            normalized_rows(&rows),
            self.expected,
            "answer after the kill"
        );
        self.session.client().job(&job).await.unwrap()
    }

    async fn stop(mut self) {
        self.session.stop().await;
        self.processes.0.append(&mut self.executors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_while_the_join_reads_shuffle_output_does_not_change_the_answer() {
    let mut cluster = ShuffleHeavyCluster::start().await;
    // The map stages finished; the join reads their output.
    let info = cluster.kill_during(reading_shuffle, 0).await;
    let map_reruns: u32 = info
        .stages
        .iter()
        .filter(|s| s.inputs.is_empty())
        .map(|s| s.rerun_tasks)
        .sum();
    assert!(map_reruns > 0, "the lost map outputs were re-run: {info:?}");
    // `faisca status` shows the re-run tasks too.
    let json: serde_json::Value =
        serde_json::from_str(&status_json(&cluster.address, &info.job_id)).unwrap();
    assert_eq!(json["state"], "SUCCEEDED", "{json}");
    let shown: u64 = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rerun_tasks"].as_u64().unwrap())
        .sum();
    assert_eq!(shown, u64::from(total(&info, |s| s.rerun_tasks)), "{json}");
    // An executor that comes back registers as a new one.
    let back = start_executor(&cluster.address, 1, &cluster.executor_dir);
    cluster.executors.push(back);
    cluster
        .session
        .wait_for_executors(3, Duration::from_secs(30))
        .await
        .unwrap();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_during_a_map_stage_does_not_change_the_answer() {
    let mut cluster = ShuffleHeavyCluster::start().await;
    let info = cluster.kill_during(mid_map_stage, 1).await;
    assert!(
        total(&info, |s| s.failed_attempts) > 0 || total(&info, |s| s.rerun_tasks) > 0,
        "the killed executor's tasks ran again: {info:?}"
    );
    assert!(
        info.failures.iter().any(|f| f.message.contains("was lost")),
        "{:?}",
        info.failures
    );
    cluster.stop().await;
}

/// CPU seconds used so far by processes `pids` (from /proc).
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which ends with ')'): utime and stime are 12 and 13.
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
                + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
            ticks as f64 / 100.0
        })
        .sum()
}

/// Files under every executor's shuffle directory.
fn shuffle_files(work: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() { count(&path) } else { 1 }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    std::fs::read_dir(work)
        .map(|executors| {
            executors
                .flatten()
                .map(|e| count(&e.path().join("shuffle")))
                .sum()
        })
        .unwrap_or(0)
}

/// A job that keeps both executors busy for a long time, with shuffle files on disk.
fn long_job_script(dir: &Path) -> std::path::PathBuf {
    let lineitem = tpch_dir().join("lineitem");
    let script = dir.join("long.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{}/';\n\
             SELECT count(*) FROM lineitem a JOIN (SELECT * FROM lineitem UNION ALL SELECT * FROM lineitem \
             UNION ALL SELECT * FROM lineitem UNION ALL SELECT * FROM lineitem) b \
             ON a.l_orderkey + b.l_partkey < 0;\n",
            lineitem.display()
        ),
    )
    .unwrap();
    script
}

/// Start `faisca submit` of `script`; returns the process and the job id it printed.
fn start_submit(address: &str, script: &Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(faisca_bin())
        .args([
            "submit",
            "--master",
            address,
            "--name",
            "long-job",
            "--conf",
            "faisca.shuffle.inMemory=false",
            "--conf",
            "faisca.batchSize=1024",
        ])
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let job = loop {
        let line = lines.next().expect("submit printed the job id").unwrap();
        if let Some(rest) = line.strip_prefix("job ")
            && let Some(id) = rest.strip_suffix(" submitted")
        {
            break id.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, job)
}

/// Poll `done` every 50 ms until it holds; fails naming `what` after a minute (a bound for a
/// stall, far above what a loaded machine needs).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tasks of `job` running now, as `faisca status --json` shows them.
fn running_tasks(address: &str, job: &str) -> u64 {
    let info: serde_json::Value = serde_json::from_str(status_json(address, job).trim()).unwrap();
    info["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["running"].as_u64().unwrap_or(0))
        .sum()
}

/// The id of the driver's most recent job, once it has one.
fn latest_job(address: &str) -> Option<String> {
    let list = Command::new(faisca_bin())
        .args(["status", "--master", address, "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8(list.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    last["job_id"].as_str().map(str::to_string)
}

/// Wait until `job` runs tasks and its shuffle files are on disk.
fn wait_until_busy(address: &str, job: &str, work: &Path) {
    wait_for("the long job to run tasks and write shuffle files", || {
        shuffle_files(work) > 0 && running_tasks(address, job) > 0
    });
}

/// After a cancellation: the job is cancelled, the executors hold no shuffle file, and they
/// become idle. "Idle" is under 0.1 CPU s in half a second: a task still computing uses a core,
/// an idle executor next to nothing, so a loaded machine passes it as surely as a quiet one.
fn assert_stopped_and_clean(address: &str, job: &str, work: &Path, executors: &[u32]) {
    let json = status_json(address, job);
    assert!(json.contains("\"state\":\"CANCELLED\""), "{json}");
    assert_eq!(running_tasks(address, job), 0, "{json}");
    wait_for("the cancelled job's shuffle files to be removed", || {
        shuffle_files(work) == 0
    });
    wait_for("the executors to stop computing", || {
        let before = cpu_seconds(executors);
        std::thread::sleep(Duration::from_millis(500));
        cpu_seconds(executors) - before < 0.1
    });
}

/// A driver and two one-core executors with a long job's script; stops when dropped.
struct LongJobCluster {
    work: tempfile::TempDir,
    address: String,
    executors: Vec<u32>,
    script: std::path::PathBuf,
    _processes: Processes,
}

impl LongJobCluster {
    fn start() -> Self {
        let work = tempfile::tempdir().unwrap();
        let (driver, address) = start_driver_with(&[]);
        let mut processes = Processes(vec![driver]);
        processes.0.push(start_executor(&address, 1, work.path()));
        processes.0.push(start_executor(&address, 1, work.path()));
        let executors = processes.0[1..].iter().map(|c| c.id()).collect();
        let script = long_job_script(work.path());
        LongJobCluster {
            work,
            address,
            executors,
            script,
            _processes: processes,
        }
    }

    fn assert_stopped_and_clean(&self, job: &str) {
        assert_stopped_and_clean(&self.address, job, self.work.path(), &self.executors);
    }
}

/// Send SIGINT (Ctrl-C) to `child`.
fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn faisca_kill_cancels_a_long_job_and_removes_its_shuffle_files() {
    let cluster = LongJobCluster::start();
    let (mut submit, job) = start_submit(&cluster.address, &cluster.script);
    wait_until_busy(&cluster.address, &job, cluster.work.path());
    let kill = Command::new(faisca_bin())
        .args(["kill", "--master", &cluster.address, &job])
        .output()
        .unwrap();
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    assert_eq!(
        submit.wait().unwrap().code(),
        Some(1),
        "submit of a killed job exits non-zero"
    );
    cluster.assert_stopped_and_clean(&job);
    assert!(status_json(&cluster.address, &job).contains("\"name\":\"long-job\""));
}

#[test]
fn killing_an_ended_job_says_why_not() {
    let cluster = LongJobCluster::start();
    let (mut submit, job) = start_submit(&cluster.address, &cluster.script);
    wait_until_busy(&cluster.address, &job, cluster.work.path());
    let kill = |job: &str| {
        Command::new(faisca_bin())
            .args(["kill", "--master", &cluster.address, job])
            .output()
            .unwrap()
    };
    assert!(kill(&job).status.success());
    submit.wait().unwrap();
    let again = kill(&job);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already ended (cancelled)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn ctrl_c_in_faisca_submit_cancels_its_job() {
    let cluster = LongJobCluster::start();
    let (mut submit, job) = start_submit(&cluster.address, &cluster.script);
    wait_until_busy(&cluster.address, &job, cluster.work.path());
    interrupt(&submit);
    assert_eq!(submit.wait().unwrap().code(), Some(130));
    cluster.assert_stopped_and_clean(&job);
}

#[test]
fn ctrl_c_in_faisca_sql_cancels_its_job() {
    let cluster = LongJobCluster::start();
    let mut sql = Command::new(faisca_bin())
        .args(["sql", "--master", &cluster.address])
        .args(["--conf", "faisca.shuffle.inMemory=false"])
        .args(["--conf", "faisca.batchSize=1024", "-f"])
        .arg(&cluster.script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut job = None;
    wait_for("faisca sql to start its job", || {
        job = latest_job(&cluster.address);
        job.is_some()
    });
    let job = job.unwrap();
    wait_until_busy(&cluster.address, &job, cluster.work.path());
    interrupt(&sql);
    assert_eq!(sql.wait().unwrap().code(), Some(130));
    cluster.assert_stopped_and_clean(&job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_jobs_from_ten_sessions_are_all_right() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver_with(&["--conf", "faisca.driver.retainedJobs=40"]);
    let mut procs = Processes(vec![driver]);
    procs.0.push(start_executor(&address, 1, work.path()));
    procs.0.push(start_executor(&address, 1, work.path()));
    let sql = |k: usize| {
        format!(
            "SELECT count(*) AS n, sum(l_quantity) AS q FROM lineitem WHERE l_orderkey % 100 = {k}"
        )
    };
    let expected_rows: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for k in 0..100 {
            all.push(tpch_expected(&sql(k)).await);
        }
        all
    };
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(session(&address, &[]).await);
    }
    let jobs = sessions.iter().enumerate().flat_map(|(s, session)| {
        let sql = &sql;
        (0..10).map(move |j| {
            let k = s * 10 + j;
            async move {
                let result = session.execute_sql(&sql(k)).await.unwrap();
                let rows = faisca::client::collect(result.batches).await.unwrap();
                (k, normalized_rows(&rows))
            }
        })
    });
    let results = futures::future::join_all(jobs).await;
    assert_eq!(results.len(), 100);
    for (k, rows) in results {
        assert_eq!(rows, expected_rows[k], "job for remainder {k}");
    }
    // The driver keeps no running job and only the configured number of finished ones.
    let client = sessions[0].client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = client.list_jobs().await.unwrap();
        if jobs.iter().all(|j| j.state != JobState::Running) || Instant::now() > deadline {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        jobs.len(),
        40,
        "faisca.driver.retainedJobs bounds the history"
    );
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded),
        "{jobs:?}"
    );
    for session in &sessions {
        session.stop().await;
    }
    drop(procs);
}
