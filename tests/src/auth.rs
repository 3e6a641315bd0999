//! Authentication with `faisca` processes: a driver with a cluster secret and a tokens file; an
//! executor with the secret registers and runs tasks; one without it, or with a wrong one, is
//! refused, exits with the reason, and the driver keeps serving; a client without a token is
//! refused; a user's token cannot fetch shuffle data from an executor; users see and kill only
//! their own jobs; credentials never cross a non-loopback address in clear.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use arrow_flight::flight_service_client::FlightServiceClient;
use faisca_proto::{ShuffleTicket, encode_ticket, ticket};

use crate::cli::{Processes, start_driver_logging_to};
use crate::common::faisca_bin;

const SECRET: &str = "cluster-secret-7c1f";
const ALICE: &str = "token-alice-41d2";
const BOB: &str = "token-bob-93ab";

/// The files of an authenticated cluster: the secret and the tokens.
fn write_credentials(dir: &Path) -> (String, String) {
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("# token,user\n{ALICE},alice\n{BOB},bob\n")).unwrap();
    (
        format!("faisca.authenticate.secret.file={}", secret.display()),
        format!("faisca.authenticate.tokensFile={}", tokens.display()),
    )
}

/// A `faisca` command with no credential in its environment but `env`.
fn faisca(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(faisca_bin());
    command
        .env_remove("FAISCA_AUTH_SECRET")
        .env_remove("FAISCA_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// An executor of `driver` run to its end (it is expected to be refused).
fn refused_executor(driver: &str, work: &Path, env: &[(&str, &str)]) -> Output {
    faisca(env)
        .args(["executor", "--driver", driver, "--cores", "1", "--work-dir"])
        .arg(work)
        .args(["--conf", "faisca.executor.registrationTimeout=20s"])
        .output()
        .unwrap()
}

fn sql(driver: &str, text: &str, env: &[(&str, &str)]) -> Output {
    faisca(env)
        .args(["sql", "--master", driver, "--format", "csv", "-e", text])
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_need_the_cluster_secret_and_clients_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_conf, tokens_conf) = write_credentials(dir.path());
    let log = dir.path().join("driver.log");
    let metrics_port = crate::ui::free_port_pair();
    let scrape_token = dir.path().join("scrape-token");
    std::fs::write(&scrape_token, "scrape-token-5e6f\n").unwrap();
    let metrics_conf = format!("faisca.metrics.tokenFile={}", scrape_token.display());
    let events = dir.path().join("events");
    let event_log_conf = format!("faisca.eventLog.dir=file://{}", events.display());
    let (driver, address) = start_driver_logging_to(
        faisca(&[]),
        &[
            "--conf",
            &secret_conf,
            "--conf",
            &tokens_conf,
            "--conf",
            "faisca.ui.port=0",
            "--conf",
            &metrics_conf,
            "--conf",
            "faisca.eventLog.enabled=true",
            "--conf",
            &event_log_conf,
            "--metrics-port",
            &metrics_port.to_string(),
        ],
        &log,
    );
    let mut processes = Processes(vec![driver]);
    let work = dir.path().join("work");

    // Executors without the secret, or with another one, are refused and exit saying why.
    let anonymous = refused_executor(&address, &work, &[]);
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("requires authentication"),
        "{}",
        stderr(&anonymous)
    );
    let wrong = refused_executor(&address, &work, &[("FAISCA_AUTH_SECRET", "not-the-secret")]);
    assert!(!wrong.status.success());
    let text = stderr(&wrong);
    assert!(text.contains("not accepted"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // A user's token does not make an executor.
    let user = refused_executor(&address, &work, &[("FAISCA_TOKEN", ALICE)]);
    assert!(!user.status.success());
    assert!(
        stderr(&user).contains("may not register"),
        "{}",
        stderr(&user)
    );

    // The driver kept serving: an executor with the secret registers and runs a user's job.
    let mut executor = faisca(&[("FAISCA_AUTH_SECRET", SECRET)]);
    executor
        .args([
            "executor",
            "--driver",
            &address,
            "--cores",
            "2",
            "--work-dir",
        ])
        .arg(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    processes.0.push(executor.spawn().unwrap());
    let query = "SELECT x % 5 AS k, count(*) AS n FROM generate_series(1, 5000) AS t(x) GROUP BY x % 5 ORDER BY k";
    let ran = crate::tls::until_it_succeeds(|| sql(&address, query, &[("FAISCA_TOKEN", ALICE)]));
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(crate::tls::rows_ending(&ran, ",1000"), 5, "{ran:?}");

    // With authentication on, the driver's local files are off for clients.
    let local = format!(
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}/nation/'",
        crate::common::tpch_dir().display()
    );
    let refused = sql(&address, &local, &[("FAISCA_TOKEN", ALICE)]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("faisca.sql.allowLocalFiles"),
        "{}",
        stderr(&refused)
    );

    // A client without a token, or with an unknown one, is refused.
    let nobody = sql(&address, "SELECT 1", &[]);
    assert!(!nobody.status.success());
    assert!(
        stderr(&nobody).contains("FAISCA_TOKEN"),
        "{}",
        stderr(&nobody)
    );
    let stranger = sql(&address, "SELECT 1", &[("FAISCA_TOKEN", "token-mallory")]);
    assert!(!stranger.status.success());
    assert!(
        stderr(&stranger).contains("not accepted"),
        "{}",
        stderr(&stranger)
    );

    // A peer that is not an executor cannot fetch shuffle data from one: with a user's token
    // it is denied, with nothing it is unauthenticated.
    let executors = faisca(&[("FAISCA_AUTH_SECRET", SECRET)])
        .args(["status", "--master", &address, "--executors", "--json"])
        .output()
        .unwrap();
    assert!(executors.status.success(), "{}", stderr(&executors));
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&executors.stdout)
            .lines()
            .next()
            .expect("an executor"),
    )
    .unwrap();
    let flight_address = first["address"].as_str().unwrap().to_string();
    let ticket = arrow_flight::Ticket::new(encode_ticket(ticket::Kind::Shuffle(ShuffleTicket {
        job_id: "any".into(),
        ..Default::default()
    })));
    // (Executors know the cluster secret alone: a user's token is not accepted there.)
    for (token, says) in [(Some(ALICE), "not accepted"), (None, "no credential")] {
        let mut pairs = vec![];
        if let Some(token) = token {
            pairs.push(("faisca.authenticate.token", token));
        }
        let config = faisca_common::FaiscaConfig::from_pairs(pairs).unwrap();
        // This process has no secret in its environment (the test command sets none).
        assert!(std::env::var("FAISCA_AUTH_SECRET").is_err());
        let transport = faisca_proto::rpc::ClientTransport::from_config(&config, false).unwrap();
        let channel = transport.lazy_channel(&flight_address).unwrap();
        let Err(status) = FlightServiceClient::new(channel)
            .do_get(ticket.clone())
            .await
        else {
            panic!("a peer without the cluster secret fetched shuffle data");
        };
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }

    // Jobs belong to their user: Bob neither sees nor kills Alice's running job; Alice and the
    // cluster secret see it.
    let gate = dir.path().join("open");
    let rule = format!("1:{}", gate.display());
    let alice = faisca::Session::builder()
        .master(address.as_str())
        .config("faisca.authenticate.token", ALICE)
        .config("faisca.test.taskGate", rule.as_str())
        .build()
        .await
        .unwrap();
    let running = alice
        .execute_sql(
            "SELECT x % 3 AS k, count(*) AS n FROM generate_series(1, 3000) AS t(x) GROUP BY x % 3",
        )
        .await
        .unwrap();
    let job = running.job_id.clone().expect("a job");
    let status = |env: &[(&str, &str)], args: &[&str]| {
        faisca(env)
            .args(["status", "--master", &address, "--json"])
            .args(args)
            .output()
            .unwrap()
    };
    let bobs = status(&[("FAISCA_TOKEN", BOB)], &[]);
    assert!(bobs.status.success(), "{}", stderr(&bobs));
    assert!(!String::from_utf8_lossy(&bobs.stdout).contains(&job));
    let peek = status(&[("FAISCA_TOKEN", BOB)], &[&job]);
    assert!(!peek.status.success());
    assert!(
        stderr(&peek).contains("another user's"),
        "{}",
        stderr(&peek)
    );
    let kill = faisca(&[("FAISCA_TOKEN", BOB)])
        .args(["kill", "--master", &address, &job])
        .output()
        .unwrap();
    assert!(!kill.status.success());
    assert!(
        stderr(&kill).contains("another user's"),
        "{}",
        stderr(&kill)
    );
    let mut seen_by_status = String::new();
    for env in [("FAISCA_TOKEN", ALICE), ("FAISCA_AUTH_SECRET", SECRET)] {
        let seen = status(&[env], &[]);
        assert!(seen.status.success(), "{}", stderr(&seen));
        let text = String::from_utf8_lossy(&seen.stdout).into_owned();
        assert!(text.contains(&job), "{text}");
        assert!(text.contains("\"user\":\"alice\""), "{text}");
        seen_by_status.push_str(&text);
    }
    std::fs::write(&gate, b"").unwrap();
    let rows = faisca::client::collect(running.batches).await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    // The web UI asks for a token: pages go to the login form, the REST API answers 401; a
    // bearer token or the form's cookie opens both.
    let ui = crate::tls::ui_port(&log, "http");
    let api = "/api/v1/applications";
    assert_eq!(http(ui, "GET", api, &[], "").await.0, 401);
    let (status, head) = http(ui, "GET", "/jobs/", &[], "").await;
    assert_eq!(status, 303);
    assert!(
        head.to_ascii_lowercase().contains("location: /login"),
        "{head}"
    );
    let (status, page) = http(ui, "GET", "/login", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"token\""), "{page}");
    let bearer = format!("Bearer {ALICE}");
    assert_eq!(
        http(ui, "GET", api, &[("authorization", &bearer)], "")
            .await
            .0,
        200
    );
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _) = http(ui, "POST", "/login", &form, "token=wrong").await;
    assert_eq!(status, 401);
    let (status, head) = http(ui, "POST", "/login", &form, &format!("token={ALICE}")).await;
    assert_eq!(status, 303);
    let cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().to_string())
        })
        .expect("a cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        http(ui, "GET", "/jobs/", &[("cookie", &pair)], "").await.0,
        200
    );
    // The metrics port takes the scrape token (or a credential), nothing else.
    let metrics = metrics_port;
    assert_eq!(http(metrics, "GET", "/metrics", &[], "").await.0, 401);
    let scrape = "Bearer scrape-token-5e6f";
    let (status, text) = http(metrics, "GET", "/metrics", &[("authorization", scrape)], "").await;
    assert_eq!(status, 200);
    assert!(text.contains("faisca_jobs"), "{text}");

    // Redaction: no credential anywhere a user or operator looks — the driver's log, `status
    // --json`, an EXPLAIN, the UI's pages and REST answers (the environment included), the
    // event log.
    let explain = sql(&address, "EXPLAIN SELECT 1", &[("FAISCA_TOKEN", ALICE)]);
    assert!(explain.status.success(), "{}", stderr(&explain));
    let mut seen = vec![
        ("the driver's log", std::fs::read_to_string(&log).unwrap()),
        ("status --json", seen_by_status),
        (
            "EXPLAIN",
            String::from_utf8_lossy(&explain.stdout).into_owned(),
        ),
    ];
    let apps = http(ui, "GET", api, &[("authorization", &bearer)], "")
        .await
        .1;
    let apps: serde_json::Value = serde_json::from_str(body_of(&apps)).unwrap();
    let app = apps[0]["id"].as_str().unwrap().to_string();
    for path in [
        "/jobs/".to_string(),
        "/environment/".to_string(),
        format!("{api}/{app}/environment"),
        format!("{api}/{app}/jobs"),
        format!("{api}/{app}/stages"),
    ] {
        let (status, body) = http(ui, "GET", &path, &[("authorization", &bearer)], "").await;
        assert_eq!(status, 200, "{path}");
        seen.push(("the UI", body));
    }
    // Each user's UI shows their own jobs; the cluster secret shows everyone's.
    let mut jobs_seen = Vec::new();
    for token in [ALICE, BOB, SECRET] {
        let bearer = format!("Bearer {token}");
        let path = format!("{api}/{app}/jobs");
        let (status, body) = http(ui, "GET", &path, &[("authorization", &bearer)], "").await;
        assert_eq!(status, 200, "{body}");
        let jobs: serde_json::Value = serde_json::from_str(body_of(&body)).unwrap();
        jobs_seen.push(jobs.as_array().unwrap().len());
    }
    let [alices, bobs, all] = jobs_seen[..] else {
        unreachable!()
    };
    assert!(alices >= 1 && bobs == 0 && all >= alices, "{jobs_seen:?}");
    let bobs_page = http(
        ui,
        "GET",
        "/jobs/",
        &[("authorization", &format!("Bearer {BOB}"))],
        "",
    )
    .await
    .1;
    assert!(!bobs_page.contains("generate_series"), "{bobs_page}");
    let mut event_files = 0;
    for entry in walk(&events) {
        event_files += 1;
        seen.push((
            "the event log",
            String::from_utf8_lossy(&std::fs::read(entry).unwrap()).into_owned(),
        ));
    }
    assert!(event_files > 0, "no event log under {}", events.display());
    for (place, text) in &seen {
        for credential in [SECRET, ALICE, BOB, "scrape-token-5e6f"] {
            assert!(!text.contains(credential), "{place} shows a credential");
        }
    }
}

/// The body of what [`http`] answered (its head and body).
fn body_of(answer: &str) -> &str {
    answer
        .split_once("\r\n\r\n")
        .map_or(answer, |(_, body)| body)
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: the status, and the head and body as text.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn credentials_never_cross_the_network_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_conf, _) = write_credentials(dir.path());
    let out = faisca(&[])
        .args(["driver", "--bind", "0.0.0.0:0", "--conf", &secret_conf])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("in clear") && text.contains("--tls-cert"),
        "{text}"
    );
    // On loopback it starts (and is stopped here).
    let (driver, _) = start_driver_logging_to(
        faisca(&[]),
        &["--conf", &secret_conf],
        &dir.path().join("driver.log"),
    );
    drop(Processes(vec![driver]));
}
