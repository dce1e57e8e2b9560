//! Kubelet-shaped CRI requests: sandbox and container configs with the labels, annotations, log
//! layout and cgroup parent the kubelet uses.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::harness::{BUSYBOX, Node};

pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub handler: String,
}

impl PodSpec {
    pub fn new(name: &str) -> Self {
        let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("kernel uuid");
        Self {
            name: name.to_string(),
            namespace: "default".to_string(),
            uid: uid.trim().to_string(),
            handler: String::new(),
        }
    }

    /// `/kubepods/burstable/pod<uid>`: the cgroupfs parent the kubelet passes for a Burstable pod.
    pub fn cgroup_parent(&self) -> String {
        format!("/kubepods/burstable/pod{}", self.uid)
    }

    pub fn log_directory(&self, node: &Node) -> String {
        node.log_dir()
            .join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
            .display()
            .to_string()
    }

    pub fn labels(&self) -> HashMap<String, String> {
        [
            ("io.kubernetes.pod.name", self.name.as_str()),
            ("io.kubernetes.pod.namespace", self.namespace.as_str()),
            ("io.kubernetes.pod.uid", self.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn sandbox_config(&self, node: &Node) -> cri::PodSandboxConfig {
        node.track_cgroup(&self.cgroup_parent());
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory(node),
            labels: self.labels(),
            annotations: [("kubernetes.io/config.source".to_string(), "api".to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn run_request(&self, node: &Node) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(self.sandbox_config(node)),
            runtime_handler: self.handler.clone(),
        }
    }

    /// A busybox container running `script` under `sh -c`, labelled as the kubelet labels it.
    pub fn container(&self, name: &str, script: &str) -> cri::ContainerConfig {
        let mut labels = self.labels();
        labels.insert("io.kubernetes.container.name".into(), name.into());
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: BUSYBOX.to_string(),
                ..Default::default()
            }),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}/0.log"),
            labels,
            annotations: [
                (
                    "io.kubernetes.container.hash".to_string(),
                    "1a2b3c4d".to_string(),
                ),
                (
                    "io.kubernetes.container.restartCount".to_string(),
                    "0".to_string(),
                ),
            ]
            .into(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 102,
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: 999,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// Runs a pod through podgraft as the kubelet would, with one started container `container`
/// running `script` (and `memory_limit` bytes if given). Returns the pod, its sandbox ID and the
/// container's ID.
pub async fn start_pod(
    node: &Node,
    name: &str,
    handler: &str,
    container: &str,
    script: &str,
    memory_limit: Option<i64>,
) -> (PodSpec, String, String) {
    start_pod_with(node, name, handler, container, script, |config| {
        if let Some(limit) = memory_limit {
            config
                .linux
                .as_mut()
                .unwrap()
                .resources
                .as_mut()
                .unwrap()
                .memory_limit_in_bytes = limit;
        }
    })
    .await
}

/// [`start_pod`] with the container's config edited first (e.g. its security context).
pub async fn start_pod_with(
    node: &Node,
    name: &str,
    handler: &str,
    container: &str,
    script: &str,
    edit: impl FnOnce(&mut cri::ContainerConfig),
) -> (PodSpec, String, String) {
    let mut pod = PodSpec::new(name);
    pod.handler = handler.to_string();
    let mut pg = node.runtime(true).await;
    let sandbox = pg
        .run_pod_sandbox(pod.run_request(node))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut config = pod.container(container, script);
    edit(&mut config);
    let id = pg
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(config),
            sandbox_config: Some(pod.sandbox_config(node)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    pg.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    (pod, sandbox, id)
}
