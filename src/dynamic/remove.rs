//! Removing dynamic containers: graceful stop, removal, then the pod shrinks back.

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::growth::Trigger;
use super::manager::{Manager, dynamic_filter, pod_ref};
use super::translate::CONTAINER_NAME_LABEL;
use crate::api::{PodRef, event::Type as EventType};

impl Manager {
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
