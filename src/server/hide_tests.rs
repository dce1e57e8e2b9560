//! Wire-level hiding of dynamic containers.
use super::*;
use k8s_cri::v1 as cri;

fn labels(dynamic: bool) -> std::collections::HashMap<String, String> {
    let mut l =
        std::collections::HashMap::from([("io.kubernetes.pod.uid".to_string(), "u".to_string())]);
    if dynamic {
        l.insert(DYNAMIC_LABEL.into(), "true".into());
    }
    l
}

fn stats(id: &str, dynamic: bool) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: id.into(),
            labels: labels(dynamic),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn pod_sandbox_stats_lose_only_dynamic_containers() {
    let pod_stats = |n: &str| cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: n.into(),
            ..Default::default()
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            containers: vec![stats("k", false), stats("d", true)],
            ..Default::default()
        }),
        windows: None,
    };
    let msg = Bytes::from(
        cri::ListPodSandboxStatsResponse {
            stats: vec![pod_stats("p1"), pod_stats("p2")],
        }
        .encode_to_vec(),
    );
    let out = cri::ListPodSandboxStatsResponse::decode(pod_sandbox_stats(&msg).unwrap()).unwrap();
    for s in out.stats {
        let ids: Vec<_> = s
            .linux
            .unwrap()
            .containers
            .into_iter()
            .map(|c| c.attributes.unwrap().id)
            .collect();
        assert_eq!(ids, ["k"]);
    }
}

#[test]
fn streamed_items_of_dynamic_containers_are_dropped() {
    let one = |dynamic| {
        let mut raw = vec![0x0a];
        let c = cri::Container {
            id: "c".into(),
            labels: labels(dynamic),
            ..Default::default()
        }
        .encode_to_vec();
        raw.push(c.len() as u8);
        raw.extend(c);
        Bytes::from(raw)
    };
    assert_eq!(stream_containers(&one(false)).unwrap(), Some(one(false)));
    assert_eq!(stream_containers(&one(true)).unwrap(), None);
    let stats = |dynamic| {
        let s = stats("s", dynamic).encode_to_vec();
        let mut raw = vec![0x0a, s.len() as u8];
        raw.extend(s);
        Bytes::from(raw)
    };
    assert_eq!(stream_container_stats(&stats(true)).unwrap(), None);
    assert!(stream_container_stats(&stats(false)).unwrap().is_some());
}

#[test]
fn single_container_reads_of_dynamic_containers_are_not_found() {
    let visible = Bytes::from(
        cri::ContainerStatsResponse {
            stats: Some(stats("k", false)),
        }
        .encode_to_vec(),
    );
    assert_eq!(container_stats(&visible).unwrap(), visible);
    let hidden = Bytes::from(
        cri::ContainerStatsResponse {
            stats: Some(stats("d", true)),
        }
        .encode_to_vec(),
    );
    let err = container_stats(&hidden).unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("\"d\""));
    let status = Bytes::from(
        cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: "d".into(),
                labels: labels(true),
                ..Default::default()
            }),
            info: Default::default(),
        }
        .encode_to_vec(),
    );
    assert_eq!(
        container_status(&status).unwrap_err().code(),
        tonic::Code::NotFound
    );
}

/// `msg` framed, passed through the registered mask of `method`, unframed again.
fn masked(method: &str, msg: Vec<u8>) -> Bytes {
    let mask = MASKED.iter().find(|(m, _)| *m == method).unwrap().1;
    let framed = crate::server::grpc::encode_message(&msg);
    let mut parts = Vec::new();
    crate::server::mask::Masker::new(mask)
        .push(framed.clone(), &mut parts)
        .unwrap();
    let out = Bytes::from(parts.concat());
    assert_eq!(out.len(), framed.len(), "the length prefix must stay valid");
    out.slice(5..)
}

#[test]
fn list_and_sandbox_status_masks_keep_kubelet_entries() {
    let list = cri::ListContainersResponse {
        containers: vec![
            cri::Container {
                id: "k".into(),
                labels: labels(false),
                ..Default::default()
            },
            cri::Container {
                id: "d".into(),
                labels: labels(true),
                ..Default::default()
            },
        ],
    };
    let out = cri::ListContainersResponse::decode(masked("ListContainers", list.encode_to_vec()))
        .unwrap();
    assert_eq!(out.containers.len(), 1);
    assert_eq!(out.containers[0].id, "k");
    let pss = cri::PodSandboxStatusResponse {
        containers_statuses: vec![
            cri::ContainerStatus {
                id: "k".into(),
                labels: labels(false),
                ..Default::default()
            },
            cri::ContainerStatus {
                id: "d".into(),
                labels: labels(true),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let out =
        cri::PodSandboxStatusResponse::decode(masked("PodSandboxStatus", pss.encode_to_vec()))
            .unwrap();
    assert_eq!(
        out.containers_statuses
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["k"]
    );
}

#[tokio::test]
async fn list_filters_step_aside_on_a_quiet_node_but_the_event_stream_never_does() {
    use crate::dynamic::state::SandboxStore;
    use crate::dynamic::{Manager, ManagerSettings};
    let dir = tempfile::tempdir().unwrap();
    let manager = Arc::new(Manager::new(
        Arc::new(crate::testing::MemCri::new()),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings::default(),
    ));
    let list = MaskListing(MASKED[0].1, manager.clone());
    let events = HideEvents(manager.clone());
    assert!(
        list.active() && events.active(),
        "before loading, anything may exist"
    );
    manager.load().await.unwrap();
    assert!(
        !list.active(),
        "no dynamic container on the node: relay the listing untouched"
    );
    assert!(
        events.active(),
        "a long-lived stream must stay filtered for containers added later"
    );
}

/// An event about a dynamic container is dropped by its own label even when the registry has not
/// seen the container (yet); other events lose only the dynamic statuses.
#[tokio::test]
async fn events_of_dynamic_containers_are_dropped_by_label_too() {
    use crate::dynamic::state::SandboxStore;
    use crate::dynamic::{Manager, ManagerSettings};
    let dir = tempfile::tempdir().unwrap();
    let manager = Arc::new(Manager::new(
        Arc::new(crate::testing::MemCri::new()),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings::default(),
    ));
    let hide = HideEvents(manager);
    let call = CallContext {
        method: "/runtime.v1.RuntimeService/GetContainerEvents".into(),
        metadata: Default::default(),
        stash: Default::default(),
    };
    let status = |id: &str, dynamic: bool| cri::ContainerStatus {
        id: id.into(),
        labels: labels(dynamic),
        ..Default::default()
    };
    let event = |id: &str| {
        Bytes::from(
            cri::ContainerEventResponse {
                container_id: id.into(),
                containers_statuses: vec![status("k", false), status("d", true)],
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    assert_eq!(hide.on_response(&call, event("d")).await.unwrap(), None);
    let kept = hide.on_response(&call, event("k")).await.unwrap().unwrap();
    let kept = cri::ContainerEventResponse::decode(kept).unwrap();
    assert_eq!(kept.container_id, "k");
    assert_eq!(
        kept.containers_statuses
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["k"]
    );
}
