//! Everything that changes dynamic containers: adds (a chain of steps with undos), removals, pod
//! teardown as the relay reports it, loading state at start, and the supervisor loop. The only
//! writer of the [`Registry`].
//!
//! - [`add`] over [`chain`]: admission, reservation, growth, batch record, pull, create, start;
//! - [`remove`] (recorded before its first stop; [`unfinished`] finishes one a crash cut short);
//!   [`teardown`]: the pod lifecycle calls the relay sees;
//! - [`load`]: rebuilding state from containerd at start; [`recovery`]: cleaning up after a
//!   crash (verified, retried removal; tombstones of rolled-back adds; back-offs resumed);
//! - [`supervisor`]: exit detection, restarts and cgroup reconciliation (later GC);
//! - [`probing`]: starting and stopping the probes of each attempt (`dynamic::probes` runs them);
//! - [`restart`]: restart policies with the kubelet's CrashLoopBackOff;
//! - [`queries`]: list, get, exec;
//! - [`resolve`]: finding the pod a request names, and the facts admission needs about it;
//! - [`translate`], [`stored_spec`]: the CRI config of a container, and the spec kept with it.

mod add;
mod chain;
pub mod gc;
mod load;
mod probing;
mod queries;
mod recovery;
mod remove;
mod removed;
mod resolve;
pub mod restart;
pub mod stored_spec;
mod supervisor;
mod teardown;
pub mod termination;
pub mod translate;
mod unfinished;

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::events::EventLog;
use super::host::Host;
use super::model::keys::{ADMITTED_ANNOTATION, CONTAINER_NAME_LABEL, DYNAMIC_LABEL};
use super::model::{Event, EventKind, PodId};
use super::probes::Prober;
use super::registry::Registry;
use super::resources::{Ledger, PodCgroups};
use super::state::{BatchLog, SandboxStore};
use crate::cri::Cri;

/// Tunables of lifecycle operations.
#[derive(Clone)]
pub(crate) struct LifecycleSettings {
    /// Grace period for dynamic containers when their pod is stopped.
    pub pod_stop_grace: Duration,
    /// Node memory, for the kubelet's oom_score_adj formula.
    pub memory_capacity: i64,
    /// How many dynamic containers a pod and the node may have.
    pub limits: crate::dynamic::admission::Limits,
    /// How long exited containers that will not restart stay before they are collected.
    pub gc_exited_after: Duration,
}

/// The components lifecycle code works with; each owns its own state.
pub(crate) struct Lifecycle {
    pub cri: Arc<dyn Cri>,
    pub store: Arc<SandboxStore>,
    pub registry: Arc<Registry>,
    pub ledger: Arc<Ledger>,
    pub cgroups: PodCgroups,
    pub events: Arc<EventLog>,
    pub batches: BatchLog,
    pub specs: stored_spec::SpecCodec,
    pub host: Arc<dyn Host>,
    pub settings: LifecycleSettings,
    /// Probes of running dynamic containers (lifecycle/probing.rs starts and stops them).
    pub probes: Arc<Prober>,
    pub gc: gc::GcState,
    /// Removals recovery could not finish at load (sandbox, name): the supervisor retries them.
    pub stranded_removals: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// The CRI filter for dynamic containers, of one sandbox or all.
fn dynamic_filter(sandbox: Option<&str>) -> cri::ContainerFilter {
    cri::ContainerFilter {
        pod_sandbox_id: sandbox.unwrap_or_default().to_string(),
        label_selector: [(DYNAMIC_LABEL.to_string(), "true".to_string())].into(),
        ..Default::default()
    }
}

fn name_of(c: &cri::Container) -> &str {
    c.metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or_default()
}

impl Lifecycle {
    /// The CRI config of attempt `attempt` of a container, with what admission decided for it
    /// kept beside its spec (a restart rebuilds the next attempt from the two).
    fn container_config(
        &self,
        spec: &crate::dynamic::model::ContainerSpec,
        admitted: &crate::dynamic::admission::Admitted,
        pod: &cri::PodSandboxConfig,
        attempt: u32,
    ) -> cri::ContainerConfig {
        let mut config = translate::container_config(
            spec,
            &admitted.security,
            self.specs.encode(spec),
            pod,
            admitted.mounts.clone(),
            attempt,
            self.settings.memory_capacity,
        );
        config.annotations.insert(
            ADMITTED_ANNOTATION.into(),
            serde_json::to_string(admitted).expect("admission results serialize"),
        );
        config
    }

    /// The dynamic containers of `sandbox_id` named `name` (every attempt).
    async fn find(&self, sandbox_id: &str, name: &str) -> super::Result<Vec<cri::Container>> {
        let mut filter = dynamic_filter(Some(sandbox_id));
        filter
            .label_selector
            .insert(CONTAINER_NAME_LABEL.into(), name.to_string());
        self.cri
            .list_containers(filter)
            .await
            .map_err(super::Error::runtime("listing dynamic containers"))
    }

    /// Stops (with `grace` seconds) and removes a container; logs what fails, since this runs on
    /// rollback and teardown paths where the first error must not hide the cleanup of the rest.
    async fn destroy(&self, cid: &str, grace: i64) -> bool {
        self.probes.stop(cid);
        self.registry.set_removing(cid, true);
        crate::fault::point("destroy.before_stop");
        let stopped = match self.cri.stop_container(cid, grace).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = cid, error = %e, "stopping dynamic container failed");
                false
            }
        };
        crate::fault::point("destroy.before_remove");
        let removed = match self.cri.remove_container(cid).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = cid, error = %e, "removing dynamic container failed");
                false
            }
        };
        if removed {
            crate::fault::point("destroy.after_remove");
            self.registry.remove(cid);
        } else {
            self.registry.set_removing(cid, false);
        }
        if stopped && removed {
            return true;
        }
        // containerd may still be busy with the container (a start under way, a task it cannot
        // delete yet): retried, at once and verified (`recovery`).
        self.destroy_verified(cid).await.is_ok()
    }

    fn emit(&self, kind: EventKind, pod: &PodId, name: &str, cid: &str, message: &str) {
        self.emit_reason(kind, pod, name, cid, "", message);
    }

    fn emit_reason(
        &self,
        kind: EventKind,
        pod: &PodId,
        name: &str,
        cid: &str,
        reason: &str,
        message: &str,
    ) {
        self.events.emit(Event {
            reason: reason.to_string(),
            kind,
            pod: Some(pod.clone()),
            name: name.to_string(),
            container_id: cid.to_string(),
            message: message.to_string(),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod gc_tests;
#[cfg(test)]
mod removal_tests;
#[cfg(test)]
mod termination_tests;
#[cfg(test)]
mod tests;
