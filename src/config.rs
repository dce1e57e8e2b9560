//! podgraft's configuration: a TOML file (unknown keys rejected) overridden by command-line flags.
//! Every default works on a stock containerd node.

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

    /// Applies the flags and checks every value.
    pub fn settle(mut self, flags: Overrides) -> Result<Settings, ConfigError> {
        if let Some(v) = flags.listen {
            self.listen = v;
        }
        if let Some(v) = flags.control_listen {
            self.control_listen = v;
        }
        if let Some(v) = flags.runtime_endpoint {
            self.runtime_endpoint = v;
        }
        if let Some(v) = flags.image_endpoint {
            self.image_endpoint = v;
        }
        let socket_mode = u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                invalid(
                    "socket_mode",
                    format!("{:?} is not an octal mode like \"0660\"", self.socket_mode),
                )
            })?;
        let socket_group = match self.socket_group.as_str() {
            "" => None,
            g => Some(match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => nix::unistd::Group::from_name(g)
                    .ok()
                    .flatten()
                    .ok_or_else(|| invalid("socket_group", format!("no group named {g:?}")))?
                    .gid
                    .as_raw(),
            }),
        };
        if !(1024..=(256 << 20)).contains(&self.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                format!("{} is outside 1024..=268435456", self.max_message_bytes),
            ));
        }
        if self.backend_connect_timeout_ms == 0 || self.backend_max_backoff_ms == 0 {
            let key = if self.backend_connect_timeout_ms == 0 {
                "backend_connect_timeout_ms"
            } else {
                "backend_max_backoff_ms"
            };
            return Err(invalid(key, "must be greater than 0"));
        }
        if self.worker_threads > 1024 {
            return Err(invalid("worker_threads", "at most 1024"));
        }
        for (i, h) in self.mutable_handlers.iter().enumerate() {
            if h.is_empty()
                || h.len() > 63
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(invalid(
                    "mutable_handlers",
                    format!("entry {i} ({h:?}) is not a RuntimeClass handler name"),
                ));
            }
        }
        if !self.state_dir.starts_with('/') {
            return Err(invalid(
                "state_dir",
                format!("{:?} must be an absolute path", self.state_dir),
            ));
        }
        if self.poll_interval_ms < 100 {
            return Err(invalid("poll_interval_ms", "must be at least 100"));
        }
        if !self.cgroup_root.starts_with('/') {
            return Err(invalid(
                "cgroup_root",
                format!("{:?} must be an absolute path", self.cgroup_root),
            ));
        }
        if self.reconcile_interval_ms < 100 {
            return Err(invalid("reconcile_interval_ms", "must be at least 100"));
        }
        let budget = |key: &'static str, text: &str, parse: fn(&str) -> Option<i64>| match text {
            "" => Ok(None),
            t => parse(t)
                .map(Some)
                .ok_or_else(|| invalid(key, format!("{t:?} is not a Kubernetes quantity"))),
        };
        let budget_cpu_milli = budget(
            "dynamic_budget_cpu",
            &self.dynamic_budget_cpu,
            crate::dynamic::model::quantity::milli_cpu,
        )?;
        let budget_memory = budget(
            "dynamic_budget_memory",
            &self.dynamic_budget_memory,
            crate::dynamic::model::quantity::bytes,
        )?;
        for (key, value) in [
            ("max_dynamic_per_pod", self.max_dynamic_per_pod),
            ("max_dynamic_per_node", self.max_dynamic_per_node),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(invalid(key, format!("{value} is outside 1..=100000")));
            }
        }
        let control_tls = match self.control_tls_listen.as_str() {
            "" => None,
            addr => {
                let listen = addr.parse().map_err(|_| {
                    invalid("control_tls_listen", format!("{addr:?} is not host:port"))
                })?;
                let file = |key: &'static str, value: &str| {
                    if value.starts_with('/') {
                        Ok(PathBuf::from(value))
                    } else {
                        Err(invalid(
                            key,
                            "an absolute path to a PEM file is required with control_tls_listen",
                        ))
                    }
                };
                Some(ControlTls {
                    listen,
                    cert: file("control_tls_cert", &self.control_tls_cert)?,
                    key: file("control_tls_key", &self.control_tls_key)?,
                    client_ca: file("control_tls_client_ca", &self.control_tls_client_ca)?,
                })
            }
        };
        let access = crate::control::auth::Policy::from_rules(&self.access)
            .map_err(|reason| invalid("access", reason))?;
        let audit = match self.audit_log.as_str() {
            "off" => crate::control::audit::AuditSink::Off,
            "stderr" | "" => crate::control::audit::AuditSink::Stderr,
            path if path.starts_with('/') => crate::control::audit::AuditSink::File(path.into()),
            other => {
                return Err(invalid(
                    "audit_log",
                    format!("{other:?}: give an absolute path, \"stderr\" or \"off\""),
                ));
            }
        };
        let log_format = self
            .log_format
            .parse()
            .map_err(|reason| invalid("log_format", reason))?;
        let metrics_listen = match self.metrics_listen.as_str() {
            "" | "off" => None,
            addr => Some(addr.parse().map_err(|_| {
                invalid(
                    "metrics_listen",
                    format!("{addr:?} is not host:port (or \"off\")"),
                )
            })?),
        };
        let image_endpoint = match self.image_endpoint.as_str() {
            "" => None,
            s => Some(socket_path("image_endpoint", s)?),
        };
        Ok(Settings {
            listen: socket_path("listen", &self.listen)?,
            socket_mode,
            socket_group,
            runtime_endpoint: socket_path("runtime_endpoint", &self.runtime_endpoint)?,
            image_endpoint,
            max_message_bytes: self.max_message_bytes,
            drain_timeout: Duration::from_secs(self.drain_timeout_seconds),
            backend_connect_timeout: Duration::from_millis(self.backend_connect_timeout_ms),
            backend_max_backoff: Duration::from_millis(self.backend_max_backoff_ms),
            worker_threads: self.worker_threads,
            mutable_handlers: self.mutable_handlers,
            control_listen: socket_path("control_listen", &self.control_listen)?,
            state_dir: PathBuf::from(self.state_dir),
            pod_stop_grace: Duration::from_secs(self.pod_stop_grace_seconds),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            cgroup_root: PathBuf::from(self.cgroup_root),
            reconcile_interval: Duration::from_millis(self.reconcile_interval_ms),
            gc_exited_after: Duration::from_secs(self.gc_exited_after_seconds),
            budget_cpu_milli,
            budget_memory,
            limits: crate::dynamic::admission::Limits {
                per_pod: self.max_dynamic_per_pod,
                per_node: self.max_dynamic_per_node,
            },
            control_tls,
            access,
            audit,
            log_format,
            metrics_listen,
        })
    }
}

