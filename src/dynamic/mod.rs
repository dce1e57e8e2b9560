//! Dynamic containers (KEP-5972, node side): containers added to a running, opted-in pod.
//!
//! [`Manager`] is the facade the control API and the relay's interceptors call; each of its
//! operations is a one-line delegation to the component that owns the work:
//!
//! - [`model`]: the typed domain (container spec, pods, views, events, label keys, the kubelet's
//!   formulas). The control edge converts its wire types into it; nothing here uses them.
//! - [`admission`]: every rule that can refuse an add, as functions of (request, pod facts).
//! - [`resources`]: the growth ledger (ceilings, node budget) and pod cgroup growth.
//! - [`registry`]: the single owner of what podgraft knows of each dynamic container; read by the
//!   hiding interceptors, written only by lifecycle code.
//! - [`lifecycle`]: add (a chain of steps with undos), remove, pod teardown, load, the supervisor.
//! - [`state`]: sandbox and batch records on disk (atomic, versioned, written off the relay's
//!   thread).
//! - [`events`]: the resumable event stream; [`host`]: clock, node memory, credentials.
//! - [`probes`]: liveness, readiness and startup probes of running dynamic containers.

pub mod admission;
mod error;
pub mod events;
pub mod host;
pub mod lifecycle;
pub mod model;
pub mod probes;
pub(crate) mod registry;
pub mod resources;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

pub use error::{Error, Result};
use events::EventLog;
use host::{Host, SystemHost};
use lifecycle::stored_spec::SpecCodec;
use lifecycle::{Lifecycle, LifecycleSettings};
use model::{ContainerSpec, ContainerView, PodSelector};
use registry::Registry;
use resources::{Bounds, CgroupSettings, Ledger, PodCgroups};
use state::{BatchLog, SandboxStore};

use crate::cri::{Cri, CriError};

/// Tunables of the manager.
#[derive(Clone)]
pub struct ManagerSettings {
    /// Grace period for dynamic containers when their pod is stopped.
    pub pod_stop_grace: Duration,
    /// How often container exits are looked for.
    pub poll_interval: Duration,
    /// How often pod cgroups are checked against baseline + growth.
    pub reconcile_interval: Duration,
    /// How long a control call waits for podgraft's state to load before UNAVAILABLE.
    pub load_wait: Duration,
    /// Node-wide bound on dynamic growth.
    pub budget: Bounds,
    /// Pod cgroups to grow; `None` leaves cgroups alone (admission still applies).
    pub cgroups: Option<CgroupSettings>,
    /// Clock, node memory and credentials.
    pub host: Arc<dyn Host>,
    /// Reads the container specs stored by earlier builds.
    pub specs: SpecCodec,
    /// How many dynamic containers a pod and the node may have.
    pub limits: admission::Limits,
    /// How long exited containers that will not restart stay before garbage collection.
    pub gc_exited_after: Duration,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            pod_stop_grace: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(10),
            load_wait: Duration::from_secs(30),
            budget: Bounds::default(),
            cgroups: None,
            host: Arc::new(SystemHost::default()),
            specs: SpecCodec::default(),
            limits: admission::Limits::default(),
            gc_exited_after: lifecycle::gc::DEFAULT_EXITED_AFTER,
        }
    }
}

pub struct Manager {
    lifecycle: Lifecycle,
    registry: Arc<Registry>,
    events: Arc<EventLog>,
    poll_interval: Duration,
    reconcile_interval: Duration,
    load_wait: Duration,
}

impl Manager {
    pub fn new(cri: Arc<dyn Cri>, store: SandboxStore, settings: ManagerSettings) -> Self {
        let store = Arc::new(store);
        let registry = Arc::new(Registry::default());
        let events = Arc::new(EventLog::new(settings.host.clone()));
        let ledger = Arc::new(Ledger::new(settings.budget));
        let lifecycle = Lifecycle {
            cri: cri.clone(),
            batches: BatchLog::new(store.state_dir(), settings.host.clone()),
            cgroups: PodCgroups::new(settings.cgroups.clone(), ledger.clone(), store.clone()),
            store,
            registry: registry.clone(),
            ledger,
            events: events.clone(),
            specs: settings.specs,
            settings: LifecycleSettings {
                pod_stop_grace: settings.pod_stop_grace,
                memory_capacity: settings.host.memory_bytes().unwrap_or(1 << 30),
                limits: settings.limits,
                gc_exited_after: settings.gc_exited_after,
            },
            probes: Arc::new(probes::Prober::new(
                cri.clone(),
                events.clone(),
                settings.host.clone(),
            )),
            gc: Default::default(),
            stranded_removals: Default::default(),
            host: settings.host,
        };
        Self {
            lifecycle,
            registry,
            events,
            poll_interval: settings.poll_interval,
            reconcile_interval: settings.reconcile_interval,
            load_wait: settings.load_wait,
        }
    }

