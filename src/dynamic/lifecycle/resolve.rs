//! Finding the pod a request names, and gathering what admission needs to know about it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_cri::v1 as cri;

use super::{Lifecycle, name_of};
use crate::dynamic::admission::{PodFacts, TakenNames};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::DYNAMIC_LABEL;
use crate::dynamic::model::kubelet::{Qos, cgroup_parent, seccomp_profile_path};
use crate::dynamic::model::security::{ContainerSecurity, PodSecurity, SandboxSecurity};
use crate::dynamic::model::spec::Profile;
use crate::dynamic::model::{ContainerSpec, PodSelector};
use crate::dynamic::state::Sandbox;
use crate::dynamic::state::writer::run_blocking;

/// The host paths of the pod's mounts and of the request's, resolved on the node (symlinks and
/// `..`), for comparison; a path that does not resolve is left out (compared by text).
async fn resolve_host_paths(
    existing: &[cri::Mount],
    specs: &[ContainerSpec],
) -> HashMap<String, String> {
    let paths: Vec<String> = existing
        .iter()
        .map(|m| m.host_path.clone())
        .chain(
            specs
                .iter()
                .flat_map(|s| s.volume_mounts.iter().map(|v| v.host_path.clone())),
        )
        .filter(|p| !p.is_empty())
        .collect();
    if paths.is_empty() {
        return HashMap::new();
    }
    run_blocking(move || {
        paths
            .into_iter()
            .filter_map(|p| {
                let real = std::fs::canonicalize(&p).ok()?;
                Some((p, real.to_str()?.to_string()))
            })
            .collect()
    })
    .await
}

/// The seccomp profile files the request names that the node does not have.
async fn missing_seccomp_profiles(specs: &[ContainerSpec]) -> BTreeSet<String> {
    let paths: Vec<String> = specs
        .iter()
        .filter_map(|s| match &s.security.seccomp {
            Some(Profile::Localhost(p)) => Some(seccomp_profile_path(p)),
            _ => None,
        })
        .collect();
    if paths.is_empty() {
        return BTreeSet::new();
    }
    run_blocking(move || {
        paths
            .into_iter()
            .filter(|p| !std::path::Path::new(p).is_file())
            .collect()
    })
    .await
}

impl Lifecycle {
    /// The namespace of the selected pod, for authorization (any sandbox of it will do: a pod's
    /// namespace never changes).
    pub async fn pod_namespace(&self, pod: &PodSelector) -> Result<String> {
        if let PodSelector::Name { namespace, .. } = pod {
            return Ok(namespace.clone());
        }
        let found = self
            .cri
            .list_pod_sandbox(pod.sandbox_filter())
            .await
            .map_err(Error::runtime("looking up the pod"))?;
        found
            .into_iter()
            .find_map(|s| s.metadata.map(|m| m.namespace))
            .ok_or_else(|| Error::NotFound(format!("{pod} not found")))
    }

    /// What the pod's kubelet containers run with (their OCI specs, from containerd's verbose
    /// status), cached per set of containers. A container whose spec cannot be read refuses the
    /// add: podgraft compares with what it knows, never with a guess.
    async fn pod_security(
        &self,
        sandbox: &Sandbox,
        kubelet: &[&cri::Container],
    ) -> Result<Arc<PodSecurity>> {
        let mut ids: Vec<String> = kubelet.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        if let Some((key, cached)) = &*sandbox.security.lock().unwrap_or_else(|e| e.into_inner()) {
            if *key == ids {
                return Ok(cached.clone());
            }
        }
        let mut containers = Vec::with_capacity(kubelet.len());
        for c in kubelet {
            let status = self
                .cri
                .container_status(&c.id, true)
                .await
                .map_err(Error::runtime("reading what the pod's containers run with"))?;
            let info = status
                .info
                .get("info")
                .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok());
            let name = name_of(c);
            let security = info
                .as_ref()
                .and_then(|i| ContainerSecurity::from_verbose(name, i))
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "cannot read the security settings container {name:?} runs with (containerd's verbose status has no OCI spec), so nothing can be compared with it"
                    ))
                })?;
            containers.push(security);
        }
        let security = Arc::new(PodSecurity {
            sandbox: SandboxSecurity::of(&sandbox.config()),
            containers,
        });
        *sandbox.security.lock().unwrap_or_else(|e| e.into_inner()) = Some((ids, security.clone()));
        Ok(security)
    }

    /// The selected pod's current sandbox, if it is mutable and running.
    pub(super) async fn resolve(&self, pod: &PodSelector) -> Result<Arc<Sandbox>> {
        let mut found = self
            .cri
            .list_pod_sandbox(pod.sandbox_filter())
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
            return Err(Error::NotFound(format!("{pod} not found")));
        };
        if !self.store.is_mutable_handler(&sandbox.runtime_handler) {
            return Err(Error::FailedPrecondition(format!(
                "{pod} runs with RuntimeClass handler {:?}, which is not mutable (mutable_handlers: {:?})",
                sandbox.runtime_handler,
                self.store.mutable_handlers()
            )));
        }
        if sandbox.state != cri::PodSandboxState::SandboxReady as i32 {
            return Err(Error::FailedPrecondition(format!(
                "{pod} is not running (sandbox not ready)"
            )));
        }
        self.store.get(&sandbox.id).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{pod} has no recorded sandbox config yet (podgraft could not rebuild it); re-create the pod"
            ))
        })
    }

    /// What admission needs about the pod, read from containerd and podgraft's own state. Call
    /// under the pod's lock, so no other add of the pod is between its facts and its reservation.
    pub(super) async fn pod_facts(
        &self,
        sandbox: &Sandbox,
        specs: &[ContainerSpec],
    ) -> Result<PodFacts> {
        let id = sandbox.id();
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
        let mut mounts = Vec::new();
        if specs.iter().any(|s| !s.volume_mounts.is_empty()) {
            for c in &kubelet {
                let status = self
                    .cri
                    .container_status(&c.id, false)
                    .await
                    .map_err(Error::runtime("reading the pod's mounts"))?;
                mounts.extend(status.status.map(|s| s.mounts).unwrap_or_default());
            }
        }
        // Compared with what runs: an exited container (an init container such as a mesh's
        // iptables setup with NET_ADMIN) holds nothing now, and must not lend its privileges.
        let running: Vec<&cri::Container> = kubelet
            .iter()
            .copied()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .collect();
        let security = self.pod_security(sandbox, &running).await?;
        let missing_profiles = missing_seccomp_profiles(specs).await;
        let resolved_paths = resolve_host_paths(&mounts, specs).await;
        let in_flight = self.registry.in_flight(&id);
        let record = sandbox.record();
        Ok(PodFacts {
            dynamic_in_pod: all.len() - kubelet.len() + in_flight.len(),
            dynamic_on_node: self.registry.count(),
            limits: self.settings.limits,
            security: (*security).clone(),
            missing_profiles,
            resolved_paths,
            stopping: sandbox.is_stopping(),
            kubelet_running: kubelet
                .iter()
                .any(|c| c.state == cri::ContainerState::ContainerRunning as i32),
            qos: Qos::from_cgroup_parent(cgroup_parent(&record.config)),
            names: TakenNames {
                containers: all.iter().map(|c| name_of(c).to_string()).collect(),
                in_flight,
            },
            mounts,
            sandbox_id: id,
        })
    }
}
