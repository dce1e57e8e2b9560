//! Final statuses of removed dynamic containers, kept with their pod's record (KEP-5972 keeps the
//! last ~10 removed-container statuses): GetContainer and ListContainers (include_removed) show
//! them after the container is gone from containerd, also after a podgraft restart.

use serde::{Deserialize, Serialize};

use crate::dynamic::model::view::Termination;

/// Removed statuses kept per pod; the oldest is dropped first.
pub const REMOVED_STATUSES_KEPT: usize = 10;

/// A removed container's last status, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeptStatus {
    pub name: String,
    pub container_id: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub created_at_unix_nanos: i64,
    pub started_at_unix_nanos: i64,
    pub finished_at_unix_nanos: i64,
    pub restart_count: i32,
    pub image_id: String,
    pub log_path: String,
    /// The spec as its annotation kept it (`lifecycle::stored_spec`).
    pub spec: String,
    pub last_state: Option<Termination>,
    pub removed_at_unix_nanos: i64,
}

/// A removal under way, recorded before its first stop and dropped once its containers are gone:
/// a removal a crash cut short is finished at the next start instead of being undone by a
/// restart (`lifecycle::load`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRemoval {
    pub name: String,
    /// The final status taken before the first stop (as a finished removal keeps it; its removal
    /// time is set when the removal completes), if it could be read.
    #[serde(default)]
    pub status: Option<KeptStatus>,
    /// Whether the container still ran when the removal began: its kept status then ends when
    /// the removal completes.
    #[serde(default)]
    pub was_running: bool,
    /// The reason of a garbage collection (reported as COLLECTED); empty for RemoveContainers
    /// (reported as REMOVED).
    #[serde(default)]
    pub collected: String,
}

impl PendingRemoval {
    /// The status to keep, stamped with the time the removal completed.
    pub fn kept_at(&self, removed_at_unix_nanos: i64) -> Option<KeptStatus> {
        let mut kept = self.status.clone()?;
        kept.removed_at_unix_nanos = removed_at_unix_nanos;
        if self.was_running {
            kept.finished_at_unix_nanos = removed_at_unix_nanos;
        }
        Some(kept)
    }
}
