//! TLS on every port, with `faisca` processes and certificates made here (rcgen): a TLS
//! cluster (a driver and two executors) answers TPC-H as DataFusion does and serves its UI over
//! HTTPS; a plaintext client, a client trusting another CA, and — with
//! `faisca.ssl.clientAuth=required` — a client without a certificate are each refused with an
//! error that says why; a certificate swapped on disk the way a Kubernetes Secret swaps it is
//! used for new connections without a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use faisca_common::FaiscaConfig;
use faisca_common::tls::{ALPN_HTTP1, ClientTls};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{Processes, start_executor_with, wait_until};
use crate::common::{faisca_bin, normalized_rows, tpch_expected, tpch_session};

/// A certificate authority made for one test.
pub(crate) struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Authority {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for 127.0.0.1 and localhost (server and client use), and its key, as PEM.
    pub(crate) fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A certificate and key in `dir/<name>.pem` and `dir/<name>.key`.
pub(crate) fn write_pair(
    dir: &Path,
    name: &str,
    (cert, key): (String, String),
) -> (PathBuf, PathBuf) {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// A directory laid out as Kubernetes mounts a Secret: `tls.crt` and `tls.key` are links
/// through `..data`, a link to the current version's directory; a new version is a new
/// directory and one atomic rename of the `..data` link.
struct MountedSecret {
    dir: PathBuf,
}

impl MountedSecret {
    fn new(dir: PathBuf, pair: (String, String)) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let secret = MountedSecret { dir };
        secret.publish("..v1", pair);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), secret.dir.join(file)).unwrap();
        }
        secret
    }

    fn publish(&self, version: &str, (cert, key): (String, String)) {
        let version_dir = self.dir.join(version);
        std::fs::create_dir_all(&version_dir).unwrap();
        std::fs::write(version_dir.join("tls.crt"), cert).unwrap();
        std::fs::write(version_dir.join("tls.key"), key).unwrap();
        let staged = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(version, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }

    fn cert(&self) -> String {
        self.dir.join("tls.crt").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.join("tls.key").display().to_string()
    }
}

/// Two CAs made for one test, written to `dir` as `ca.pem` and `other-ca.pem`.
struct Pki {
    ca: Authority,
    other_ca: Authority,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let ca = Authority::new("faisca test CA");
        let other_ca = Authority::new("another CA");
        let ca_file = ca.write(dir, "ca.pem");
        let other_ca_file = other_ca.write(dir, "other-ca.pem");
        Pki {
            ca,
            other_ca,
            ca_file,
            other_ca_file,
        }
    }
}

/// `run` until it succeeds (a minute at most: executors may still be registering); its last
/// output.
pub(crate) fn until_it_succeeds(mut run: impl FnMut() -> Output) -> Output {
    let mut last = run();
    wait_until(|| {
        if !last.status.success() {
            last = run();
        }
        last.status.success()
    });
    last
}

/// CSV rows of `output` ending in `,suffix`.
pub(crate) fn rows_ending(output: &Output, suffix: &str) -> usize {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.ends_with(suffix))
        .count()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `faisca sql --master MASTER -e SQL` with `args`.
