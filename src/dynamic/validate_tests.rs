//! Field-named refusals of malformed and forbidden container specs.
use super::*;
use crate::api;

fn ok_spec() -> ContainerSpec {
    ContainerSpec {
        name: "tool".into(),
        image: "registry.example:5000/team/busybox:1.36".into(),
        ..Default::default()
    }
}

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidArgument { field, .. } => field,
        Error::PermissionDenied(m) => format!("denied:{}", m.split(':').next().unwrap()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn accepts_a_plain_container() {
    spec(&ok_spec(), 0).unwrap();
    let mut s = ok_spec();
    s.image = "busybox@sha256:".to_string() + &"a".repeat(64);
    spec(&s, 0).unwrap();
}

#[test]
fn names_the_bad_field() {
    type Edit = fn(&mut ContainerSpec);
    let cases: Vec<(Edit, &str)> = vec![
        (|s| s.name = "Tool".into(), "containers[2].name"),
        (|s| s.name = "a".repeat(64), "containers[2].name"),
        (|s| s.image = String::new(), "containers[2].image"),
        (|s| s.image = "Busybox".into(), "containers[2].image"),
        (|s| s.image = "busybox:".into(), "containers[2].image"),
        (
            |s| s.image_pull_policy = "Sometimes".into(),
            "containers[2].imagePullPolicy",
        ),
        (|s| s.working_dir = "rel".into(), "containers[2].workingDir"),
        (
            |s| s.args = vec!["x".into(); MAX_ARGS + 1],
            "containers[2].args",
        ),
        (
            |s| {
                s.env = vec![api::KeyValue {
                    name: "A=B".into(),
                    value: String::new(),
                }]
            },
            "containers[2].env[0].name",
        ),
        (
            |s| {
                s.labels.insert("podgraft.io/dynamic".into(), "x".into());
            },
            "containers[2].labels[podgraft.io/dynamic]",
        ),
        (
            |s| {
                s.ports = vec![api::ContainerPort {
                    container_port: 80,
                    host_port: 8080,
                    ..Default::default()
                }]
            },
            "denied:containers[2].ports[0].hostPort",
        ),
        (
            |s| {
                s.security_context = Some(api::SecurityContext {
                    privileged: true,
                    ..Default::default()
                })
            },
            "denied:containers[2].securityContext.privileged",
        ),
        (
            |s| {
                s.resources = Some(api::Resources {
                    requests: Some(api::ResourceList {
                        cpu: "2".into(),
                        memory: String::new(),
                    }),
                    limits: Some(api::ResourceList {
                        cpu: "1".into(),
                        memory: String::new(),
                    }),
                })
            },
            "containers[2].resources.requests.cpu",
        ),
        (
            |s| {
                s.resources = Some(api::Resources {
                    requests: None,
                    limits: Some(api::ResourceList {
                        cpu: String::new(),
                        memory: "lots".into(),
                    }),
                })
            },
            "containers[2].resources.limits.memory",
        ),
        (
            |s| s.liveness_probe = Some(api::Probe::default()),
            "containers[2].livenessProbe",
        ),
    ];
    for (edit, field) in cases {
        let mut s = ok_spec();
        edit(&mut s);
        assert_eq!(field_of(spec(&s, 2).unwrap_err()), field);
    }
}

#[test]
fn mounts_only_what_the_pod_already_mounts() {
    let existing = vec![cri::Mount {
        host_path: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/scratch".into(),
        container_path: "/scratch".into(),
        readonly: true,
        ..Default::default()
    }];
    let mut s = ok_spec();
    s.volume_mounts = vec![api::VolumeMount {
        name: "scratch".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }];
    let m = mounts(&s, 0, &existing).unwrap();
    assert_eq!(m[0].host_path, existing[0].host_path);
    assert!(m[0].readonly, "a read-only volume stays read-only");
    s.volume_mounts[0].name = "secrets".into();
    assert_eq!(
        field_of(mounts(&s, 0, &existing).unwrap_err()),
        "denied:containers[0].volumeMounts[0]"
    );
    s.volume_mounts[0].name = String::new();
    s.volume_mounts[0].host_path = "/etc".into();
    assert!(matches!(
        mounts(&s, 0, &existing),
        Err(Error::PermissionDenied(_))
    ));
}
