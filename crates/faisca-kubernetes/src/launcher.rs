//! [`KubernetesLauncher`]: the driver's executors as pods.
//!
//! [`KubernetesLauncher::connect`] runs before the driver serves anything, so that a missing
//! kubeconfig, an unreachable API server, missing RBAC rights or a bad template stop the driver
//! at start with an error that names them: it lists the app's pods and creates one executor pod
//! with `dryRun=All`. Then the launcher task loops over four inputs: the driver's commands, the
//! pod watch, a full list every `faisca.kubernetes.executor.apiPollingInterval`, and a tick of
//! the allocation batch delay. Each input updates the [`PodSnapshot`]; then the lifecycle step
//! reports ended executors to the driver and the allocator creates or deletes pods. A watch that
//! ends is resumed from the last resourceVersion it saw (bookmarks included); one answered with
//! 410 Gone starts over from a full list. When the driver stops, the app's pods are deleted by
//! label (the ownerReference to a driver pod is the backstop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use faisca_common::{ExecutorId, FaiscaConfig};
use faisca_driver::launcher::{ExecutorLauncher, LauncherCommand, LauncherContext, LauncherEvents};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use tracing::{debug, error, info, warn};

use crate::allocator::{Action, Allocator, AllocatorSettings};
use crate::error::{KubernetesError, Result};
use crate::master::Master;
use crate::pod::{ExecutorPod, executor_pod, load_template};
use crate::settings::KubernetesSettings;
use crate::snapshot::{PodSnapshot, PodState};

/// Seconds a watch request asks the server to keep it open.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Launches the driver's executors as Kubernetes pods. See the module docs.
pub struct KubernetesLauncher {
    api: Api<Pod>,
    server: String,
    settings: Arc<KubernetesSettings>,
    template: Option<Pod>,
    owner: Option<OwnerReference>,
}

impl std::fmt::Debug for KubernetesLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesLauncher")
            .field("server", &self.server)
            .field("settings", &self.settings)
            .finish()
    }
}

/// The pod template of `settings`, if one is set.
pub fn template_of(settings: &KubernetesSettings) -> Result<Option<Pod>> {
    settings
        .pod_template_file
        .as_deref()
        .map(load_template)
        .transpose()
}

/// `faisca driver --dry-run`: the YAML of the first executor pod the driver would create for
/// executors registering at `driver_url`. Reads the template file; contacts nothing. The
/// ownerReference's uid, looked up at start, is shown as a placeholder.
pub fn dry_run(_master: &Master, config: &FaiscaConfig, driver_url: &str) -> Result<String> {
    let settings = KubernetesSettings::from_config(config, &crate::settings::new_app_id());
    let template = template_of(&settings)?;
    let owner = settings
        .driver_pod_name
        .as_ref()
        .map(|name| OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.clone(),
            uid: format!("uid-of-pod-{name}-looked-up-at-start"),
            controller: Some(true),
            block_owner_deletion: None,
        });
    let pod = executor_pod(
        &settings,
        template.as_ref(),
        &ExecutorPod {
            number: 1,
            driver_url,
            owner: owner.as_ref(),
        },
    );
    Ok(crate::pod::to_yaml(&pod))
}

impl KubernetesLauncher {
    /// Check everything the launcher needs, against the API server of `master`.
    pub async fn connect(master: &Master, config: &FaiscaConfig, app_id: &str) -> Result<Self> {
        let settings = KubernetesSettings::from_config(config, app_id);
        let template = template_of(&settings)?;
        let (client, server) = master.client(config.connect_timeout()).await?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
        let owner = match &settings.driver_pod_name {
            Some(name) => Some(driver_owner(&api, name, &server, &settings.namespace).await?),
            None => None,
        };
        let action = format!("list pods in namespace {}", settings.namespace);
        api.list(&ListParams::default().labels(&settings.selector()).limit(1))
            .await
            .map_err(|e| KubernetesError::from_kube(e, &action, &server))?;
        // A dry run: the server checks the rights and the pod without creating it.
        let probe = executor_pod(
            &settings,
            template.as_ref(),
            &ExecutorPod {
                number: 0,
                driver_url: "http://driver.invalid:7077",
                owner: owner.as_ref(),
            },
        );
        let action = format!("create pods in namespace {} (dry run)", settings.namespace);
        api.create(
            &PostParams {
                dry_run: true,
                field_manager: None,
            },
            &probe,
        )
        .await
        .map_err(|e| KubernetesError::from_kube(e, &action, &server))?;
        info!(%server, namespace = %settings.namespace, app = %app_id, "Kubernetes launcher ready");
        Ok(KubernetesLauncher {
            api,
            server,
            settings: Arc::new(settings),
            template,
            owner,
        })
    }
}

