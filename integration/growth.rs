//! Pod cgroup growth on the real cgroup v1 hierarchy: the pod's memory limit grows for an added
//! container, the container can use that memory, the limit shrinks back on removal; concurrent
//! adds never overshoot the node budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use podgraft::api;
use tonic::Code;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod};

fn memory_limit_path(pod: &PodSpec) -> String {
    format!(
        "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
        pod.cgroup_parent()
    )
}

fn read_limit(pod: &PodSpec) -> i64 {
    std::fs::read_to_string(memory_limit_path(pod))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A running mutable pod whose cgroup has a memory limit of `baseline`, as the kubelet sets it.
async fn pod_with_limit(node: &Node, name: &str, baseline: i64) -> (PodSpec, String) {
    let (pod, sandbox, _) = start_pod(
        node,
        name,
        MUTABLE,
        "main",
        "exec sleep 3600",
        Some(16 << 20),
    )
    .await;
    std::fs::write(memory_limit_path(&pod), baseline.to_string()).unwrap();
    assert_eq!(read_limit(&pod), baseline);
    (pod, sandbox)
}

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        uid: pod.uid.clone(),
        ..Default::default()
    })
}

fn with_memory(name: &str, memory: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
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

#[tokio::test]
async fn the_pod_grows_for_an_added_container_which_can_use_the_room() {
    let Some(node) = Node::start() else { return };
    let baseline = 40 << 20;
    let (pod, sandbox) = pod_with_limit(&node, "grow", baseline).await;
    let mut control = node.control_client().await;
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![with_memory("hog", "64Mi")],
        })
        .await
        .unwrap();
    assert_eq!(
        read_limit(&pod),
        baseline + (64 << 20),
        "pod limit grew by the container's limit"
    );

    // 48 MiB: more than the pod's baseline allows, well within baseline + growth.
    let fill = api::ExecRequest {
        pod: pod_ref(&pod),
        name: "hog".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "head -c 50331648 /dev/zero > /dev/shm/fill && echo filled".into(),
        ],
        timeout_seconds: 30,
    };
    let out = control.exec(fill).await.unwrap().into_inner();
    assert_eq!(
        (out.exit_code, String::from_utf8_lossy(&out.stdout).trim()),
        (0, "filled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = control
        .get_container(api::GetContainerRequest {
            pod: pod_ref(&pod),
            name: "hog".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.state,
        api::ContainerState::Running as i32,
        "not OOM-killed"
    );
    let usage: i64 = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{}/memory.usage_in_bytes",
        pod.cgroup_parent()
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    assert!(
        usage > baseline,
        "the pod really uses more than its baseline: {usage}"
    );

    let clear = api::ExecRequest {
        pod: pod_ref(&pod),
        name: "hog".into(),
        command: vec!["rm".into(), "/dev/shm/fill".into()],
        timeout_seconds: 10,
    };
    assert_eq!(control.exec(clear).await.unwrap().into_inner().exit_code, 0);
    // The kubelet resizes the pod: it rewrites the pod cgroup to its new baseline, then announces
    // it with UpdatePodSandboxResources (containerd 1.6 answers UNIMPLEMENTED; podgraft listens).
    let resized = 48 << 20;
    std::fs::write(memory_limit_path(&pod), resized.to_string()).unwrap();
    let mut raw = podgraft::testing::RawClient::connect(&node.podgraft)
        .await
        .unwrap();
    let mut req = vec![0x0a, sandbox.len() as u8];
    req.extend_from_slice(sandbox.as_bytes());
    let answer = raw
        .call(
            "/runtime.v1.RuntimeService/UpdatePodSandboxResources",
            &[bytes::Bytes::from(req)],
            http::HeaderMap::new(),
        )
        .await;
    assert_eq!(
        answer.code,
        Code::Unimplemented,
        "containerd's own answer comes back"
    );
    assert_eq!(
        read_limit(&pod),
        resized + (64 << 20),
        "growth re-applied on the kubelet's new baseline"
    );
    let baseline = resized;

    control
        .remove_containers(api::RemoveContainersRequest {
            pod: pod_ref(&pod),
            names: vec!["hog".into()],
            grace_period_seconds: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(read_limit(&pod), baseline, "pod limit shrank back");
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn fifty_concurrent_adds_against_a_budget_for_twenty() {
    let each = 8i64 << 20;
    let Some(node) = Node::start_with(&format!("dynamic_budget_memory = \"{}\"", 20 * each)) else {
        return;
    };
    let baseline = 64 << 20;
    let (pod, sandbox) = pod_with_limit(&node, "budget", baseline).await;

    // Watch the pod limit the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (stop, max_seen, path) = (stop.clone(), max_seen.clone(), memory_limit_path(&pod));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(v) = std::fs::read_to_string(&path) {
                    max_seen.fetch_max(v.trim().parse().unwrap_or(0), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let control = node.control_client().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut c = control.clone();
        let pod = pod_ref(&pod);
        tasks.push(tokio::spawn(async move {
            c.add_containers(api::AddContainersRequest {
                pod,
                containers: vec![with_memory(&format!("w{i}"), "8Mi")],
            })
            .await
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("available"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => panic!("unexpected failure: {s}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert_eq!((ok, exhausted), (20, 30));
    assert_eq!(read_limit(&pod), baseline + 20 * each);
    assert!(
        max_seen.load(Ordering::Relaxed) <= baseline + 20 * each,
        "a limit above the budget was observed"
    );
    node.remove_pod(&sandbox).await;
}
