//! Faísca on Kubernetes: the driver's executors as pods, and drivers submitted into a cluster.
//!
//! How it fits together:
//!
//! * [`master`] parses `k8s://https://HOST:PORT` and builds the API client, with credentials
//!   found as kubectl finds them (`KUBECONFIG`, `~/.kube/config`, the pod's service account).
//! * [`settings`] reads the `faisca.kubernetes.*` keys (Spark's names) once.
//! * [`pod`] is a pure function from settings, an optional pod template and an executor number
//!   to the executor's Pod (`faisca driver --dry-run` prints it).
//! * [`snapshot`] holds what the watch and the periodic list say about the app's pods;
//!   [`allocator`] decides from it, on an injected clock, which executors ended (and why) and
//!   which pods to create or delete.
//! * [`launcher`] is the driver's [`faisca_driver::launcher::ExecutorLauncher`] for Kubernetes:
//!   it checks the cluster at start, then runs the watch/list/allocate loop, reports ended
//!   executors to the driver, and deletes the app's pods when the driver stops.
//!
//! * [`submit`] is `faisca submit --deploy-mode cluster`: a ConfigMap with the job, a driver pod
//!   that runs it, and its progress followed to the end.
//!
//! Errors are [`KubernetesError`]s: whose fault, and whether a retry can help.

pub mod allocator;
pub mod error;
pub mod launcher;
pub mod master;
pub mod pod;
pub mod settings;
pub mod snapshot;
pub mod submit;

pub use error::{KubernetesError, Result};
pub use launcher::{KubernetesLauncher, dry_run};
pub use master::Master;
pub use settings::{KubernetesSettings, new_app_id};
