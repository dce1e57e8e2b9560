//! Exec probes: CRI ExecSync in the container, never through a shell; exit 0 is success.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::worker::Outcome;
use crate::cri::Cri;

/// gRPC DEADLINE_EXCEEDED: containerd's answer when the command outlived the timeout.
const DEADLINE_EXCEEDED: i32 = 4;

/// How long past the probe's timeout podgraft waits for containerd's own answer.
const SLACK: Duration = Duration::from_secs(2);

pub async fn run(
    cri: &dyn Cri,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> (Outcome, String) {
    let req = cri::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: command.to_vec(),
        timeout: timeout.as_secs().max(1) as i64,
    };
    match tokio::time::timeout(timeout + SLACK, cri.exec_sync(req)).await {
        Err(_) => (
            Outcome::Failure,
            format!("command timed out after {timeout:?}"),
        ),
        Ok(Ok(r)) if r.exit_code == 0 => (Outcome::Success, String::new()),
        Ok(Ok(r)) => (
            Outcome::Failure,
            format!(
                "command exited with {}: {}",
                r.exit_code,
                tail(&r.stdout, &r.stderr)
            ),
        ),
        // A timeout is the command's failure, as the kubelet counts it.
        Ok(Err(e)) if e.code == DEADLINE_EXCEEDED => (
            Outcome::Failure,
            format!("command timed out after {timeout:?}"),
        ),
        // Anything else (containerd unreachable, the container going away) says nothing about
        // the container's health.
        Ok(Err(e)) => (Outcome::Unknown, e.to_string()),
    }
}

/// The end of the command's output, for the event message.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let out = if stderr.is_empty() { stdout } else { stderr };
    let s = String::from_utf8_lossy(&out[out.len().saturating_sub(256)..]);
    s.trim().to_string()
}
