//! Turns an admitted [`ContainerSpec`] into the CRI `ContainerConfig` the kubelet would have sent
//! for the same container in the same pod, plus podgraft's labels and annotations.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::keys::{
    CONTAINER_NAME_LABEL, DYNAMIC_LABEL, POD_LABELS, RESTART_COUNT_ANNOTATION, SPEC_ANNOTATION,
    TERMINATION_MESSAGE_PATH_ANNOTATION,
};
use crate::dynamic::model::kubelet::{
    Qos, cgroup_parent, milli_cpu_to_quota, milli_cpu_to_shares, oom_score_adj,
};
use crate::dynamic::model::spec::{ProcMount, Profile};

/// The kubelet's default masked and read-only paths for unprivileged containers (procMount Default).
pub const MASKED_PATHS: [&str; 11] = [
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

/// Linux resources of the container: requests default to limits, as the API server defaults them.
pub fn linux_resources(
    spec: &ContainerSpec,
    qos: Qos,
    memory_capacity: i64,
) -> cri::LinuxContainerResources {
    let a = spec.resources.amounts();
    let period = 100_000;
    cri::LinuxContainerResources {
        cpu_period: if a.cpu_limit > 0 { period } else { 0 },
        cpu_quota: milli_cpu_to_quota(a.cpu_limit, period),
        cpu_shares: milli_cpu_to_shares(a.cpu_request),
        memory_limit_in_bytes: a.memory_limit,
        oom_score_adj: oom_score_adj(qos, a.memory_request, memory_capacity),
        ..Default::default()
    }
}

fn security_profile(profile: &Option<Profile>) -> Option<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match profile.as_ref()? {
        Profile::RuntimeDefault => (ProfileType::RuntimeDefault, String::new()),
        Profile::Unconfined => (ProfileType::Unconfined, String::new()),
        Profile::Localhost(path) => (ProfileType::Localhost, path.clone()),
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
    let sc = &spec.security;
    let unmasked = sc.proc_mount == ProcMount::Unmasked;
    let pod_sc = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: sc.capabilities.add.clone(),
            drop_capabilities: sc.capabilities.drop.clone(),
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
        seccomp: security_profile(&sc.seccomp).or(Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        })),
        apparmor: security_profile(&sc.apparmor),
        ..Default::default()
    }
}

/// The full CRI config of a dynamic container. `mounts` are already resolved to host paths;
/// `stored_spec` is the spec as kept in its annotation.
pub fn container_config(
    spec: &ContainerSpec,
    stored_spec: String,
    pod: &cri::PodSandboxConfig,
    mounts: Vec<cri::Mount>,
    attempt: u32,
    memory_capacity: i64,
) -> cri::ContainerConfig {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    for key in POD_LABELS {
        if let Some(v) = pod.labels.get(key) {
            labels.insert(key.to_string(), v.clone());
        }
    }
    labels.insert(CONTAINER_NAME_LABEL.into(), spec.name.clone());
    labels.insert(DYNAMIC_LABEL.into(), "true".into());
    let mut annotations: HashMap<String, String> = spec.annotations.clone().into_iter().collect();
    annotations.insert(SPEC_ANNOTATION.into(), stored_spec);
    annotations.insert(RESTART_COUNT_ANNOTATION.into(), attempt.to_string());
    annotations.insert(
        TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
        if spec.termination_message_path.is_empty() {
            "/dev/termination-log".into()
        } else {
            spec.termination_message_path.clone()
        },
    );
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
                Qos::from_cgroup_parent(cgroup_parent(pod)),
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
    use crate::dynamic::lifecycle::stored_spec::SpecCodec;
    use crate::dynamic::model::spec::RegistryAuth;
    use crate::dynamic::model::spec::testing::with_resources;

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
        let spec = ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            ..with_resources(("", ""), ("500m", "64Mi"))
        };
        let with_secret = ContainerSpec {
            registry_auth: Some(RegistryAuth {
                password: "hunter2".into(),
                ..Default::default()
            }),
            ..spec.clone()
        };
        let codec = SpecCodec::default();
        let cfg = container_config(
            &with_secret,
            codec.encode(&with_secret),
            &pod,
            vec![],
            0,
            1 << 30,
        );
        let stored = codec.decode(&cfg.annotations[SPEC_ANNOTATION]).unwrap();
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
        assert_eq!(stored, spec);
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
