//! Removing dynamic containers: graceful stop, removal, then the pod shrinks back.

use std::sync::Arc;

use super::Lifecycle;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::{EventKind, PodId, PodSelector};
use crate::dynamic::resources::Trigger;
use crate::dynamic::state::{PendingRemoval, Sandbox};
use crate::fault;

/// The grace period when a request gives none (the kubelet's default for pods).
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

impl Lifecycle {
    /// Gracefully stops and removes the named dynamic containers.
    pub async fn remove(
        &self,
        pod: &PodSelector,
        names: &[String],
        grace_seconds: Option<i64>,
    ) -> Result<Vec<String>> {
        if names.is_empty() {
            return Err(Error::invalid("names", "give at least one container name"));
        }
        let grace = grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        if grace < 0 {
            return Err(Error::invalid(
                "grace_period_seconds",
                "must not be negative",
            ));
        }
        let sandbox = self.resolve(pod).await?;
        self.remove_names(&sandbox, names, grace, "").await
    }

    /// Removes the named containers of `sandbox` (every attempt), keeps their final statuses and
    /// shrinks the pod; each removal is reported as REMOVED, or as COLLECTED with reason
    /// `collected` when that is not empty (garbage collection).
    pub(super) async fn remove_names(
        &self,
        sandbox: &Arc<Sandbox>,
        names: &[String],
        grace: i64,
        collected: &str,
    ) -> Result<Vec<String>> {
        let id = sandbox.id();
        // No restart may bring back what is being removed; one in flight finishes first (its
        // attempt is then removed with the others, or removes itself).
        self.registry.forget_restarts(&id, names);
        drop(sandbox.restart_lock.lock().await);
        let mut targets = Vec::new();
        let mut pending = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let found = self.find(&id, name).await?;
            if found.is_empty() {
                return Err(Error::NotFound(format!(
                    "names[{i}]: no dynamic container {name:?} in sandbox {id}"
                )));
            }
            self.unstrand(&id, name);
            let view = self.final_status(sandbox, &found).await;
            pending.push(self.pending_removal(name, view, collected));
            targets.extend(found.into_iter().map(|c| (name.clone(), c.id)));
        }
        // Recorded before the first stop: from here on a crash leaves a removal the next start
        // finishes, never a stopped container that its restart policy brings back. Without the
        // record nothing is stopped, as for an add without its batch record.
        self.store
            .begin_removal(sandbox, pending.clone())
            .await
            .map_err(|e| Error::Internal(format!("recording the removal: {e}")))?;
        fault::point("remove.before_destroy");
        let results =
            futures_util::future::join_all(targets.iter().map(|(_, cid)| self.destroy(cid, grace)))
                .await;
        fault::point("remove.after_destroy");
        let mut failed = Vec::new();
        let mut abandoned = Vec::new();
        for ((name, cid), ok) in targets.iter().zip(&results) {
            if !ok {
                failed.push(format!("{name:?} ({cid})"));
                if !abandoned.contains(name) {
                    abandoned.push(name.clone());
                }
            }
        }
        let done = pending
            .into_iter()
            .filter(|p| !abandoned.contains(&p.name))
            .map(|p| {
                let cids = targets
                    .iter()
                    .filter(|(name, _)| *name == p.name)
                    .map(|(_, cid)| cid.clone())
                    .collect();
                (p, cids)
            })
            .collect();
        // A failed removal leaves its container as it is and says so: it is no longer under way
        // (the caller retries), so the next start does not finish it behind the caller's back.
        let removed = self.complete_removals(sandbox, done, &abandoned).await;
        if !failed.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "could not remove {}; retry (removed: {removed:?})",
                failed.join(", ")
            )));
        }
        Ok(removed)
    }

    /// Completes removals whose containers are gone (each with the IDs of its removed
    /// attempts): termination files dropped, each attempt reported, the final statuses kept and
    /// the removals (and the `abandoned` ones) ended in one record write, then the reservation
    /// released and the pod shrunk. Returns the names removed.
    pub(super) async fn complete_removals(
        &self,
        sandbox: &Arc<Sandbox>,
        done: Vec<(PendingRemoval, Vec<String>)>,
        abandoned: &[String],
    ) -> Vec<String> {
        let id = sandbox.id();
        let pod = PodId::new(&id, &sandbox.config());
        let removed_at = self.host.now_unix_nanos();
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for (p, cids) in done {
            self.remove_termination_files(&id, Some(&p.name)).await;
            let kind = if p.collected.is_empty() {
                EventKind::Removed
            } else {
                EventKind::Collected
            };
            // Containers a crash let go before their removal was reported (found gone at load)
            // are reported once, as the newest attempt they were.
            let cids = if cids.is_empty() {
                p.status.iter().map(|s| s.container_id.clone()).collect()
            } else {
                cids
            };
            for cid in &cids {
                self.emit_reason(kind, &pod, &p.name, cid, &p.collected, "");
            }
            kept.extend(p.kept_at(removed_at));
            removed.push(p.name);
        }
        if let Err(e) = self
            .store
            .finish_removal(sandbox, &removed, kept, abandoned)
            .await
        {
            tracing::warn!(sandbox = %id, error = %e, "could not persist the end of a removal");
        }
        fault::point("remove.after_record");
        self.ledger.release(&id, &removed);
        // While state loads, the ledger is still being rebuilt from the live containers (these
        // are no longer among them) and the reconcile that ends the load shrinks the pod.
        if !self.registry.is_loaded() {
            return removed;
        }
        // Shrink the pod only after its containers are gone. Memory still in use by the pod's
        // other containers can refuse the shrink: then reconcile retries it, and the removal
        // itself has happened.
        if let Err(e) = self.cgroups.apply(sandbox, Trigger::GrowthChanged).await {
            tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after removal deferred");
        }
        fault::point("remove.after_shrink");
        removed
    }
}
