//! No escalation, on a real containerd: into a hardened pod (uid 1000, no capabilities, read-only
//! root, no_new_privs, RuntimeDefault seccomp) every escalation is refused with the field named,
//! nothing is created and no cgroup grows; an add without a securityContext is hardened, and the
//! OCI spec containerd runs it with grants nothing the pod's container lacks. A permissive pod
//! still takes what it has.

use k8s_cri::v1 as cri;
use podgraft::api;
use podgraft::dynamic::model::kubelet::{MASKED_PATHS, READONLY_PATHS};
use serde_json::Value;
use tonic::Code;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod_with};

fn harden(config: &mut cri::ContainerConfig) {
    let sc = config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.run_as_user = Some(cri::Int64Value { value: 1000 });
    sc.run_as_group = Some(cri::Int64Value { value: 3000 });
    sc.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    sc.readonly_rootfs = true;
    sc.no_new_privs = true;
    // As the kubelet sends them for procMount Default.
    sc.masked_paths = MASKED_PATHS.map(String::from).to_vec();
    sc.readonly_paths = READONLY_PATHS.map(String::from).to_vec();
    sc.seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
}

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..Default::default()
    })
}

fn tool(name: &str, sc: Option<api::SecurityContext>) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
        security_context: sc,
        ..Default::default()
    }
}

fn caps(add: &[&str], drop: &[&str]) -> Option<api::SecurityContext> {
    Some(api::SecurityContext {
        capabilities: Some(api::Capabilities {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        }),
        ..Default::default()
    })
}

fn sc(edit: impl FnOnce(&mut api::SecurityContext)) -> Option<api::SecurityContext> {
    let mut sc = api::SecurityContext::default();
    edit(&mut sc);
    Some(sc)
}

/// The names of every container containerd has in `sandbox` (podgraft bypassed).
async fn names_in(node: &Node, sandbox: &str) -> Vec<String> {
    let mut ctd = node.runtime(false).await;
    let list = ctd
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    list.containers
        .into_iter()
        .map(|c| c.metadata.unwrap().name)
        .collect()
}

fn pod_memory_limit(pod: &PodSpec) -> String {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
        pod.cgroup_parent()
    ))
    .unwrap_or_default()
}

/// The OCI spec containerd runs container `id` with.
async fn oci_spec(node: &Node, id: &str) -> Value {
    let mut ctd = node.runtime(false).await;
    let status = ctd
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: Value = serde_json::from_str(&status.info["info"]).unwrap();
    info["runtimeSpec"].clone()
}