    /// Control calls are served only once state is loaded: before, a lookup could miss a pod or
    /// a reservation could be lost to the load.
    async fn ready(&self) -> Result<()> {
        if self.registry.wait_loaded(self.load_wait).await {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "podgraft is still loading its state from containerd; retry".into(),
            ))
        }
    }

    // --- Operability (metrics, status): cheap, synchronous reads of in-memory state.

    /// Known dynamic containers per state.
    pub fn counts_by_state(&self) -> Vec<(model::ContainerState, usize)> {
        self.registry.counts_by_state()
    }

    /// Whether state has been loaded from containerd since the start.
    pub fn is_loaded(&self) -> bool {
        self.registry.is_loaded()
    }

    /// What dynamic containers add to all pods' cgroups together.
    pub fn node_growth(&self) -> crate::cgroup::Growth {
        self.lifecycle.ledger.node_growth()
    }

    // --- end of operability reads

    pub fn store(&self) -> &SandboxStore {
        &self.lifecycle.store
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Rebuilds state from containerd and the state files (at start).
    pub async fn load(&self) -> Result<()> {
        self.lifecycle.load().await
    }

    /// The namespace of the selected pod (for authorization).
    pub async fn pod_namespace(&self, pod: &PodSelector) -> Result<String> {
        self.ready().await?;
        self.lifecycle.pod_namespace(pod).await
    }

    pub async fn add(
        &self,
        pod: &PodSelector,
        specs: Vec<ContainerSpec>,
    ) -> Result<Vec<ContainerView>> {
        self.ready().await?;
        self.lifecycle.add(pod, specs).await
    }

    pub async fn remove(
        &self,
        pod: &PodSelector,
        names: &[String],
        grace_seconds: Option<i64>,
    ) -> Result<Vec<String>> {
        self.ready().await?;
        self.lifecycle.remove(pod, names, grace_seconds).await
    }

    pub async fn list(&self, pod: Option<&PodSelector>) -> Result<Vec<ContainerView>> {
        self.ready().await?;
        self.lifecycle.list(pod).await
    }

    /// Kept final statuses of removed containers (ListContainers' include_removed).
    pub async fn list_removed(&self, pod: Option<&PodSelector>) -> Result<Vec<ContainerView>> {
        self.ready().await?;
        self.lifecycle.list_removed(pod).await
    }

    pub async fn get(&self, pod: &PodSelector, name: &str) -> Result<ContainerView> {
        self.ready().await?;
        self.lifecycle.get(pod, name).await
    }

    pub async fn exec(
        &self,
        pod: &PodSelector,
        name: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        self.ready().await?;
        self.lifecycle.exec(pod, name, cmd, timeout).await
    }

    /// False only when podgraft knows for sure that the node has no dynamic container.
    pub fn may_have_dynamic(&self) -> bool {
        self.registry.may_have_dynamic()
    }

    /// True if `id` is a dynamic container (as far as podgraft has seen).
    pub fn is_dynamic_id(&self, id: &str) -> bool {
        self.registry.contains(id)
    }

    /// RunPodSandbox succeeded.
    pub async fn pod_started(&self, sandbox_id: &str, req: &cri::RunPodSandboxRequest) {
        self.lifecycle.pod_started(sandbox_id, req).await
    }

    /// UpdatePodSandboxResources: the kubelet resized the pod.
    pub async fn pod_resized(&self, sandbox_id: &str) {
        self.lifecycle.pod_resized(sandbox_id).await
    }

    /// StopPodSandbox is coming.
    pub async fn stop_pod(&self, sandbox_id: &str) {
        self.lifecycle.stop_pod(sandbox_id).await
    }

    /// RemovePodSandbox is coming.
    pub async fn remove_pod(&self, sandbox_id: &str) {
        self.lifecycle.remove_pod(sandbox_id).await
    }

    /// RemovePodSandbox succeeded.
    pub async fn forget_pod(&self, sandbox_id: &str) {
        self.lifecycle.forget_pod(sandbox_id).await
    }

    /// One round of exit detection.
    pub async fn poll_once(&self) -> std::result::Result<(), CriError> {
        self.lifecycle.poll_once().await
    }

    /// Runs the restarts that are due.
    pub async fn restart_due(&self) {
        self.lifecycle.restart_due().await
    }

    /// One garbage collection sweep (the supervisor runs one per poll).
    pub async fn collect_garbage(&self) -> lifecycle::gc::Sweep {
        self.lifecycle.collect_garbage().await
    }

    /// Brings every mutable pod's cgroup in line.
    pub async fn reconcile_cgroups(&self) {
        self.lifecycle.cgroups.reconcile().await
    }

    /// Runs the supervisor until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        self.lifecycle
            .supervise(self.poll_interval, self.reconcile_interval, shutdown)
            .await
    }
}
