//! The seed corpus of every target.

use super::*;

pub(super) fn with_labels(dynamic: bool, i: usize) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        ("io.kubernetes.pod.uid".to_string(), format!("uid-{i}")),
        ("io.kubernetes.container.name".to_string(), format!("c{i}")),
    ]);
    if dynamic {
        labels.insert(DYNAMIC_LABEL.into(), "true".into());
    }
    labels
}

pub(super) fn container(i: usize, dynamic: bool) -> cri::Container {
    cri::Container {
        id: format!("{i:064x}"),
        pod_sandbox_id: "a".repeat(64),
        metadata: Some(cri::ContainerMetadata {
            name: format!("c{i}"),
            attempt: 0,
        }),
        labels: with_labels(dynamic, i),
        state: cri::ContainerState::ContainerRunning as i32,
        created_at: 1_700_000_000_000_000_000,
        ..Default::default()
    }
}

pub(super) fn status(i: usize, dynamic: bool) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: format!("{i:064x}"),
        metadata: Some(cri::ContainerMetadata {
            name: format!("c{i}"),
            attempt: 1,
        }),
        state: cri::ContainerState::ContainerRunning as i32,
        labels: with_labels(dynamic, i),
        ..Default::default()
    }
}

pub(super) fn stats(i: usize, dynamic: bool) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: format!("{i:064x}"),
            labels: with_labels(dynamic, i),
            ..Default::default()
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: 1,
            usage_core_nano_seconds: Some(cri::UInt64Value { value: 12_345 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.push(0);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

pub(super) fn prefixed(first: u8, msg: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(msg);
    out
}

pub(super) fn spec(name: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: "docker.io/library/busybox:1.36".into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

/// The seed corpus: real messages the relay and the control API see, per target.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let list = |hidden: &[usize]| cri::ListContainersResponse {
        containers: (0..4).map(|i| container(i, hidden.contains(&i))).collect(),
    };
    let list_stats = cri::ListContainerStatsResponse {
        stats: (0..3).map(|i| stats(i, i == 1)).collect(),
    };
    let sandbox_status = cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: "a".repeat(64),
            ..Default::default()
        }),
        containers_statuses: (0..3).map(|i| status(i, i == 2)).collect(),
        ..Default::default()
    };
    let pod_stats = cri::ListPodSandboxStatsResponse {
        stats: vec![cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "a".repeat(64),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                containers: (0..3).map(|i| stats(i, i == 0)).collect(),
                ..Default::default()
            }),
            windows: None,
        }],
    };
    let status_of = |dynamic| cri::ContainerStatusResponse {
        status: Some(status(7, dynamic)),
        ..Default::default()
    };
    let stats_of = |dynamic| cri::ContainerStatsResponse {
        stats: Some(stats(7, dynamic)),
    };
    let event = cri::ContainerEventResponse {
        container_id: format!("{:064x}", 2),
        container_event_type: cri::ContainerEventType::ContainerStartedEvent as i32,
        created_at: 1,
        pod_sandbox_status: None,
        containers_statuses: (0..3).map(|i| status(i, i == 2)).collect(),
    };

    // wire: the selector is the field number − 1.
    for (name, selector, msg) in [
        ("list_containers", 0, list(&[1]).encode_to_vec()),
        ("list_stats", 0, list_stats.encode_to_vec()),
        ("sandbox_status", 2, sandbox_status.encode_to_vec()),
        ("pod_stats", 0, pod_stats.encode_to_vec()),
        ("container", 7, container(3, true).encode_to_vec()),
        ("event", 4, event.encode_to_vec()),
    ] {
        out.push(("wire", name.to_string(), prefixed(selector, msg)));
    }

    // hide: the first byte is the chunking; then a message, or a gRPC stream.
    for (name, seed, body) in [
        ("status_dynamic", 0x2d, status_of(true).encode_to_vec()),
        ("status_kubelet", 0x15, status_of(false).encode_to_vec()),
        ("stats_dynamic", 0x0c, stats_of(true).encode_to_vec()),
        ("pod_stats", 0x33, pod_stats.encode_to_vec()),
        ("event", 0x47, event.encode_to_vec()),
        (
            "list_framed",
            0x05,
            framed(&[list(&[0, 3]).encode_to_vec(), list(&[]).encode_to_vec()]),
        ),
        (
            "list_stats_framed",
            0x01,
            framed(&[list_stats.encode_to_vec()]),
        ),
        (
            "sandbox_status_framed",
            0x0e,
            framed(&[sandbox_status.encode_to_vec(), Vec::new()]),
        ),
        (
            "stream_container",
            0x06,
            framed(&[cri::ContainerStatusResponse {
                status: Some(status(1, true)),
                ..Default::default()
            }
            .encode_to_vec()]),
        ),
    ] {
        out.push(("hide", name.to_string(), prefixed(seed, body)));
    }

    // control_spec: requests, plain and hostile.
    let pod = Some(api::PodRef {
        namespace: "default".into(),
        name: "web".into(),
        ..Default::default()
    });
    let hardened = api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec![],
                drop: vec!["ALL".into()],
            }),
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            seccomp_profile: "RuntimeDefault".into(),
            ..Default::default()
        }),
        volume_mounts: vec![api::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: true,
            ..Default::default()
        }],
        resources: Some(api::Resources {
            requests: Some(api::ResourceList {
                cpu: "100m".into(),
                memory: "64Mi".into(),
            }),
            limits: Some(api::ResourceList {
                cpu: "500m".into(),
                memory: "128Mi".into(),
            }),
        }),
        ..spec("tool")
    };
    let probe = api::Probe {
        handler: Some(api::probe::Handler::HttpGet(api::HttpGetAction {
            path: "/healthz".into(),
            port: 8080,
            host: String::new(),
            scheme: "HTTP".into(),
            http_headers: vec![api::KeyValue {
                name: "X-Probe".into(),
                value: "1".into(),
            }],
            port_name: String::new(),
        })),
        initial_delay_seconds: 1,
        timeout_seconds: 1,
        period_seconds: 10,
        success_threshold: 1,
        failure_threshold: 3,
        termination_grace_period_seconds: Some(5),
    };
    let full = api::ContainerSpec {
        image_pull_policy: "IfNotPresent".into(),
        registry_auth: Some(api::RegistryAuth {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }),
        working_dir: "/work".into(),
        env: vec![api::KeyValue {
            name: "MODE".into(),
            value: "debug".into(),
        }],
        ports: vec![api::ContainerPort {
            name: "http".into(),
            container_port: 8080,
            protocol: "TCP".into(),
            host_port: 0,
        }],
        termination_message_policy: "FallbackToLogsOnError".into(),
        restart_policy: "OnFailure".into(),
        liveness_probe: Some(probe.clone()),
        readiness_probe: Some(api::Probe {
            handler: Some(api::probe::Handler::TcpSocket(api::TcpSocketAction {
                port: 8080,
                host: String::new(),
                port_name: String::new(),
            })),
            ..probe.clone()
        }),
        startup_probe: Some(api::Probe {
            handler: Some(api::probe::Handler::Exec(api::ExecAction {
                command: vec!["true".into()],
            })),
            ..probe
        }),
        labels: HashMap::from([("app".to_string(), "tool".to_string())]),
        annotations: HashMap::from([("note".to_string(), "x".to_string())]),
        ..hardened.clone()
    };
    let escalating = api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec!["SYS_ADMIN".into(), "cap_net_raw".into()],
                drop: vec![],
            }),
            privileged: false,
            run_as_user: Some(0),
            seccomp_profile: "Unconfined".into(),
            apparmor_profile: "localhost/k8s-web".into(),
            proc_mount: "Unmasked".into(),
            se_linux_level: "s0:c3,c4".into(),
            ..Default::default()
        }),
        volume_mounts: vec![api::VolumeMount {
            host_path: "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~empty-dir/data/../../kubernetes.io~configmap/config".into(),
            mount_path: "/cfg".into(),
            ..Default::default()
        }],
        ..spec("root")
    };
    // Root with more than the runtime's defaults, into the permissive (Guaranteed) pod.
    let guaranteed = |name: &str| api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec!["NET_ADMIN".into()],
                drop: vec![],
            }),
            run_as_user: Some(0),
            seccomp_profile: "Unconfined".into(),
            proc_mount: "Unmasked".into(),
            ..Default::default()
        }),
        resources: Some(api::Resources {
            requests: None,
            limits: Some(api::ResourceList {
                cpu: "2".into(),
                memory: "1Gi".into(),
            }),
        }),
        ..spec(name)
    };
    for (name, containers) in [
        ("minimal", vec![spec("tool")]),
        ("guaranteed", vec![guaranteed("net"), guaranteed("dbg")]),
        ("hardened", vec![hardened.clone()]),
        ("full", vec![full]),
        ("escalating", vec![escalating]),
        ("two", vec![spec("a"), hardened]),
    ] {
        let req = api::AddContainersRequest {
            pod: pod.clone(),
            containers,
        };
        out.push(("control_spec", name.to_string(), req.encode_to_vec()));
    }
    out.push((
        "control_spec",
        "legacy_stored_spec".to_string(),
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            spec("old").encode_to_vec(),
        )
        .into_bytes(),
    ));
    out
}
