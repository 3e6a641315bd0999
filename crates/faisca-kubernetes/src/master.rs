//! The `k8s://` master and the client to its API server.
//!
//! `k8s://https://HOST:PORT` names the API server; `k8s://HOST:PORT` means https, as in Spark;
//! `k8s://` alone takes the server from the kubeconfig. Credentials come from the kubeconfig
//! found as kubectl finds it (`KUBECONFIG`, then `~/.kube/config`), else from the pod's service
//! account when running in a cluster.

use std::time::Duration;

use kube::Client;

use crate::error::{KubernetesError, Result};

/// A parsed `k8s://` master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The API server, if the master names one.
    pub api_server: Option<String>,
    /// A kubeconfig file to use instead of finding one (`kubectl --kubeconfig`).
    pub kubeconfig: Option<std::path::PathBuf>,
}

impl Master {
    /// Parse `text` if it is a `k8s://` master; `Ok(None)` for any other master.
    pub fn parse(text: &str) -> Result<Option<Master>> {
        let Some(rest) = text.strip_prefix("k8s://") else {
            return Ok(None);
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Ok(Some(Master {
                api_server: None,
                kubeconfig: None,
            }));
        }
        let url = if rest.starts_with("http://") || rest.starts_with("https://") {
            rest.to_string()
        } else {
            format!("https://{rest}")
        };
        url.parse::<http::Uri>()
            .map_err(|e| bad_master(text, &e.to_string()))?;
        Ok(Some(Master {
            api_server: Some(url),
            kubeconfig: None,
        }))
    }

    /// A client for the API server, with credentials as kubectl finds them; and the server's
    /// URL for messages.
    pub async fn client(&self, connect_timeout: Duration) -> Result<(Client, String)> {
        let mut config = match &self.kubeconfig {
            Some(path) => Self::from_file(path).await?,
            None => Self::inferred().await?,
        };
        if let Some(server) = &self.api_server {
            config.cluster_url = server.parse().map_err(|e: http::uri::InvalidUri| {
                KubernetesError::Settings(format!("invalid API server URL '{server}': {e}"))
            })?;
        }
        config.connect_timeout = Some(connect_timeout);
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| {
            KubernetesError::KubeConfig(format!(
                "cannot build a client for {server}: {e}{}",
                source_chain(&e)
            ))
        })?;
        Ok((client, server))
    }

    /// The configuration kubectl would use: `KUBECONFIG`, `~/.kube/config`, else in-cluster.
    async fn inferred() -> Result<kube::Config> {
        kube::Config::infer().await.map_err(|e| {
            let kubeconfig = match std::env::var_os("KUBECONFIG") {
                Some(path) => format!("KUBECONFIG={}", path.to_string_lossy()),
                None => "~/.kube/config (KUBECONFIG is not set)".to_string(),
            };
            KubernetesError::KubeConfig(format!(
                "no usable kubeconfig at {kubeconfig}, and not running in a pod with a service account: {e}{}",
                source_chain(&e)
            ))
        })
    }

    /// The configuration of the kubeconfig file at `path`.
    async fn from_file(path: &std::path::Path) -> Result<kube::Config> {
        let invalid = |e: &dyn std::error::Error| {
            KubernetesError::KubeConfig(format!(
                "cannot use the kubeconfig {}: {e}{}",
                path.display(),
                source_chain(e)
            ))
        };
        let file = kube::config::Kubeconfig::read_from(path).map_err(|e| invalid(&e))?;
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| invalid(&e))
    }
}

fn bad_master(text: &str, why: &str) -> KubernetesError {
    KubernetesError::Settings(format!(
        "invalid master '{text}': {why}; expected k8s://https://HOST:PORT, or k8s:// for the kubeconfig's server"
    ))
}

/// `: cause: cause…` of an error's sources.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_parse_as_spark_writes_them() {
        assert_eq!(Master::parse("local[2]").unwrap(), None);
        assert_eq!(
            Master::parse("k8s://").unwrap(),
            Some(Master {
                api_server: None,
                kubeconfig: None
            })
        );
        assert_eq!(
            Master::parse("k8s://https://10.0.0.1:6443")
                .unwrap()
                .unwrap()
                .api_server
                .as_deref(),
            Some("https://10.0.0.1:6443")
        );
        assert_eq!(
            Master::parse("k8s://10.0.0.1:6443")
                .unwrap()
                .unwrap()
                .api_server
                .as_deref(),
            Some("https://10.0.0.1:6443")
        );
        assert_eq!(
            Master::parse("k8s://http://127.0.0.1:8001/")
                .unwrap()
                .unwrap()
                .api_server
                .as_deref(),
            Some("http://127.0.0.1:8001")
        );
        let error = Master::parse("k8s://http://bad host:1")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("k8s://http://bad host:1")
                && error.contains("expected k8s://https://HOST:PORT"),
            "{error}"
        );
    }
}
