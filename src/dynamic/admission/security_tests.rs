//! No-escalation rules against a hardened pod (uid 1000, no capabilities, read-only root,
//! no_new_privs, RuntimeDefault seccomp) and a permissive one (root with the runtime's defaults).

use std::collections::BTreeSet;

use super::*;
use crate::dynamic::model::security::{ContainerSecurity, SandboxSecurity};
use crate::dynamic::model::spec::{Capabilities, SecurityContext};

fn hardened_container() -> ContainerSecurity {
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
        apparmor: String::new(),
        selinux_level: String::new(),
    }
}

fn hardened() -> PodSecurity {
    PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![hardened_container()],
    }
}

fn permissive() -> PodSecurity {
    PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![ContainerSecurity {
            uid: 0,
            gid: 0,
            capabilities: caps::RUNTIME_DEFAULT
                .iter()
                .map(|c| c.to_string())
                .collect(),
            no_new_privs: false,
            readonly_rootfs: false,
            seccomp: SeccompFact::Unconfined,
            ..hardened_container()
        }],
    }
}

fn with(sc: SecurityContext) -> ContainerSpec {
    ContainerSpec {
        name: "tool".into(),
        image: "busybox".into(),
        security: sc,
        ..Default::default()
    }
}

fn root_image() -> ImageUser {
    ImageUser::default()
}

fn caps(add: &[&str], drop: &[&str]) -> Capabilities {
    Capabilities {
        add: add.iter().map(|s| s.to_string()).collect(),
        drop: drop.iter().map(|s| s.to_string()).collect(),
    }
}

/// The field a refusal names, or "ok".
fn verdict(spec: &ContainerSpec, pod: &PodSecurity) -> String {
    match harden(spec, 0, pod, &root_image()) {
        Ok(_) => "ok".into(),
        Err(Error::PermissionDenied(m)) => m.split(':').next().unwrap().to_string(),
        Err(Error::InvalidArgument { field, .. }) => format!("invalid:{field}"),
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn escalations_into_a_hardened_pod_are_refused_by_field() {
    let p = "containers[0].securityContext";
    let cases: Vec<(SecurityContext, String)> = vec![
        (
            SecurityContext {
                capabilities: caps(&["SYS_ADMIN"], &["ALL"]),
                run_as_user: Some(1000),
                ..Default::default()
            },
            format!("{p}.capabilities.add"),
        ),
        (
            SecurityContext {
                capabilities: caps(&["all"], &[]),
                ..Default::default()
            },
            format!("{p}.capabilities.add"),
        ),
        (
            SecurityContext {
                capabilities: caps(&[], &["CHOWN"]),
                ..Default::default()
            },
            format!("{p}.capabilities.drop"),
        ),
        (
            SecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            },
            format!("{p}.runAsUser"),
        ),
        (
            SecurityContext {
                run_as_group: Some(0),
                ..Default::default()
            },
            format!("{p}.runAsGroup"),
        ),
        (
            SecurityContext {
                allow_privilege_escalation: Some(true),
                ..Default::default()
            },
            format!("{p}.allowPrivilegeEscalation"),
        ),
        (
            SecurityContext {
                read_only_root_filesystem: Some(false),
                ..Default::default()
            },
            format!("{p}.readOnlyRootFilesystem"),
        ),
        (
            SecurityContext {
                proc_mount: ProcMount::Unmasked,
                ..Default::default()
            },
            format!("{p}.procMount"),
        ),
        (
            SecurityContext {
                seccomp: Some(Profile::Unconfined),
                ..Default::default()
            },
            format!("{p}.seccompProfile"),
        ),
        (
            SecurityContext {
                seccomp: Some(Profile::Localhost("/x.json".into())),
                ..Default::default()
            },
            format!("{p}.seccompProfile"),
        ),
        (
            SecurityContext {
                se_linux_level: "s0:c9,c10".into(),
                ..Default::default()
            },
            format!("{p}.seLinuxOptions.level"),
        ),
        (
            SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(0),
                ..Default::default()
            },
            format!("{p}.runAsUser"),
        ),
    ];
    for (sc, field) in cases {
        assert_eq!(verdict(&with(sc.clone()), &hardened()), field, "{sc:?}");
    }
}

