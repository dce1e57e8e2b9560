//! The interceptors that keep dynamic containers out of the kubelet's view and tie pod lifecycle
//! calls to the dynamic-container manager.
//!
//! Hiding works on the wire: entries of dynamic containers (recognised by their
//! `podgraft.io/dynamic` label) are dropped from repeated fields, and every other byte of each
//! message stays as containerd sent it.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tonic::Status;

use super::intercept::{BoxFuture, CallContext, MessageInterceptor, Registry};
use crate::dynamic::Manager;
use crate::dynamic::translate::DYNAMIC_LABEL;
use crate::wire::{self, WireError};

/// Both CRI versions containerd 1.6 serves; their messages share field numbers.
const VERSIONS: [&str; 2] = ["runtime.v1", "runtime.v1alpha2"];

fn bad_wire(e: WireError) -> Status {
    Status::internal(format!(
        "podgraft: malformed message from the CRI backend: {e}"
    ))
}

/// `Container.labels` = 8, `ContainerStatus.labels` = 12, `ContainerAttributes.labels` = 3.
fn has_dynamic_label(msg: &[u8], labels_field: u32) -> Result<bool, WireError> {
    Ok(wire::map_get(msg, labels_field, DYNAMIC_LABEL)?.is_some())
}

/// A `ContainerStats` is visible unless its `attributes` (1) carry the label.
fn stats_visible(stats: &[u8]) -> Result<bool, WireError> {
    let attributes = wire::get_bytes(stats, 1)?.unwrap_or_default();
    Ok(!has_dynamic_label(attributes, 3)?)
}

fn status_visible(status: &[u8]) -> Result<bool, WireError> {
    Ok(!has_dynamic_label(status, 12)?)
}

/// containerd's own answer for a container it does not have, so a hidden one looks the same.
fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "an error occurred when try to find container {id:?}: not found"
    ))
}

type Filter = fn(&Bytes) -> Result<Bytes, Status>;

/// Rewrites each response message with a fixed wire-level filter.
struct ResponseFilter(Filter);

impl MessageInterceptor for ResponseFilter {
    fn on_response<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(std::future::ready((self.0)(&msg).map(Some)))
    }
}

fn list_containers(msg: &Bytes) -> Result<Bytes, Status> {
    wire::retain_repeated(msg, 1, |c| Ok(!has_dynamic_label(c, 8)?)).map_err(bad_wire)
}

fn container_status(msg: &Bytes) -> Result<Bytes, Status> {
    let status = wire::get_bytes(msg, 1)
        .map_err(bad_wire)?
        .unwrap_or_default();
    if status_visible(status).map_err(bad_wire)? {
        return Ok(msg.clone());
    }
    Err(not_found(
        &wire::get_string(status, 1)
            .map_err(bad_wire)?
            .unwrap_or_default(),
    ))
}

fn container_stats(msg: &Bytes) -> Result<Bytes, Status> {
    let stats = wire::get_bytes(msg, 1)
        .map_err(bad_wire)?
        .unwrap_or_default();
    if stats_visible(stats).map_err(bad_wire)? {
        return Ok(msg.clone());
    }
    let attributes = wire::get_bytes(stats, 1)
        .map_err(bad_wire)?
        .unwrap_or_default();
    Err(not_found(
        &wire::get_string(attributes, 1)
            .map_err(bad_wire)?
            .unwrap_or_default(),
    ))
}

fn list_container_stats(msg: &Bytes) -> Result<Bytes, Status> {
    wire::retain_repeated(msg, 1, stats_visible).map_err(bad_wire)
}

fn pod_sandbox_status(msg: &Bytes) -> Result<Bytes, Status> {
    wire::retain_repeated(msg, 3, status_visible).map_err(bad_wire)
}

/// `PodSandboxStats.linux` (2) → `LinuxPodSandboxStats.containers` (5).
fn pod_stats_entry(stats: &Bytes) -> Result<Bytes, WireError> {
    wire::rewrite_submessage(stats, 2, |linux| {
        wire::retain_repeated(linux, 5, stats_visible)
    })
}

/// Both `PodSandboxStatsResponse` and `ListPodSandboxStatsResponse` hold their stats in field 1.
fn pod_sandbox_stats(msg: &Bytes) -> Result<Bytes, Status> {
    wire::rewrite_submessage(msg, 1, pod_stats_entry).map_err(bad_wire)
}

/// Drops events about dynamic containers and their statuses from every event's pod snapshot.
struct HideEvents(Arc<Manager>);

impl MessageInterceptor for HideEvents {
    fn on_response<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(async move {
            let id = wire::get_string(&msg, 1)
                .map_err(bad_wire)?
                .unwrap_or_default();
            if self.0.is_dynamic_id(&id) {
                return Ok(None);
            }
            Ok(Some(
                wire::retain_repeated(&msg, 5, status_visible).map_err(bad_wire)?,
            ))
        })
    }
}

