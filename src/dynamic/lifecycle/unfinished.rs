//! Removals a crash cut short. RemoveContainers and garbage collection record a removal in the
//! sandbox record before their first stop; the next start finishes each as it would have
//! finished (containers removed and verified gone, final status kept, reservation released)
//! before any restart is resumed. One containerd will not let go of stays recorded (so its
//! container is never restarted), is reported, and the supervisor's sweeps try it again.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, MutexGuard};

use super::Lifecycle;
use crate::dynamic::state::{PendingRemoval, Sandbox};
use crate::fault;

impl Lifecycle {
    /// At load, before restarts are resumed: every removal a crash cut short (RemoveContainers or
    /// garbage collection, recorded before its first stop) is finished as it would have
    /// finished: containers removed (verified), final status kept, reservation released (the
    /// ledger is rebuilt without them, and the load's reconcile shrinks the pod). One that
    /// cannot be finished stays recorded (its container is not restarted), is reported, and is
    /// tried again by the supervisor's sweeps until it is done.
    pub(super) async fn finish_interrupted_removals(&self) {
        for sandbox in self.store.all() {
            let pending = sandbox.record().removing.clone();
            let left = self.finish_recorded_removals(&sandbox, pending).await;
            let id = sandbox.id();
            self.lock_stranded()
                .extend(left.into_iter().map(|name| (id.clone(), name)));
        }
    }

    /// Supervisor: the removals recovery could not finish at load are tried again (a removal a
    /// caller has started since, or a pod gone since, takes them over).
    pub(super) async fn retry_stranded_removals(&self) {
        let stranded = std::mem::take(&mut *self.lock_stranded());
        let mut by_sandbox: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (sandbox, name) in stranded {
            by_sandbox.entry(sandbox).or_default().push(name);
        }
        for (id, names) in by_sandbox {
            let Some(sandbox) = self.store.get(&id) else {
                continue;
            };
            let pending = sandbox
                .record()
                .removing
                .iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect();
            let left = self.finish_recorded_removals(&sandbox, pending).await;
            self.lock_stranded()
                .extend(left.into_iter().map(|name| (id.clone(), name)));
        }
    }

    /// A removal has been started for `name`: it is no longer recovery's to finish.
    pub(super) fn unstrand(&self, sandbox_id: &str, name: &str) {
        self.lock_stranded()
            .remove(&(sandbox_id.to_string(), name.to_string()));
    }

    fn lock_stranded(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.stranded_removals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Finishes recorded removals of `sandbox` (containers destroyed and verified gone, then
    /// completed as `complete_removals` does); returns the names it could not finish.
    async fn finish_recorded_removals(
        &self,
        sandbox: &Arc<Sandbox>,
        pending: Vec<PendingRemoval>,
    ) -> Vec<String> {
        if pending.is_empty() {
            return Vec::new();
        }
        let id = sandbox.id();
        let mut done = Vec::new();
        let mut left = Vec::new();
        for p in pending {
            tracing::warn!(sandbox = %id, name = %p.name, "finishing a removal interrupted by a crash");
            let found = match self.find(&id, &p.name).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(sandbox = %id, name = %p.name, error = %e, "could not finish an interrupted removal; will retry");
                    left.push(p.name);
                    continue;
                }
            };
            fault::point("load.before_finish_removal");
            if self.destroy_all_verified(&found, true).await {
                done.push((p, found.into_iter().map(|c| c.id).collect()));
            } else {
                left.push(p.name);
            }
        }
        if !done.is_empty() {
            self.complete_removals(sandbox, done, &[]).await;
        }
        left
    }
}
