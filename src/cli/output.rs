//! Human-readable tables and JSON for the client commands.

use crate::api::{self, DynamicContainer};

fn state(raw: i32) -> &'static str {
    match api::ContainerState::try_from(raw).unwrap_or(api::ContainerState::Unknown) {
        api::ContainerState::Created => "Created",
        api::ContainerState::Running => "Running",
        api::ContainerState::Exited => "Exited",
        api::ContainerState::Unknown => "Unknown",
    }
}

fn age(unix_nanos: i64) -> String {
    if unix_nanos <= 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let secs = (now - unix_nanos).max(0) / 1_000_000_000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// kubectl's RESTARTS: the count, and how long ago the last attempt ended.
fn restarts(c: &DynamicContainer) -> String {
    match c.last_state.as_ref().map(|t| t.finished_at_unix_nanos) {
        Some(finished) if c.restart_count > 0 && finished > 0 => {
            format!("{} ({} ago)", c.restart_count, age(finished))
        }
        _ => c.restart_count.to_string(),
    }
}

fn pod_name(pod: &Option<api::PodRef>) -> String {
    pod.as_ref()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .unwrap_or_default()
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn containers(list: &[DynamicContainer]) -> String {
    let mut rows = vec![
        [
            "POD",
            "NAME",
            "READY",
            "STATE",
            "EXIT",
            "RESTARTS",
            "AGE",
            "IMAGE",
            "CONTAINER",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in list {
        let exited = c.state == api::ContainerState::Exited as i32;
        rows.push(vec![
            pod_name(&c.pod),
            c.name.clone(),
            // kubectl's READY, for the one container of the row.
            if c.ready { "1/1" } else { "0/1" }.into(),
            state(c.state).into(),
            if exited {
                c.exit_code.to_string()
            } else {
                "-".into()
            },
            restarts(c),
            age(c.created_at_unix_nanos),
            c.image.clone(),
            c.container_id.chars().take(13).collect(),
        ]);
    }
    table(rows)
}

pub fn container(c: &DynamicContainer) -> String {
    let mut out = containers(std::slice::from_ref(c));
    out.push_str(&format!(
        "\nContainer ID: {}\nImage ID:     {}\nLog:          {}\n",
        c.container_id, c.image_id, c.log_path
    ));
    if !c.reason.is_empty() {
        out.push_str(&format!("Reason:       {} {}\n", c.reason, c.message));
    }
    out.push_str(&termination_lines(c));
    out
}

/// What `get` adds about how the container ended and waits: waiting reason, last state, removal.
fn termination_lines(c: &DynamicContainer) -> String {
    let mut out = String::new();
    if !c.waiting_reason.is_empty() {
        out.push_str(&format!("Waiting:      {}\n", c.waiting_reason));
    }
    if let Some(last) = &c.last_state {
        out.push_str(&format!(
            "Last State:   Terminated ({}, exit code {}) {} ago ({})\n",
            last.reason,
            last.exit_code,
            age(last.finished_at_unix_nanos),
            last.container_id.chars().take(13).collect::<String>()
        ));
        if !last.message.is_empty() {
            out.push_str(&format!("  Message:    {}\n", last.message.trim_end()));
        }
    }
    if c.removed_at_unix_nanos > 0 {
        out.push_str(&format!(
            "Removed:      {} ago (final status kept)\n",
            age(c.removed_at_unix_nanos)
        ));
    }
    out
}

pub fn event(e: &api::Event) -> String {
    let kind = api::event::Type::try_from(e.r#type)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN");
    format!(
        "{:>6}  {:<8} {:<24} {:<20} {}",
        e.sequence,
        kind,
        pod_name(&e.pod),
        e.name,
        e.message
    )
}

pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("API types serialize")
}

/// One line of the kubelet's CRI log format: `<time> <stream> <P|F> <text>`; returns the text and
/// whether the line is complete (F) or a partial line to be joined with the next (P).
pub fn cri_log_text(line: &str) -> (&str, bool) {
    let mut parts = line.splitn(4, ' ');
    let (_, _, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (tag, text) {
        (Some("P"), Some(t)) => (t, false),
        (Some(_), Some(t)) => (t, true),
        _ => (line, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_shows_ready_and_restarts_like_kubectl() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let running = DynamicContainer {
            name: "web".into(),
            state: api::ContainerState::Running as i32,
            ready: true,
            restart_count: 2,
            last_state: Some(api::TerminationState {
                finished_at_unix_nanos: now - 30_500_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let unready = DynamicContainer {
            name: "tool".into(),
            state: api::ContainerState::Running as i32,
            ..Default::default()
        };
        let out = containers(&[running, unready]);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            &lines[0][..6],
            ["POD", "NAME", "READY", "STATE", "EXIT", "RESTARTS"]
        );
        // POD is empty: the columns start at NAME.
        assert_eq!(&lines[1][..6], ["web", "1/1", "Running", "-", "2", "(30s"]);
        assert_eq!(&lines[2][..5], ["tool", "0/1", "Running", "-", "0"]);
    }
}

#[cfg(test)]
mod termination_tests {
    use super::*;

    #[test]
    fn get_shows_waiting_reason_last_state_and_removal() {
        let c = DynamicContainer {
            name: "crash".into(),
            waiting_reason: "CrashLoopBackOff".into(),
            last_state: Some(api::TerminationState {
                exit_code: 137,
                reason: "OOMKilled".into(),
                message: "out of memory\n".into(),
                container_id: "0123456789abcdef".into(),
                ..Default::default()
            }),
            removed_at_unix_nanos: 1,
            ..Default::default()
        };
        let text = termination_lines(&c);
        assert!(text.contains("Waiting:      CrashLoopBackOff\n"), "{text}");
        assert!(
            text.contains("Last State:   Terminated (OOMKilled, exit code 137)"),
            "{text}"
        );
        assert!(text.contains("(0123456789abc)"), "{text}");
        assert!(text.contains("  Message:    out of memory\n"), "{text}");
        assert!(text.contains("Removed:"), "{text}");
        assert_eq!(termination_lines(&DynamicContainer::default()), "");
    }
}
