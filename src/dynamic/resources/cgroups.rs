//! Keeps each mutable pod's cgroup at the kubelet's baseline plus the growth of its live dynamic
//! containers, writing it only while podgraft holds growth there.
//!
//! The baseline is what the kubelet set. podgraft remembers it (and what it wrote itself) in the
//! sandbox record, so a restart neither loses nor double-counts growth. How a value podgraft did
//! not write is read:
//! - while podgraft holds no growth in the pod, the cgroup is the kubelet's alone: any value found
//!   is the baseline, re-learned and never written back;
//! - while it holds growth, a change announced by UpdatePodSandboxResources (Kubernetes ≥ 1.33) is
//!   the kubelet's resize: the new values are the baseline and the growth goes on top; an
//!   unannounced change is drift (another writer, or a kubelet too old to announce): logged, and
//!   baseline + growth restored.
//!
//! Every read and write of a pod cgroup runs on the blocking pool, never on the relay's thread.

use std::path::PathBuf;
use std::sync::Arc;

use super::ledger::Ledger;
use crate::cgroup::{CgroupError, CgroupIo, Growth, Limits, Mode, PodCgroup};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::kubelet::cgroup_parent;
use crate::dynamic::state::writer::run_blocking;
use crate::dynamic::state::{CgroupState, Sandbox, SandboxStore};

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
    /// Periodic check.
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

/// The kubelet's baseline, from what podgraft knew, what is there now and the pod's growth.
fn baseline(
    id: &str,
    known: Option<CgroupState>,
    current: Limits,
    growth: &Growth,
    trigger: Trigger,
    mode: Mode,
) -> Limits {
    match known {
        Some(state) if state.written.normalized(mode) == current => state.baseline,
        // Nothing of podgraft's is in there: whatever is there is the kubelet's.
        Some(state) if !state.holds_growth() => current,
        Some(state) if trigger == Trigger::KubeletResize => {
            tracing::info!(sandbox = %id, old = ?state.baseline, new = ?current, "kubelet resized the pod; re-applying growth on the new baseline");
            current
        }
        Some(state) => {
            tracing::warn!(sandbox = %id, expected = ?state.written, found = ?current, "pod cgroup changed without a resize announcement while it holds dynamic growth; restoring baseline + growth");
            state.baseline
        }
        // First sight of this pod's cgroup. If its dynamic containers exist already (state
        // lost), their growth is in the cgroup: take it out rather than count it twice.
        None => current.plus(&Growth::default().sub(growth)),
    }
}

/// Pod cgroup growth: owns no state of its own beyond settings; the growth comes from the
/// [`Ledger`], the baseline from the sandbox record.
pub struct PodCgroups {
    settings: Option<CgroupSettings>,
    ledger: Arc<Ledger>,
    store: Arc<SandboxStore>,
}

impl PodCgroups {
    /// `settings: None` leaves cgroups alone (unit tests without a fixture tree).
    pub fn new(
        settings: Option<CgroupSettings>,
        ledger: Arc<Ledger>,
        store: Arc<SandboxStore>,
    ) -> Self {
        Self {
            settings,
            ledger,
            store,
        }
    }

    /// Brings the pod cgroup to baseline + growth, writing only where podgraft holds growth.
    pub async fn apply(&self, sandbox: &Arc<Sandbox>, trigger: Trigger) -> Result<()> {
        let Some(cg) = self.settings.clone() else {
            return Ok(());
        };
        let (sb, ledger) = (sandbox.clone(), self.ledger.clone());
        let snapshot = run_blocking(move || apply_blocking(&cg, &sb, &ledger, trigger)).await?;
        if let Some(snapshot) = snapshot {
            if let Err(e) = self.store.save(snapshot).await {
                tracing::warn!(error = %e, "could not persist pod cgroup state");
            }
        }
        Ok(())
    }

    /// Whether the pod's baseline is known yet.
    pub fn knows_baseline(&self, sandbox: &Sandbox) -> bool {
        self.settings.is_none() || sandbox.record().cgroup.is_some()
    }

    /// Brings every mutable pod's cgroup in line (periodic; also retries shrinks that were
    /// refused because the pod used too much memory at the time).
    pub async fn reconcile(&self) {
        for sandbox in self.store.all() {
            if sandbox.is_stopping() {
                continue;
            }
            if let Err(e) = self.apply(&sandbox, Trigger::Reconcile).await {
                tracing::debug!(sandbox = %sandbox.id(), error = %e, "pod cgroup reconcile failed");
            }
        }
    }
}

/// The read-decide-write of one pod under its cgroup lock; the record changes under the same
/// lock, so the next decision sees this one.
fn apply_blocking(
    cg: &CgroupSettings,
    sandbox: &Sandbox,
    ledger: &Ledger,
    trigger: Trigger,
) -> Result<Option<crate::dynamic::state::Snapshot>> {
    let id = sandbox.id();
    let config = sandbox.config();
    let pod = PodCgroup::new(&cg.root, cg.mode, cgroup_parent(&config)).map_err(to_error)?;
    let _guard = sandbox
        .cgroup_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let current = pod.read(cg.io.as_ref()).map_err(to_error)?;
    let growth = ledger.pod_growth(&id);
    let known = sandbox.record().cgroup;
    let baseline = baseline(&id, known, current, &growth, trigger, cg.mode);
    let target = baseline.plus(&growth);
    let holds = !growth.is_zero() || known.is_some_and(|s| s.holds_growth());
    if holds && target.normalized(cg.mode) != current {
        pod.write(cg.io.as_ref(), &current, &target)
            .map_err(to_error)?;
        tracing::debug!(sandbox = %id, ?baseline, ?target, "pod cgroup set");
    }
    Ok(sandbox.set_cgroup(CgroupState {
        baseline,
        written: target,
    }))
}

#[cfg(test)]
#[path = "cgroups_tests.rs"]
mod tests;
