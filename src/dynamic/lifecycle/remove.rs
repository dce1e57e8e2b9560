//! Removing dynamic containers: graceful stop, removal, then the pod shrinks back.

use super::Lifecycle;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::{EventKind, PodId, PodSelector};
use crate::dynamic::resources::Trigger;

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
        let id = sandbox.id();
        // No restart may bring back what is being removed; one in flight finishes first (its
        // attempt is then removed with the others, or removes itself).
        self.registry.forget_restarts(&id, names);
        drop(sandbox.restart_lock.lock().await);
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
        let pod = PodId::new(&id, &sandbox.config());
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
            if let Err(e) = self.store.remember_removed(&sandbox, &name).await {
                tracing::warn!(error = %e, "could not persist removed name");
            }
            self.remove_termination_files(&id, Some(&name)).await;
            self.emit(EventKind::Removed, &pod, &name, &cid, "");
            removed.push(name);
        }
        // Shrink the pod only after its containers are gone. Memory still in use by the pod's
        // other containers can refuse the shrink: then reconcile retries it, and the removal
        // itself has happened.
        self.ledger.release(&id, &removed);
        if let Err(e) = self.cgroups.apply(&sandbox, Trigger::GrowthChanged).await {
            tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after removal deferred");
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
