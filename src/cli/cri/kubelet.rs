//! CRI requests shaped as the kubelet makes them (labels, annotations, log layout, cgroup parent),
//! so that a pod made by `podgraft cri run-pod` is one podgraft cannot tell from a kubelet's.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

/// A pod as the kubelet names it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The kubelet's `--pod-log-root` (`/var/log/pods`).
    pub log_root: String,
}

impl Pod {
    /// `/kubepods/burstable/pod<uid>`: the cgroupfs parent the kubelet passes for a Burstable pod
    /// (its containers set limits above their requests, as [`Pod::container`]'s do).
    pub fn cgroup_parent(&self) -> String {
        format!("/kubepods/burstable/pod{}", self.uid)
    }

    /// `<log root>/<namespace>_<name>_<uid>`, the kubelet's per-pod log directory.
    pub fn log_directory(&self) -> String {
        format!(
            "{}/{}_{}_{}",
            self.log_root.trim_end_matches('/'),
            self.namespace,
            self.name,
            self.uid
        )
    }

    pub fn labels(&self) -> HashMap<String, String> {
        [
            ("io.kubernetes.pod.name", &self.name),
            ("io.kubernetes.pod.namespace", &self.namespace),
            ("io.kubernetes.pod.uid", &self.uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// Pod-level namespaces as the kubelet sets them without `shareProcessNamespace`.
    fn namespaces() -> cri::NamespaceOption {
        cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    pub fn sandbox_config(&self) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory(),
            labels: self.labels(),
            annotations: [("kubernetes.io/config.source".to_string(), "api".to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(Self::namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container labelled and annotated as the kubelet does, logging to `<name>/0.log` under
    /// the pod's log directory, with Burstable resources (100m request, 500m and 64 MiB limits).
    pub fn container(&self, name: &str, image: &str, command: &[String]) -> cri::ContainerConfig {
        let mut labels = self.labels();
        labels.insert("io.kubernetes.container.name".into(), name.into());
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            command: command.to_vec(),
            log_path: format!("{name}/0.log"),
            labels,
            annotations: [
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 102,
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(Self::namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        Pod {
            namespace: "default".into(),
            name: "demo".into(),
            uid: "1234".into(),
            log_root: "/var/log/pods/".into(),
        }
    }

    #[test]
    fn sandbox_config_carries_the_kubelets_names_log_dir_and_cgroup_parent() {
        let c = pod().sandbox_config();
        assert_eq!(c.log_directory, "/var/log/pods/default_demo_1234");
        assert_eq!(
            c.linux.unwrap().cgroup_parent,
            "/kubepods/burstable/pod1234"
        );
        assert_eq!(c.labels["io.kubernetes.pod.name"], "demo");
        assert_eq!(c.labels["io.kubernetes.pod.namespace"], "default");
        assert_eq!(c.labels["io.kubernetes.pod.uid"], "1234");
    }

    #[test]
    fn container_logs_under_its_name_with_the_pods_labels() {
        let c = pod().container("app", "busybox", &["sleep".into(), "1".into()]);
        assert_eq!(c.log_path, "app/0.log");
        assert_eq!(c.labels["io.kubernetes.container.name"], "app");
        assert_eq!(c.labels["io.kubernetes.pod.uid"], "1234");
        assert_eq!(c.metadata.unwrap().name, "app");
    }
}
