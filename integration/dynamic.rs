//! Dynamic containers on a real containerd: add to a running pod, share its network, exec, logs,
//! removal, atomic batches, refusals, hiding from the kubelet, pod teardown and podgraft restarts.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::api;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod};

/// A running pod as the kubelet would create it through podgraft, with one container "server"
/// serving "hello" on port 8080.
async fn kubelet_pod(node: &Node, name: &str, handler: &str) -> (PodSpec, String, String) {
    let script = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www";
    start_pod(node, name, handler, "server", script, None).await
}

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..Default::default()
    })
}

fn tool(name: &str, script: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Every container containerd has (podgraft's hiding bypassed), as (name, labels).
async fn all_in_containerd(
    ctd: &mut RuntimeServiceClient<Channel>,
) -> Vec<(String, HashMap<String, String>)> {
    let list = ctd
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    list.containers
        .into_iter()
        .map(|c| (c.metadata.unwrap().name, c.labels))
        .collect()
}

#[tokio::test]
async fn added_container_shares_the_pod_network_execs_logs_and_goes() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = kubelet_pod(&node, "agent", MUTABLE).await;
    let mut control = node.control_client().await;
    let added = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("tool", "echo tool-started; exec sleep 3600")],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(added.len(), 1);
    let tool_c = &added[0];
    assert_eq!(tool_c.state, api::ContainerState::Running as i32);
    assert_eq!(tool_c.pod.as_ref().unwrap().sandbox_id, sandbox);

    // The new container reaches the kubelet's container over the pod's localhost.
    let mut fetched = String::new();
    for _ in 0..50 {
        let (code, out, _) = node.cli(&[
            "exec",
            &format!("default/{}", pod.name),
            "tool",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/index.html",
        ]);
        if code == 0 {
            fetched = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetched, "hello\n");
    let (code, _, _) = node.cli(&["exec", &pod.name, "tool", "--", "sh", "-c", "exit 4"]);
    assert_eq!(code, 4, "exec passes the exit code through");

    // Logs: the kubelet's layout under the pod's log directory, in CRI format.
    let log = std::path::Path::new(&pod.log_directory(&node)).join("tool/0.log");
    assert_eq!(tool_c.log_path, log.display().to_string());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(" stdout F tool-started"),
        "{text}"
    );
    let (code, out, err) = node.cli(&["logs", &pod.name, "tool"]);
    assert_eq!((code, out.as_str()), (0, "tool-started\n"), "{err}");

    // ls as a table and as JSON.
    let (code, out, _) = node.cli(&["ls", &pod.name]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains("tool") && l.contains("Running")),
        "{out}"
    );
    let (_, json, _) = node.cli(&["-o", "json", "get", &pod.name, "tool"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["container_id"], tool_c.container_id.as_str());

    // A Kubernetes-shaped spec file through the CLI.
    let spec_file = node.dir.path().join("tool2.yaml");
    std::fs::write(
        &spec_file,
        format!(
            "name: tool2\nimage: {BUSYBOX}\ncommand: [sh, -c]\nargs: [\"exec sleep 3600\"]\nenv: [{{name: MODE, value: fast}}]\n\
             resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}\nsecurityContext: {{allowPrivilegeEscalation: false}}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = node.cli(&["add", &pod.name, "-f", spec_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tool2") && out.contains("Running"), "{out}");
    let (code, out, _) = node.cli(&["exec", &pod.name, "tool2", "--", "sh", "-c", "echo $MODE"]);
    assert_eq!((code, out.as_str()), (0, "fast\n"));
    let (code, _, err) = node.cli(&["add", &pod.name, "--name", "Bad", "--image", BUSYBOX]);
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidArgument") && err.contains("containers[0].name"),
        "{err}"
    );

    // Remove: stopped, removed from containerd; the name is free again (KEP-5972: once the
    // container is completely removed), and only its kept final status remains.
    let (code, out, err) = node.cli(&["rm", &pod.name, "tool", "--grace", "1"]);
    assert_eq!((code, out.trim()), (0, "tool"), "{err}");
    let mut ctd = node.runtime(false).await;
    assert!(
        all_in_containerd(&mut ctd)
            .await
            .iter()
            .all(|(n, _)| n != "tool")
    );
    let kept = control
        .get_container(api::GetContainerRequest {
            pod: pod_ref(&pod),
            name: "tool".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(kept.removed_at_unix_nanos > 0, "{kept:?}");
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("tool", "sleep 1")],
        })
        .await
        .unwrap();
    let again = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("tool", "sleep 1")],
        })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::AlreadyExists,
        "a live container holds its name: {}",
        again.message()
    );

    // The whole story, replayed from the start of the event history.
    let mut events = control
        .watch_events(api::WatchEventsRequest {
            pod: pod_ref(&pod),
            since_sequence: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), events.message())
        .await
        .unwrap()
    {
        if ev.name == "tool" {
            seen.push(api::event::Type::try_from(ev.r#type).unwrap());
        }
        if seen.last() == Some(&api::event::Type::Removed) {
            break;
        }
    }
    use api::event::Type;
    assert_eq!(seen, [Type::Added, Type::Started, Type::Removed]);
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn the_kubelet_never_sees_dynamic_containers() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, server_id) = kubelet_pod(&node, "hidden", MUTABLE).await;
    let mut control = node.control_client().await;
    let added = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("t1", "exec sleep 3600"), tool("t2", "exec sleep 3600")],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let dynamic_ids: Vec<_> = added.iter().map(|c| c.container_id.clone()).collect();
    let (mut pg, mut ctd) = (node.runtime(true).await, node.runtime(false).await);
    assert_eq!(
        all_in_containerd(&mut ctd).await.len(),
        3,
        "containerd has all three"
    );

    let ids = |list: Vec<cri::Container>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let everything = pg
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(everything.containers), std::slice::from_ref(&server_id));
    let by_uid = cri::ListContainersRequest {
        filter: Some(cri::ContainerFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.uid".to_string(), pod.uid.clone())]),
            ..Default::default()
        }),
    };
    assert_eq!(
        ids(pg
            .list_containers(by_uid)
            .await
            .unwrap()
            .into_inner()
            .containers),
        std::slice::from_ref(&server_id)
    );
    for id in &dynamic_ids {
        let status = pg
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let stats = pg
            .container_stats(cri::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(stats.code(), Code::NotFound);
    }
    let stats = pg
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let stat_ids: Vec<_> = stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    assert_eq!(stat_ids, std::slice::from_ref(&server_id));
    let sandbox_status = pg
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        sandbox_status
            .containers_statuses
            .iter()
            .all(|c| !dynamic_ids.contains(&c.id))
    );
    let events = pg.get_container_events(cri::GetEventsRequest {}).await;
    let direct = ctd.get_container_events(cri::GetEventsRequest {}).await;
    assert_eq!(
        events.err().map(|s| s.code()),
        direct.err().map(|s| s.code())
    );
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn bad_batches_and_unopted_pods_leave_nothing_behind() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = kubelet_pod(&node, "atomic", MUTABLE).await;
    let mut control = node.control_client().await;
    let mut ctd = node.runtime(false).await;

    // The second member cannot start (no such executable): the first is rolled back too.
    let err = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![
                tool("good", "exec sleep 3600"),
                api::ContainerSpec {
                    command: vec!["/no/such/binary".into()],
                    ..tool("bad", "")
                },
            ],
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("containers[1]"), "{}", err.message());
    // An image that cannot be pulled fails the batch before anything starts.
    let err = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![
                tool("good2", "exec sleep 3600"),
                api::ContainerSpec {
                    image: "127.0.0.1:1/none/such:1".into(),
                    ..tool("bad2", "")
                },
            ],
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("containers[1].image"),
        "{}",
        err.message()
    );
    let names: Vec<_> = all_in_containerd(&mut ctd)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["server"], "only the kubelet's container remains");

    let invalid = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("Bad_Name", "true")],
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().starts_with("containers[0].name"),
        "{}",
        invalid.message()
    );

    let (plain, plain_sandbox, _) = kubelet_pod(&node, "plain", "").await;
    let refused = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&plain),
            containers: vec![tool("tool", "true")],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("handler \"\""),
        "{}",
        refused.message()
    );
    let names: Vec<_> = all_in_containerd(&mut ctd)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["server", "server"]);
    node.remove_pod(&sandbox).await;
    node.remove_pod(&plain_sandbox).await;
}

