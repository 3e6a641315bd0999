//! [`KubernetesSettings`]: what the launcher needs from the driver's configuration, read once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use faisca_common::FaiscaConfig;
use faisca_common::config::cluster as keys;

/// The launcher's settings (Spark's `spark.kubernetes.*` under `faisca.`).
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSettings {
    /// This driver's application id: the `faisca-app-id` label of its pods.
    pub app_id: String,
    /// `faisca.kubernetes.namespace`.
    pub namespace: String,
    /// `faisca.kubernetes.container.image`.
    pub image: String,
    /// `faisca.kubernetes.container.image.pullPolicy`.
    pub pull_policy: String,
    /// `faisca.kubernetes.executor.podTemplateFile`.
    pub pod_template_file: Option<PathBuf>,
    /// `faisca.kubernetes.executor.podNamePrefix`, or the app id.
    pub pod_name_prefix: String,
    /// `faisca.kubernetes.authenticate.executor.serviceAccountName`.
    pub service_account: Option<String>,
    /// `faisca.kubernetes.executor.label.*`.
    pub labels: BTreeMap<String, String>,
    /// `faisca.kubernetes.executor.annotation.*`.
    pub annotations: BTreeMap<String, String>,
    /// `faisca.kubernetes.allocation.batch.size`.
    pub batch_size: usize,
    /// `faisca.kubernetes.allocation.batch.delay`.
    pub batch_delay: Duration,
    /// `faisca.kubernetes.allocation.executor.timeout`.
    pub executor_timeout: Duration,
    /// `faisca.kubernetes.executor.deleteOnTermination`.
    pub delete_on_termination: bool,
    /// `faisca.kubernetes.executor.apiPollingInterval`.
    pub api_polling_interval: Duration,
    /// `faisca.kubernetes.driver.pod.name`.
    pub driver_pod_name: Option<String>,
    /// `faisca.executor.cores`.
    pub cores: u32,
    /// `faisca.executor.memory`, bytes.
    pub memory_bytes: u64,
    /// `faisca.executor.memoryOverhead` (or its default), bytes.
    pub memory_overhead_bytes: u64,
    /// `faisca.executor.decommission.gracePeriod`: pods get this plus a margin to stop.
    pub decommission_grace: Duration,
    /// `--conf` pairs every executor gets (the driver's configuration, less secrets, store
    /// settings and the launcher's own keys).
    pub conf: Vec<(String, String)>,
}

impl KubernetesSettings {
    /// The settings `config` asks for, for application `app_id`.
    pub fn from_config(config: &FaiscaConfig, app_id: &str) -> Self {
        let text = |key| config.text(key).map(str::to_string);
        KubernetesSettings {
            app_id: app_id.to_string(),
            namespace: text(&keys::K8S_NAMESPACE).unwrap_or_else(|| "default".into()),
            image: text(&keys::K8S_IMAGE).unwrap_or_else(|| "faisca:latest".into()),
            pull_policy: text(&keys::K8S_PULL_POLICY).unwrap_or_else(|| "IfNotPresent".into()),
            pod_template_file: text(&keys::K8S_POD_TEMPLATE).map(PathBuf::from),
            pod_name_prefix: text(&keys::K8S_POD_NAME_PREFIX).unwrap_or_else(|| app_id.into()),
            service_account: text(&keys::K8S_EXECUTOR_SERVICE_ACCOUNT),
            labels: config.executor_pod_labels(),
            annotations: config.executor_pod_annotations(),
            batch_size: config.kubernetes_batch_size(),
            batch_delay: config.cluster_duration(&keys::K8S_BATCH_DELAY),
            executor_timeout: config.cluster_duration(&keys::K8S_EXECUTOR_TIMEOUT),
            delete_on_termination: config.kubernetes_delete_on_termination(),
            api_polling_interval: config.cluster_duration(&keys::K8S_API_POLLING_INTERVAL),
            driver_pod_name: text(&keys::K8S_DRIVER_POD_NAME),
            cores: config.executor_cores(),
            memory_bytes: config.executor_memory(),
            memory_overhead_bytes: config.executor_memory_overhead(),
            decommission_grace: config.decommission_grace_period(),
            conf: faisca_driver::launcher::executor_conf(config)
                .into_iter()
                .filter(|(k, _)| !k.starts_with("faisca.kubernetes."))
                .collect(),
        }
    }

    /// The name of executor `number`'s pod, which is also its executor id.
    pub fn pod_name(&self, number: u64) -> String {
        format!("{}-exec-{number}", self.pod_name_prefix)
    }

    /// The label selector of this application's executor pods.
    pub fn selector(&self) -> String {
        format!(
            "{}={},{}={}",
            crate::pod::APP_LABEL,
            self.app_id,
            crate::pod::ROLE_LABEL,
            crate::pod::EXECUTOR_ROLE
        )
    }
}

/// A new application id: `faisca-` and 8 hex digits (a valid label value and name prefix).
pub fn new_app_id() -> String {
    format!("faisca-{}", &faisca_common::ExecutorId::random().0[..8])
}
