//! Keeps each mutable pod's cgroup at exactly the kubelet's baseline plus the growth of its live
//! dynamic containers.
//!
//! The baseline is what the kubelet set. podgraft remembers it (and what it wrote itself) in the
//! sandbox record, so a restart neither loses nor double-counts growth. A value podgraft did not
//! write is adopted as the new baseline when the kubelet announces a pod resize
//! (UpdatePodSandboxResources); at any other time it is drift, which is logged and repaired.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::{Error, Result};
use super::manager::Manager;
use super::sandboxes::{CgroupState, Sandbox};
use crate::cgroup::{CgroupError, CgroupIo, Growth, Mode, PodCgroup};

/// Where and how pod cgroups are managed.
#[derive(Clone)]
pub struct CgroupSettings {
    pub root: PathBuf,
    pub mode: Mode,
    pub io: Arc<dyn CgroupIo>,
}

/// Why the pod cgroup is being brought in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An add or remove changed the pod's growth.
    GrowthChanged,
    /// The kubelet says it has just resized the pod: what is there now is its new baseline.
    KubeletResize,
    /// Periodic check: anything found changed is drift.
    Reconcile,
}

fn to_error(e: CgroupError) -> Error {
    match e {
        CgroupError::BelowUsage { .. } | CgroupError::Busy { .. } => {
            Error::FailedPrecondition(format!("pod cgroup: {e}"))
        }
        other => Error::Internal(format!("pod cgroup: {other}")),
    }
}

impl Manager {
    /// Writes baseline + growth to the pod cgroup if it differs. No-op when podgraft does not
    /// manage cgroups (unit tests without a fixture tree).
    pub(super) fn apply_growth(&self, sandbox: &Sandbox, trigger: Trigger) -> Result<()> {
        let Some(cg) = &self.settings.cgroups else {
            return Ok(());
        };
        let id = sandbox.id();
        let config = sandbox.config();
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let pod = PodCgroup::new(&cg.root, cg.mode, &parent).map_err(to_error)?;
        let _guard = sandbox
            .cgroup_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = pod.read(cg.io.as_ref()).map_err(to_error)?;
        let growth = self.ledger.pod_growth(&id);
        let known = sandbox.record().cgroup;
        let baseline = match known {
            Some(state) if state.written.normalized(cg.mode) == current => state.baseline,
            Some(state) if trigger == Trigger::KubeletResize => {
                tracing::info!(sandbox = %id, old = ?state.baseline, new = ?current, "kubelet resized the pod; re-applying growth on the new baseline");
                current
            }
            Some(state) => {
                tracing::warn!(sandbox = %id, expected = ?state.written, found = ?current, "pod cgroup drifted; restoring baseline + growth");
                state.baseline
            }
            // First sight of this pod's cgroup. If its dynamic containers exist already (state
            // lost), their growth is in the cgroup: take it out rather than count it twice.
            None if !growth.is_zero() => current.plus(&Growth::default().sub(&growth)),
            None => current,
        };
        let target = baseline.plus(&growth);
        if target.normalized(cg.mode) != current {
            pod.write(cg.io.as_ref(), &current, &target)
                .map_err(to_error)?;
            tracing::debug!(sandbox = %id, ?baseline, ?target, "pod cgroup set");
        }
        let state = CgroupState {
            baseline,
            written: target,
        };
        if let Err(e) = self.store.set_cgroup(sandbox, state) {
            tracing::warn!(error = %e, "could not persist pod cgroup state");
        }
        Ok(())
    }

    /// The kubelet resized the pod (UpdatePodSandboxResources): adopt its new baseline.
    pub fn pod_resized(&self, sandbox_id: &str) {
        if let Some(sandbox) = self.store.get(sandbox_id) {
            if let Err(e) = self.apply_growth(&sandbox, Trigger::KubeletResize) {
                tracing::warn!(sandbox = sandbox_id, error = %e, "re-applying growth after a pod resize failed");
            }
        }
    }

    /// Brings every mutable pod's cgroup in line (periodic; also retries shrinks that were
    /// refused because the pod used too much memory at the time).
    pub fn reconcile_cgroups(&self) {
        for sandbox in self.store.all() {
            if sandbox.is_stopping() {
                continue;
            }
            if let Err(e) = self.apply_growth(&sandbox, Trigger::Reconcile) {
                tracing::debug!(sandbox = %sandbox.id(), error = %e, "pod cgroup reconcile failed");
            }
        }
    }
}

#[cfg(test)]
#[path = "growth_tests.rs"]
mod tests;
