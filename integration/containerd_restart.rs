//! containerd restarting under podgraft: control calls during the outage answer UNAVAILABLE,
//! podgraft reconnects and carries on, no healthy container is restarted because of the outage,
//! and a container that exited during it (its process killed while containerd was down; the shim
//! stays up) is seen afterwards and restarted as its policy says.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use podgraft::api;
use tonic::Code;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod};

fn always(name: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
        restart_policy: "Always".into(),
        ..Default::default()
    }
}

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        uid: pod.uid.clone(),
        ..Default::default()
    })
}

#[tokio::test]
async fn podgraft_carries_on_across_a_containerd_restart_and_sees_exits_during_it() {
    let Some(node) = Node::start() else {
        return;
    };
    let (pod, _, _) = start_pod(&node, "outage", MUTABLE, "main", "exec sleep 3600", None).await;
    let mut control = node.control_client().await;
    let added = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![always("steady"), always("victim")],
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let id_of = |name: &str| {
        added
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .container_id
            .clone()
    };
    let (steady, victim) = (id_of("steady"), id_of("victim"));
    let mut ctd = node.runtime(false).await;
    let info = ctd
        .container_status(cri::ContainerStatusRequest {
            container_id: victim.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_i64().expect("the victim's pid");

    node.kill_containerd();
    // Control calls during the outage: UNAVAILABLE, never UNKNOWN or INTERNAL.
    let list = control
        .list_containers(api::ListContainersRequest {
            pod: pod_ref(&pod),
            include_removed: false,
        })
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::Unavailable, "{list}");
    let get = control
        .get_container(api::GetContainerRequest {
            pod: pod_ref(&pod),
            name: "steady".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::Unavailable, "{get}");
    let add = control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![always("late")],
        })
        .await
        .unwrap_err();
    assert_eq!(add.code(), Code::Unavailable, "{add}");
    // The victim dies while containerd is away; its shim sees the exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Several of podgraft's polls fail meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    node.restart_containerd();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (steady_now, victim_now) = loop {
        let listed = control
            .list_containers(api::ListContainersRequest {
                pod: pod_ref(&pod),
                include_removed: false,
            })
            .await;
        if let Ok(listed) = listed {
            let listed = listed.into_inner().containers;
            let newest = |name: &str| {
                listed
                    .iter()
                    .filter(|c| c.name == name)
                    .max_by_key(|c| c.restart_count)
                    .cloned()
            };
            if let (Some(s), Some(v)) = (newest("steady"), newest("victim")) {
                if v.restart_count == 1 && v.state == api::ContainerState::Running as i32 {
                    break (s, v);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the exit during the outage was not handled; podgraft log:\n{}",
            node.podgraft_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(victim_now.container_id, victim);
    assert_eq!(
        (
            steady_now.container_id.as_str(),
            steady_now.restart_count,
            steady_now.state
        ),
        (steady.as_str(), 0, api::ContainerState::Running as i32),
        "the healthy container is untouched by the outage"
    );
    // And adds work again.
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&pod),
            containers: vec![always("after")],
        })
        .await
        .unwrap();
}
