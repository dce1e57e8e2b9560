//! Field-named refusals of malformed and forbidden container specs, from the wire through
//! parsing and the shape rules of admission; pod selectors; stored specs of earlier builds.
use super::*;
use crate::api;
use crate::api::ContainerSpec;
use crate::dynamic::admission::shape::{self, MAX_ARGS};
use crate::dynamic::model;

/// What AddContainers does with one container before it looks at the pod.
fn spec(s: &ContainerSpec, i: usize) -> Result<model::ContainerSpec> {
    let parsed = container_spec(s, i)?;
    shape::container(&parsed, i)?;
    Ok(parsed)
}

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
fn a_pod_is_named_exactly_one_way() {
    let by = |namespace: &str, name: &str, uid: &str, sandbox_id: &str| api::PodRef {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
        sandbox_id: sandbox_id.into(),
    };
    assert_eq!(
        pod_selector(Some(&by("default", "agent", "", ""))).unwrap(),
        PodSelector::Name {
            namespace: "default".into(),
            name: "agent".into()
        }
    );
    assert_eq!(
        pod_selector(Some(&by("", "", "u1", ""))).unwrap(),
        PodSelector::Uid("u1".into())
    );
    for (pod, field) in [
        (None, "pod"),
        (Some(by("default", "agent", "uid-agent", "")), "pod"),
        (Some(by("", "", "", "")), "pod"),
        (Some(by("default", "", "", "")), "pod.name"),
        (Some(by("", "agent", "", "")), "pod.namespace"),
    ] {
        match pod_selector(pod.as_ref()) {
            Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field, "{pod:?}"),
            other => panic!("{pod:?}: {other:?}"),
        }
    }
    assert_eq!(pod_filter(Some(&api::PodRef::default())).unwrap(), None);
}

#[test]
fn specs_round_trip_through_the_domain() {
    let mut s = ok_spec();
    s.image_pull_policy = "Always".into();
    s.restart_policy = "OnFailure".into();
    s.termination_message_policy = "File".into();
    s.resources = Some(api::Resources {
        requests: Some(api::ResourceList {
            cpu: "250m".into(),
            memory: String::new(),
        }),
        limits: Some(api::ResourceList {
            cpu: "1".into(),
            memory: "64Mi".into(),
        }),
    });
    s.security_context = Some(api::SecurityContext {
        seccomp_profile: "localhost/profiles/audit.json".into(),
        run_as_user: Some(1000),
        proc_mount: "Default".into(),
        capabilities: Some(api::Capabilities::default()),
        ..Default::default()
    });
    s.readiness_probe = Some(api::Probe {
        handler: Some(api::probe::Handler::HttpGet(api::HttpGetAction {
            path: "/healthz".into(),
            port: 8080,
            scheme: "HTTP".into(),
            ..Default::default()
        })),
        period_seconds: 5,
        ..Default::default()
    });
    let parsed = spec(&s, 0).unwrap();
    assert_eq!(parsed.resources.amounts().cpu_request, 250);
    assert_eq!(
        parsed.security.seccomp,
        Some(crate::dynamic::model::spec::Profile::Localhost(
            "profiles/audit.json".into()
        ))
    );
    assert_eq!(api_spec(&parsed), s);
}

#[test]
fn reads_specs_stored_by_earlier_builds() {
    let old = ok_spec();
    let text = base64::engine::general_purpose::STANDARD.encode(old.encode_to_vec());
    let spec = legacy_spec(&text).unwrap();
    assert_eq!(
        (spec.name.as_str(), spec.image.as_str()),
        ("tool", old.image.as_str())
    );
    assert_eq!(legacy_spec("not base64!"), None);
}

#[test]
fn debug_output_of_wire_specs_hides_credentials_and_env_values() {
    let mut s = ok_spec();
    s.registry_auth = Some(api::RegistryAuth {
        username: "bot".into(),
        password: "hunter2-planted".into(),
        auth: "aHVudGVyMg==".into(),
        ..Default::default()
    });
    s.env = vec![api::KeyValue {
        name: "TOKEN".into(),
        value: "s3cr3t-planted".into(),
    }];
    let debug = format!("{s:?}");
    for secret in ["hunter2-planted", "aHVudGVyMg==", "s3cr3t-planted"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("TOKEN") && debug.contains("bot"));
    let parsed = format!("{:?}", spec(&s, 0).unwrap());
    assert!(!parsed.contains("hunter2-planted") && !parsed.contains("s3cr3t-planted"));
}
