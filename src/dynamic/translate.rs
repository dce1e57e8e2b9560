//! Turns a validated [`ContainerSpec`] into the CRI `ContainerConfig` the kubelet would have sent
//! for the same container in the same pod, plus podgraft's labels and annotations.

use std::collections::HashMap;

use base64::Engine;
use k8s_cri::v1 as cri;
use prost::Message;

use super::quantity;
use crate::api::ContainerSpec;

/// Marks a container as dynamic. podgraft finds its containers by it after a restart, and the
/// relay hides every container that has it from the kubelet.
pub const DYNAMIC_LABEL: &str = "podgraft.io/dynamic";
/// The container's spec (protobuf, base64), so GetContainer can show it after a restart.
pub const SPEC_ANNOTATION: &str = "podgraft.io/spec";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
/// The kubelet's pod labels, copied from the sandbox onto each dynamic container.
pub const POD_LABELS: [&str; 3] = [
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
];

/// The kubelet's default masked and read-only paths for unprivileged containers (procMount Default).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The pod's QoS class, as the kubelet encodes it in the pod's cgroup parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// `/kubepods/burstable/pod<uid>` → Burstable; `/kubepods/pod<uid>` → Guaranteed; systemd
    /// slices (`kubepods-burstable-pod…slice`) likewise.
    pub fn from_cgroup_parent(parent: &str) -> Qos {
        if parent.contains("besteffort") {
            Qos::BestEffort
        } else if parent.contains("burstable") {
            Qos::Burstable
        } else {
            Qos::Guaranteed
        }
    }
}

/// The spec as stored on the container. Registry credentials are left out: annotations are
/// readable by anyone who may read container status.
pub fn encode_spec(spec: &ContainerSpec) -> String {
    let stored = ContainerSpec {
        registry_auth: None,
        ..spec.clone()
    };
    base64::engine::general_purpose::STANDARD.encode(stored.encode_to_vec())
}

pub fn decode_spec(text: &str) -> Option<ContainerSpec> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    ContainerSpec::decode(raw.as_slice()).ok()
}

/// CPU shares from milli-CPU, as the kubelet computes them (clamped to [2, 262144]).
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return 2;
    }
    (milli * 1024 / 1000).clamp(2, 262_144)
}

/// CFS quota from a milli-CPU limit with period 100000 µs and the kubelet's 1000 µs floor.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(1000)
}

/// The kubelet's oom_score_adj for a container of a pod of class `qos`.
pub fn oom_score_adj(qos: Qos, memory_request: i64, memory_capacity: i64) -> i64 {
    match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let adj = 1000 - (1000 * memory_request) / memory_capacity.max(1);
            // Burstable containers must score above Guaranteed ones and below BestEffort ones.
            adj.clamp(2, 999)
        }
    }
}

/// Linux resources of the container: requests default to limits, as the API server defaults them.
pub fn linux_resources(
    spec: &ContainerSpec,
    qos: Qos,
    memory_capacity: i64,
) -> cri::LinuxContainerResources {
    let quantity::Resources {
        cpu_request,
        cpu_limit,
        memory_request: mem_request,
        memory_limit: mem_limit,
    } = quantity::Resources::of(spec);
    let period = 100_000;
    cri::LinuxContainerResources {
        cpu_period: if cpu_limit > 0 { period } else { 0 },
        cpu_quota: milli_cpu_to_quota(cpu_limit, period),
        cpu_shares: milli_cpu_to_shares(cpu_request),
        memory_limit_in_bytes: mem_limit,
        oom_score_adj: oom_score_adj(qos, mem_request, memory_capacity),
        ..Default::default()
    }
}

fn security_profile(text: &str) -> Option<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match text {
        "" => return None,
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        other => (
            ProfileType::Localhost,
            other.trim_start_matches("localhost/").to_string(),
        ),
    };
    Some(cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    })
}

fn security_context(
    spec: &ContainerSpec,
    pod: &cri::PodSandboxConfig,
) -> cri::LinuxContainerSecurityContext {
    let sc = spec.security_context.clone().unwrap_or_default();
    let unmasked = sc.proc_mount == "Unmasked";
    let caps = sc.capabilities.unwrap_or_default();
    let pod_sc = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add,
            drop_capabilities: caps.drop,
            ..Default::default()
        }),
        privileged: false,
        // The container joins the pod's namespaces exactly as the kubelet's containers do.
        namespace_options: pod_sc.namespace_options,
        selinux_options: (!sc.se_linux_level.is_empty()).then(|| cri::SeLinuxOption {
            level: sc.se_linux_level.clone(),
            ..Default::default()
        }),
        run_as_user: sc.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if unmasked {
            vec![]
        } else {
            MASKED_PATHS.map(String::from).to_vec()
        },
        readonly_paths: if unmasked {
            vec![]
        } else {
            READONLY_PATHS.map(String::from).to_vec()
        },
        seccomp: security_profile(&sc.seccomp_profile).or(Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        })),
        apparmor: security_profile(&sc.apparmor_profile),
        ..Default::default()
    }
}

