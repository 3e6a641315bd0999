//! The crate's error: what went wrong with Kubernetes, whose fault it is, and whether a retry can
//! help.

use faisca_common::Fault;

/// A failure of the Kubernetes launcher or of a cluster-mode submission.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// A `faisca.kubernetes.*` setting or the `k8s://` master is wrong.
    #[error("{0}")]
    Settings(String),
    /// The executor pod template cannot be read or is not a Pod.
    #[error("invalid executor pod template {path}: {message}")]
    Template {
        /// The file (`faisca.kubernetes.executor.podTemplateFile`).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No usable kubeconfig, and not inside a cluster.
    #[error("cannot configure the Kubernetes client: {0}")]
    KubeConfig(String),
    /// The API server cannot be reached (or answered something that is not the Kubernetes API).
    #[error("cannot reach the Kubernetes API server {server}: {message}")]
    Unreachable {
        /// Its URL.
        server: String,
        /// What the client saw.
        message: String,
    },
    /// The API server refused a request (RBAC: 401/403).
    #[error(
        "the Kubernetes API server refused to {action}: {message} (does the service account or user have the rights? see deploy/README.md)"
    )]
    Forbidden {
        /// What was attempted (`create pods in namespace spark`).
        action: String,
        /// The server's message.
        message: String,
    },
    /// Any other answer of the API server that is an error.
    #[error("the Kubernetes API server failed to {action}: {message}")]
    Api {
        /// What was attempted.
        action: String,
        /// The server's message and code.
        message: String,
        /// Whether trying again may succeed (5xx, 409 on create, 429).
        retryable: bool,
    },
}

impl KubernetesError {
    /// Whose fault the failure is.
    pub fn fault(&self) -> Fault {
        match self {
            KubernetesError::Settings(_)
            | KubernetesError::Template { .. }
            | KubernetesError::KubeConfig(_)
            | KubernetesError::Forbidden { .. } => Fault::User,
            KubernetesError::Unreachable { .. } | KubernetesError::Api { .. } => Fault::External,
        }
    }

    /// Whether trying again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            KubernetesError::Unreachable { .. } => true,
            KubernetesError::Api { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Classify a client error of `action` against `server`.
    pub fn from_kube(error: kube::Error, action: &str, server: &str) -> Self {
        match error {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = format!("{} ({} {})", status.message, code, status.reason);
                if code == 401 || code == 403 {
                    KubernetesError::Forbidden {
                        action: action.to_string(),
                        message,
                    }
                } else {
                    KubernetesError::Api {
                        action: action.to_string(),
                        message,
                        retryable: code >= 500 || code == 429 || code == 409,
                    }
                }
            }
            other => KubernetesError::Unreachable {
                server: server.to_string(),
                message: format!("{action}: {other}"),
            },
        }
    }
}

impl From<KubernetesError> for faisca_common::Error {
    fn from(error: KubernetesError) -> Self {
        let retryable = error.retryable();
        match error.fault() {
            Fault::User => faisca_common::Error::user(error.to_string()),
            _ => faisca_common::Error::External {
                message: error.to_string(),
                retryable,
            },
        }
    }
}

/// `Result` with [`KubernetesError`].
pub type Result<T, E = KubernetesError> = std::result::Result<T, E>;
