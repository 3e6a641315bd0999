//! A driver and executors as separate processes, queried with `faisca sql`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use faisca_bench::tpch::{data, queries};

use crate::common::{faisca_bin, tpch_dir};

/// Child processes killed when dropped.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `faisca driver` on a free port and return it with its address (read from its stderr).
pub fn start_driver() -> (Child, String) {
    start_driver_with(&[])
}

/// [`start_driver`] with extra arguments (e.g. `--conf k=v`).
pub fn start_driver_with(extra: &[&str]) -> (Child, String) {
    start_driver_from(Command::new(faisca_bin()), extra)
}

/// Start `faisca driver` from `command` (the `faisca` binary, perhaps with extra environment).
pub fn start_driver_from(command: Command, extra: &[&str]) -> (Child, String) {
    spawn_driver(command, extra, None)
}

/// [`start_driver_from`], keeping everything the driver prints on stderr in `log`.
pub fn start_driver_logging_to(
    command: Command,
    extra: &[&str],
    log: &std::path::Path,
) -> (Child, String) {
    spawn_driver(command, extra, Some(log))
}

fn spawn_driver(
    mut command: Command,
    extra: &[&str],
    log: Option<&std::path::Path>,
) -> (Child, String) {
    use std::io::Write;
    let mut log = log.map(|path| std::fs::File::create(path).expect("driver log file"));
    let mut driver = command
        .args(["driver", "--bind", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faisca driver");
    let stderr = driver.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("driver printed its address")
            .expect("utf-8");
        if let Some(file) = log.as_mut() {
            writeln!(file, "{line}").expect("driver log");
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Keep draining stderr so the driver never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(std::result::Result::ok) {
            if let Some(file) = log.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    });
    (driver, address)
}

/// Start an executor process with `cores` cores.
pub fn start_executor(driver: &str, cores: u32, work_dir: &std::path::Path) -> Child {
    start_executor_with(driver, cores, work_dir, &[])
}

/// [`start_executor`] with extra arguments.
pub fn start_executor_with(
    driver: &str,
    cores: u32,
    work_dir: &std::path::Path,
    extra: &[&str],
) -> Child {
    Command::new(faisca_bin())
        .args([
            "executor",
            "--driver",
            driver,
            "--cores",
            &cores.to_string(),
            "--memory",
            "1g",
            "--work-dir",
        ])
        .arg(work_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start faisca executor")
}

/// Poll `done` every 20 ms for up to a minute (a bound for a stall, not a timing); returns its
/// last answer.
pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// `faisca status --master ADDRESS --json ARGS…`: its stdout (one JSON object per line), after
/// checking that it succeeded.
pub fn faisca_status_json(address: &str, args: &[&str]) -> String {
    let out = Command::new(faisca_bin())
        .args(["status", "--master", address, "--json"])
        .args(args)
        .output()
        .expect("run faisca status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// [`faisca_status_json`], each line parsed.
pub fn faisca_status_lines(address: &str, args: &[&str]) -> Vec<serde_json::Value> {
    faisca_status_json(address, args)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

/// Run `faisca sql` and return (exit code, stdout, stderr).
pub fn faisca_sql(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(faisca_bin())
        .arg("sql")
        .args(args)
        .output()
        .expect("run faisca sql");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Split a CSV line, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// CSV rows with numbers rounded to 9 significant digits, sorted (header first).
fn normalized_csv(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let mut rows: Vec<String> = lines
        .map(|l| {
            csv_fields(l)
                .into_iter()
                .map(|f| match f.parse::<f64>() {
                    Ok(v) if f.contains('.') || f.contains('e') => format!("{v:.8e}"),
                    _ => f,
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    rows.insert(0, header);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_through_faisca_sql_against_driver_and_executor_processes() {
    let dir = tpch_dir();
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver();
    let mut procs = Processes(vec![driver]);
    procs.0.push(start_executor(&address, 1, work.path()));
    procs.0.push(start_executor(&address, 1, work.path()));
    let ddl = data::create_tables_sql(dir).join(";\n");
    let ctx = SessionContext::new();
    for stmt in data::create_tables_sql(dir) {
        ctx.sql(&stmt).await.unwrap().collect().await.unwrap();
    }
    for (i, sql) in queries::QUERIES.iter().enumerate() {
        let q = i + 1;
        let script = format!("{ddl};\n{sql}");
        let (code, stdout, stderr) = faisca_sql(&[
            "--master",
            &address,
            "--format",
            "csv",
            "--conf",
            "faisca.files.maxPartitionBytes=256k",
            // Shuffle through files here; the in-process TPC-H test keeps shuffle output in memory.
            "--conf",
            "faisca.shuffle.inMemory=false",
            "-e",
            &script,
        ]);
        assert_eq!(code, 0, "Q{q} failed: {stderr}");
        let expected_batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let schema = ctx.sql(sql).await.unwrap().schema().as_arrow().clone();
        let mut expected = Vec::new();
        faisca_cli::output::write(
            &mut expected,
            faisca_cli::output::Format::Csv,
            &std::sync::Arc::new(schema),
            &expected_batches,
        )
        .unwrap();
        assert_eq!(
            normalized_csv(&stdout),
            normalized_csv(&String::from_utf8(expected).unwrap()),
            "Q{q} differs"
        );
    }
    drop(procs);
}

#[test]
fn executor_work_dirs_are_their_own_and_removed_on_stop() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver();
    let mut procs = Processes(vec![driver]);
    procs.0.push(start_executor(&address, 1, work.path()));
    procs.0.push(start_executor(&address, 2, work.path()));
    // http:// addresses work as well as faisca:// ones.
    let http = address.replace("faisca://", "http://");
    let (code, stdout, stderr) = faisca_sql(&[
        "--master",
        &http,
        "--format",
        "csv",
        "-e",
        "select 41 + 1 as answer",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "answer\n42\n");
    let count = || std::fs::read_dir(work.path()).unwrap().count();
    let wait_for = |want: usize| {
        wait_until(|| count() == want);
        count()
    };
    assert_eq!(
        wait_for(2),
        2,
        "each executor keeps its files in its own subdirectory"
    );
    // Ctrl-C stops an executor cleanly: its subdirectory goes away.
    for child in &procs.0[1..] {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
    }
    assert_eq!(
        wait_for(0),
        0,
        "stopped executors leave nothing in the work dir"
    );
    drop(procs);
}

#[test]
fn an_executor_started_before_its_driver_registers_once_the_driver_is_up() {
    // Find a free port, then start the executor against it before any driver listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("faisca://127.0.0.1:{port}");
    let work = tempfile::tempdir().unwrap();
    // The driver starts once the executor says it could not reach it and retries.
    let mut executor = Command::new(faisca_bin())
        .args([
            "executor", "--driver", &address, "--cores", "1", "--memory", "1g",
        ])
        .arg("--work-dir")
        .arg(work.path())
        .env("FAISCA_LOG", "faisca_executor=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faisca executor");
    let mut lines = BufReader::new(executor.stderr.take().expect("piped")).lines();
    let mut procs = Processes(vec![executor]);
    let retrying = lines
        .by_ref()
        .map_while(std::result::Result::ok)
        .any(|line| line.contains("not reachable yet"));
    assert!(retrying, "the executor never said it retries");
    std::thread::spawn(move || for _ in lines {});
    let driver = Command::new(faisca_bin())
        .args(["driver", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start faisca driver");
    procs.0.push(driver);
    wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let (code, stdout, stderr) = faisca_sql(&[
        "--master",
        &address,
        "--format",
        "csv",
        "--conf",
        "faisca.client.executorWaitTimeout=20s",
        "-e",
        "select 'late' as driver",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "driver\nlate\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_dropped_unread_releases_the_jobs_shuffle_files() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver();
    let mut procs = Processes(vec![driver]);
    procs.0.push(start_executor(&address, 2, work.path()));
    let session = faisca::Session::builder()
        .master(address.clone())
        .config("faisca.shuffle.inMemory", "false")
        .build()
        .await
        .unwrap();
    session
        .wait_for_executors(1, Duration::from_secs(20))
        .await
        .unwrap();
    for ddl in data::create_tables_sql(tpch_dir()) {
        session.execute_sql(&ddl).await.unwrap();
    }
    let shuffle_dirs = || -> usize {
        std::fs::read_dir(work.path())
            .unwrap()
            .map(|executor| {
                std::fs::read_dir(executor.unwrap().path().join("shuffle"))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum()
    };
    // Read one job fully, and drop another without reading a row.
    let read = session
        .execute_sql("SELECT l_returnflag, count(*) FROM lineitem GROUP BY 1")
        .await
        .unwrap();
    assert_eq!(
        faisca::client::collect(read.batches)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        3
    );
    let unread = session
        .execute_sql("SELECT l_linestatus, count(*) FROM lineitem GROUP BY 1")
        .await
        .unwrap();
    assert!(unread.stages.as_ref().unwrap().len() > 1);
    drop(unread);
    let deadline = Instant::now() + Duration::from_secs(60);
    while shuffle_dirs() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<String> = paths_under(work.path());
    assert_eq!(
        shuffle_dirs(),
        0,
        "shuffle files of finished or abandoned jobs are removed; left: {left:?}"
    );
    session.stop().await;
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_executor_is_dropped_after_the_heartbeat_timeout() {
    let work = tempfile::tempdir().unwrap();
    let (driver, address) = start_driver_with(&["--conf", "faisca.executor.heartbeatTimeout=1s"]);
    let mut procs = Processes(vec![driver]);
    let fast_heartbeats = ["--conf", "faisca.executor.heartbeatInterval=200ms"];
    procs.0.push(start_executor_with(
        &address,
        1,
        work.path(),
        &fast_heartbeats,
    ));
    procs.0.push(start_executor_with(
        &address,
        1,
        work.path(),
        &fast_heartbeats,
    ));
    let session = faisca::Session::builder()
        .master(address.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(
        session
            .wait_for_executors(2, Duration::from_secs(20))
            .await
            .unwrap()
            .len(),
        2
    );
    // Freeze one executor: its TCP connection stays open, but it falls silent.
    let frozen = procs.0[2].id().to_string();
    Command::new("kill")
        .args(["-STOP", &frozen])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left = 2;
    while left != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = session
            .wait_for_executors(0, Duration::from_secs(5))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(left, 1, "the silent executor was not dropped");
    // The cluster keeps working on the other executor.
    let result = session
        .execute_sql("SELECT count(*) AS n FROM (VALUES (1), (2), (3)) t(x)")
        .await
        .unwrap();
    let rows = faisca::client::collect(result.batches).await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    // Once thawed, the dropped executor finds its connection closed and exits with an error.
    Command::new("kill")
        .args(["-CONT", &frozen])
        .status()
        .unwrap();
    let mut status = None;
    wait_until(|| {
        status = procs.0[2].try_wait().unwrap();
        status.is_some()
    });
    assert!(matches!(status, Some(s) if !s.success()), "{status:?}");
    session.stop().await;
    drop(procs);
}

/// Every path under `root`, for failure messages.
fn paths_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn json_logs_are_one_object_per_line_with_the_lines_job_and_task() {
    let output = Command::new(faisca_bin())
        .args(["--log-format", "json", "sql", "--master", "local[1]", "-e"])
        .arg("SELECT count(*) FROM (SELECT unnest(range(1, 100)) AS x)")
        .env("FAISCA_LOG", "debug")
        .output()
        .expect("faisca sql");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    let task = lines
        .iter()
        .find(|l| l["message"] == "task ended")
        .unwrap_or_else(|| panic!("a task's line: {stderr}"));
    for field in ["job", "stage", "partition", "attempt", "level", "timestamp"] {
        assert!(!task[field].is_null(), "{field} in {task}");
    }
    // Text stays the default.
    let text = Command::new(faisca_bin())
        .args(["sql", "--master", "local[1]", "-e", "SELECT 1"])
        .env("FAISCA_LOG", "debug")
        .output()
        .expect("faisca sql");
    let text = String::from_utf8_lossy(&text.stderr);
    assert!(
        text.lines().any(|l| l.contains("DEBUG")) && !text.starts_with('{'),
        "{text}"
    );
}
