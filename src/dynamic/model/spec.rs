//! A dynamic container as requested: the fields of a Kubernetes container that podgraft honours,
//! with policies as enums and resources as parsed quantities. Stored with each container (JSON in
//! an annotation), so every type here is serializable; registry credentials never are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kubelet::milli_cpu_to_shares;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub pull_policy: PullPolicy,
    /// Credentials for this pull only: never stored or reported.
    #[serde(skip)]
    pub registry_auth: Option<RegistryAuth>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub env: Vec<EnvVar>,
    pub volume_mounts: Vec<VolumeMount>,
    pub ports: Vec<ContainerPort>,
    pub resources: Resources,
    pub security: SecurityContext,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Empty: the kubelet's default, `/dev/termination-log`.
    pub termination_message_path: String,
    pub termination_message_policy: TerminationMessagePolicy,
    pub restart_policy: RestartPolicy,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// A dynamic container's restart policy; `Never` unless asked (a tool container that exits is
/// done, as a Job's would be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    #[default]
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TerminationMessagePolicy {
    #[default]
    File,
    FallbackToLogsOnError,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Redacted: credentials never reach logs.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// Redacted: env values never reach logs.
impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A mount of something the pod already mounts: a pod volume by `name`, or an existing mount's
/// `host_path`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerPort {
    pub name: String,
    pub container_port: i32,
    pub protocol: Protocol,
    /// Kept so that admission can refuse it by name: dynamic containers get no host ports.
    pub host_port: i32,
}

/// A quantity as the user wrote it and its value (milli-CPU or bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Quantity {
    pub text: String,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceList {
    /// In milli-CPU.
    pub cpu: Option<Quantity>,
    /// In bytes.
    pub memory: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

/// A container's resources in numbers: milli-CPU and bytes, 0 where unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    pub cpu_request: i64,
    pub cpu_limit: i64,
    pub memory_request: i64,
    pub memory_limit: i64,
}

impl Resources {
    /// The effective numbers: requests default to limits, as the API server defaults them.
    pub fn amounts(&self) -> Amounts {
        let value = |q: &Option<Quantity>| q.as_ref().map_or(0, |q| q.value);
        let cpu_limit = value(&self.limits.cpu);
        let memory_limit = value(&self.limits.memory);
        let or_limit = |request: i64, limit: i64| if request > 0 { request } else { limit };
        Amounts {
            cpu_request: or_limit(value(&self.requests.cpu), cpu_limit),
            cpu_limit,
            memory_request: or_limit(value(&self.requests.memory), memory_limit),
            memory_limit,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

impl Amounts {
    /// CPU shares of the request, 0 without one (the pod's share is then left as it is).
    pub fn request_shares(&self) -> i64 {
        if self.cpu_request > 0 {
            milli_cpu_to_shares(self.cpu_request)
        } else {
            0
        }
    }
}

/// A seccomp or AppArmor profile.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Profile {
    RuntimeDefault,
    Unconfined,
    /// A profile on the node, by its path or name.
    Localhost(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProcMount {
    #[default]
    Default,
    Unmasked,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// The container's security context as requested; unset fields are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityContext {
    pub capabilities: Capabilities,
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub se_linux_level: String,
    pub seccomp: Option<Profile>,
    pub apparmor: Option<Profile>,
    pub proc_mount: ProcMount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// A probe's port: a number, or the name of one of the container's ports (Kubernetes'
/// IntOrString). Stored as a JSON number or string, so specs stored as plain numbers still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl Default for PortRef {
    fn default() -> Self {
        PortRef::Number(0)
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeHandler {
    Exec {
        command: Vec<String>,
    },
    HttpGet {
        path: String,
        port: PortRef,
        host: String,
        scheme: Scheme,
        headers: Vec<EnvVar>,
    },
    TcpSocket {
        port: PortRef,
        host: String,
    },
    Grpc {
        port: i32,
        service: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub handler: ProbeHandler,
    pub initial_delay_seconds: i32,
    pub timeout_seconds: i32,
    pub period_seconds: i32,
    pub success_threshold: i32,
    pub failure_threshold: i32,
    /// Liveness and startup probes: the grace period of the kill a failure causes.
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(value: i64) -> Option<Quantity> {
        Some(Quantity {
            text: String::new(),
            value,
        })
    }

    #[test]
    fn requests_default_to_limits() {
        let r = Resources {
            requests: ResourceList {
                cpu: q(250),
                memory: None,
            },
            limits: ResourceList {
                cpu: q(1000),
                memory: q(64 << 20),
            },
        };
        let a = r.amounts();
        assert_eq!(
            (a.cpu_request, a.cpu_limit, a.memory_request, a.memory_limit),
            (250, 1000, 64 << 20, 64 << 20)
        );
        assert_eq!(a.request_shares(), 256);
        assert_eq!(Resources::default().amounts().request_shares(), 0);
    }

    #[test]
    fn stored_form_never_carries_credentials() {
        let spec = ContainerSpec {
            name: "tool".into(),
            registry_auth: Some(RegistryAuth {
                password: "hunter2".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        let with_env = ContainerSpec {
            env: vec![EnvVar {
                name: "TOKEN".into(),
                value: "s3cr3t".into(),
            }],
            ..spec.clone()
        };
        let debug = format!("{with_env:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        assert!(debug.contains("TOKEN"));
        let back: ContainerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.registry_auth, None);
        assert_eq!(back.name, "tool");
    }
}

/// Specs for unit tests elsewhere in the crate.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::dynamic::model::quantity;

    fn parsed(text: &str, parse: fn(&str) -> Option<i64>) -> Option<Quantity> {
        (!text.is_empty()).then(|| Quantity {
            text: text.to_string(),
            value: parse(text).expect("a valid quantity"),
        })
    }

    /// A container named "x" with requests and limits as (cpu, memory) texts ("" = unset).
    pub fn with_resources(req: (&str, &str), lim: (&str, &str)) -> ContainerSpec {
        ContainerSpec {
            name: "x".into(),
            image: "i".into(),
            resources: Resources {
                requests: ResourceList {
                    cpu: parsed(req.0, quantity::milli_cpu),
                    memory: parsed(req.1, quantity::bytes),
                },
                limits: ResourceList {
                    cpu: parsed(lim.0, quantity::milli_cpu),
                    memory: parsed(lim.1, quantity::bytes),
                },
            },
            ..Default::default()
        }
    }
}
