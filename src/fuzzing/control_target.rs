//! The `control_spec` target: conversion and admission of add requests, with the no-escalation rules restated on the outcome.

use super::*;

/// An existing container of a hardened pod: uid 1000, no capabilities, read-only root,
/// no_new_privs, RuntimeDefault seccomp.
pub(super) fn hardened_container() -> ContainerSecurity {
    ContainerSecurity {
        name: "main".into(),
        uid: 1000,
        gid: 3000,
        additional_gids: BTreeSet::new(),
        capabilities: BTreeSet::new(),
        no_new_privs: true,
        readonly_rootfs: true,
        masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
        readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        seccomp: SeccompFact::Profile(Profile::RuntimeDefault),
        apparmor: APPARMOR_RUNTIME_DEFAULT.into(),
        selinux_level: String::new(),
    }
}

/// The pods admission is tried against.
pub(super) fn pods() -> [PodSecurity; 3] {
    let hardened = PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![hardened_container()],
    };
    // Root with the runtime's defaults, unconfined, plus a privileged-like sidecar.
    let permissive = PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![
            ContainerSecurity {
                uid: 0,
                gid: 0,
                capabilities: caps::RUNTIME_DEFAULT
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                no_new_privs: false,
                readonly_rootfs: false,
                seccomp: SeccompFact::Unconfined,
                apparmor: String::new(),
                ..hardened_container()
            },
            ContainerSecurity {
                name: "sidecar".into(),
                uid: 0,
                gid: 0,
                capabilities: ["CAP_NET_ADMIN".to_string()].into(),
                no_new_privs: false,
                readonly_rootfs: false,
                masked_paths: BTreeSet::new(),
                readonly_paths: BTreeSet::new(),
                seccomp: SeccompFact::Unconfined,
                apparmor: String::new(),
                ..hardened_container()
            },
        ],
    };
    // Pod-level defaults, two users, a localhost profile, SELinux levels.
    let mixed = PodSecurity {
        sandbox: SandboxSecurity {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000],
            seccomp: Some(Profile::RuntimeDefault),
            apparmor: None,
            selinux_level: "s0:c1,c2".into(),
        },
        containers: vec![
            hardened_container(),
            ContainerSecurity {
                name: "web".into(),
                uid: 2000,
                gid: 3000,
                additional_gids: [4000].into(),
                capabilities: ["CAP_NET_BIND_SERVICE".to_string()].into(),
                readonly_rootfs: false,
                seccomp: SeccompFact::Profile(Profile::Localhost(
                    "/var/lib/kubelet/seccomp/profiles/audit.json".into(),
                )),
                apparmor: "k8s-web".into(),
                selinux_level: "s0:c3,c4".into(),
                ..hardened_container()
            },
        ],
    };
    [hardened, permissive, mixed]
}

pub(super) fn images() -> [ImageUser; 4] {
    [
        ImageUser::default(),
        ImageUser {
            uid: Some(1000),
            username: String::new(),
        },
        ImageUser {
            uid: Some(65534),
            username: String::new(),
        },
        ImageUser {
            uid: None,
            username: "nobody".into(),
        },
    ]
}

pub(super) fn facts(security: PodSecurity, qos: Qos) -> PodFacts {
    let volumes = "/var/lib/kubelet/pods/0c8f/volumes";
    let mount = |container: &str, host: String, readonly: bool| cri::Mount {
        container_path: container.into(),
        host_path: host,
        readonly,
        ..Default::default()
    };
    PodFacts {
        sandbox_id: "sb".into(),
        stopping: false,
        dynamic_in_pod: 1,
        dynamic_on_node: 10,
        limits: Limits::default(),
        kubelet_running: true,
        qos,
        names: TakenNames {
            containers: ["main".to_string()].into(),
            in_flight: ["busy".to_string()].into(),
        },
        mounts: vec![
            mount(
                "/data",
                format!("{volumes}/kubernetes.io~empty-dir/data"),
                false,
            ),
            mount(
                "/config",
                format!("{volumes}/kubernetes.io~configmap/config"),
                true,
            ),
            mount(
                "/etc/hosts",
                "/var/lib/kubelet/pods/0c8f/etc-hosts".into(),
                false,
            ),
        ],
        security,
        missing_profiles: ["/var/lib/kubelet/seccomp/missing.json".to_string()].into(),
        // A symlink inside the writable volume pointing at the read-only one.
        resolved_paths: HashMap::from([(
            format!("{volumes}/kubernetes.io~empty-dir/data/link"),
            format!("{volumes}/kubernetes.io~configmap/config"),
        )]),
    }
}

