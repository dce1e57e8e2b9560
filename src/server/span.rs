//! The tracing span of each relayed call: the method, the pod sandbox or container the request
//! names (when its first field says so), and at the end the gRPC code and the duration, with one
//! `relayed` event inside the span as the call's log line.
//!
//! The span is at DEBUG, not INFO: the kubelet relays several calls a second per pod (statuses,
//! listings, stats), so at INFO every node would log and format them all on the relay's thread.
//! Under the default filter (`info`) `debug_span!` stops at its level check (one relaxed atomic
//! load against the global max level) and yields a disabled span, whose enter, clone and drop do
//! nothing; every other step here first asks `is_disabled()`, so the default configuration pays
//! nothing else. `PODGRAFT_LOG=info,podgraft::server::span=debug` turns on exactly these lines.

use std::time::Duration;

use tonic::Code;
use tracing::Span;
use tracing::field::Empty;

/// The span of one relayed call to `method` (the gRPC path).
pub(crate) fn call(method: &str) -> Span {
    tracing::debug_span!(
        "cri_call",
        method,
        pod_sandbox_id = Empty,
        container_id = Empty,
        code = Empty,
        elapsed_us = Empty,
    )
}

/// IDs are 64 hex characters; anything longer is not worth a log field.
const MAX_ID: usize = 256;

/// The span field that the request's field 1 fills, by method: in both CRI versions these
/// requests hold the pod sandbox's or the container's ID in field 1.
fn id_field(method: &str) -> Option<&'static str> {
    let name = method
        .strip_prefix("/runtime.v1.RuntimeService/")
        .or_else(|| method.strip_prefix("/runtime.v1alpha2.RuntimeService/"))?;
    match name {
        "StopPodSandbox"
        | "RemovePodSandbox"
        | "PodSandboxStatus"
        | "PodSandboxStats"
        | "PortForward"
        | "CreateContainer"
        | "UpdatePodSandboxResources" => Some("pod_sandbox_id"),
        "StartContainer"
        | "StopContainer"
        | "RemoveContainer"
        | "ContainerStatus"
        | "ContainerStats"
        | "UpdateContainerResources"
        | "ReopenContainerLog"
        | "ExecSync"
        | "Exec"
        | "Attach"
        | "CheckpointContainer" => Some("container_id"),
        _ => None,
    }
}

/// Field 1 of `msg` as a string, if it is the message's first field and `msg` holds it whole.
/// Encoders write fields in number order, so a request that has field 1 starts with it; reading
/// no further keeps this constant-time however large the message (no message is decoded for a
/// log line).
fn leading_id(msg: &[u8]) -> Option<&str> {
    // Field 1, length-delimited: tag (1 << 3) | 2.
    let rest = msg.strip_prefix(&[0x0a])?;
    let (len, n) = crate::wire::decode_varint(rest).ok()??;
    let len = usize::try_from(len).ok().filter(|&l| l <= MAX_ID)?;
    std::str::from_utf8(rest.get(n..n + len)?).ok()
}

/// Records the ID the request message `msg` names (without its gRPC prefix), if any.
pub(crate) fn record_message_ids(span: &Span, method: &str, msg: &[u8]) {
    if span.is_disabled() {
        return;
    }
    if let (Some(field), Some(id)) = (id_field(method), leading_id(msg)) {
        span.record(field, id);
    }
}

/// Records the ID named by the request's first DATA frame `frame` (gRPC-framed: a compression
/// flag, a 4-byte length, then the message, possibly cut short by the frame's end).
pub(crate) fn record_frame_ids(span: &Span, method: &str, frame: &[u8]) {
    if span.is_disabled() {
        return;
    }
    // A compressed message would have to be inflated: not for a log field.
    if let Some(msg) = frame.strip_prefix(&[0]).and_then(|rest| rest.get(4..)) {
        record_message_ids(span, method, msg);
    }
}

/// Records the call's outcome and logs its line, inside the span so that it carries them.
pub(crate) fn finish(span: &Span, code: Code, elapsed: Duration, response_bytes: u64) {
    if span.is_disabled() {
        return;
    }
    span.record("code", tracing::field::debug(code));
    span.record("elapsed_us", elapsed.as_micros() as u64);
    span.in_scope(|| tracing::debug!(response_bytes, "relayed"));
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