/// The full CRI config of a dynamic container. `mounts` are already resolved to host paths.
pub fn container_config(
    spec: &ContainerSpec,
    pod: &cri::PodSandboxConfig,
    mounts: Vec<cri::Mount>,
    attempt: u32,
    memory_capacity: i64,
) -> cri::ContainerConfig {
    let mut labels: HashMap<String, String> = spec.labels.clone();
    for key in POD_LABELS {
        if let Some(v) = pod.labels.get(key) {
            labels.insert(key.to_string(), v.clone());
        }
    }
    labels.insert(CONTAINER_NAME_LABEL.into(), spec.name.clone());
    labels.insert(DYNAMIC_LABEL.into(), "true".into());
    let mut annotations = spec.annotations.clone();
    annotations.insert(SPEC_ANNOTATION.into(), encode_spec(spec));
    annotations.insert(RESTART_COUNT_ANNOTATION.into(), attempt.to_string());
    annotations.insert(
        "io.kubernetes.container.terminationMessagePath".into(),
        if spec.termination_message_path.is_empty() {
            "/dev/termination-log".into()
        } else {
            spec.termination_message_path.clone()
        },
    );
    let parent = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or("");
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: spec.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: spec.image.clone(),
            ..Default::default()
        }),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone(),
        envs: spec
            .env
            .iter()
            .map(|kv| cri::KeyValue {
                key: kv.name.clone(),
                value: kv.value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        // Relative to the pod's log directory: the kubelet's <container>/<restart-count>.log.
        log_path: format!("{}/{attempt}.log", spec.name),
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(
                spec,
                Qos::from_cgroup_parent(parent),
                memory_capacity,
            )),
            security_context: Some(security_context(spec, pod)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;

    #[test]
    fn kubelet_cpu_and_memory_numbers() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
        assert_eq!(milli_cpu_to_quota(5, 100_000), 1000, "1000 µs floor");
        assert_eq!(milli_cpu_to_quota(500, 100_000), 50_000);
        assert_eq!(oom_score_adj(Qos::Burstable, 0, 1 << 30), 999);
        assert_eq!(oom_score_adj(Qos::Burstable, 1 << 30, 1 << 30), 2);
        assert_eq!(oom_score_adj(Qos::Guaranteed, 0, 1), -997);
        assert_eq!(Qos::from_cgroup_parent("/kubepods/pod123"), Qos::Guaranteed);
        assert_eq!(
            Qos::from_cgroup_parent("kubepods-besteffort-pod1_2.slice"),
            Qos::BestEffort
        );
    }

    #[test]
    fn config_carries_pod_labels_log_layout_and_security_defaults() {
        let pod = cri::PodSandboxConfig {
            labels: [
                ("io.kubernetes.pod.uid".to_string(), "u1".to_string()),
                ("app".to_string(), "x".to_string()),
            ]
            .into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/burstable/podu1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = api::ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            resources: Some(api::Resources {
                limits: Some(api::ResourceList {
                    cpu: "500m".into(),
                    memory: "64Mi".into(),
                }),
                requests: None,
            }),
            ..Default::default()
        };
        let with_secret = api::ContainerSpec {
            registry_auth: Some(api::RegistryAuth {
                password: "hunter2".into(),
                ..Default::default()
            }),
            ..spec.clone()
        };
        let cfg = container_config(&with_secret, &pod, vec![], 0, 1 << 30);
        let stored = decode_spec(&cfg.annotations[SPEC_ANNOTATION]).unwrap();
        assert_eq!(
            stored.registry_auth, None,
            "registry credentials must not be stored"
        );
        assert_eq!(cfg.labels[DYNAMIC_LABEL], "true");
        assert_eq!(cfg.labels["io.kubernetes.pod.uid"], "u1");
        assert!(
            !cfg.labels.contains_key("app"),
            "only the kubelet's pod labels are copied"
        );
        assert_eq!(cfg.log_path, "tool/0.log");
        assert_eq!(
            decode_spec(&cfg.annotations[SPEC_ANNOTATION]).unwrap(),
            spec
        );
        let linux = cfg.linux.unwrap();
        let res = linux.resources.unwrap();
        assert_eq!(
            (res.cpu_quota, res.cpu_period, res.cpu_shares),
            (50_000, 100_000, 512)
        );
        assert_eq!(res.memory_limit_in_bytes, 64 << 20);
        assert_eq!(res.oom_score_adj, 1000 - (1000 * (64 << 20)) / (1 << 30));
        let sc = linux.security_context.unwrap();
        assert!(!sc.privileged);
        assert_eq!(sc.masked_paths.len(), MASKED_PATHS.len());
    }
}