/// The no-escalation rules, restated on the outcome: what `eff` runs with in `pod`, for an image
/// running as `image`, is nothing the pod's containers do not already have.
pub(super) fn assert_within(
    pod: &PodSecurity,
    image: &ImageUser,
    spec: &ContainerSpec,
    eff: &Effective,
) {
    let parse = |names: &[String]| -> Vec<CapName> {
        names.iter().map(|n| CapName::parse(n).expect(n)).collect()
    };
    let held: BTreeSet<String> = pod
        .containers
        .iter()
        .flat_map(|c| c.capabilities.iter().cloned())
        .collect();
    let effective = caps::effective(
        &parse(&eff.capabilities_add),
        &parse(&eff.capabilities_drop),
    );
    assert!(effective.is_subset(&held), "capabilities {effective:?}");

    let uids: BTreeSet<i64> = pod.containers.iter().map(|c| i64::from(c.uid)).collect();
    let gids: BTreeSet<i64> = pod.containers.iter().map(|c| i64::from(c.gid)).collect();
    let uid = eff
        .run_as_user
        .or(image.uid)
        .or_else(|| image.username.is_empty().then_some(0));
    assert!(uid.is_some_and(|u| uids.contains(&u)), "uid {uid:?}");
    if spec.security.run_as_non_root == Some(true) {
        assert_ne!(uid, Some(0));
    }
    let gid = eff.run_as_group.or_else(|| (uid == Some(0)).then_some(0));
    assert!(gid.is_some_and(|g| gids.contains(&g)), "gid {gid:?}");

    if pod.containers.iter().all(|c| c.no_new_privs) {
        assert!(eff.no_new_privs);
    }
    if pod.containers.iter().all(|c| c.readonly_rootfs) {
        assert!(eff.readonly_rootfs);
    }
    let masked: BTreeSet<String> = eff.masked_paths.iter().cloned().collect();
    let readonly: BTreeSet<String> = eff.readonly_paths.iter().cloned().collect();
    assert!(
        pod.containers
            .iter()
            .any(|c| c.masked_paths.is_subset(&masked) && c.readonly_paths.is_subset(&readonly)),
        "masked and read-only paths"
    );

    let any_unconfined = pod
        .containers
        .iter()
        .any(|c| c.seccomp == SeccompFact::Unconfined);
    match &eff.seccomp {
        None | Some(Profile::Unconfined) => assert!(any_unconfined, "seccomp unconfined"),
        Some(p) => assert!(
            any_unconfined
                || pod
                    .containers
                    .iter()
                    .any(|c| c.seccomp == SeccompFact::Profile(p.clone())),
            "seccomp {p:?}"
        ),
    }
    let apparmor: BTreeSet<&str> = pod.containers.iter().map(|c| c.apparmor.as_str()).collect();
    let oci = match &eff.apparmor {
        None | Some(Profile::RuntimeDefault) => APPARMOR_RUNTIME_DEFAULT,
        Some(Profile::Unconfined) => "",
        Some(Profile::Localhost(name)) => name,
    };
    assert!(
        apparmor.contains("") || apparmor.contains(oci),
        "apparmor {oci:?}"
    );
    let level = &eff.selinux_level;
    assert!(
        level.is_empty()
            || *level == pod.sandbox.selinux_level
            || pod.containers.iter().any(|c| c.selinux_level == *level),
        "selinux level {level:?}"
    );
}

/// The node budget growth is checked against.
pub(super) const BUDGET: Bounds = Bounds {
    cpu_milli: Some(64_000),
    memory: Some(256 << 30),
};

