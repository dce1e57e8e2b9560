//! The tracing span of each control call: the method, the caller, and the pod and container
//! names the request gives, so that whatever the dynamic plane logs while serving the call (an
//! add rolled back, a step failing) says for whom and on which pod.
//!
//! The span is at INFO, unlike the relay's per-call span (DEBUG, `server::span`): control calls
//! are rare next to the kubelet's, and the warnings they cause are read with the default filter,
//! where a DEBUG span would be off and they would lose their context. The call's own line
//! (`control call answered`, with its code) is DEBUG, so the default filter logs no line per call
//! (the audit log already has one for each change).

use std::future::Future;
use std::time::Instant;

use tonic::Status;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span};

use super::auth::Caller;
use crate::dynamic::model::PodSelector;

/// The span of one call to `method`.
pub(super) fn call(method: &'static str, caller: Option<&Caller>) -> Span {
    let span = tracing::info_span!(
        "control",
        method,
        caller = Empty,
        pod = Empty,
        containers = Empty
    );
    if let Some(caller) = caller {
        span.record("caller", display(caller));
    }
    span
}

pub(super) fn pod(span: &Span, pod: &PodSelector) {
    span.record("pod", display(pod));
}

/// The container names, comma-separated (names are DNS labels: no commas).
pub(super) fn containers<'a>(span: &Span, names: impl IntoIterator<Item = &'a str>) {
    if !span.is_disabled() {
        let names: Vec<&str> = names.into_iter().collect();
        span.record("containers", names.join(","));
    }
}

/// Runs a call's handler inside `span` and logs its answer there (for WatchEvents, the stream's
/// start). A handler dropped because the client went away logs no answer; a detached add or
/// removal still logs its own failures in the span, and the audit log records its outcome.
pub(super) async fn traced<T>(
    span: Span,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    async move {
        let started = Instant::now();
        let result = work.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        tracing::debug!(
            ?code,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "control call answered"
        );
        result
    }
    .instrument(span)
    .await
}