fn sandbox_id(msg: &[u8]) -> Result<String, Status> {
    wire::get_string(msg, 1)
        .map_err(|e| Status::invalid_argument(format!("pod_sandbox_id: {e}")))
        .map(Option::unwrap_or_default)
}

/// RunPodSandbox: remembers the config of pods with a mutable handler.
struct RecordRun(Arc<Manager>);

impl MessageInterceptor for RecordRun {
    fn on_request<'a>(
        &'a self,
        call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        *call.stash.lock().unwrap() = Some(msg.clone());
        Box::pin(std::future::ready(Ok(msg)))
    }

    fn on_response<'a>(
        &'a self,
        call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(async move {
            let request = call.stash.lock().unwrap().take().unwrap_or_default();
            // Only a successful call has a response message; decode failures leave the call alone.
            if let (Ok(req), Ok(id)) = (
                k8s_cri::v1::RunPodSandboxRequest::decode(request),
                sandbox_id(&msg),
            ) {
                self.0.pod_started(&id, &req);
            }
            Ok(Some(msg))
        })
    }
}

/// StopPodSandbox: stops the pod's dynamic containers gracefully before containerd kills them.
struct StopPod(Arc<Manager>);

impl MessageInterceptor for StopPod {
    fn on_request<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        Box::pin(async move {
            self.0.stop_pod(&sandbox_id(&msg)?).await;
            Ok(msg)
        })
    }
}

/// RemovePodSandbox: removes the pod's dynamic containers first, and its state after.
struct RemovePod(Arc<Manager>);

impl MessageInterceptor for RemovePod {
    fn on_request<'a>(
        &'a self,
        call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        Box::pin(async move {
            self.0.remove_pod(&sandbox_id(&msg)?).await;
            *call.stash.lock().unwrap() = Some(msg.clone());
            Ok(msg)
        })
    }

    fn on_response<'a>(
        &'a self,
        call: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(async move {
            if let Some(request) = call.stash.lock().unwrap().take() {
                self.0.forget_pod(&sandbox_id(&request)?);
            }
            Ok(Some(msg))
        })
    }
}

/// UpdatePodSandboxResources: the kubelet has just rewritten the pod cgroup for a resize; re-apply
/// the dynamic containers' growth on top of its new baseline. (containerd 1.6 answers UNIMPLEMENTED;
/// the call is what tells podgraft about the resize.)
struct PodResized(Arc<Manager>);

impl MessageInterceptor for PodResized {
    fn on_request<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        Box::pin(async move {
            self.0.pod_resized(&sandbox_id(&msg)?);
            Ok(msg)
        })
    }
}

/// Registers every dynamic-container interceptor.
pub fn register(registry: &mut Registry, manager: Arc<Manager>) {
    let filters: [(&str, Filter); 7] = [
        ("ListContainers", list_containers),
        ("ContainerStatus", container_status),
        ("ContainerStats", container_stats),
        ("ListContainerStats", list_container_stats),
        ("PodSandboxStatus", pod_sandbox_status),
        ("PodSandboxStats", pod_sandbox_stats),
        ("ListPodSandboxStats", pod_sandbox_stats),
    ];
    for version in VERSIONS {
        let path = |method: &str| format!("/{version}.RuntimeService/{method}");
        for (method, filter) in filters {
            registry.intercept(&path(method), Arc::new(ResponseFilter(filter)));
        }
        registry.intercept(
            &path("GetContainerEvents"),
            Arc::new(HideEvents(manager.clone())),
        );
        registry.intercept(&path("RunPodSandbox"), Arc::new(RecordRun(manager.clone())));
        registry.intercept(&path("StopPodSandbox"), Arc::new(StopPod(manager.clone())));
        registry.intercept(
            &path("RemovePodSandbox"),
            Arc::new(RemovePod(manager.clone())),
        );
        registry.intercept(
            &path("UpdatePodSandboxResources"),
            Arc::new(PodResized(manager.clone())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1 as cri;

    fn labels(dynamic: bool) -> std::collections::HashMap<String, String> {
        let mut l = std::collections::HashMap::from([(
            "io.kubernetes.pod.uid".to_string(),
            "u".to_string(),
        )]);
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
        let out =
            cri::ListPodSandboxStatsResponse::decode(pod_sandbox_stats(&msg).unwrap()).unwrap();
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

    #[test]
    fn list_and_sandbox_status_filters_keep_kubelet_entries() {
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
        let out = cri::ListContainersResponse::decode(
            list_containers(&Bytes::from(list.encode_to_vec())).unwrap(),
        )
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
        let out = cri::PodSandboxStatusResponse::decode(
            pod_sandbox_status(&Bytes::from(pss.encode_to_vec())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            out.containers_statuses
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["k"]
        );
    }
}
