//! podgraft's configuration: a TOML file (unknown keys rejected) overridden by command-line flags.
//! Every default works on a stock containerd node.

mod settle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where `podgraft serve` looks for its config when `--config` is not given; a missing file there
/// means "all defaults".
pub const DEFAULT_CONFIG_PATH: &str = "/etc/podgraft/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A test or benchmark would read the host's own config file.
    #[error(transparent)]
    HostPath(#[from] crate::host_paths::HostPathError),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The file format; see `docs/config.md` for every key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The kubelet-facing CRI socket.
    pub listen: String,
    /// Permission bits of the sockets podgraft creates, as an octal string.
    pub socket_mode: String,
    /// Group (name or number) given to the sockets; empty keeps root's.
    pub socket_group: String,
    /// containerd's CRI socket.
    pub runtime_endpoint: String,
    /// A separate image service socket; empty means the runtime endpoint serves images too.
    pub image_endpoint: String,
    /// Largest gRPC message relayed in either direction.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight calls.
    pub drain_timeout_seconds: u64,
    /// Longest wait for one backend connection attempt.
    pub backend_connect_timeout_ms: u64,
    /// Upper bound of the reconnect backoff.
    pub backend_max_backoff_ms: u64,
    /// Worker threads of the runtime; 0 runs everything on one thread, which measures fastest on
    /// small nodes (a relay hop is latency-bound, not CPU-bound).
    pub worker_threads: usize,
    /// RuntimeClass handlers whose pods accept dynamic containers. Empty: podgraft only relays.
    pub mutable_handlers: Vec<String>,
    /// The control API socket (same mode as `listen`).
    pub control_listen: String,
    /// Where podgraft keeps the few files containerd cannot hold for it (sandbox configs).
    pub state_dir: String,
    /// Grace period of dynamic containers when their pod is stopped.
    pub pod_stop_grace_seconds: u64,
    /// How often dynamic containers are checked for exits.
    pub poll_interval_ms: u64,
    /// The cgroup hierarchy root holding the pod cgroups.
    pub cgroup_root: String,
    /// How often pod cgroups are checked against the kubelet's baseline + growth.
    pub reconcile_interval_ms: u64,
    /// How long an exited dynamic container that will not restart stays before it is removed.
    pub gc_exited_after_seconds: u64,
    /// Node-wide bounds on what dynamic containers may add together (Kubernetes quantities);
    /// empty: unbounded.
    pub dynamic_budget_cpu: String,
    pub dynamic_budget_memory: String,
    /// How many dynamic containers one pod, and the whole node, may have.
    pub max_dynamic_per_pod: usize,
    pub max_dynamic_per_node: usize,
    /// An optional TCP listener of the control API for remote controllers, with mutual TLS
    /// (`host:port`; empty: off), its certificate and key, and the CA its clients' certificates
    /// must chain to (PEM files).
    pub control_tls_listen: String,
    pub control_tls_cert: String,
    pub control_tls_key: String,
    pub control_tls_client_ca: String,
    /// Who may call the control API beyond root (see `control::auth`).
    pub access: Vec<crate::control::auth::AccessRule>,
    /// Where control API audit records go: a file path, "stderr", or "off".
    pub audit_log: String,
    /// Log lines as "text" or "json".
    pub log_format: String,
    /// The HTTP listener of /metrics, /healthz and /readyz (`host:port`; "" or "off": none).
    pub metrics_listen: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "/run/podgraft/podgraft.sock".into(),
            socket_mode: "0660".into(),
            socket_group: String::new(),
            runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
            image_endpoint: String::new(),
            max_message_bytes: 16 << 20,
            drain_timeout_seconds: 10,
            backend_connect_timeout_ms: 2000,
            backend_max_backoff_ms: 5000,
            worker_threads: 0,
            mutable_handlers: Vec::new(),
            control_listen: "/run/podgraft/control.sock".into(),
            state_dir: "/var/lib/podgraft".into(),
            pod_stop_grace_seconds: 10,
            poll_interval_ms: 1000,
            cgroup_root: "/sys/fs/cgroup".into(),
            reconcile_interval_ms: 10_000,
            gc_exited_after_seconds: 300,
            dynamic_budget_cpu: String::new(),
            dynamic_budget_memory: String::new(),
            max_dynamic_per_pod: 64,
            max_dynamic_per_node: 1024,
            control_tls_listen: String::new(),
            control_tls_cert: String::new(),
            control_tls_key: String::new(),
            control_tls_client_ca: String::new(),
            access: Vec::new(),
            audit_log: "stderr".into(),
            log_format: "text".into(),
            metrics_listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub control_listen: Option<String>,
    pub runtime_endpoint: Option<String>,
    pub image_endpoint: Option<String>,
}

/// The mutual-TLS listener of the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlTls {
    pub listen: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The checked configuration the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    pub runtime_endpoint: PathBuf,
    pub image_endpoint: Option<PathBuf>,
    pub max_message_bytes: usize,
    pub drain_timeout: Duration,
    pub backend_connect_timeout: Duration,
    pub backend_max_backoff: Duration,
    pub worker_threads: usize,
    pub mutable_handlers: Vec<String>,
    pub control_listen: PathBuf,
    pub state_dir: PathBuf,
    pub pod_stop_grace: Duration,
    pub poll_interval: Duration,
    pub cgroup_root: PathBuf,
    pub reconcile_interval: Duration,
    pub gc_exited_after: Duration,
    /// Node budget: milli-CPU and bytes; `None` unbounded.
    pub budget_cpu_milli: Option<i64>,
    pub budget_memory: Option<i64>,
    pub limits: crate::dynamic::admission::Limits,
    pub control_tls: Option<ControlTls>,
    pub access: crate::control::auth::Policy,
    pub audit: crate::control::audit::AuditSink,
    pub log_format: crate::logging::LogFormat,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads `path`, or the default location (if it exists) when `path` is `None`. Tests may read
    /// neither the default nor any other file of the host's podgraft ([`crate::host_paths`]).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        crate::host_paths::check(path)?;
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

pub use settle::socket_path;

#[cfg(test)]
mod tests;