#[tokio::test]
async fn pod_teardown_with_dynamic_containers_leaves_nothing() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = kubelet_pod(&node, "teardown", MUTABLE).await;
    let mut control = node.control_client().await;
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            // The first ignores SIGTERM, so only the grace period ends it.
            containers: vec![
                tool("stubborn", "trap '' TERM; while true; do sleep 1; done"),
                tool("plain", "exec sleep 3600"),
            ],
        })
        .await
        .unwrap();
    let state_file = node
        .dir
        .path()
        .join(format!("state/sandboxes/{sandbox}.json"));
    assert!(state_file.exists());
    node.remove_pod(&sandbox).await;
    let mut ctd = node.runtime(false).await;
    assert!(all_in_containerd(&mut ctd).await.is_empty());
    let sandboxes = ctd
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(sandboxes.items.is_empty());
    assert!(!state_file.exists(), "podgraft's record of the pod is gone");
    let (code, out, _) = node.cli(&["ls"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
}

#[tokio::test]
async fn a_restarted_podgraft_keeps_every_dynamic_container() {
    let Some(mut node) = Node::start() else {
        return;
    };
    let (pod, sandbox, _) = kubelet_pod(&node, "survivor", MUTABLE).await;
    let mut control = node.control_client().await;
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![tool("long", "exec sleep 3600"), tool("short", "exit 3")],
        })
        .await
        .unwrap();
    node.kill_podgraft();

    // A mutable pod the kubelet starts while podgraft is down: its config comes from containerd.
    let mut late = PodSpec::new("late");
    late.handler = MUTABLE.into();
    let mut ctd = node.runtime(false).await;
    let late_sandbox = ctd
        .run_pod_sandbox(late.run_request(&node))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let late_main = ctd
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: late_sandbox.clone(),
            config: Some(late.container("main", "exec sleep 3600")),
            sandbox_config: Some(late.sandbox_config(&node)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    ctd.start_container(cri::StartContainerRequest {
        container_id: late_main,
    })
    .await
    .unwrap();

    node.start_podgraft();
    let mut listed = Vec::new();
    for _ in 0..50 {
        let (code, json, _) = node.cli(&["-o", "json", "ls"]);
        if code == 0 {
            listed = serde_json::from_str::<Vec<serde_json::Value>>(&json).unwrap();
            if listed.len() == 2
                && listed
                    .iter()
                    .any(|c| c["state"] == api::ContainerState::Exited as i32)
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_name: HashMap<_, _> = listed
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    assert_eq!(by_name.len(), 2, "{listed:?}");
    assert_eq!(
        by_name["long"]["state"],
        api::ContainerState::Running as i32
    );
    assert_eq!(
        by_name["short"]["state"],
        api::ContainerState::Exited as i32
    );
    assert_eq!(by_name["short"]["exit_code"], 3);
    assert_eq!(by_name["long"]["spec"]["image"], BUSYBOX);

    let mut control = node.control_client().await;
    let added = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&late),
            containers: vec![tool("tool", "exec sleep 3600")],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(added[0].pod.as_ref().unwrap().sandbox_id, late_sandbox);
    assert!(
        added[0].log_path.starts_with(&late.log_directory(&node)),
        "{}",
        added[0].log_path
    );
    node.remove_pod(&sandbox).await;
    node.remove_pod(&late_sandbox).await;
}

/// A container with restartPolicy OnFailure that fails is restarted by podgraft (the kubelet
/// never would: it does not know it) as a new attempt with its own log, the first time at once.
#[tokio::test]
async fn a_failing_container_is_restarted_under_its_policy() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = kubelet_pod(&node, "agent", MUTABLE).await;
    let mut control = node.control_client().await;
    let mut spec = tool("flaky", "echo attempt; sleep 1; exit 3");
    spec.restart_policy = "OnFailure".into();
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![spec],
        })
        .await
        .unwrap();
    let mut restarted = None;
    for _ in 0..100 {
        let c = control
            .get_container(api::GetContainerRequest {
                pod: pod_ref(&pod),
                name: "flaky".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if c.restart_count >= 1 {
            restarted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = restarted.expect("restarted within 10 s");
    assert!(c.log_path.ends_with("flaky/1.log"), "{}", c.log_path);
    // Both attempts are in containerd (the exited one is kept until the next runs), hidden.
    let mut ctd = node.runtime(false).await;
    let attempts = all_in_containerd(&mut ctd)
        .await
        .into_iter()
        .filter(|(n, _)| n == "flaky")
        .count();
    assert_eq!(attempts, 2);
    let mut kubelet = node.runtime(true).await;
    let seen = kubelet
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(
        seen.iter()
            .all(|c| c.metadata.as_ref().unwrap().name != "flaky")
    );
    // A removal takes every attempt and stops the restarts.
    control
        .remove_containers(api::RemoveContainersRequest {
            pod: pod_ref(&pod),
            names: vec!["flaky".into()],
            grace_period_seconds: Some(0),
        })
        .await
        .unwrap_or_else(|e| {
            let log = node.podgraft_log();
            let failures: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
            panic!("{}: {failures:#?}", e.message())
        });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = all_in_containerd(&mut ctd)
        .await
        .into_iter()
        .filter(|(n, _)| n == "flaky")
        .count();
    assert_eq!(left, 0);
    node.remove_pod(&sandbox).await;
}
