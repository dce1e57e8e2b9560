//! `podgraft status`: the GetStatus answer for people.

use crate::api::NodeStatus;

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

pub fn render(s: &NodeStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("version", s.version.clone());
    line("runtime endpoint", s.runtime_endpoint.clone());
    if !s.image_endpoint.is_empty() {
        line("image endpoint", s.image_endpoint.clone());
    }
    line(
        "mutable handlers",
        if s.mutable_handlers.is_empty() {
            "(none: relay only)".into()
        } else {
            s.mutable_handlers.join(", ")
        },
    );
    line(
        "containerd reachable",
        yes_no(s.containerd_reachable).into(),
    );
    line("state loaded", yes_no(s.state_loaded).into());
    let mut states: Vec<_> = s.containers_by_state.iter().collect();
    states.sort();
    let total: u32 = states.iter().map(|(_, n)| **n).sum();
    let by_state: Vec<String> = states.iter().map(|(k, n)| format!("{n} {k}")).collect();
    line(
        "dynamic containers",
        if by_state.is_empty() {
            "0".into()
        } else {
            format!("{total} ({})", by_state.join(", "))
        },
    );
    if s.recent_errors.is_empty() {
        line("recent errors", "none".into());
    } else {
        out.push_str("recent errors\n");
        for e in &s.recent_errors {
            out.push_str(&format!("  {} {}: {}\n", e.call, e.code, e.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_health_counts_and_errors() {
        let s = NodeStatus {
            version: "0.1.0".into(),
            runtime_endpoint: "/run/containerd/containerd.sock".into(),
            mutable_handlers: vec!["podgraft".into()],
            containerd_reachable: true,
            state_loaded: false,
            containers_by_state: [("running".into(), 2), ("exited".into(), 1)].into(),
            recent_errors: vec![crate::api::RecentError {
                call: "AddContainers".into(),
                code: "ResourceExhausted".into(),
                message: "containers: the pod has 64".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&s);
        for want in [
            "mutable handlers      podgraft",
            "containerd reachable  yes",
            "state loaded          NO",
            "dynamic containers    3 (1 exited, 2 running)",
            "  AddContainers ResourceExhausted: containers: the pod has 64",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
