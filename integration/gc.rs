//! Termination states and garbage collection on a real containerd: exit reasons (OOMKilled
//! included) and messages from the termination message file or the log, collection of exited
//! containers after the configured delay with the pod shrunk and the final status kept (across a
//! podgraft restart), orphans of pods stopped or removed behind podgraft's back, and unknown
//! containers bearing the dynamic label.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use podgraft::api;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod};

const CONFIG: &str = "poll_interval_ms = 200\ngc_exited_after_seconds = 1\n";

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        uid: pod.uid.clone(),
        ..Default::default()
    })
}

fn job(name: &str, script: &str, memory: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        resources: Some(api::Resources {
            requests: None,
            limits: Some(api::ResourceList {
                cpu: String::new(),
                memory: memory.into(),
            }),
        }),
        ..Default::default()
    }
}

fn memory_limit(pod: &PodSpec) -> i64 {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
        pod.cgroup_parent()
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

async fn get(node: &Node, pod: &PodSpec, name: &str) -> Option<api::DynamicContainer> {
    let mut control = node.control_client().await;
    control
        .get_container(api::GetContainerRequest {
            pod: pod_ref(pod),
            name: name.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Waits up to 20 s for `check` to hold of the container's status.
async fn wait_for(
    node: &Node,
    pod: &PodSpec,
    name: &str,
    what: &str,
    check: impl Fn(&api::DynamicContainer) -> bool,
) -> api::DynamicContainer {
    let start = Instant::now();
    loop {
        if let Some(c) = get(node, pod, name).await.filter(|c| check(c)) {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: {what} not seen; last: {:?}\n{}",
            get(node, pod, name).await,
            node.podgraft_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dynamic containers containerd has in `sandbox`.
async fn on_containerd(node: &Node, sandbox: &str) -> Vec<cri::Container> {
    let mut direct = node.runtime(false).await;
    direct
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.into(),
                label_selector: [("podgraft.io/dynamic".to_string(), "true".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
}

async fn add(node: &Node, pod: &PodSpec, specs: Vec<api::ContainerSpec>) {
    let mut control = node.control_client().await;
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(pod),
            containers: specs,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn exited_containers_are_collected_shrinking_the_pod_and_their_status_survives_a_restart() {
    let Some(mut node) = Node::start_with(CONFIG) else {
        return;
    };
    let (pod, sandbox, _) = start_pod(
        &node,
        "gc",
        MUTABLE,
        "main",
        "exec sleep 3600",
        Some(16 << 20),
    )
    .await;
    // The pod cgroup's limit as the kubelet would set it.
    let baseline: i64 = 64 << 20;
    std::fs::write(
        format!(
            "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
            pod.cgroup_parent()
        ),
        baseline.to_string(),
    )
    .unwrap();
    let mut failing = job(
        "job",
        "echo 'disk full' > /dev/termination-log; echo from-log >&2; exit 3",
        "32Mi",
    );
    failing.termination_message_policy = "FallbackToLogsOnError".into();
    let mut logs = job("logs", "echo 'no such file' >&2; exit 1", "16Mi");
    logs.termination_message_policy = "FallbackToLogsOnError".into();
    add(&node, &pod, vec![failing, logs]).await;
    assert_eq!(memory_limit(&pod), baseline + (48 << 20), "grown for both");

    let gone = |c: &api::DynamicContainer| c.removed_at_unix_nanos > 0;
    let kept = wait_for(&node, &pod, "job", "collection", gone).await;
    assert_eq!(kept.state, api::ContainerState::Exited as i32);
    assert_eq!(
        (kept.exit_code, kept.reason.as_str(), kept.message.as_str()),
        (3, "Error", "disk full\n"),
        "the file wins over the log"
    );
    let kept_logs = wait_for(&node, &pod, "logs", "collection", gone).await;
    assert_eq!(
        (kept_logs.reason.as_str(), kept_logs.message.as_str()),
        ("Error", "no such file\n"),
        "an empty file falls back to the log"
    );
    assert!(on_containerd(&node, &sandbox).await.is_empty());
    assert_eq!(memory_limit(&pod), baseline, "the pod shrank back");
    let termination_dir = node.dir.path().join("state/termination").join(&sandbox);
    assert!(!termination_dir.join("job").exists());

    // The name is free again; the kept status outlives a podgraft restart.
    node.stop_podgraft().await;
    node.start_podgraft();
    let again = get(&node, &pod, "job").await.expect("kept after restart");
    assert_eq!(again.container_id, kept.container_id);
    assert_eq!(again.removed_at_unix_nanos, kept.removed_at_unix_nanos);
    let mut control = node.control_client().await;
    let listed = control
        .list_containers(api::ListContainersRequest {
            pod: pod_ref(&pod),
            include_removed: true,
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (code, out, err) = node.cli(&["ls", &pod.name, "--removed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("job") && out.contains("logs"), "{out}");
    let (code, out, _) = node.cli(&["ls", &pod.name]);
    assert_eq!(code, 0);
    assert!(!out.contains("job"), "{out}");
    let (code, out, err) = node.cli(&["get", &pod.name, "job"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Removed:") && out.contains("disk full"),
        "{out}"
    );
    add(&node, &pod, vec![job("job", "exec sleep 3600", "8Mi")]).await;
    let live = get(&node, &pod, "job").await.unwrap();
    assert_eq!(
        (live.state, live.removed_at_unix_nanos),
        (api::ContainerState::Running as i32, 0)
    );
}

#[tokio::test]
async fn an_out_of_memory_kill_reads_oomkilled() {
    let Some(node) = Node::start_with("poll_interval_ms = 200\n") else {
        return;
    };
    let (pod, _, _) = start_pod(&node, "oom", MUTABLE, "main", "exec sleep 3600", None).await;
    add(
        &node,
        &pod,
        vec![job("hog", "head -c 200m /dev/zero | tail", "16Mi")],
    )
    .await;
    let exited = wait_for(&node, &pod, "hog", "exit", |c| {
        c.state == api::ContainerState::Exited as i32
    })
    .await;
    assert_eq!(exited.reason, "OOMKilled", "{exited:?}");
}

#[tokio::test]
async fn orphans_and_unknown_containers_are_collected() {
    let Some(node) = Node::start_with(CONFIG) else {
        return;
    };
    let (pod, sandbox, _) =
        start_pod(&node, "orphan", MUTABLE, "main", "exec sleep 3600", None).await;
    add(&node, &pod, vec![job("tool", "exec sleep 3600", "8Mi")]).await;

    // Unknown: the dynamic label, but no spec or admission record.
    let mut direct = node.runtime(false).await;
    let mut config = pod.container("stray", "exec sleep 3600");
    config
        .labels
        .insert("podgraft.io/dynamic".into(), "true".into());
    let stray = direct
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(config),
            sandbox_config: Some(pod.sandbox_config(&node)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    direct
        .start_container(cri::StartContainerRequest {
            container_id: stray.clone(),
        })
        .await
        .unwrap();
    let start = Instant::now();
    while on_containerd(&node, &sandbox)
        .await
        .iter()
        .any(|c| c.id == stray)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            node.podgraft_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<_> = on_containerd(&node, &sandbox)
        .await
        .into_iter()
        .map(|c| c.metadata.unwrap().name)
        .collect();
    assert_eq!(left, ["tool"], "podgraft's own container stays");

    // Orphan: the pod is stopped directly on containerd (which kills its containers).
    direct
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    let start = Instant::now();
    while !on_containerd(&node, &sandbox).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            node.podgraft_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = node.podgraft_log();
    assert!(
        log.contains("collected a dynamic container") && log.contains("Orphaned"),
        "{log}"
    );
    assert!(log.contains("Unknown"), "{log}");
    // Removed behind podgraft's back: the pod is forgotten.
    direct
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    let record = node
        .dir
        .path()
        .join(format!("state/sandboxes/{sandbox}.json"));
    let start = Instant::now();
    while record.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            node.podgraft_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
