//! Turning a parsed config and the command-line flags into checked [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use super::*;

impl Config {
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