#[test]
fn an_unset_context_in_a_hardened_pod_is_hardened_to_the_pods() {
    let eff = harden(
        &with(SecurityContext::default()),
        0,
        &hardened(),
        &root_image(),
    )
    .unwrap();
    assert_eq!(eff.run_as_user, Some(1000));
    assert_eq!(eff.run_as_group, Some(3000));
    assert_eq!(eff.capabilities_drop, ["ALL"]);
    assert!(eff.capabilities_add.is_empty());
    assert!(eff.no_new_privs && eff.readonly_rootfs);
    assert_eq!(eff.seccomp, Some(Profile::RuntimeDefault));
    assert_eq!(eff.masked_paths.len(), MASKED_PATHS.len());
    // What the pod has may be asked for in any spelling.
    let eff = harden(
        &with(SecurityContext {
            capabilities: caps(&[], &["all"]),
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        0,
        &hardened(),
        &ImageUser {
            uid: Some(1000),
            username: String::new(),
        },
    )
    .unwrap();
    assert_eq!(eff.capabilities_drop, ["ALL"]);
    assert_eq!(
        (eff.run_as_user, eff.run_as_group),
        (Some(1000), Some(3000))
    );
}

#[test]
fn a_permissive_pod_admits_what_it_has_and_no_more() {
    assert_eq!(
        verdict(&with(SecurityContext::default()), &permissive()),
        "ok"
    );
    let net_raw = with(SecurityContext {
        capabilities: caps(&["NET_RAW", "cap_chown"], &[]),
        ..Default::default()
    });
    assert_eq!(verdict(&net_raw, &permissive()), "ok");
    for add in [
        "SYS_ADMIN",
        "NET_ADMIN",
        "SYS_PTRACE",
        "CAP_SYS_ADMIN",
        "sys_admin",
    ] {
        let spec = with(SecurityContext {
            capabilities: caps(&[add], &[]),
            ..Default::default()
        });
        assert_eq!(
            verdict(&spec, &permissive()),
            "containers[0].securityContext.capabilities.add",
            "{add}"
        );
    }
    // More restrictive than the pod is always fine.
    let tight = with(SecurityContext {
        capabilities: caps(&[], &["ALL"]),
        seccomp: Some(Profile::RuntimeDefault),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        ..Default::default()
    });
    assert_eq!(verdict(&tight, &permissive()), "ok");
    // Unmasked /proc needs a container that has it.
    let mut unmasked_pod = permissive();
    unmasked_pod.containers[0].masked_paths.clear();
    let unmasked = with(SecurityContext {
        proc_mount: ProcMount::Unmasked,
        ..Default::default()
    });
    assert_eq!(
        verdict(&unmasked, &permissive()),
        "containers[0].securityContext.procMount"
    );
    assert_eq!(verdict(&unmasked, &unmasked_pod), "ok");
}

#[test]
fn the_image_user_and_pod_level_settings_count() {
    // A root image in a pod of non-root containers is hardened to the pod's uid.
    let eff = harden(
        &with(SecurityContext::default()),
        0,
        &hardened(),
        &root_image(),
    )
    .unwrap();
    assert_eq!(eff.run_as_user, Some(1000));
    // Two uids in use: podgraft cannot pick; the user must.
    let mut two = hardened();
    two.containers.push(ContainerSecurity {
        uid: 2000,
        ..hardened_container()
    });
    assert_eq!(
        verdict(&with(SecurityContext::default()), &two),
        "containers[0].securityContext.runAsUser"
    );
    // A user name podgraft cannot resolve is treated as unknown.
    let named = ImageUser {
        uid: None,
        username: "app".into(),
    };
    assert!(harden(&with(SecurityContext::default()), 0, &two, &named).is_err());
    // The pod-level runAsUser is inherited.
    let mut pod = hardened();
    pod.sandbox.run_as_user = Some(1000);
    pod.sandbox.seccomp = Some(Profile::RuntimeDefault);
    let eff = harden(&with(SecurityContext::default()), 0, &pod, &root_image()).unwrap();
    assert_eq!(eff.run_as_user, Some(1000));
    assert_eq!(eff.seccomp, Some(Profile::RuntimeDefault));
}

#[test]
fn apparmor_and_selinux_only_as_in_use() {
    let mut pod = permissive();
    pod.containers[0].apparmor = APPARMOR_RUNTIME_DEFAULT.into();
    pod.containers[0].selinux_level = "s0:c1,c2".into();
    assert_eq!(verdict(&with(SecurityContext::default()), &pod), "ok");
    let unconfined = with(SecurityContext {
        apparmor: Some(Profile::Unconfined),
        ..Default::default()
    });
    assert_eq!(
        verdict(&unconfined, &pod),
        "containers[0].securityContext.appArmorProfile"
    );
    let level = with(SecurityContext {
        se_linux_level: "s0:c1,c2".into(),
        ..Default::default()
    });
    assert_eq!(verdict(&level, &pod), "ok");
}

#[test]
fn root_from_one_container_and_capabilities_from_another_never_combine() {
    // A root container with no capabilities beside a uid-1000 container holding SYS_ADMIN.
    let mut pod = hardened();
    pod.containers.push(ContainerSecurity {
        uid: 0,
        gid: 3000,
        capabilities: BTreeSet::new(),
        ..hardened_container()
    });
    pod.containers[0].capabilities = ["CAP_SYS_ADMIN".to_string()].into();
    let as_root = with(SecurityContext {
        run_as_user: Some(0),
        capabilities: caps(&["SYS_ADMIN"], &["ALL"]),
        ..Default::default()
    });
    assert_eq!(
        verdict(&as_root, &pod),
        "containers[0].securityContext.capabilities.add"
    );
    let as_user = with(SecurityContext {
        run_as_user: Some(1000),
        capabilities: caps(&["SYS_ADMIN"], &["ALL"]),
        ..Default::default()
    });
    assert_eq!(verdict(&as_user, &pod), "ok");
}