/// `control_spec`: the bytes as an `AddContainersRequest` (and, for old stored specs, as the
/// base64 text of one container spec).
pub fn control_spec(data: &[u8]) {
    let codec = SpecCodec::with_legacy(convert::legacy_spec);
    let _ = codec.decode(&String::from_utf8_lossy(data));
    let Ok(req) = api::AddContainersRequest::decode(data) else {
        return;
    };
    let _ = convert::pod_selector(req.pod.as_ref());
    let _ = convert::pod_filter(req.pod.as_ref());
    let Ok(specs) = convert::container_specs(&req.containers) else {
        return;
    };
    for (i, spec) in specs.iter().enumerate() {
        // What the API shows parses back to the same spec; what is stored reads back the same.
        let shown = convert::api_spec(spec);
        let back = convert::container_spec(&shown, i).expect("a shown spec parses");
        assert_eq!(back.registry_auth, None);
        let without_auth = ContainerSpec {
            registry_auth: None,
            ..spec.clone()
        };
        assert_eq!(back, without_auth, "api round trip");
        let stored = codec
            .decode(&codec.encode(spec))
            .expect("a stored spec reads");
        assert_eq!(stored, without_auth, "annotation round trip");
    }
    let shape = admission::request(&specs);

    // `harden` on its own: every pod, every image user, whatever the request checks said.
    for (i, spec) in specs.iter().enumerate() {
        for pod in &pods() {
            for image in &images() {
                if let Ok(eff) = security::harden(spec, i, pod, image) {
                    if shape.is_ok() {
                        assert_within(pod, image, spec, &eff);
                    }
                }
            }
        }
    }

    let [hardened, permissive, mixed] = pods();
    for (pod, qos, cgroup_parent) in [
        (hardened, Qos::Burstable, "kubepods-burstable-pod0c8f.slice"),
        (permissive, Qos::Guaranteed, "kubepods-pod0c8f.slice"),
        (mixed, Qos::BestEffort, "kubepods-besteffort-pod0c8f.slice"),
    ] {
        let config = cri::PodSandboxConfig {
            labels: HashMap::from([(
                "io.kubernetes.pod.namespace".to_string(),
                "default".to_string(),
            )]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for image in images() {
            let images = vec![image.clone(); specs.len()];
            let facts = facts(pod.clone(), qos);
            let Ok(admitted) = admission::admit(&specs, &images, &facts) else {
                continue;
            };
            assert_eq!(admitted.len(), specs.len());
            if shape.is_err() {
                continue;
            }
            for (spec, a) in specs.iter().zip(&admitted) {
                assert_within(&pod, &image, spec, &a.security);
                for m in &a.mounts {
                    let source = facts
                        .mounts
                        .iter()
                        .find(|e| e.host_path == m.host_path)
                        .expect("only the pod's mounts");
                    assert!(m.readonly || !source.readonly, "read-only stays read-only");
                    assert_eq!(m.propagation, source.propagation);
                }
                let cfg = translate::container_config(
                    spec,
                    &a.security,
                    codec.encode(spec),
                    &config,
                    a.mounts.clone(),
                    0,
                    8 << 30,
                );
                assert_eq!(
                    cfg.labels.get(DYNAMIC_LABEL).map(String::as_str),
                    Some("true")
                );
            }
        }
    }

    // Growth: what the ledger reserves fits its budget.
    if shape.is_ok() {
        let batch: Vec<(String, crate::cgroup::Growth)> = specs
            .iter()
            .map(|s| (s.name.clone(), growth_of(s)))
            .collect();
        let ledger = Ledger::new(BUDGET);
        if ledger.reserve("sb", Bounds::default(), &batch).is_ok() {
            let sum = |f: fn(&crate::cgroup::Growth) -> i64| -> i128 {
                batch.iter().map(|(_, g)| i128::from(f(g))).sum()
            };
            assert!(sum(|g| g.cpu_milli) <= i128::from(BUDGET.cpu_milli.unwrap()));
            assert!(sum(|g| g.memory) <= i128::from(BUDGET.memory.unwrap()));
        }
    }
}
