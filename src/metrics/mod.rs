//! Prometheus metrics (OpenMetrics text, `prometheus-client`) and the health endpoints, served on
//! a loopback HTTP listener (`metrics_listen`) by the dynamic-container plane's runtime, never by
//! the relay's thread.
//!
//! The families live in one process-wide set, so that any part of podgraft records with a plain
//! function call (`metrics::restart()`, `metrics::probe_result(..)`, `metrics::gc(..)`), without
//! plumbing. Recording is a few atomic operations; the relay's per-call path resolves its
//! pre-registered series with one hash lookup.

mod families;
pub mod http;

use std::sync::OnceLock;
use std::time::Duration;

use families::Families;

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(Families::new)
}

/// A relayed CRI call ended (the relay's call observer).
pub fn cri_call(method: &str, code: tonic::Code, elapsed: Duration) {
    families().cri_call(method, code, elapsed);
}

/// An AddContainers call ended; `code` is its status (Ok for a success). Refusals by admission
/// (the request was well-formed but not allowed) are also counted by reason.
pub fn add_finished(code: tonic::Code, elapsed: Duration) {
    let f = families();
    f.add_seconds
        .get_or_create(&[("outcome", outcome(code))])
        .observe(elapsed.as_secs_f64());
    if let Some(reason) = admission_reason(code) {
        f.admission_refusals
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

/// A RemoveContainers call ended.
pub fn remove_finished(code: tonic::Code, elapsed: Duration) {
    families()
        .remove_seconds
        .get_or_create(&[("outcome", outcome(code))])
        .observe(elapsed.as_secs_f64());
}

/// The control API refused a call to a caller no `[[access]]` rule allows (`verb`: read, exec,
/// mutate).
pub fn authorization_denied(verb: &'static str) {
    families()
        .authorization_denials
        .get_or_create(&[("verb", verb)])
        .inc();
}

/// A dynamic container was restarted by its restart policy (for the lifecycle code).
pub fn restart() {
    families().restarts.inc();
}

/// A probe ran: `kind` is "liveness", "readiness" or "startup"; `result` "success", "failure" or
/// "error" (the probe could not run) (for the prober).
pub fn probe_result(kind: &'static str, result: &'static str) {
    families()
        .probe_results
        .get_or_create(&[("kind", kind), ("result", result)])
        .inc();
}

/// Garbage collection did `action` (e.g. "remove_exited", "remove_orphaned", "remove_unknown")
/// (for the collector).
pub fn gc(action: &'static str) {
    families()
        .gc_actions
        .get_or_create(&[("action", action)])
        .inc();
}

/// The text exposition of every family, with the gauges read from `manager` now.
pub fn render(manager: Option<&crate::dynamic::Manager>) -> String {
    families().render(manager)
}

/// The label value of a call's outcome: "ok" or the status code in snake case.
fn outcome(code: tonic::Code) -> &'static str {
    families::code_name(code)
}

/// Codes with which admission refuses an add that was well-formed as a message.
fn admission_reason(code: tonic::Code) -> Option<&'static str> {
    use tonic::Code::*;
    match code {
        InvalidArgument | FailedPrecondition | AlreadyExists | PermissionDenied
        | ResourceExhausted => Some(families::code_name(code)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_have_their_own_series_and_others_share_one() {
        let f = Families::new();
        f.cri_call(
            "/runtime.v1.RuntimeService/Version",
            tonic::Code::Ok,
            Duration::from_micros(40),
        );
        f.cri_call(
            "/runtime.v1.ImageService/PullImage",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        f.cri_call(
            "/made.Up/Method",
            tonic::Code::Unimplemented,
            Duration::from_micros(5),
        );
        f.cri_call(
            "/made.Up/Other",
            tonic::Code::Unimplemented,
            Duration::from_micros(5),
        );
        let text = f.render(None);
        for line in [
            "podgraft_cri_calls_total{method=\"runtime.v1.RuntimeService/Version\",code=\"ok\"} 1",
            "podgraft_cri_calls_total{method=\"runtime.v1.ImageService/PullImage\",code=\"not_found\"} 1",
            "podgraft_cri_calls_total{method=\"other\",code=\"unimplemented\"} 2",
            "podgraft_cri_call_duration_seconds_count{method=\"runtime.v1.ImageService/PullImage\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("made.Up"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
