//! Adds, lists, removes and tears down dynamic containers. containerd is the source of truth: every
//! dynamic container carries [`DYNAMIC_LABEL`] and its spec in an annotation, so nothing here needs
//! to survive a restart except the sandbox records of [`SandboxStore`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::events::EventLog;
use super::growth::{CgroupSettings, Trigger};
use super::resources::{self, Bounds, Ledger};
use super::sandboxes::{Sandbox, SandboxStore};
use super::translate::{self, CONTAINER_NAME_LABEL, DYNAMIC_LABEL, SPEC_ANNOTATION};
use super::validate;
use crate::api::{self, ContainerSpec, DynamicContainer, PodRef, event::Type as EventType};
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

    /// Adds and starts `specs` in the pod: all of them, or none (each step is rolled back).
    pub async fn add(
        &self,
        pod: Option<&PodRef>,
        specs: Vec<ContainerSpec>,
    ) -> Result<Vec<DynamicContainer>> {
        if specs.is_empty() || specs.len() > validate::MAX_BATCH {
            return Err(Error::invalid(
                "containers",
                format!("give 1 to {} containers", validate::MAX_BATCH),
            ));
        }
        let mut names = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            validate::spec(spec, i)?;
            if !names.insert(spec.name.as_str()) {
                return Err(Error::invalid(
                    format!("containers[{i}].name"),
                    format!("{:?} appears twice in the request", spec.name),
                ));
            }
        }
        let sandbox = self.resolve(pod).await?;
        let id = sandbox.id();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let prepared = {
            // Validation against the pod, resource admission, growing the pod cgroup and the name
            // reservation are one step per pod, so concurrent adds never overshoot.
            let _guard = sandbox.lock.lock().await;
            let prepared = self.prepare(&sandbox, &specs).await?;
            if sandbox.record().cgroup.is_none() {
                // First growth of this pod: learn its baseline before the new reservation counts.
                self.apply_growth(&sandbox, Trigger::Reconcile)?;
            }
            let batch: Vec<_> = specs
                .iter()
                .map(|s| (s.name.clone(), resources::growth_of(s)))
                .collect();
            self.ledger
                .reserve(&id, Bounds::from_pod(&sandbox.config()), &batch)?;
            // Grow the pod before any of its new containers exists.
            if let Err(e) = self.apply_growth(&sandbox, Trigger::GrowthChanged) {
                self.ledger.release(&id, &names);
                return Err(e);
            }
            self.pending
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .extend(names.iter().cloned());
            prepared
        };
        let result = self.create_all(&sandbox, &specs, prepared).await;
        if let Some(set) = self.pending.lock().unwrap().get_mut(&id) {
            for name in &names {
                set.remove(name);
            }
        }
        if result.is_err() {
            // The containers are gone again: shrink the pod back.
            let _guard = sandbox.lock.lock().await;
            self.ledger.release(&id, &names);
            if let Err(e) = self.apply_growth(&sandbox, Trigger::GrowthChanged) {
                tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after a failed add failed; reconcile will retry");
            }
        }
        let ids = result?;
        let mut out = Vec::with_capacity(ids.len());
        for cid in ids {
            out.push(self.describe_container(&sandbox, &cid).await?);
        }
        Ok(out)
    }

    /// Checks the pod's state, name uniqueness and mounts; returns each container's CRI config.
    async fn prepare(
        &self,
        sandbox: &Sandbox,
        specs: &[ContainerSpec],
    ) -> Result<Vec<cri::ContainerConfig>> {
        let id = sandbox.id();
        if sandbox.is_stopping() {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} is being torn down"
            )));
        }
        let all = self
            .cri
            .list_containers(cri::ContainerFilter {
                pod_sandbox_id: id.clone(),
                ..Default::default()
            })
            .await
            .map_err(Error::runtime("listing the pod's containers"))?;
        let kubelet: Vec<_> = all
            .iter()
            .filter(|c| !c.labels.contains_key(DYNAMIC_LABEL))
            .collect();
        if !kubelet
            .iter()
            .any(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} has no running container: dynamic containers join running pods only"
            )));
        }
        let config = sandbox.config();
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or("");
        let qos = translate::Qos::from_cgroup_parent(parent);
        for (i, spec) in specs.iter().enumerate() {
            resources::check_qos(qos, spec, i)?;
        }
        let removed = sandbox.record().removed_names.clone();
        let pending = self
            .pending
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default();
        for (i, spec) in specs.iter().enumerate() {
            let taken = all.iter().any(|c| name_of(c) == spec.name)
                || removed.contains(&spec.name)
                || pending.contains(&spec.name);
            if taken {
                return Err(Error::AlreadyExists(format!(
                    "containers[{i}].name: {:?} is already used by a container of this pod (names of removed containers stay taken for the last {} removals)",
                    spec.name,
                    super::sandboxes::REMOVED_NAMES_KEPT
                )));
            }
        }
        let mut existing_mounts = Vec::new();
        if specs.iter().any(|s| !s.volume_mounts.is_empty()) {
            for c in &kubelet {
                let status = self
                    .cri
                    .container_status(&c.id, false)
                    .await
                    .map_err(Error::runtime("reading the pod's mounts"))?;
                existing_mounts.extend(status.status.map(|s| s.mounts).unwrap_or_default());
            }
        }
        let config = sandbox.config();
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mounts = validate::mounts(spec, i, &existing_mounts)?;
                Ok(translate::container_config(
                    spec,
                    &config,
                    mounts,
                    0,
                    self.settings.memory_capacity,
                ))
            })
            .collect()
    }

    async fn ensure_image(
        &self,
        spec: &ContainerSpec,
        i: usize,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<()> {
        let policy = if spec.image_pull_policy.is_empty() {
            "IfNotPresent"
        } else {
            spec.image_pull_policy.as_str()
        };
        if policy != "Always" {
            let present = self
                .cri
                .image_status(&spec.image)
                .await
                .map_err(Error::runtime("checking the image"))?
                .is_some();
            if present {
                return Ok(());
            }
            if policy == "Never" {
                return Err(Error::FailedPrecondition(format!(
                    "containers[{i}].image: {:?} is not present and imagePullPolicy is Never",
                    spec.image
                )));
            }
        }
        let auth = spec.registry_auth.clone().map(|a| cri::AuthConfig {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        self.cri
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: spec.image.clone(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map_err(Error::runtime(format!(
                "containers[{i}].image: pulling {:?}",
                spec.image
            )))?;
        Ok(())
    }

    /// Pulls, creates and starts each container; on any failure removes every container this call
    /// created and reports the failure.
    async fn create_all(
        &self,
        sandbox: &Sandbox,
        specs: &[ContainerSpec],
        configs: Vec<cri::ContainerConfig>,
    ) -> Result<Vec<String>> {
        let id = sandbox.id();
        let pod_config = sandbox.config();
        let pod = pod_ref(&id, &pod_config);
        let mut created: Vec<String> = Vec::new();
        let mut failure = None;
        for (i, (spec, config)) in specs.iter().zip(configs).enumerate() {
            if let Err(e) = self.ensure_image(spec, i, &pod_config).await {
                failure = Some(e);
                break;
            }
            let req = cri::CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            };
            match self.cri.create_container(req).await {
                Ok(cid) => {
                    self.ids
                        .lock()
                        .unwrap()
                        .insert(cid.clone(), cri::ContainerState::ContainerCreated);
                    created.push(cid.clone());
                    self.emit(EventType::Added, &pod, &spec.name, &cid, "");
                    if let Err(e) = self.cri.start_container(&cid).await {
                        failure = Some(Error::runtime(format!(
                            "containers[{i}]: starting {:?}",
                            spec.name
                        ))(e));
                        break;
                    }
                    self.ids
                        .lock()
                        .unwrap()
                        .insert(cid.clone(), cri::ContainerState::ContainerRunning);
                    self.emit(EventType::Started, &pod, &spec.name, &cid, "");
                }
                Err(e) => {
                    failure = Some(Error::runtime(format!(
                        "containers[{i}]: creating {:?}",
                        spec.name
                    ))(e));
                    break;
                }
            }
        }
        let Some(failure) = failure else {
            return Ok(created);
        };
        for cid in created.iter().rev() {
            self.destroy(cid, 0).await;
        }
        for spec in specs {
            self.emit(
                EventType::Failed,
                &pod,
                &spec.name,
                "",
                &failure.to_string(),
            );
        }
        tracing::warn!(sandbox = %id, error = %failure, rolled_back = created.len(), "add failed; rolled back");
        Err(failure)
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

    pub(super) async fn find(&self, sandbox_id: &str, name: &str) -> Result<Vec<cri::Container>> {
        let mut filter = dynamic_filter(Some(sandbox_id));
        filter
            .label_selector
            .insert(CONTAINER_NAME_LABEL.into(), name.to_string());
        self.cri
            .list_containers(filter)
            .await
            .map_err(Error::runtime("listing dynamic containers"))
    }

    /// Gracefully stops and removes the named dynamic containers.
    pub async fn remove(
        &self,
        pod: Option<&PodRef>,
        names: &[String],
        grace_seconds: Option<i64>,
    ) -> Result<Vec<String>> {
        if names.is_empty() {
            return Err(Error::invalid("names", "give at least one container name"));
        }
        let grace = grace_seconds.unwrap_or(30);
        if grace < 0 {
            return Err(Error::invalid(
                "grace_period_seconds",
                "must not be negative",
            ));
        }
        let sandbox = self.resolve(pod).await?;
        let id = sandbox.id();
        let mut targets = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let found = self.find(&id, name).await?;
            if found.is_empty() {
                return Err(Error::NotFound(format!(
                    "names[{i}]: no dynamic container {name:?} in sandbox {id}"
                )));
            }
            targets.extend(found.into_iter().map(|c| (name.clone(), c.id)));
        }
        let pod = pod_ref(&id, &sandbox.config());
        let results =
            futures_util::future::join_all(targets.iter().map(|(_, cid)| self.destroy(cid, grace)))
                .await;
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for ((name, cid), ok) in targets.into_iter().zip(results) {
            if !ok {
                failed.push(format!("{name:?} ({cid})"));
                continue;
            }
            if let Err(e) = self.store.remember_removed(&sandbox, &name) {
                tracing::warn!(error = %e, "could not persist removed name");
            }
            self.emit(EventType::Removed, &pod, &name, &cid, "");
            removed.push(name);
        }
        // Shrink the pod only after its containers are gone. Memory still in use by the pod's
        // other containers can refuse the shrink: then reconcile retries it, and the removal
        // itself has happened.
        {
            let _guard = sandbox.lock.lock().await;
            self.ledger.release(&id, &removed);
            if let Err(e) = self.apply_growth(&sandbox, Trigger::GrowthChanged) {
                tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after removal deferred");
            }
        }
        if !failed.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "could not remove {}; retry (removed: {removed:?})",
                failed.join(", ")
            )));
        }
        Ok(removed)
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
