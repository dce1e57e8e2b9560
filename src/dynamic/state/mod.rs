//! What podgraft keeps on disk: one record per mutable sandbox (its config, removed names, removals
//! under way and pod cgroup baseline) and one per add in progress. containerd stays the source of
//! truth for which containers and sandboxes exist; these files hold only what containerd cannot
//! tell.
//!
//! - [`writer`]: the one atomic, versioned writer; all file I/O runs off the async threads;
//! - [`sandboxes`]: the mutable sandboxes and their records;
//! - [`batches`]: adds in progress, so an add interrupted by a crash is rolled back at start;
//! - [`verbose`]: rebuilding a sandbox's config from containerd's verbose status.

pub mod batches;
pub mod removed;
pub mod sandboxes;
pub mod verbose;
pub mod writer;

pub use batches::{Batch, BatchLog};
pub use removed::{KeptStatus, PendingRemoval, REMOVED_STATUSES_KEPT};
pub use sandboxes::{CgroupState, REMOVED_NAMES_KEPT, Sandbox, SandboxStore, Snapshot};
pub use writer::{StateError, Writer};
