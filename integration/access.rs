//! Authorization and audit of the control API on a real node: real processes of other users
//! (the CLI run as uid 1000, 1500, 1600) are allowed or refused by the `[[access]]` policy on
//! their peer credentials, every mutation, exec and denial is audited, and planted secrets
//! (registry password, env value) appear in no log, audit record or error.

use podgraft::api;
use tonic::Code;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::start_pod;

/// uid 1000 may read everywhere; members of group 2000 may do everything in "default" only.
const POLICY: &str = r#"
socket_mode = "0666"

[[access]]
uids = [1000]
verbs = ["read"]

[[access]]
gids = [2000]
verbs = ["read", "exec", "mutate"]
namespaces = ["default"]
"#;

fn records<'a>(all: &'a [serde_json::Value], call: &str, uid: u32) -> Vec<&'a serde_json::Value> {
    all.iter()
        .filter(|r| r["call"] == call && r["caller"]["uid"] == uid)
        .collect()
}

#[tokio::test]
async fn control_calls_are_authorized_by_peer_credentials_and_audited() {
    let Some(node) = Node::start_with(POLICY) else {
        return;
    };
    // Other users must reach the socket for the policy (not the file mode) to decide.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let (_, sandbox, _) = start_pod(&node, "agent", MUTABLE, "main", "exec sleep 3600", None).await;
    let add = |name: &str| {
        vec![
            "add".to_string(),
            "default/agent".into(),
            "--name".into(),
            name.into(),
            "--image".into(),
            BUSYBOX.into(),
            "--".into(),
            "sleep".into(),
            "3600".into(),
        ]
    };
    let args = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let run_as = |uid, gid, groups: &[u32], a: &[String]| {
        node.cli_as(
            uid,
            gid,
            groups,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    // A reader lists but may not add.
    let (code, _, err) = run_as(1000, 1000, &[], &["ls".into()]);
    assert_eq!(code, 0, "uid 1000 may read: {err}");
    let (code, _, err) = run_as(1000, 1000, &[], &add("by-reader"));
    assert_ne!(code, 0, "{}", args(&add("by-reader")));
    assert!(err.contains("may not mutate"), "{err}");

    // A member of group 2000 (a supplementary group) adds, execs and removes in "default".
    let (code, _, err) = run_as(1500, 1500, &[2000], &add("by-member"));
    assert_eq!(code, 0, "group 2000 may mutate in default: {err}");
    let (code, out, err) = run_as(
        1500,
        1500,
        &[2000],
        &["exec", "default/agent", "by-member", "--", "echo", "hi"].map(String::from),
    );
    assert_eq!((code, out.trim()), (0, "hi"), "{err}");
    let (code, _, err) = run_as(
        1500,
        1500,
        &[2000],
        &["rm", "default/agent", "by-member", "--grace", "0"].map(String::from),
    );
    assert_eq!(code, 0, "{err}");

    // Nobody else may do anything.
    let (code, _, err) = run_as(1600, 1600, &[], &["ls".into()]);
    assert_ne!(code, 0);
    assert!(err.contains("may not read"), "{err}");

    // Root may do everything; nothing the refused calls asked for exists.
    let mut control = node.control_client().await;
    let listed = control
        .list_containers(api::ListContainersRequest { pod: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");

    let all = node.audit_records();
    let denied = records(&all, "AddContainers", 1000);
    assert_eq!(denied.len(), 1, "{all:?}");
    assert_eq!(denied[0]["decision"], "denied");
    assert_eq!(denied[0]["code"], "PermissionDenied");
    assert_eq!(denied[0]["containers"][0], "by-reader");
    let allowed = records(&all, "AddContainers", 1500);
    assert_eq!(allowed[0]["decision"], "allowed");
    assert_eq!(allowed[0]["caller"]["gid"], 1500);
    assert!(allowed[0]["caller"]["pid"].as_i64().unwrap() > 0);
    assert_eq!(allowed[0]["spec_digests"][0].as_str().unwrap().len(), 64);
    assert!(allowed[0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(records(&all, "Exec", 1500)[0]["decision"], "allowed");
    assert_eq!(
        records(&all, "RemoveContainers", 1500)[0]["decision"],
        "allowed"
    );
    assert_eq!(
        records(&all, "ListContainers", 1600)[0]["decision"],
        "denied"
    );
    assert!(
        records(&all, "ListContainers", 1000).is_empty(),
        "allowed reads are not audited"
    );
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn planted_secrets_appear_in_no_log_audit_or_error() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) =
        start_pod(&node, "agent", MUTABLE, "main", "exec sleep 3600", None).await;
    let mut control = node.control_client().await;
    const PASSWORD: &str = "hunter2-PLANTED-pw";
    const ENV_VALUE: &str = "s3cr3t-PLANTED-env";
    let spec = |name: &str, image: &str| api::ContainerSpec {
        name: name.into(),
        image: image.into(),
        command: vec!["sleep".into(), "3600".into()],
        env: vec![api::KeyValue {
            name: "TOKEN".into(),
            value: ENV_VALUE.into(),
        }],
        registry_auth: Some(api::RegistryAuth {
            username: "bot".into(),
            password: PASSWORD.into(),
            server_address: "127.0.0.1:1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod_ref = Some(api::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..Default::default()
    });
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref.clone(),
            containers: vec![spec("ok", BUSYBOX)],
        })
        .await
        .unwrap();
    // A pull that must use the credentials and fails.
    let err = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref.clone(),
            containers: vec![spec("pull", "127.0.0.1:1/none/such:1")],
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_ne!(
        err.code(),
        Code::Unknown,
        "never UNKNOWN: {}",
        err.message()
    );
    let (_, out, stderr) = node.cli(&["get", "default/agent", "ok", "-o", "json"]);
    assert!(!out.contains(PASSWORD), "the API never returns credentials");
    let audit = std::fs::read_to_string(node.audit_path()).unwrap();
    assert!(audit.contains("\"AddContainers\""), "the adds were audited");
    for (what, text) in [
        ("podgraft's log (debug level)", node.podgraft_log()),
        ("the audit trail", audit),
        ("the error", err.message().to_string()),
        ("the CLI's stderr", stderr),
    ] {
        for secret in [PASSWORD, ENV_VALUE] {
            assert!(!text.contains(secret), "{secret} found in {what}");
        }
    }
    node.remove_pod(&sandbox).await;
}

/// podgraft keeps only the capabilities it needs (`podgraft::privileges::KEPT`), in every set
/// including the bounding set, with no_new_privs, and still does its whole job.
#[tokio::test]
async fn podgraft_runs_with_only_the_capabilities_it_needs() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) =
        start_pod(&node, "agent", MUTABLE, "main", "exec sleep 3600", None).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.podgraft_pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let kept: u64 = podgraft::privileges::KEPT
        .iter()
        .map(|c| 1u64 << c.index())
        .sum();
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(
            u64::from_str_radix(&field(set), 16).unwrap(),
            kept,
            "{set} {}",
            field(set)
        );
    }
    assert_eq!(field("CapInh:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    // And it still adds, grows and removes.
    let mut control = node.control_client().await;
    control
        .add_containers(api::AddContainersRequest {
            pod: Some(api::PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ..Default::default()
            }),
            containers: vec![api::ContainerSpec {
                name: "tool".into(),
                image: BUSYBOX.into(),
                command: vec!["sleep".into(), "3600".into()],
                resources: Some(api::Resources {
                    requests: None,
                    limits: Some(api::ResourceList {
                        cpu: "100m".into(),
                        memory: "16Mi".into(),
                    }),
                }),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    node.remove_pod(&sandbox).await;
}
