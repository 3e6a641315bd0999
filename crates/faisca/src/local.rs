//! `local[N]`: a driver and N one-core executors in this process, over real gRPC on 127.0.0.1.

use faisca_common::config::parse_bytes;
use faisca_common::{Error, FaiscaConfig, Result};
use faisca_driver::{DriverOptions, DriverServer};
use faisca_executor::{Executor, ExecutorOptions};

/// Parse a master URL: `Some(n)` for `local`, `local[n]` or `local[*]`, `None` for a cluster address.
pub fn parse_local_master(master: &str) -> Result<Option<usize>> {
    let m = master.trim();
    if m == "local" {
        return Ok(Some(1));
    }
    let Some(inner) = m.strip_prefix("local[").and_then(|r| r.strip_suffix(']')) else {
        if m.starts_with("local") {
            return Err(Error::user(format!(
                "invalid master '{master}': expected local, local[N] or local[*]"
            )));
        }
        return Ok(None);
    };
    if inner == "*" {
        return Ok(Some(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ));
    }
    match inner.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(Error::user(format!(
            "invalid master '{master}': expected local[N] with N ≥ 1, or local[*]"
        ))),
    }
}

/// An in-process cluster. Stopped by [`LocalCluster::stop`] (or, less gracefully, when dropped).
pub struct LocalCluster {
    driver: DriverServer,
    executors: Vec<Executor>,
    _work_dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Start a driver on 127.0.0.1 and `executors` one-core executors registered with it.
    pub async fn start(executors: usize, config: &FaiscaConfig) -> Result<Self> {
        let driver = DriverServer::start(DriverOptions {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            advertise_host: None,
            config: config.clone(),
            health_bind: None,
            launcher: None,
            ui_by_default: false,
            metrics_bind: None,
        })
        .await?;
        let work_dir = tempfile::Builder::new()
            .prefix("faisca-local-")
            .tempdir()
            .map_err(|e| {
                Error::external(format!(
                    "cannot create a work directory for local executors: {e}"
                ))
            })?;
        let memory = parse_bytes(config.local_executor_memory())?;
        let starts = (0..executors).map(|i| {
            Executor::start(ExecutorOptions {
                driver: driver.address().to_string(),
                cores: 1,
                memory_bytes: memory,
                work_dir: work_dir.path().to_path_buf(),
                bind: "127.0.0.1:0".parse().expect("valid address"),
                advertise_host: None,
                executor_id: Some(format!("local-{i}")),
                config: config.clone(),
                health_bind: None,
                metrics_bind: None,
            })
        });
        let executors = futures::future::try_join_all(starts).await?;
        Ok(LocalCluster {
            driver,
            executors,
            _work_dir: work_dir,
        })
    }

    /// The driver's `host:port`.
    pub fn driver_address(&self) -> &str {
        self.driver.address()
    }

    /// Stop executors, then the driver.
    pub async fn stop(self) {
        for e in self.executors {
            e.shutdown().await;
        }
        self.driver.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters() {
        assert_eq!(parse_local_master("local").unwrap(), Some(1));
        assert_eq!(parse_local_master("local[3]").unwrap(), Some(3));
        assert!(parse_local_master("local[*]").unwrap().unwrap() >= 1);
        assert_eq!(parse_local_master("faisca://h:1").unwrap(), None);
        assert!(parse_local_master("local[0]").is_err());
        assert!(parse_local_master("local[x]").is_err());
        assert!(parse_local_master("localhost").is_err());
    }
}
