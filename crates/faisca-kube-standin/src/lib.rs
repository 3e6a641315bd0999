//! A Kubernetes API server and kubelet stand-in: the one stand-in the project allows, because no
//! real API server can run on the machines that build and test Faísca.
//!
//! * [`api`] serves the part of the Kubernetes API Faísca uses (pods and ConfigMaps: create with
//!   dry run, get, list by label selector, delete, deletecollection, `watch=true` streams with
//!   resourceVersion, bookmarks and 410 Gone, the ownerReference cascade), so that the `kube`
//!   client runs unchanged against it through a kubeconfig ([`api::kubeconfig`]).
//! * [`kubelet`] runs the real process each pod describes and reports it back as a kubelet
//!   would (Running, then Succeeded or Failed with the exit code; SIGTERM then SIGKILL when the
//!   pod is deleted).
//!
//! The integration tests (`tests/src/kubernetes.rs`) and `faisca bench scale` use it.

pub mod api;
pub mod kubelet;

pub use api::{KubeApi, kubeconfig};
pub use kubelet::{Kubelet, KubeletOptions};
