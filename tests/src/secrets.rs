//! Secrets stay where they were given: a Kafka source with a SASL password, a registry password
//! in `from_avro`, a store key set with `SET` and a rejected `jaas.config`, run on a driver and an
//! executor process with debug logging; then everything the run wrote or showed — checkpoint,
//! logs, work directory, event log, `faisca status --json`, `EXPLAIN`, errors, the web UI's pages,
//! REST answers and metrics — is searched for them.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use faisca::Session;

use crate::cli::{Processes, start_driver_logging_to};
use crate::common::{faisca_bin, normalized_rows};
use crate::kafka_brokers::{Broker, Kind, now_ms};

const SASL_PASSWORD: &str = "hunter2-sasl";
const REGISTRY_PASSWORD: &str = "hunter3-registry";
const JAAS_PASSWORD: &str = "hunter4-jaas";
const STORE_SECRET: &str = "hunter5-store";
const SECRETS: [&str; 4] = [
    SASL_PASSWORD,
    REGISTRY_PASSWORD,
    JAAS_PASSWORD,
    STORE_SECRET,
];

/// `faisca driver` with debug logging into `log`, its web UI on a free port and its event log
/// in `events`; returns it and its address.
fn driver_logging_to(log: &Path, events: &Path) -> (Child, String) {
    let mut command = Command::new(faisca_bin());
    command.env("FAISCA_LOG", "debug");
    let events = format!("faisca.eventLog.dir={}", events.display());
    let conf = [
        "--conf",
        "faisca.ui.port=0",
        "--conf",
        "faisca.eventLog.enabled=true",
        "--conf",
        &events,
    ];
    start_driver_logging_to(command, &conf, log)
}

/// Every page, REST answer, task log and metric the driver's web UI (its URL in `log`) serves
/// now, as `(path, body)`.
async fn ui_answers(log: &Path) -> Vec<(String, String)> {
    use crate::ui::get;
    let text = std::fs::read_to_string(log).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.split("faisca driver web UI at ").nth(1))
        .expect("the driver printed its UI's URL")
        .trim()
        .to_string();
    let apps: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/api/v1/applications")).await.1).unwrap();
    let api = format!("/api/v1/applications/{}", apps[0]["id"].as_str().unwrap());
    let mut paths: Vec<String> = [
        "/jobs/",
        "/stages/",
        "/executors/",
        "/environment/",
        "/streaming/",
        "/metrics",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for what in [
        "jobs",
        "stages",
        "allexecutors",
        "environment",
        "streaming/queries",
    ] {
        paths.push(format!("{api}/{what}"));
    }
    let jobs: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}{api}/jobs")).await.1).unwrap();
    for job in jobs.as_array().unwrap() {
        paths.push(format!("/jobs/job/?id={}", job["jobId"]));
        for stage in job["stageIds"].as_array().unwrap() {
            paths.push(format!("/stages/stage/?id={stage}"));
            paths.push(format!("{api}/stages/{stage}"));
            // Every task's log, as its executor kept it.
            let attempt: serde_json::Value =
                serde_json::from_str(&get(&format!("{url}{api}/stages/{stage}/0")).await.1)
                    .unwrap();
            for task in attempt["tasks"].as_object().unwrap().values() {
                let id = &task["taskId"];
                paths.push(format!("{api}/stages/{stage}/0/tasks/{id}/log"));
                paths.push(format!("/stages/stage/log/?id={stage}&taskId={id}"));
            }
        }
    }
    let mut answers = Vec::new();
    for path in paths {
        let (status, body) = get(&format!("{url}{path}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push((path, body));
    }
    answers
}

fn executor_logging_to(driver: &str, work: &Path, log: &Path) -> Child {
    Command::new(faisca_bin())
        .args([
            "executor", "--driver", driver, "--cores", "2", "--memory", "1g",
        ])
        .arg("--work-dir")
        .arg(work)
        .env("FAISCA_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("executor log file"))
        .spawn()
        .expect("start faisca executor")
}

/// Files under `dir` (recursively) that contain one of `secrets`, with the secret.
fn files_with_secrets(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_with_secrets(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            for secret in SECRETS {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    found.push(format!("{}: {secret}", path.display()));
                }
            }
        }
    }
    found
}

