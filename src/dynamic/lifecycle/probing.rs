//! Where lifecycle meets the probe engine: probes start when an attempt starts (add, restart,
//! found running at load) and stop when it exits or goes; readiness and startup as reported.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::{Lifecycle, name_of};
use crate::dynamic::model::keys::SPEC_ANNOTATION;
use crate::dynamic::model::{ContainerSpec, ContainerState, PodId};
use crate::dynamic::probes::Target;

impl Lifecycle {
    /// Attempt `cid` of `name` runs: its probes start.
    pub(super) fn start_probes(&self, pod: &PodId, name: &str, cid: &str, spec: &ContainerSpec) {
        self.probes.start(Target {
            container_id: cid.to_string(),
            pod: pod.clone(),
            name: name.to_string(),
            spec: spec.clone(),
            running_for: Duration::ZERO,
        });
    }

    /// A container found running at load: its probes start over (probe state is not kept
    /// across podgraft restarts, as the kubelet's is not across kubelet restarts).
    pub(super) fn resume_probes(&self, c: &cri::Container) {
        if ContainerState::from_cri(c.state) != ContainerState::Running {
            return;
        }
        let (Some(sandbox), Some(spec)) = (
            self.store.get(&c.pod_sandbox_id),
            c.annotations
                .get(SPEC_ANNOTATION)
                .and_then(|s| self.specs.decode(s)),
        ) else {
            return;
        };
        // Initial delays count from the attempt's start (created and started within moments).
        let running_for = self
            .host
            .now_unix_nanos()
            .saturating_sub(c.created_at)
            .max(0);
        self.probes.start(Target {
            container_id: c.id.clone(),
            pod: PodId::new(&c.pod_sandbox_id, &sandbox.config()),
            name: name_of(c).to_string(),
            spec,
            running_for: Duration::from_nanos(running_for as u64),
        });
    }

    /// (ready, started) of a container: as its probes say while they run; a running container
    /// without readiness or startup probes is ready and started; anything else is neither.
    pub(super) fn probe_status(
        &self,
        cid: &str,
        state: ContainerState,
        spec: &ContainerSpec,
    ) -> (bool, bool) {
        if state != ContainerState::Running {
            return (false, false);
        }
        self.probes.status(cid).unwrap_or_else(|| {
            let started = spec.startup_probe.is_none();
            (started && spec.readiness_probe.is_none(), started)
        })
    }
}

#[cfg(test)]
#[path = "probing_tests.rs"]
mod tests;
