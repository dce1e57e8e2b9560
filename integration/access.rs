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

    // A caller scoped to namespaces learns nothing of pods elsewhere: a UID that names no pod is
    // refused like one out of scope, not reported missing. In its own namespace, missing is
    // missing.
    let get = |pod: &str| ["get", pod, "x"].map(String::from);
    let (code, _, err) = run_as(1500, 1500, &[2000], &get("uid:no-such-pod-uid"));
    assert_ne!(code, 0);
    assert!(
        err.contains("may not read on pod with UID no-such-pod-uid"),
        "{err}"
    );
    let (code, _, err) = run_as(1500, 1500, &[2000], &get("kube-system/ghost"));
    assert_ne!(code, 0);
    assert!(
        err.contains("may not read in namespace \"kube-system\""),
        "{err}"
    );
    let (code, _, err) = run_as(1500, 1500, &[2000], &get("default/ghost"));
    assert_ne!(code, 0);
    assert!(
        err.contains("not found") || err.contains("NotFound"),
        "{err}"
    );

    // Nobody else may do anything.
    let (code, _, err) = run_as(1600, 1600, &[], &["ls".into()]);
    assert_ne!(code, 0);
    assert!(err.contains("may not read"), "{err}");

    // Root may do everything; nothing the refused calls asked for exists.
    let mut control = node.control_client().await;
    let listed = control
        .list_containers(api::ListContainersRequest {
            pod: None,
            include_removed: false,
        })
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

/// A CA and a certificate it signs for `names` (the first is the CN): PEM cert and key.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    fn issue(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Remote controllers on the mutual-TLS listener: identified by their client certificate (the
/// configured CA's), authorized by `names` rules; a certificate of another CA gets no connection.
#[tokio::test]
async fn remote_controllers_need_a_client_certificate_and_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("podgraft test CA");
    let (server_cert, server_key) = pki.issue("podgraft", &["localhost"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "control_tls_listen = \"127.0.0.1:{port}\"\ncontrol_tls_cert = \"{}\"\ncontrol_tls_key = \"{}\"\ncontrol_tls_client_ca = \"{}\"\n\n[[access]]\nnames = [\"controller-1\"]\nverbs = [\"read\"]\n",
        write("server.pem", &server_cert),
        write("server.key", &server_key),
        write("ca.pem", &pki.ca.pem()),
    );
    let Some(node) = Node::start_with(&config) else {
        return;
    };
    let (_, sandbox, _) = start_pod(&node, "agent", MUTABLE, "main", "exec sleep 3600", None).await;
    let connect = |cert: (String, String), ca: String| async move {
        let tls = tonic::transport::ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .identity(tonic::transport::Identity::from_pem(cert.0, cert.1));
        let channel = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await?;
        Ok::<_, tonic::transport::Error>(api::control_client::ControlClient::new(channel))
    };
    let mut ready = None;
    for _ in 0..50 {
        match connect(pki.issue("controller-1", &[]), pki.ca.pem()).await {
            Ok(client) => {
                ready = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let mut controller = ready.expect("the TLS listener serves");
    controller
        .list_containers(api::ListContainersRequest {
            pod: None,
            include_removed: false,
        })
        .await
        .expect("controller-1 may read");
    let err = controller
        .add_containers(api::AddContainersRequest {
            pod: Some(api::PodRef {
                namespace: "default".into(),
                name: "agent".into(),
                ..Default::default()
            }),
            containers: vec![api::ContainerSpec {
                name: "tool".into(),
                image: BUSYBOX.into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("controller-1"), "{}", err.message());

    // Another name from the same CA: connected, but no rule grants it anything.
    let mut stranger = connect(pki.issue("someone-else", &[]), pki.ca.pem())
        .await
        .unwrap();
    let err = stranger
        .list_containers(api::ListContainersRequest {
            pod: None,
            include_removed: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A certificate of another CA never gets a working connection.
    let other = Pki::new("someone else's CA");
    let refused = match connect(other.issue("controller-1", &[]), pki.ca.pem()).await {
        Err(_) => true,
        Ok(mut c) => c
            .list_containers(api::ListContainersRequest {
                pod: None,
                include_removed: false,
            })
            .await
            .is_err(),
    };
    assert!(refused, "a foreign client certificate must be refused");
    let audit = node.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["call"] == "AddContainers" && r["caller"]["names"][0] == "controller-1"),
        "{audit:?}"
    );
    node.remove_pod(&sandbox).await;
}
