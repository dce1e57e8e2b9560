//! Removing dynamic containers: graceful stop, removal, then the pod shrinks back.

use std::sync::Arc;

use super::Lifecycle;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::{EventKind, PodId, PodSelector};
use crate::dynamic::resources::Trigger;
use crate::dynamic::state::Sandbox;
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
        self.remove_names(&sandbox, names, grace, EventKind::Removed, "")
            .await
    }

    /// Removes the named containers of `sandbox` (every attempt), keeps their final statuses and
    /// shrinks the pod; each removal is reported as `kind` with `reason` (REMOVED, or COLLECTED
    /// by garbage collection).
    pub(super) async fn remove_names(
        &self,
        sandbox: &Arc<Sandbox>,
        names: &[String],
        grace: i64,
        kind: EventKind,
        reason: &str,
    ) -> Result<Vec<String>> {
        let id = sandbox.id();
        // No restart may bring back what is being removed; one in flight finishes first (its
        // attempt is then removed with the others, or removes itself).
        self.registry.forget_restarts(&id, names);
        drop(sandbox.restart_lock.lock().await);
        let mut targets = Vec::new();
        let mut finals = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let found = self.find(&id, name).await?;
            if found.is_empty() {
                return Err(Error::NotFound(format!(
                    "names[{i}]: no dynamic container {name:?} in sandbox {id}"
                )));
            }
            finals.push(self.final_status(sandbox, &found).await);
            targets.extend(found.into_iter().map(|c| (name.clone(), c.id)));
        }
        let pod = PodId::new(&id, &sandbox.config());
        fault::point("remove.before_destroy");
        let results =
            futures_util::future::join_all(targets.iter().map(|(_, cid)| self.destroy(cid, grace)))
                .await;
        fault::point("remove.after_destroy");
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for ((name, cid), ok) in targets.into_iter().zip(results) {
            if !ok {
                failed.push(format!("{name:?} ({cid})"));
                continue;
            }
            if let Err(e) = self.store.remember_removed(sandbox, &name).await {
                tracing::warn!(error = %e, "could not persist removed name");
            }
            self.remove_termination_files(&id, Some(&name)).await;
            self.emit_reason(kind, &pod, &name, &cid, reason, "");
            removed.push(name);
        }
        for status in finals.into_iter().flatten() {
            if !failed
                .iter()
                .any(|f| f.starts_with(&format!("{:?} ", status.name)))
            {
                self.keep_final_status(sandbox, status).await;
            }
        }
        // Shrink the pod only after its containers are gone. Memory still in use by the pod's
        // other containers can refuse the shrink: then reconcile retries it, and the removal
        // itself has happened.
        self.ledger.release(&id, &removed);
        if let Err(e) = self.cgroups.apply(sandbox, Trigger::GrowthChanged).await {
            tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after removal deferred");
        }
        fault::point("remove.after_shrink");
        if !failed.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "could not remove {}; retry (removed: {removed:?})",
                failed.join(", ")
            )));
        }
        Ok(removed)
    }
}