/// Accepts `unix:///abs/path` or `/abs/path`, as the kubelet's endpoint flags do.
pub fn socket_path(key: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
    let path = match value.split_once("://") {
        Some(("unix", rest)) => rest,
        Some((scheme, _)) => {
            return Err(invalid(
                key,
                format!("{value:?}: only unix:// endpoints are supported, not {scheme}://"),
            ));
        }
        None => value,
    };
    if !path.starts_with('/') {
        return Err(invalid(
            key,
            format!("{value:?} must be an absolute socket path"),
        ));
    }
    if path.len() >= 108 {
        return Err(invalid(
            key,
            format!("{value:?} is longer than a Unix socket path may be (107 bytes)"),
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(text: &str) -> Result<Settings, ConfigError> {
        Config::parse(text, Path::new("t.toml"))?.settle(Overrides::default())
    }

    #[test]
    fn defaults_fit_a_stock_node() {
        let s = settle("").unwrap();
        assert_eq!(s.listen, PathBuf::from("/run/podgraft/podgraft.sock"));
        assert_eq!(
            s.runtime_endpoint,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(s.socket_mode, 0o660);
        assert_eq!(s.max_message_bytes, 16 << 20);
        assert_eq!(s.image_endpoint, None);
        assert_eq!(s.metrics_listen, Some(([127, 0, 0, 1], 9464).into()));
        assert_eq!(
            settle("metrics_listen = \"off\"").unwrap().metrics_listen,
            None
        );
    }

    #[test]
    fn flags_override_the_file() {
        let cfg = Config::parse(
            "listen = \"/a.sock\"\nruntime_endpoint = \"/b.sock\"",
            Path::new("t"),
        )
        .unwrap();
        let s = cfg
            .settle(Overrides {
                listen: Some("unix:///c.sock".into()),
                image_endpoint: Some("/i.sock".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(s.listen, PathBuf::from("/c.sock"));
        assert_eq!(s.runtime_endpoint, PathBuf::from("/b.sock"));
        assert_eq!(s.image_endpoint, Some(PathBuf::from("/i.sock")));
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = settle("lisen = \"/x\"").unwrap_err().to_string();
        assert!(
            unknown.contains("lisen") && unknown.contains("t.toml"),
            "{unknown}"
        );
        let wrong_type = settle("max_message_bytes = \"big\"")
            .unwrap_err()
            .to_string();
        assert!(wrong_type.contains("max_message_bytes"), "{wrong_type}");
        for (text, key) in [
            ("socket_mode = \"999\"", "socket_mode"),
            ("max_message_bytes = 10", "max_message_bytes"),
            ("runtime_endpoint = \"tcp://1.2.3.4:1\"", "runtime_endpoint"),
            ("listen = \"relative.sock\"", "listen"),
            ("backend_max_backoff_ms = 0", "backend_max_backoff_ms"),
            ("mutable_handlers = [\"a b\"]", "mutable_handlers"),
            ("state_dir = \"var\"", "state_dir"),
            ("control_listen = \"x\"", "control_listen"),
            ("dynamic_budget_memory = \"much\"", "dynamic_budget_memory"),
            ("cgroup_root = \"sys\"", "cgroup_root"),
            ("socket_group = \"no-such-group-here\"", "socket_group"),
            ("log_format = \"xml\"", "log_format"),
            ("metrics_listen = \"localhost\"", "metrics_listen"),
        ] {
            let err = settle(text).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }

    /// Every key of the file is documented: serde's unknown-field error lists them all.
    #[test]
    fn every_key_is_in_docs_config_md() {
        let err = Config::parse("no_such_key = 1", Path::new("t")).unwrap_err();
        let msg = err.to_string();
        let listed = msg.split("expected one of").nth(1).expect(&msg);
        let keys: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert!(
            keys.contains(&"listen") && keys.contains(&"access"),
            "{keys:?}"
        );
        let doc = include_str!("../docs/config.md");
        for key in keys {
            assert!(
                doc.contains(&format!("`{key}`")) || doc.contains(&format!("`[[{key}]]`")),
                "config key {key} is not documented in docs/config.md"
            );
        }
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_explicit_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn tests_cannot_read_the_hosts_config() {
        for path in [None, Some(Path::new(DEFAULT_CONFIG_PATH))] {
            match Config::load(path) {
                Err(ConfigError::HostPath(e)) => {
                    assert_eq!(e.path, PathBuf::from(DEFAULT_CONFIG_PATH))
                }
                other => panic!("{path:?}: expected HostPath, got {other:?}"),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "listen = \"/x.sock\"").unwrap();
        assert_eq!(Config::load(Some(&file)).unwrap().listen, "/x.sock");
    }
}
