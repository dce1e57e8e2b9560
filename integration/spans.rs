//! Logs in context on a real node (`log_format = "json"`, `PODGRAFT_LOG=debug` as the harness
//! runs podgraft): each relayed call's line carries its span (method, pod sandbox or container ID,
//! code, duration), and what a control call logs carries its span (method, caller, pod,
//! containers), also from the task a mutating call runs detached in.

use std::time::Duration;

use k8s_cri::v1 as cri;
use podgraft::api;
use serde_json::Value;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::start_pod;

/// podgraft's log lines so far that are JSON objects (all its own are; a panic's message or a
/// child's output would not be).
fn json_log(node: &Node) -> Vec<Value> {
    node.podgraft_log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (briefly: lines are written as calls end) for a line matching `want`.
async fn find_line(node: &Node, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        if let Some(line) = json_log(node).into_iter().find(|l| want(l)) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no log line {what}:\n{}", node.podgraft_log());
}

fn tool(name: &str, command: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec![command.into(), "3600".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn relayed_and_control_calls_log_in_their_spans() {
    let Some(node) = Node::start_with("log_format = \"json\"") else {
        return;
    };
    let (pod, sandbox, id) =
        start_pod(&node, "spanned", MUTABLE, "main", "exec sleep 3600", None).await;
    let mut pg = node.runtime(true).await;
    pg.container_status(cri::ContainerStatusRequest {
        container_id: id.clone(),
        verbose: false,
    })
    .await
    .unwrap();
    let missing = pg
        .container_status(cri::ContainerStatusRequest {
            container_id: "no-such-container".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Relayed calls: the line is the span's `relayed` event, with the outcome recorded.
    let status_method = "/runtime.v1.RuntimeService/ContainerStatus";
    let line = find_line(&node, "for ContainerStatus", |l| {
        l["span"]["method"] == status_method && l["span"]["container_id"] == id.as_str()
    })
    .await;
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert_eq!(line["fields"]["message"], "relayed", "{line}");
    assert_eq!(line["span"]["name"], "cri_call", "{line}");
    assert_eq!(line["span"]["code"], "Ok", "{line}");
    assert!(line["span"]["elapsed_us"].is_u64(), "{line}");
    let line = find_line(&node, "for the missing container", |l| {
        l["span"]["container_id"] == "no-such-container"
    })
    .await;
    assert_eq!(line["span"]["code"], "NotFound", "{line}");
    // A call naming its pod: CreateContainer, on the way into the pod.
    let line = find_line(&node, "for CreateContainer", |l| {
        l["span"]["method"] == "/runtime.v1.RuntimeService/CreateContainer"
    })
    .await;
    assert_eq!(line["span"]["pod_sandbox_id"], sandbox.as_str(), "{line}");

    // Control calls: a successful add, then one that fails inside the detached task (the
    // container's command does not exist, so its start fails and the add is rolled back).
    let mut control = node.control_client().await;
    let pod_ref = api::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..Default::default()
    };
    control
        .add_containers(api::AddContainersRequest {
            pod: Some(pod_ref.clone()),
            containers: vec![tool("tool", "sleep"), tool("other", "sleep")],
        })
        .await
        .unwrap();
    let failed = control
        .add_containers(api::AddContainersRequest {
            pod: Some(pod_ref),
            containers: vec![tool("broken", "/no/such/command")],
        })
        .await
        .unwrap_err();
    assert_ne!(failed.code(), tonic::Code::Ok);

    let pod_name = format!("pod {}/{}", pod.namespace, pod.name);
    let line = find_line(&node, "ending the add", |l| {
        l["span"]["name"] == "control"
            && l["fields"]["message"] == "control call answered"
            && l["span"]["containers"] == "tool,other"
    })
    .await;
    assert_eq!(line["span"]["method"], "AddContainers", "{line}");
    assert_eq!(line["span"]["pod"], pod_name.as_str(), "{line}");
    assert_eq!(line["span"]["caller"], "uid 0 (gid 0)", "{line}");
    assert_eq!(line["fields"]["code"], "Ok", "{line}");
    // Logged by the add itself, in the task the call runs detached in.
    let line = find_line(&node, "from the failed add's roll-back", |l| {
        l["fields"]["message"] == "add failed; rolled back"
    })
    .await;
    assert_eq!(line["span"]["name"], "control", "{line}");
    assert_eq!(line["span"]["method"], "AddContainers", "{line}");
    assert_eq!(line["span"]["pod"], pod_name.as_str(), "{line}");
    assert_eq!(line["span"]["containers"], "broken", "{line}");
    assert_eq!(line["level"], "WARN", "{line}");
}
