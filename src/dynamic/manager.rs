//! Adds, lists, removes and tears down dynamic containers. containerd is the source of truth: every
//! dynamic container carries [`DYNAMIC_LABEL`] and its spec in an annotation, so nothing here needs
//! to survive a restart except the sandbox records of [`SandboxStore`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::batches::{BATCH_LABEL, BatchLog};
use super::error::{Error, Result};
use super::events::EventLog;
use super::growth::CgroupSettings;
use super::resources::{self, Bounds, Ledger};
use super::sandboxes::{Sandbox, SandboxStore};
use super::translate::{self, DYNAMIC_LABEL, SPEC_ANNOTATION};
use crate::api::{self, PodRef, event::Type as EventType};
use crate::cri::Cri;

/// Tunables of the manager.
#[derive(Clone)]
pub struct ManagerSettings {
    /// Grace period for dynamic containers when their pod is stopped.
    pub pod_stop_grace: Duration,
    /// How often container exits are looked for.
    pub poll_interval: Duration,
    /// How often pod cgroups are checked against baseline + growth.
    pub reconcile_interval: Duration,
    /// Node memory, for the kubelet's oom_score_adj formula.
    pub memory_capacity: i64,
    /// Node-wide bound on dynamic growth.
    pub budget: Bounds,
    /// Pod cgroups to grow; `None` leaves cgroups alone (admission still applies).
    pub cgroups: Option<CgroupSettings>,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            pod_stop_grace: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(10),
            memory_capacity: node_memory_bytes().unwrap_or(1 << 30),
            budget: Bounds::default(),
            cgroups: None,
        }
    }
}

/// MemTotal from /proc/meminfo.
pub fn node_memory_bytes() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

pub struct Manager {
    pub(super) cri: Arc<dyn Cri>,
    pub(super) store: SandboxStore,
    pub(super) events: EventLog,
    pub(super) settings: ManagerSettings,
    /// Names being added right now, per sandbox: reserved so concurrent adds cannot both take one.
    pub(super) pending: Mutex<HashMap<String, HashSet<String>>>,
    /// IDs of every dynamic container podgraft knows, for cheap filtering of the kubelet's events.
    pub(super) ids: Mutex<HashMap<String, cri::ContainerState>>,
    /// Reserved growth of every pod's dynamic containers.
    pub(super) ledger: Ledger,
    /// Set once the state has been loaded from containerd.
    loaded: std::sync::atomic::AtomicBool,
    /// Adds in progress, on disk, so an interrupted one can be rolled back after a restart.
    pub(super) batches: BatchLog,
}

pub(super) fn dynamic_filter(sandbox: Option<&str>) -> cri::ContainerFilter {
    cri::ContainerFilter {
        pod_sandbox_id: sandbox.unwrap_or_default().to_string(),
        label_selector: [(DYNAMIC_LABEL.to_string(), "true".to_string())].into(),
        ..Default::default()
    }
}

pub(super) fn name_of(c: &cri::Container) -> &str {
    c.metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or_default()
}

pub(super) fn pod_ref(sandbox_id: &str, config: &cri::PodSandboxConfig) -> PodRef {
    let meta = config.metadata.clone().unwrap_or_default();
    PodRef {
        namespace: meta.namespace,
        name: meta.name,
        uid: meta.uid,
        sandbox_id: sandbox_id.to_string(),
    }
}

fn describe(pod: &PodRef) -> String {
    if !pod.name.is_empty() {
        format!("pod {}/{}", pod.namespace, pod.name)
    } else if !pod.uid.is_empty() {
        format!("pod with UID {}", pod.uid)
    } else {
        format!("sandbox {}", pod.sandbox_id)
    }
}

