//! The final statuses of removed containers: taken just before a removal (RemoveContainers or
//! garbage collection), kept with the pod's record (state::removed, the last 10 per pod), and
//! shown by GetContainer when no live container has the name, and by ListContainers with
//! include_removed. A running container that is removed shows as exited with reason Removed.

use k8s_cri::v1 as cri;

use super::Lifecycle;
use super::queries::newest_two;
use crate::dynamic::model::{ContainerState, ContainerView, PodId};
use crate::dynamic::state::{KeptStatus, Sandbox};

/// The reason a kept status gives for a container that was still running when it was removed.
pub const REMOVED_REASON: &str = "Removed";

impl Lifecycle {
    /// The status of the container whose attempts are `found`, read before it is removed.
    pub(super) async fn final_status(
        &self,
        sandbox: &Sandbox,
        found: &[cri::Container],
    ) -> Option<ContainerView> {
        if found.is_empty() {
            return None;
        }
        let (newest, previous) = newest_two(found.iter().collect());
        self.describe_attempt(sandbox, newest, previous).await.ok()
    }

    /// Keeps `view` as the final status of a container that is now removed.
    pub(super) async fn keep_final_status(&self, sandbox: &Sandbox, view: ContainerView) {
        let removed_at = self.host.now_unix_nanos();
        let exited = view.state == ContainerState::Exited;
        let kept = KeptStatus {
            name: view.name,
            container_id: view.container_id,
            exit_code: view.exit_code,
            reason: if exited {
                view.reason
            } else {
                REMOVED_REASON.into()
            },
            message: view.message,
            created_at_unix_nanos: view.created_at_unix_nanos,
            started_at_unix_nanos: view.started_at_unix_nanos,
            finished_at_unix_nanos: if exited {
                view.finished_at_unix_nanos
            } else {
                removed_at
            },
            restart_count: view.restart_count,
            image_id: view.image_id,
            log_path: view.log_path,
            spec: self.specs.encode(&view.spec),
            last_state: view.last_state,
            removed_at_unix_nanos: removed_at,
        };
        if let Err(e) = self.store.keep_removed_status(sandbox, kept).await {
            tracing::warn!(sandbox = %sandbox.id(), error = %e, "could not persist a removed container's status");
        }
    }

    /// The kept statuses of `sandbox`, newest first.
    pub(super) fn removed_views(&self, sandbox: &Sandbox) -> Vec<ContainerView> {
        let record = sandbox.record();
        let pod = PodId::new(&record.id, &record.config);
        record
            .removed_statuses
            .iter()
            .rev()
            .map(|k| ContainerView {
                pod: pod.clone(),
                name: k.name.clone(),
                container_id: k.container_id.clone(),
                state: ContainerState::Exited,
                exit_code: k.exit_code,
                reason: k.reason.clone(),
                message: k.message.clone(),
                created_at_unix_nanos: k.created_at_unix_nanos,
                started_at_unix_nanos: k.started_at_unix_nanos,
                finished_at_unix_nanos: k.finished_at_unix_nanos,
                restart_count: k.restart_count,
                image_id: k.image_id.clone(),
                log_path: k.log_path.clone(),
                spec: self.specs.decode(&k.spec).unwrap_or_default(),
                last_state: k.last_state.clone(),
                removed_at_unix_nanos: k.removed_at_unix_nanos,
                ..Default::default()
            })
            .collect()
    }
}
