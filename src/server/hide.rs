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
use super::mask::FieldMask;
use crate::dynamic::Manager;
use crate::dynamic::model::keys::DYNAMIC_LABEL;
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
    // Most entries are the kubelet's: a byte scan rules them out before any parsing.
    if memchr::memmem::find(msg, DYNAMIC_LABEL.as_bytes()).is_none() {
        return Ok(false);
    }
    Ok(wire::map_get(msg, labels_field, DYNAMIC_LABEL)?.is_some())
}

/// A `ContainerStats` is visible unless its `attributes` (1) carry the label.
pub(crate) fn stats_visible(stats: &[u8]) -> Result<bool, WireError> {
    let attributes = wire::get_bytes(stats, 1)?.unwrap_or_default();
    Ok(!has_dynamic_label(attributes, 3)?)
}

pub(crate) fn status_visible(status: &[u8]) -> Result<bool, WireError> {
    Ok(!has_dynamic_label(status, 12)?)
}

/// containerd's own answer for a container it does not have, so a hidden one looks the same.
fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "an error occurred when try to find container {id:?}: not found"
    ))
}

type Filter = fn(&Bytes) -> Result<Bytes, Status>;

/// Rewrites (or drops) each response message with a fixed wire-level filter. While the node has
/// no dynamic container (and none is being added), there is nothing to hide and the call is not
/// intercepted.
struct MessageFilter<F>(F, Arc<Manager>);

impl<F> MessageInterceptor for MessageFilter<F>
where
    F: Fn(&Bytes) -> Result<Option<Bytes>, Status> + Send + Sync + 'static,
{
    fn active(&self) -> bool {
        self.1.may_have_dynamic()
    }

    fn on_response<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(std::future::ready(when_labelled(msg, &self.0)))
    }
}

/// Runs `filter` only on messages in which the label's bytes occur: a message without them cannot
/// name a dynamic container, and one SIMD scan is far cheaper than parsing a large listing.
fn when_labelled(
    msg: Bytes,
    filter: impl FnOnce(&Bytes) -> Result<Option<Bytes>, Status>,
) -> Result<Option<Bytes>, Status> {
    if memchr::memmem::find(&msg, DYNAMIC_LABEL.as_bytes()).is_none() {
        Ok(Some(msg))
    } else {
        filter(&msg)
    }
}

fn container_visible(container: &[u8]) -> Result<bool, WireError> {
    Ok(!has_dynamic_label(container, 8)?)
}

/// Listings whose hidden entries are padded in place as they stream by (see [`super::mask`]):
/// `ListContainersResponse.containers` (1), `ListContainerStatsResponse.stats` (1) and
/// `PodSandboxStatusResponse.containers_statuses` (3).
pub(crate) const MASKED: [(&str, FieldMask); 3] = [
    (
        "ListContainers",
        FieldMask {
            field: 1,
            visible: container_visible,
        },
    ),
    (
        "ListContainerStats",
        FieldMask {
            field: 1,
            visible: stats_visible,
        },
    ),
    (
        "PodSandboxStatus",
        FieldMask {
            field: 3,
            visible: status_visible,
        },
    ),
];

/// Streams a listing with its dynamic entries padded out, while the node may have any.
struct MaskListing(FieldMask, Arc<Manager>);

impl MessageInterceptor for MaskListing {
    fn active(&self) -> bool {
        self.1.may_have_dynamic()
    }

    fn response_mask(&self) -> Option<FieldMask> {
        Some(self.0)
    }
}

