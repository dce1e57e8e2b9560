//! Dynamic containers and their lifecycle events as podgraft reports them.

use k8s_cri::v1 as cri;

use super::pod::PodId;
use super::spec::ContainerSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerState {
    #[default]
    Unknown,
    Created,
    Running,
    Exited,
}

impl ContainerState {
    /// From CRI's `ContainerState` number (an unknown number is Unknown).
    pub fn from_cri(raw: i32) -> ContainerState {
        match cri::ContainerState::try_from(raw) {
            Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

/// One dynamic container: its spec and containerd's status of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerView {
    pub pod: PodId,
    pub name: String,
    pub container_id: String,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub created_at_unix_nanos: i64,
    pub started_at_unix_nanos: i64,
    pub finished_at_unix_nanos: i64,
    pub restart_count: i32,
    pub image_id: String,
    pub log_path: String,
    pub spec: ContainerSpec,
    /// As the readiness probe says (true without one, once running).
    pub ready: bool,
    /// The startup probe has passed (true without one, once running).
    pub started: bool,
    /// How the previous attempt ended, once the container has restarted.
    pub last_state: Option<Termination>,
    /// Set on the kept final status of a removed container.
    pub removed_at_unix_nanos: i64,
    /// Why the container waits, e.g. CrashLoopBackOff until its next restart.
    pub waiting_reason: String,
}

/// How one attempt of a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Termination {
    pub container_id: String,
    pub exit_code: i32,
    /// Completed, Error, OOMKilled, ...
    pub reason: String,
    /// The termination message, or the log tail under FallbackToLogsOnError.
    pub message: String,
    pub started_at_unix_nanos: i64,
    pub finished_at_unix_nanos: i64,
    pub signal: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventKind {
    #[default]
    Unknown,
    Added,
    Started,
    Exited,
    Removed,
    /// An add that was rolled back.
    Failed,
    /// The requested history is gone: list again.
    Resync,
    /// An exit its restart policy restarts (the message says when).
    Restarting,
    StartupSucceeded,
    Ready,
    NotReady,
    /// The liveness or startup probe failed: the container is killed.
    LivenessFailed,
    /// Removed by garbage collection (exited, orphaned or unknown).
    Collected,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub sequence: u64,
    /// The oldest sequence still kept when this event was emitted.
    pub oldest_sequence: u64,
    pub kind: EventKind,
    pub time_unix_nanos: i64,
    pub pod: Option<PodId>,
    pub name: String,
    pub container_id: String,
    pub message: String,
    /// Machine-readable: Completed, Error, OOMKilled, CrashLoopBackOff, Orphaned, ...
    pub reason: String,
}
