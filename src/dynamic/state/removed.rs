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