impl Manager {
    pub fn new(cri: Arc<dyn Cri>, store: SandboxStore, settings: ManagerSettings) -> Self {
        Self {
            batches: BatchLog::new(store.state_dir()),
            cri,
            store,
            events: EventLog::new(),
            ledger: Ledger::new(settings.budget),
            loaded: std::sync::atomic::AtomicBool::new(false),
            settings,
            pending: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &SandboxStore {
        &self.store
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Rebuilds state from containerd and the state files (at start, and after containerd returns).
    pub async fn load(&self) -> Result<()> {
        self.store
            .load(self.cri.as_ref())
            .await
            .map_err(Error::runtime("loading sandboxes"))?;
        self.roll_back_interrupted_adds().await?;
        let containers = self
            .cri
            .list_containers(dynamic_filter(None))
            .await
            .map_err(Error::runtime("listing dynamic containers"))?;
        // Growth is recomputed from the live dynamic containers: nothing is counted twice.
        self.ledger.clear();
        for c in &containers {
            let spec = c
                .annotations
                .get(SPEC_ANNOTATION)
                .and_then(|s| translate::decode_spec(s));
            if let Some(spec) = spec {
                self.ledger
                    .adopt(&c.pod_sandbox_id, &spec.name, resources::growth_of(&spec));
            }
        }
        *self.ids.lock().unwrap() = containers
            .into_iter()
            .map(|c| (c.id, state_of(c.state)))
            .collect();
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        // Repair the pod cgroups (a crash may have left them half-grown).
        self.reconcile_cgroups();
        Ok(())
    }

    /// Removes the containers of adds that a crash interrupted: an add is all or nothing, across
    /// restarts too.
    async fn roll_back_interrupted_adds(&self) -> Result<()> {
        for batch in self.batches.interrupted() {
            let filter = cri::ContainerFilter {
                label_selector: [(BATCH_LABEL.to_string(), batch.id.clone())].into(),
                ..Default::default()
            };
            let found = self
                .cri
                .list_containers(filter)
                .await
                .map_err(Error::runtime("listing an interrupted add's containers"))?;
            tracing::warn!(sandbox = %batch.sandbox, names = ?batch.names, containers = found.len(), "rolling back an add interrupted by a restart");
            let mut all_gone = true;
            for c in &found {
                all_gone &= self.destroy(&c.id, 0).await;
            }
            if all_gone {
                self.batches.end(&batch);
            }
        }
        Ok(())
    }

    /// False only when podgraft knows for sure that the node has no dynamic container and none is
    /// being added: state loaded from containerd, none found or left since, no add in flight.
    pub fn may_have_dynamic(&self) -> bool {
        !self.loaded.load(std::sync::atomic::Ordering::Acquire)
            || !self.ids.lock().unwrap().is_empty()
            || self
                .pending
                .lock()
                .unwrap()
                .values()
                .any(|names| !names.is_empty())
    }

    /// True if `id` is a dynamic container (as far as podgraft has seen).
    pub fn is_dynamic_id(&self, id: &str) -> bool {
        self.ids.lock().unwrap().contains_key(id)
    }

    /// Finds the pod's sandbox: exactly one way of addressing it must be used.
    pub(super) async fn resolve(&self, pod: Option<&PodRef>) -> Result<Arc<Sandbox>> {
        let Some(pod) = pod else {
            return Err(Error::invalid("pod", "is required"));
        };
        let by_name = !pod.name.is_empty() || !pod.namespace.is_empty();
        let ways = [by_name, !pod.uid.is_empty(), !pod.sandbox_id.is_empty()];
        if ways.iter().filter(|w| **w).count() != 1 {
            return Err(Error::invalid(
                "pod",
                "set exactly one of namespace+name, uid or sandbox_id",
            ));
        }
        if by_name && (pod.name.is_empty() || pod.namespace.is_empty()) {
            return Err(Error::invalid(
                if pod.name.is_empty() {
                    "pod.name"
                } else {
                    "pod.namespace"
                },
                "is required with the other",
            ));
        }
        let mut filter = cri::PodSandboxFilter::default();
        if !pod.sandbox_id.is_empty() {
            filter.id = pod.sandbox_id.clone();
        } else if !pod.uid.is_empty() {
            filter
                .label_selector
                .insert("io.kubernetes.pod.uid".into(), pod.uid.clone());
        } else {
            filter
                .label_selector
                .insert("io.kubernetes.pod.name".into(), pod.name.clone());
            filter
                .label_selector
                .insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
        }
        let mut found = self
            .cri
            .list_pod_sandbox(filter)
            .await
            .map_err(Error::runtime("looking up the pod"))?;
        // A pod may have old, stopped sandboxes beside its current one: take the ready, newest one.
        found.sort_by_key(|s| {
            (
                s.state == cri::PodSandboxState::SandboxReady as i32,
                s.created_at,
            )
        });
        let Some(sandbox) = found.pop() else {
            return Err(Error::NotFound(format!("{} not found", describe(pod))));
        };
        if !self.store.is_mutable_handler(&sandbox.runtime_handler) {
            return Err(Error::FailedPrecondition(format!(
                "{} runs with RuntimeClass handler {:?}, which is not mutable (mutable_handlers: {:?})",
                describe(pod),
                sandbox.runtime_handler,
                self.store.mutable_handlers()
            )));
        }
        if sandbox.state != cri::PodSandboxState::SandboxReady as i32 {
            return Err(Error::FailedPrecondition(format!(
                "{} is not running (sandbox not ready)",
                describe(pod)
            )));
        }
        self.store.get(&sandbox.id).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{} has no recorded sandbox config yet (podgraft could not rebuild it); re-create the pod",
                describe(pod)
            ))
        })
    }

    /// Stops (with `grace` seconds) and removes a container; logs what fails, since this runs on
    /// rollback and teardown paths where the first error must not hide the cleanup of the rest.
    pub(super) async fn destroy(&self, cid: &str, grace: i64) -> bool {
        let stopped = match self.cri.stop_container(cid, grace).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = cid, error = %e, "stopping dynamic container failed");
                false
            }
        };
        let removed = match self.cri.remove_container(cid).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = cid, error = %e, "removing dynamic container failed");
                false
            }
        };
        if removed {
            self.ids.lock().unwrap().remove(cid);
        }
        stopped && removed
    }

    pub(super) fn emit(&self, kind: EventType, pod: &PodRef, name: &str, cid: &str, message: &str) {
        self.events.emit(api::Event {
            r#type: kind as i32,
            pod: Some(pod.clone()),
            name: name.to_string(),
            container_id: cid.to_string(),
            message: message.to_string(),
            ..Default::default()
        });
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;

pub(super) fn state_of(raw: i32) -> cri::ContainerState {
    cri::ContainerState::try_from(raw).unwrap_or(cri::ContainerState::ContainerUnknown)
}

pub(super) fn api_state(raw: i32) -> api::ContainerState {
    match state_of(raw) {
        cri::ContainerState::ContainerCreated => api::ContainerState::Created,
        cri::ContainerState::ContainerRunning => api::ContainerState::Running,
        cri::ContainerState::ContainerExited => api::ContainerState::Exited,
        cri::ContainerState::ContainerUnknown => api::ContainerState::Unknown,
    }
}
