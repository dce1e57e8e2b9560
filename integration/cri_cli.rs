//! `podgraft cri`, the kubelet-like CRI client hack/up.sh runs its demo with, against a real node:
//! the pod it runs is a kubelet's pod to podgraft, its `ps` through podgraft is the kubelet's view,
//! `time-create-start` leaves nothing behind and `rm-pod` removes the pod.

use k8s_cri::v1 as cri;
use serde_json::Value;

use crate::harness::{BUSYBOX, MUTABLE, Node};

fn names(ps_json: &str) -> Vec<String> {
    let list: Vec<Value> = serde_json::from_str(ps_json).expect("ps -o json");
    let mut names: Vec<String> = list
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn cri_subcommands_run_a_kubelet_pod_whose_added_container_the_kubelet_never_sees() {
    let Some(node) = Node::start() else { return };
    let via_podgraft = node.podgraft.display().to_string();
    let direct = node.containerd.display().to_string();
    let cri = |endpoint: &str, args: &[&str]| {
        let mut all = vec!["-o", "json", "cri", "--endpoint", endpoint];
        all.extend_from_slice(args);
        let (code, out, err) = node.cli(&all);
        assert_eq!(code, 0, "podgraft cri {args:?}: {err}");
        out
    };
    let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    let uid = uid.trim();
    node.track_cgroup(&format!("/kubepods/burstable/pod{uid}"));
    let log_root = node.log_dir().display().to_string();

    let out = cri(
        &via_podgraft,
        &[
            "run-pod",
            "default/demo",
            "--uid",
            uid,
            "--log-root",
            &log_root,
            "--image",
            BUSYBOX,
        ],
    );
    let run: Value = serde_json::from_str(&out).unwrap();
    let sandbox = run["sandbox_id"].as_str().unwrap().to_string();
    assert_eq!(
        run["cgroup_parent"],
        format!("/kubepods/burstable/pod{uid}")
    );
    let log_dir = format!("{log_root}/default_demo_{uid}");
    assert_eq!(run["log_directory"], log_dir.as_str());
    assert!(std::path::Path::new(&log_dir).is_dir());

    // containerd has the pod as the kubelet would have made it.
    let mut containerd = node.runtime(false).await;
    let status = containerd
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.runtime_handler, MUTABLE);
    assert_eq!(status.labels["io.kubernetes.pod.uid"], uid);
    assert_eq!(status.labels["io.kubernetes.pod.name"], "demo");
    assert_eq!(names(&cri(&direct, &["ps"])), ["app"]);

    // podgraft takes it as a mutable kubelet pod: the add succeeds.
    let (code, _, err) = node.cli(&[
        "add",
        "default/demo",
        "--name",
        "tool",
        "--image",
        BUSYBOX,
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(code, 0, "{err}");

    // The kubelet's view (through podgraft) has the pod's own container only; containerd has both.
    assert_eq!(names(&cri(&via_podgraft, &["ps"])), ["app"]);
    assert_eq!(names(&cri(&via_podgraft, &["ps", "default/demo"])), ["app"]);
    assert_eq!(names(&cri(&direct, &["ps", &sandbox])), ["app", "tool"]);
    let (code, table, err) = node.cli(&["cri", "--endpoint", &via_podgraft, "ps"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("CONTAINER "), "{table}");
    assert!(
        table.contains(" app ") && table.contains("default/demo"),
        "{table}"
    );
    assert!(!table.contains("tool"), "{table}");

    // containerd's own create+start, timed, then removed again.
    let timing: Value = serde_json::from_str(&cri(
        &direct,
        &[
            "time-create-start",
            "default/demo",
            "--name",
            "direct",
            "--image",
            BUSYBOX,
            "--",
            "sleep",
            "3600",
        ],
    ))
    .unwrap();
    let total = timing["total_ms"].as_f64().unwrap();
    assert!(total > 0.0 && total < 60_000.0, "{timing}");
    let parts = timing["create_ms"].as_f64().unwrap() + timing["start_ms"].as_f64().unwrap();
    assert!((parts - total).abs() < 0.05, "{timing}");
    assert_eq!(names(&cri(&direct, &["ps"])), ["app", "tool"]);

    // rm-pod removes the pod and, through podgraft, its hidden container.
    cri(&via_podgraft, &["rm-pod", "default/demo", "--grace", "1"]);
    assert_eq!(names(&cri(&direct, &["ps"])), Vec::<String>::new());
    let sandboxes = containerd
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
}