fn faisca_sql(master: &str, sql: &str, args: &[&str]) -> Output {
    Command::new(faisca_bin())
        .args(["sql", "--master", master, "-e", sql, "--format", "csv"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run faisca sql")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A GET over HTTPS to `127.0.0.1:port`, trusting `ca` and presenting `identity` if given:
/// the status and body, or the connection's error.
async fn https_get(
    port: u16,
    path: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::result::Result<(u16, String), String> {
    let mut pairs = vec![("faisca.ssl.caFile".to_string(), ca.display().to_string())];
    if let Some((cert, key)) = identity {
        pairs.push(("faisca.ssl.certFile".into(), cert.display().to_string()));
        pairs.push(("faisca.ssl.keyFile".into(), key.display().to_string()));
    }
    let settings = FaiscaConfig::from_pairs(pairs)
        .unwrap()
        .tls_settings()
        .unwrap();
    let tls: Arc<ClientTls> = ClientTls::new(&settings, "test", ALPN_HTTP1).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = tls
        .connect("127.0.0.1", tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // A server that closes without TLS's close_notify ends the body all the same.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(text.clone())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(head.to_string())?;
    Ok((status, body.to_string()))
}

/// The UI port a driver printed (`web UI at SCHEME://127.0.0.1:PORT`), read from its log.
pub(crate) fn ui_port(log: &Path, scheme: &str) -> u16 {
    let mut port = None;
    let marker = format!("web UI at {scheme}://127.0.0.1:");
    assert!(wait_until(|| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        port = text
            .split(marker.as_str())
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        port.is_some()
    }));
    port.unwrap()
}

const TPCH_QUERIES: [usize; 4] = [1, 3, 5, 18];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_answers_tpch_refuses_wrong_clients_and_takes_a_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Pki {
        ca,
        other_ca,
        ca_file,
        other_ca_file,
    } = Pki::new(dir.path());
    let (node_cert, node_key) = write_pair(dir.path(), "node", ca.issue("executor"));
    let secret = MountedSecret::new(dir.path().join("driver-tls"), ca.issue("driver"));
    let log = dir.path().join("driver.log");
    let (driver, address) = crate::cli::start_driver_logging_to(
        Command::new(faisca_bin()),
        &[
            "--tls-cert",
            &secret.cert(),
            "--tls-key",
            &secret.key(),
            "--tls-ca",
            path(&ca_file),
            "--conf",
            "faisca.ui.port=0",
            "--conf",
            "faisca.ssl.reloadInterval=100ms",
        ],
        &log,
    );
    let mut processes = Processes(vec![driver]);
    assert!(address.starts_with("faisca+tls://127.0.0.1:"), "{address}");
    let work = dir.path().join("work");
    for _ in 0..2 {
        processes.0.push(start_executor_with(
            &address,
            1,
            &work,
            &[
                "--tls-cert",
                path(&node_cert),
                "--tls-key",
                path(&node_key),
                "--tls-ca",
                path(&ca_file),
            ],
        ));
    }

    // TPC-H over TLS: the session, the executors' registration, the shuffles between them, the
    // results, all on TLS; the same rows as DataFusion.
    let session = tpch_session(&address, &[("faisca.ssl.caFile", path(&ca_file))], 2).await;
    for q in TPCH_QUERIES {
        let sql = faisca_bench::tpch::queries::query(q).unwrap();
        let result = session.execute_sql(sql).await.unwrap();
        let rows = normalized_rows(&faisca::client::collect(result.batches).await.unwrap());
        assert_eq!(rows, tpch_expected(sql).await, "TPC-H Q{q} over TLS");
    }
    // The UI is HTTPS.
    let ui = ui_port(&log, "https");
    let (status, body) = https_get(ui, "/api/v1/applications", &ca_file, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // A plaintext client is told the port serves TLS.
    let plain_address = address.replace("faisca+tls://", "faisca://");
    let plain = faisca_sql(&plain_address, "SELECT 1", &[]);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("serves TLS only"),
        "{}",
        stderr(&plain)
    );
    // A client trusting another CA refuses the driver's certificate and says what to check.
    let untrusting = faisca_sql(&address, "SELECT 1", &["--tls-ca", path(&other_ca_file)]);
    assert!(!untrusting.status.success());
    let text = stderr(&untrusting);
    assert!(
        text.contains("invalid peer certificate") && text.contains("--tls-ca"),
        "{text}"
    );
    let trusting = faisca_sql(&address, "SELECT 41 + 1", &["--tls-ca", path(&ca_file)]);
    assert!(trusting.status.success(), "{}", stderr(&trusting));
    assert!(String::from_utf8_lossy(&trusting.stdout).contains("42"));

    // The Secret gets a certificate from the other CA: new connections get it, without a
    // restart; the old CA no longer verifies the driver.
    secret.publish("..v2", other_ca.issue("driver, rotated"));
    assert!(
        wait_until(|| {
            faisca_sql(&address, "SELECT 1", &["--tls-ca", path(&other_ca_file)])
                .status
                .success()
        }),
        "the rotated certificate was never served"
    );
    let old_ca = faisca_sql(&address, "SELECT 1", &["--tls-ca", path(&ca_file)]);
    assert!(!old_ca.status.success(), "{}", stderr(&old_ca));
    // Connections made before go on: the session and the executors still run queries.
    let sql = faisca_bench::tpch::queries::query(3).unwrap();
    let result = session.execute_sql(sql).await.unwrap();
    let rows = normalized_rows(&faisca::client::collect(result.batches).await.unwrap());
    assert_eq!(rows, tpch_expected(sql).await);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains("BEGIN PRIVATE KEY") && !log_text.contains("BEGIN CERTIFICATE"),
        "the driver's log shows certificate material"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Pki {
        ca,
        other_ca,
        ca_file,
        other_ca_file,
    } = Pki::new(dir.path());
    let (node_cert, node_key) = write_pair(dir.path(), "node", ca.issue("node"));
    let (client_cert, client_key) = write_pair(dir.path(), "client", ca.issue("client"));
    let (stranger_cert, stranger_key) =
        write_pair(dir.path(), "stranger", other_ca.issue("stranger"));
    let log = dir.path().join("driver.log");
    let tls_args = [
        "--tls-cert",
        path(&node_cert),
        "--tls-key",
        path(&node_key),
        "--tls-ca",
        path(&ca_file),
    ];
    let mut driver_args = tls_args.to_vec();
    driver_args.extend([
        "--conf",
        "faisca.ssl.clientAuth=required",
        "--conf",
        "faisca.ui.port=0",
    ]);
    let (driver, address) =
        crate::cli::start_driver_logging_to(Command::new(faisca_bin()), &driver_args, &log);
    let mut processes = Processes(vec![driver]);
    let work = dir.path().join("work");
    for _ in 0..2 {
        let mut executor_args = tls_args.to_vec();
        executor_args.extend(["--conf", "faisca.ssl.clientAuth=required"]);
        processes
            .0
            .push(start_executor_with(&address, 1, &work, &executor_args));
    }

    // Without a certificate: UNAUTHENTICATED, saying what is missing.
    let anonymous = faisca_sql(&address, "SELECT 1", &["--tls-ca", path(&ca_file)]);
    assert!(!anonymous.status.success());
    let text = stderr(&anonymous);
    assert!(
        text.contains("requires a client certificate") && text.contains("--tls-cert"),
        "{text}"
    );
    // A certificate from a CA the driver does not trust is refused too.
    let stranger = faisca_sql(
        &address,
        "SELECT 1",
        &[
            "--tls-ca",
            path(&ca_file),
            "--tls-cert",
            path(&stranger_cert),
            "--tls-key",
            path(&stranger_key),
        ],
    );
    assert!(!stranger.status.success(), "{}", stderr(&stranger));
    // With one: a query with a shuffle between the two executors, over mutual TLS.
    let client_args = [
        "--tls-ca",
        path(&ca_file),
        "--tls-cert",
        path(&client_cert),
        "--tls-key",
        path(&client_key),
    ];
    let sql = "SELECT x % 7 AS k, count(*) AS n FROM generate_series(1, 7000) AS t(x) GROUP BY x % 7 ORDER BY k";
    let ran = until_it_succeeds(|| faisca_sql(&address, sql, &client_args));
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(rows_ending(&ran, ",1000"), 7, "{ran:?}");

    // The UI asks for a certificate too.
    let ui = ui_port(&log, "https");
    let (status, body) = https_get(ui, "/api/v1/applications", &ca_file, None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    let (status, _) = https_get(
        ui,
        "/api/v1/applications",
        &ca_file,
        Some((&client_cert, &client_key)),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // An executor of a TLS cluster without a certificate of its own cannot serve its shuffle
    // data over TLS: it exits saying so.
    let lone = Command::new(faisca_bin())
        .args(["executor", "--driver", &address, "--work-dir"])
        .arg(&work)
        .args(["--tls-ca", path(&other_ca_file)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!lone.status.success());
    assert!(stderr(&lone).contains("--tls-cert"), "{}", stderr(&lone));
}
