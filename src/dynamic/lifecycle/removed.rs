//! The final statuses of removed containers: taken just before a removal (RemoveContainers or
//! garbage collection), kept with the pod's record (state::removed, the last 10 per pod), and
//! shown by GetContainer when no live container has the name, and by ListContainers with
//! include_removed. A running container that is removed shows as exited with reason Removed.

use k8s_cri::v1 as cri;

use super::Lifecycle;
use super::queries::newest_two;
use crate::dynamic::model::{ContainerState, ContainerView, PodId};
use crate::dynamic::state::{KeptStatus, PendingRemoval, Sandbox};

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

    /// The removal of `name` about to begin, with `view` (read before the first stop) as the
    /// final status to keep once it completes; `collected` is a garbage collection's reason.
    pub(super) fn pending_removal(
        &self,
        name: &str,
        view: Option<ContainerView>,
        collected: &str,
    ) -> PendingRemoval {
        let was_running = view
            .as_ref()
            .is_some_and(|v| v.state != ContainerState::Exited);
        let status = view.map(|view| {
            let exited = view.state == ContainerState::Exited;
            KeptStatus {
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
                // Both set to the removal's end by `PendingRemoval::kept_at`.
                finished_at_unix_nanos: view.finished_at_unix_nanos,
                restart_count: view.restart_count,
                image_id: view.image_id,
                log_path: view.log_path,
                spec: self.specs.encode(&view.spec),
                last_state: view.last_state,
                removed_at_unix_nanos: 0,
            }
        });
        PendingRemoval {
            name: name.to_string(),
            status,
            was_running,
            collected: collected.to_string(),
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