/// The ownerReference to the driver's own pod `name`.
async fn driver_owner(
    api: &Api<Pod>,
    name: &str,
    server: &str,
    namespace: &str,
) -> Result<OwnerReference> {
    let action = format!(
        "get the driver pod {name} in namespace {namespace} (faisca.kubernetes.driver.pod.name)"
    );
    let pod = api
        .get(name)
        .await
        .map_err(|e| KubernetesError::from_kube(e, &action, server))?;
    let uid = pod.metadata.uid.ok_or_else(|| KubernetesError::Api {
        action,
        message: "the pod has no uid".into(),
        retryable: false,
    })?;
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.to_string(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

impl ExecutorLauncher for KubernetesLauncher {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn run(self: Box<Self>, context: LauncherContext) -> BoxFuture<'static, ()> {
        let settings = self.settings.clone();
        let allocator = Allocator::new(AllocatorSettings {
            batch_size: settings.batch_size,
            batch_delay: settings.batch_delay,
            executor_timeout: settings.executor_timeout,
            delete_on_termination: settings.delete_on_termination,
        });
        let task = PodManager {
            api: self.api,
            server: self.server,
            settings,
            template: self.template,
            owner: self.owner,
            driver_url: context.driver_url,
            events: context.events,
            allocator,
            snapshot: PodSnapshot::default(),
            resource_version: None,
        };
        task.run(context.commands).boxed()
    }
}

/// The launcher's task. See the module docs.
struct PodManager {
    api: Api<Pod>,
    server: String,
    settings: Arc<KubernetesSettings>,
    template: Option<Pod>,
    owner: Option<OwnerReference>,
    driver_url: String,
    events: LauncherEvents,
    allocator: Allocator,
    snapshot: PodSnapshot,
    /// Where the watch resumes; `None`: list first.
    resource_version: Option<String>,
}

type PodEvents = BoxStream<'static, kube::Result<WatchEvent<Pod>>>;

impl PodManager {
    async fn run(mut self, mut commands: tokio::sync::mpsc::UnboundedReceiver<LauncherCommand>) {
        let mut relist = tokio::time::interval(self.settings.api_polling_interval);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick =
            tokio::time::interval(self.settings.batch_delay.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch: Option<PodEvents> = None;
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(LauncherCommand::RequestTotal(total)) => {
                        debug!(total, "executors requested");
                        self.allocator.set_target(total);
                    }
                    Some(LauncherCommand::Release(id)) => self.release(&id),
                    None => break,
                },
                event = next_event(&mut watch) => match event {
                    Some(Ok(event)) => self.watched(event, &mut watch),
                    Some(Err(e)) => {
                        warn!("the pod watch failed ({e}); resuming it");
                        watch = None;
                    }
                    None => watch = None,
                },
                _ = relist.tick() => {
                    self.relist().await;
                    watch = None;
                }
                _ = tick.tick() => {}
            }
            if watch.is_none() && self.resource_version.is_some() {
                watch = self.start_watch().await;
            }
            self.step().await;
        }
        self.stop().await;
    }

    fn release(&mut self, id: &ExecutorId) {
        let prefix = format!("{}-exec-", self.settings.pod_name_prefix);
        match id.0.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
            Some(number) if self.allocator.release(number) => {
                info!(executor = %id, "releasing the executor: deleting its pod (it decommissions)");
            }
            _ => {
                debug!(executor = %id, "release of an executor that is not a live pod of this driver")
            }
        }
    }

    /// Apply one watch event.
    fn watched(&mut self, event: WatchEvent<Pod>, watch: &mut Option<PodEvents>) {
        let version = |pod: &Pod| pod.metadata.resource_version.clone();
        match event {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                self.resource_version = version(&pod).or(self.resource_version.take());
                if let Some(state) = PodState::of(&pod) {
                    self.snapshot.upsert(state);
                }
            }
            WatchEvent::Deleted(pod) => {
                self.resource_version = version(&pod).or(self.resource_version.take());
                if let Some(state) = PodState::of(&pod) {
                    self.snapshot.remove(state);
                }
            }
            WatchEvent::Bookmark(bookmark) => {
                self.resource_version = Some(bookmark.metadata.resource_version);
            }
            WatchEvent::Error(status) if status.code == 410 => {
                debug!("the pod watch expired (410 Gone); listing again");
                self.resource_version = None;
                *watch = None;
            }
            WatchEvent::Error(status) => {
                warn!(
                    "the pod watch reported an error: {} ({})",
                    status.message, status.code
                );
                *watch = None;
            }
        }
    }

    async fn relist(&mut self) {
        let params = ListParams::default().labels(&self.settings.selector());
        match self.api.list(&params).await {
            Ok(list) => {
                self.resource_version = list.metadata.resource_version.clone();
                self.snapshot
                    .replace(list.items.iter().filter_map(PodState::of).collect());
            }
            Err(e) => warn!(server = %self.server, "cannot list executor pods: {e}"),
        }
    }

    async fn start_watch(&mut self) -> Option<PodEvents> {
        let version = self.resource_version.clone()?;
        let params = WatchParams::default()
            .labels(&self.settings.selector())
            .timeout(WATCH_TIMEOUT_SECS);
        let params = WatchParams {
            bookmarks: true,
            ..params
        };
        match self.api.watch(&params, &version).await {
            Ok(stream) => Some(stream.boxed()),
            Err(e) => {
                warn!(server = %self.server, "cannot watch executor pods: {e}; listing again");
                self.resource_version = None;
                None
            }
        }
    }

    /// The lifecycle step, then the allocator's.
    async fn step(&mut self) {
        if self.resource_version.is_none() {
            self.relist().await;
        }
        let now = Instant::now();
        let (exits, mut actions) = self.allocator.lifecycle(now, &mut self.snapshot);
        for exit in exits {
            let id = ExecutorId(self.settings.pod_name(exit.number));
            if exit.expected {
                info!(executor = %id, "executor ended: {}", exit.reason);
            } else {
                warn!(executor = %id, "executor lost: {}", exit.reason);
            }
            self.events.executor_exited(&id, exit.reason, exit.expected);
        }
        actions.extend(self.allocator.allocate(now, &self.snapshot));
        for action in actions {
            match action {
                Action::Create(number) => self.create(number).await,
                Action::Delete(number) => self.delete(number).await,
            }
        }
    }

    async fn create(&mut self, number: u64) {
        let pod = executor_pod(
            &self.settings,
            self.template.as_ref(),
            &ExecutorPod {
                number,
                driver_url: &self.driver_url,
                owner: self.owner.as_ref(),
            },
        );
        let name = self.settings.pod_name(number);
        match self.api.create(&PostParams::default(), &pod).await {
            Ok(_) => info!(pod = %name, "created an executor pod"),
            Err(e) => {
                let action = format!("create pod {name}");
                let error = KubernetesError::from_kube(e, &action, &self.server);
                error!("{error}");
                self.allocator.creation_failed(number);
                self.events
                    .executor_exited(&ExecutorId(name), error.to_string(), false);
            }
        }
    }

    async fn delete(&mut self, number: u64) {
        let name = self.settings.pod_name(number);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => debug!(pod = %name, "deleting an executor pod"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => warn!(pod = %name, "cannot delete the executor pod: {e}"),
        }
    }

    /// Delete every pod of the app (by label), unless deleteOnTermination is off.
    async fn stop(self) {
        if !self.settings.delete_on_termination {
            info!(selector = %self.settings.selector(), "keeping the executor pods (faisca.kubernetes.executor.deleteOnTermination=false)");
            return;
        }
        let params = ListParams::default().labels(&self.settings.selector());
        match self
            .api
            .delete_collection(&DeleteParams::default(), &params)
            .await
        {
            Ok(_) => info!(selector = %self.settings.selector(), "deleted the executor pods"),
            Err(e) => error!(
                selector = %self.settings.selector(),
                "cannot delete the executor pods ({e}); their ownerReference to the driver pod, if any, removes them with it"
            ),
        }
    }
}

/// The next watch event; pending forever without a watch.
async fn next_event(watch: &mut Option<PodEvents>) -> Option<kube::Result<WatchEvent<Pod>>> {
    match watch {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