pub(crate) fn container_status(msg: &Bytes) -> Result<Bytes, Status> {
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

pub(crate) fn container_stats(msg: &Bytes) -> Result<Bytes, Status> {
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

/// `PodSandboxStats.linux` (2) → `LinuxPodSandboxStats.containers` (5).
fn pod_stats_entry(stats: &Bytes) -> Result<Bytes, WireError> {
    wire::rewrite_submessage(stats, 2, |linux| {
        wire::retain_repeated(linux, 5, stats_visible)
    })
}

/// Both `PodSandboxStatsResponse` and `ListPodSandboxStatsResponse` hold their stats in field 1.
pub(crate) fn pod_sandbox_stats(msg: &Bytes) -> Result<Bytes, Status> {
    wire::rewrite_submessage(msg, 1, pod_stats_entry).map_err(bad_wire)
}

/// Per-message filters of the streaming list calls (CRI list streaming, Kubernetes 1.36+): each
/// message carries one item in field 1. Unknown to containerd 1.6, which answers UNIMPLEMENTED; the
/// kubelet then falls back to the unary calls above.
type StreamFilter = fn(&Bytes) -> Result<Option<Bytes>, WireError>;

pub(crate) fn stream_containers(msg: &Bytes) -> Result<Option<Bytes>, WireError> {
    let container = wire::get_bytes(msg, 1)?.unwrap_or_default();
    Ok((!has_dynamic_label(container, 8)?).then(|| msg.clone()))
}

pub(crate) fn stream_container_stats(msg: &Bytes) -> Result<Option<Bytes>, WireError> {
    let stats = wire::get_bytes(msg, 1)?.unwrap_or_default();
    Ok(stats_visible(stats)?.then(|| msg.clone()))
}

pub(crate) fn stream_pod_sandbox_stats(msg: &Bytes) -> Result<Option<Bytes>, WireError> {
    wire::rewrite_submessage(msg, 1, pod_stats_entry).map(Some)
}

/// Whether the event's `containers_statuses` (5) hold the status of container `id` with the
/// dynamic label.
pub(crate) fn event_names_dynamic(msg: &[u8], id: &str) -> Result<bool, WireError> {
    if id.is_empty() || memchr::memmem::find(msg, DYNAMIC_LABEL.as_bytes()).is_none() {
        return Ok(false);
    }
    for field in wire::fields(msg) {
        let field = field?;
        let Some(status) = field.bytes().filter(|_| field.number == 5) else {
            continue;
        };
        if wire::get_bytes(status, 1)? == Some(id.as_bytes()) {
            return Ok(!status_visible(status)?);
        }
    }
    Ok(false)
}

/// Drops events about dynamic containers and their statuses from every event's pod snapshot.
struct HideEvents(Arc<Manager>);

impl MessageInterceptor for HideEvents {
    // Always active: the event stream lives on, and a dynamic container added later must not
    // show up in it. (Lists, by contrast, are snapshots.)

    fn on_response<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(async move {
            let id = wire::get_string(&msg, 1)
                .map_err(bad_wire)?
                .unwrap_or_default();
            // By the registry, and by the container's own label where the event carries its
            // status (containerd 2.x attaches every status of the sandbox): either suffices.
            if self.0.is_dynamic_id(&id) || event_names_dynamic(&msg, &id).map_err(bad_wire)? {
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
            let request = { call.stash.lock().unwrap().take() }.unwrap_or_default();
            // Only a successful call has a response message; decode failures leave the call alone.
            if let (Ok(req), Ok(id)) = (
                k8s_cri::v1::RunPodSandboxRequest::decode(request),
                sandbox_id(&msg),
            ) {
                self.0.pod_started(&id, &req).await;
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
            let request = call.stash.lock().unwrap().take();
            if let Some(request) = request {
                self.0.forget_pod(&sandbox_id(&request)?).await;
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
            self.0.pod_resized(&sandbox_id(&msg)?).await;
            Ok(msg)
        })
    }
}

/// Registers every dynamic-container interceptor.
pub fn register(registry: &mut Registry, manager: Arc<Manager>) {
    // Single-container reads become NOT_FOUND and pod stats nest their containers two levels
    // deep: those few, small answers are buffered and filtered.
    let filters: [(&str, Filter); 4] = [
        ("ContainerStatus", container_status),
        ("ContainerStats", container_stats),
        ("PodSandboxStats", pod_sandbox_stats),
        ("ListPodSandboxStats", pod_sandbox_stats),
    ];
    for version in VERSIONS {
        let path = |method: &str| format!("/{version}.RuntimeService/{method}");
        for (method, mask) in MASKED {
            registry.intercept(&path(method), Arc::new(MaskListing(mask, manager.clone())));
        }
        for (method, filter) in filters {
            registry.intercept(
                &path(method),
                Arc::new(MessageFilter(
                    move |m: &Bytes| filter(m).map(Some),
                    manager.clone(),
                )),
            );
        }
        registry.intercept(
            &path("GetContainerEvents"),
            Arc::new(HideEvents(manager.clone())),
        );
        let streams: [(&str, StreamFilter); 3] = [
            ("StreamContainers", stream_containers),
            ("StreamContainerStats", stream_container_stats),
            ("StreamPodSandboxStats", stream_pod_sandbox_stats),
        ];
        for (method, filter) in streams {
            registry.intercept(
                &path(method),
                Arc::new(MessageFilter(
                    move |m: &Bytes| filter(m).map_err(bad_wire),
                    manager.clone(),
                )),
            );
        }
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
#[path = "hide_tests.rs"]
mod tests;