fn secrets_in(what: &str, text: &str) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| text.contains(*s))
        .map(|s| format!("{what}: {s}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_checkpoints_logs_status_explain_or_errors() {
    let broker = Broker::start(Kind::Noida);
    let topic = format!("secrets-{}", now_ms());
    broker.create_topic(&topic, 2).await;
    broker.produce_values(&topic, 0, "a", 3).await;
    broker.produce_values(&topic, 1, "b", 2).await;

    let dir = tempfile::tempdir().unwrap();
    let (logs, work, lake, events) = (
        dir.path().join("logs"),
        dir.path().join("work"),
        dir.path().join("lake"),
        dir.path().join("events"),
    );
    for d in [&logs, &work, &lake, &events] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (driver, address) = driver_logging_to(&logs.join("driver.log"), &events);
    let mut processes = Processes(vec![driver]);
    processes.0.push(executor_logging_to(
        &address,
        &work,
        &logs.join("executor.log"),
    ));
    let session = Session::builder()
        .master(address.as_str())
        .build()
        .await
        .unwrap();
    session
        .wait_for_executors(1, std::time::Duration::from_secs(30))
        .await
        .unwrap();

    let checkpoint = format!("file://{}/cp", lake.display());
    let create = format!(
        "CREATE EXTERNAL TABLE orders STORED AS KAFKA LOCATION '{topic}' OPTIONS (\
         'kafka.bootstrap.servers' '{}', 'kafka.sasl.username' 'alice', \
         'kafka.sasl.password' '{SASL_PASSWORD}', 'startingOffsets' 'latest', \
         'checkpointLocation' '{checkpoint}')",
        broker.servers
    );
    session.sql(&create).await.unwrap();
    let count = |sql: String| {
        let session = &session;
        async move {
            let df = session
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            normalized_rows(&df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")))
        }
    };
    assert_eq!(count("SELECT count(*) FROM orders".into()).await, ["5"]);

    // A registry password in a job's text and its plan.
    let avro = format!(
        "SELECT count(from_avro(value, '{{\"type\":\"record\",\"name\":\"r\",\"fields\":[]}}', \
         MAP('mode', 'PERMISSIVE', 'schemaRegistryAddress', 'http://127.0.0.1:9', \
         'basic.auth.user.info', 'bob:{REGISTRY_PASSWORD}'))) FROM orders"
    );
    assert_eq!(count(avro.clone()).await, ["0"]);
    let explain = count(format!("EXPLAIN {avro}")).await.join("\n");
    assert!(
        explain.contains("from_avro") && explain.contains("*********(redacted)"),
        "{explain}"
    );

    // A store secret set in the session.
    session
        .sql(&format!(
            "SET faisca.store.s3.somebucket.secret_access_key = '{STORE_SECRET}'"
        ))
        .await
        .unwrap();

    // A credential librdkafka rejects: the error names the option, not its value.
    let rejected = session
        .sql(&format!(
            "CREATE EXTERNAL TABLE bad STORED AS KAFKA LOCATION '{topic}' OPTIONS (\
             'kafka.bootstrap.servers' '{}', 'kafka.sasl.jaas.config' 'Login password=\"{JAAS_PASSWORD}\";')",
            broker.servers
        ))
        .await
        .expect_err("librdkafka rejects sasl.jaas.config")
        .to_string();
    assert!(rejected.contains("kafka.sasl.jaas.config"), "{rejected}");

    let status = Command::new(faisca_bin())
        .args(["status", "--master", &address, "--json"])
        .output()
        .expect("faisca status");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("from_avro"), "{status}");
    let ui = ui_answers(&logs.join("driver.log")).await;
    assert!(
        ui.iter().any(|(_, body)| body.contains("from_avro")),
        "the UI shows the jobs searched"
    );
    drop(session);
    drop(processes);

    let offsets = std::fs::read_to_string(lake.join("cp/offsets/0")).unwrap();
    assert!(
        offsets.contains(&format!("\"source\": \"subscribe={topic}\"")),
        "{offsets}"
    );
    let mut leaks = files_with_secrets(dir.path());
    leaks.extend(secrets_in("EXPLAIN", &explain));
    leaks.extend(secrets_in("faisca status --json", &status));
    leaks.extend(secrets_in("error", &rejected));
    for (path, body) in &ui {
        leaks.extend(secrets_in(&format!("web UI {path}"), body));
    }
    assert_eq!(
        std::fs::read_dir(&events).unwrap().count(),
        1,
        "one run's event log (searched with the rest of the directory)"
    );
    let lines: Vec<String> = std::fs::read_to_string(logs.join("driver.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| SECRETS.iter().any(|s| l.contains(s)))
        .map(|l| l.chars().take(600).collect())
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets found: {leaks:#?}\ndriver log lines: {lines:#?}"
    );
    // The logs were written (so the search above means something).
    let driver_log = std::fs::read_to_string(logs.join("driver.log")).unwrap();
    assert!(driver_log.contains("DEBUG"), "{driver_log}");
}
