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
    seccomp_profile_path,
};
use crate::dynamic::model::security::Effective;
use crate::dynamic::model::spec::Profile;

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

fn security_profile(
    profile: &Option<Profile>,
    resolve: fn(&str) -> String,
) -> Option<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match profile.as_ref()? {
        Profile::RuntimeDefault => (ProfileType::RuntimeDefault, String::new()),
        Profile::Unconfined => (ProfileType::Unconfined, String::new()),
        Profile::Localhost(path) => (ProfileType::Localhost, resolve(path)),
    };
    Some(cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    })
}

fn security_context(
    eff: &Effective,
    pod: &cri::PodSandboxConfig,
) -> cri::LinuxContainerSecurityContext {
    let pod_sc = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: eff.capabilities_add.clone(),
            drop_capabilities: eff.capabilities_drop.clone(),
            ..Default::default()
        }),
        privileged: false,
        // The container joins the pod's namespaces exactly as the kubelet's containers do.
        namespace_options: pod_sc.namespace_options,
        selinux_options: (!eff.selinux_level.is_empty()).then(|| cri::SeLinuxOption {
            level: eff.selinux_level.clone(),
            ..Default::default()
        }),
        run_as_user: eff.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: eff.run_as_group.map(|value| cri::Int64Value { value }),
        supplemental_groups: eff.supplemental_groups.clone(),
        readonly_rootfs: eff.readonly_rootfs,
        no_new_privs: eff.no_new_privs,
        masked_paths: eff.masked_paths.clone(),
        readonly_paths: eff.readonly_paths.clone(),
        // Unset is unconfined, as the kubelet sends it.
        seccomp: security_profile(&eff.seccomp, seccomp_profile_path).or(Some(
            cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            },
        )),
        // AppArmor localhost profiles are names, not paths.
        apparmor: security_profile(&eff.apparmor, str::to_string),
        ..Default::default()
    }
}

/// The full CRI config of a dynamic container. `mounts` are already resolved to host paths,
/// `security` is what admission decided; `stored_spec` is the spec as kept in its annotation.
pub fn container_config(
    spec: &ContainerSpec,
    security: &Effective,
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
            security_context: Some(security_context(security, pod)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::lifecycle::stored_spec::SpecCodec;
    use crate::dynamic::model::kubelet::MASKED_PATHS;
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
            &Effective::requested(&with_secret),
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