#[tokio::test]
async fn nothing_added_holds_more_than_its_pod() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, main_id) = start_pod_with(
        &node,
        "hardened",
        MUTABLE,
        "main",
        "exec sleep 3600",
        harden,
    )
    .await;
    let mut control = node.control_client().await;
    let memory_before = pod_memory_limit(&pod);
    let p = "containers[0]";
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<api::SecurityContext>, Code, String)> = vec![
        (
            "sys-admin",
            caps(&["SYS_ADMIN"], &[]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "cap-sys-admin",
            caps(&["CAP_SYS_ADMIN"], &[]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "lower-sys-admin",
            caps(&["sys_admin"], &[]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "all-caps",
            caps(&["ALL"], &[]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "net-admin",
            caps(&["NET_ADMIN"], &["ALL"]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "net-raw",
            caps(&["NET_RAW"], &["ALL"]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "sys-ptrace",
            caps(&["SYS_PTRACE"], &["ALL"]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.add"),
        ),
        (
            "default-caps",
            caps(&[], &["NET_RAW"]),
            Code::PermissionDenied,
            format!("{p}.securityContext.capabilities.drop"),
        ),
        (
            "uid-0",
            sc(|s| s.run_as_user = Some(0)),
            Code::PermissionDenied,
            format!("{p}.securityContext.runAsUser"),
        ),
        (
            "uid-other",
            sc(|s| s.run_as_user = Some(2000)),
            Code::PermissionDenied,
            format!("{p}.securityContext.runAsUser"),
        ),
        (
            "gid-0",
            sc(|s| s.run_as_group = Some(0)),
            Code::PermissionDenied,
            format!("{p}.securityContext.runAsGroup"),
        ),
        (
            "unconfined",
            sc(|s| s.seccomp_profile = "Unconfined".into()),
            Code::PermissionDenied,
            format!("{p}.securityContext.seccompProfile"),
        ),
        (
            "writable-root",
            sc(|s| s.read_only_root_filesystem = Some(false)),
            Code::PermissionDenied,
            format!("{p}.securityContext.readOnlyRootFilesystem"),
        ),
        (
            "escalation",
            sc(|s| s.allow_privilege_escalation = Some(true)),
            Code::PermissionDenied,
            format!("{p}.securityContext.allowPrivilegeEscalation"),
        ),
        (
            "unmasked",
            sc(|s| s.proc_mount = "Unmasked".into()),
            Code::PermissionDenied,
            format!("{p}.securityContext.procMount"),
        ),
        (
            "selinux",
            sc(|s| s.se_linux_level = "s0:c7,c8".into()),
            Code::PermissionDenied,
            format!("{p}.securityContext.seLinuxOptions.level"),
        ),
        (
            "privileged",
            sc(|s| s.privileged = true),
            Code::PermissionDenied,
            format!("{p}.securityContext.privileged"),
        ),
        (
            "negative-uid",
            sc(|s| s.run_as_user = Some(-1)),
            Code::InvalidArgument,
            format!("{p}.securityContext.runAsUser"),
        ),
        (
            "unknown-cap",
            caps(&["SYS_WIZARD"], &[]),
            Code::InvalidArgument,
            format!("{p}.securityContext.capabilities.add[0]"),
        ),
        (
            "missing-profile",
            sc(|s| s.seccomp_profile = "localhost/podgraft-test/none.json".into()),
            Code::InvalidArgument,
            format!("{p}.securityContext.seccompProfile"),
        ),
        (
            "bad-profile",
            sc(|s| s.seccomp_profile = "Sometimes".into()),
            Code::InvalidArgument,
            format!("{p}.securityContext.seccompProfile"),
        ),
    ];
    // Hostile input: each container edited past a bound.
    type Edit = fn(&mut api::ContainerSpec);
    #[rustfmt::skip]
    let hostile: Vec<(&str, Edit, Code, String)> = vec![
        ("long-name", |c| c.name = "x".repeat(64), Code::InvalidArgument, format!("{p}.name")),
        ("bad-image", |c| c.image = "UPPER/case".into(), Code::InvalidArgument, format!("{p}.image")),
        ("env-flood", |c| {
            c.env = (0..1025)
                .map(|i| api::KeyValue { name: format!("V{i}"), value: String::new() })
                .collect()
        }, Code::InvalidArgument, format!("{p}.env")),
        ("huge-args", |c| c.args = vec!["x".repeat(300 * 1024)], Code::InvalidArgument, format!("{p}.args")),
        ("label-flood", |c| {
            c.labels = (0..65).map(|i| (format!("k{i}"), String::new())).collect()
        }, Code::InvalidArgument, format!("{p}.labels")),
        ("reserved-label", |c| {
            c.labels.insert("podgraft.io/dynamic".into(), "false".into());
        }, Code::InvalidArgument, format!("{p}.labels[podgraft.io/dynamic]")),
        ("host-port", |c| {
            c.ports = vec![api::ContainerPort { container_port: 80, host_port: 80, ..Default::default() }]
        }, Code::PermissionDenied, format!("{p}.ports[0].hostPort")),
        ("foreign-volume", |c| {
            c.volume_mounts = vec![api::VolumeMount { host_path: "/etc".into(), mount_path: "/x".into(), ..Default::default() }]
        }, Code::PermissionDenied, format!("{p}.volumeMounts[0]")),
        ("climbing-volume", |c| {
            c.volume_mounts = vec![api::VolumeMount { host_path: "/tmp/../etc".into(), mount_path: "/x".into(), ..Default::default() }]
        }, Code::PermissionDenied, format!("{p}.volumeMounts[0]")),
        ("probe-period", |c| {
            c.liveness_probe = Some(api::Probe {
                handler: Some(api::probe::Handler::TcpSocket(api::TcpSocketAction { port: 80, host: String::new(), port_name: String::new() })),
                period_seconds: 86_400,
                ..Default::default()
            })
        }, Code::InvalidArgument, format!("{p}.livenessProbe.periodSeconds")),
        ("no-probe-handler", |c| c.readiness_probe = Some(api::Probe::default()), Code::InvalidArgument, format!("{p}.readinessProbe")),
        ("bad-policy", |c| c.restart_policy = "Sometimes".into(), Code::InvalidArgument, format!("{p}.restartPolicy")),
        ("bad-quantity", |c| {
            c.resources = Some(api::Resources {
                requests: None,
                limits: Some(api::ResourceList { cpu: "lots".into(), memory: String::new() }),
            })
        }, Code::InvalidArgument, format!("{p}.resources.limits.cpu")),
        ("gid-too-big", |c| {
            c.security_context = Some(api::SecurityContext { run_as_group: Some(1 << 40), ..Default::default() })
        }, Code::InvalidArgument, format!("{p}.securityContext.runAsGroup")),
    ];
    let mut all_cases: Vec<(String, api::ContainerSpec, Code, String)> = cases
        .iter()
        .map(|(name, security, code, field)| {
            (
                name.to_string(),
                tool(name, security.clone()),
                *code,
                field.clone(),
            )
        })
        .collect();
    for (name, edit, code, field) in hostile {
        let mut c = tool(name, None);
        edit(&mut c);
        all_cases.push((name.to_string(), c, code, field));
    }
    assert!(all_cases.len() >= 35, "{} cases", all_cases.len());
    for (name, container, code, field) in &all_cases {
        let err = control
            .add_containers(api::AddContainersRequest {
                pod: pod_ref(&pod),
                containers: vec![container.clone()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), *code, "{name}: {}", err.message());
        assert!(
            err.message().contains(field.as_str()),
            "{name}: {}",
            err.message()
        );
        assert_eq!(
            names_in(&node, &sandbox).await,
            ["main"],
            "{name}: nothing created"
        );
        assert_eq!(
            pod_memory_limit(&pod),
            memory_before,
            "{name}: no cgroup grew"
        );
    }

    // No securityContext at all: hardened to what the pod's container runs with.
    let added = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("plain", None)],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(added[0].state, api::ContainerState::Running as i32);
    assert_grants_nothing_more(&node, &main_id, &added[0].container_id, "plain").await;

    // A request of more containers than one add may carry.
    let err = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: (0..33).map(|i| tool(&format!("many-{i}"), None)).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().starts_with("containers:"),
        "{}",
        err.message()
    );

    // What the pod has may be asked for explicitly.
    let same = sc(|s| {
        s.capabilities = Some(api::Capabilities {
            add: vec![],
            drop: vec!["all".into()],
        });
        s.run_as_user = Some(1000);
        s.run_as_group = Some(3000);
        s.allow_privilege_escalation = Some(false);
        s.read_only_root_filesystem = Some(true);
        s.seccomp_profile = "RuntimeDefault".into();
    });
    let explicit = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("explicit", same)],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_grants_nothing_more(&node, &main_id, &explicit[0].container_id, "explicit").await;
    node.remove_pod(&sandbox).await;
}

/// The OCI spec containerd runs container `new` with grants nothing that the pod's only other
/// container, `main`, lacks.
async fn assert_grants_nothing_more(node: &Node, main_id: &str, new_id: &str, case: &str) {
    let main = oci_spec(node, main_id).await;
    let new = oci_spec(node, new_id).await;
    let list = |spec: &Value, pointer: &str| -> Vec<String> {
        spec.pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    for pointer in ["/process/user/uid", "/process/user/gid"] {
        assert_eq!(
            new.pointer(pointer),
            main.pointer(pointer),
            "{case}: {pointer}"
        );
    }
    let bounding = "/process/capabilities/bounding";
    assert!(
        list(&new, bounding)
            .iter()
            .all(|c| list(&main, bounding).contains(c)),
        "{case}: capabilities {:?}",
        list(&new, bounding)
    );
    for (pointer, what) in [
        ("/process/noNewPrivileges", "no_new_privs"),
        ("/root/readonly", "a read-only root"),
    ] {
        if main.pointer(pointer) == Some(&Value::Bool(true)) {
            assert_eq!(
                new.pointer(pointer),
                Some(&Value::Bool(true)),
                "{case}: {what}"
            );
        }
    }
    if main.pointer("/linux/seccomp").is_some() {
        assert!(
            new.pointer("/linux/seccomp").is_some(),
            "{case}: confined like the pod"
        );
    }
    let masked = "/linux/maskedPaths";
    assert!(
        list(&main, masked)
            .iter()
            .all(|m| list(&new, masked).contains(m)),
        "{case}: never fewer masked paths"
    );
}

#[tokio::test]
async fn a_permissive_pod_takes_what_it_has_and_no_more() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, main_id) = start_pod_with(
        &node,
        "permissive",
        MUTABLE,
        "main",
        "exec sleep 3600",
        |_| {},
    )
    .await;
    let mut control = node.control_client().await;
    for (name, security) in [
        ("plain", None),
        ("chown", caps(&["CHOWN", "net_raw"], &[])),
        ("tight", caps(&[], &["ALL"])),
        (
            "runtime-default",
            sc(|s| s.seccomp_profile = "RuntimeDefault".into()),
        ),
    ] {
        let added = control
            .add_containers(api::AddContainersRequest {
                pod: pod_ref(&pod),
                containers: vec![tool(name, security)],
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", e.message()))
            .into_inner()
            .containers;
        assert_grants_nothing_more(&node, &main_id, &added[0].container_id, name).await;
    }
    for add in ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"] {
        let err = control
            .add_containers(api::AddContainersRequest {
                pod: pod_ref(&pod),
                containers: vec![tool("more", caps(&[add], &[]))],
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "{add}: {}",
            err.message()
        );
    }
    node.remove_pod(&sandbox).await;
}
