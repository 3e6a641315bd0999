//! A local Kafka-protocol broker (noida-db) for the benchmarks and examples, when no brokers
//! are named.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A noida-db broker started for this process, stopped when dropped.
#[derive(Debug)]
pub struct LocalBroker(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for LocalBroker {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Makes the spawned program the leader of a new process group, so that [`kill_group`] also
/// stops what it starts: noida-db's command is a Python script that runs the broker as a child
/// process, which killing the script alone would leave running.
pub fn in_own_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Kills the process group `child` leads (see [`in_own_group`]) and reaps `child`.
pub fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn noida_program() -> PathBuf {
    std::env::var_os("FAISCA_NOIDA_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("faisca-ci/venv-kafka/bin/noida-db")
        })
}

/// Start noida-db (`FAISCA_NOIDA_DB`, or the test command's venv) on a free 127.0.0.1 port;
/// returns it and its `host:port`.
pub fn start_noida() -> Result<(LocalBroker, String)> {
    let program = noida_program();
    if !program.exists() {
        bail!(
            "no Kafka brokers given and no noida-db at {}: run the README's test command once (it installs noida-db), set FAISCA_NOIDA_DB, or name brokers",
            program.display()
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let child = in_own_group(&mut Command::new(&program))
        .args([
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let broker = LocalBroker(child, dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("noida-db did not start on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((broker, format!("127.0.0.1:{port}")))
}
