//! How an attempt ended, as the kubelet reports it: exit code, a reason (Completed for exit 0,
//! Error otherwise, OOMKilled when containerd says so) and a message read from the container's
//! termination message file or, under FallbackToLogsOnError after a failed exit with an empty file,
//! from the tail of its log.
//!
//! The termination message file is podgraft's, as the kubelet's is the kubelet's: an empty file
//! per attempt at `state_dir/termination/<sandbox>/<name>/<attempt>`, created before the attempt
//! is and bind-mounted at the spec's terminationMessagePath. Only its container side comes from
//! the user (an absolute, clean path, checked by admission); the host side is always podgraft's
//! own file, so the path cannot be used to mount anything else.

use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use super::Lifecycle;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::keys::TERMINATION_MESSAGE_PATH_ANNOTATION;
use crate::dynamic::model::spec::TerminationMessagePolicy;
use crate::dynamic::model::view::Termination;
use crate::dynamic::state::writer::run_blocking;

/// The kubelet's limit on a termination message read from the file.
pub const MESSAGE_MAX_BYTES: u64 = 4096;
/// The kubelet's fallback to logs: at most the last 80 lines, of which at most 2048 bytes.
pub const LOG_TAIL_LINES: usize = 80;
pub const LOG_TAIL_MAX_BYTES: usize = 2048;
/// How much of the end of a log is read to find its last lines.
const LOG_READ_BYTES: u64 = 256 * 1024;

pub const DEFAULT_MESSAGE_PATH: &str = "/dev/termination-log";

/// The kubelet's reason for an exit.
pub fn reason(status: &cri::ContainerStatus) -> &'static str {
    if status.reason == "OOMKilled" {
        "OOMKilled"
    } else if status.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// How the exited attempt `status` ended. Blocking (reads files): call through `run_blocking`.
pub fn of(status: &cri::ContainerStatus, policy: TerminationMessagePolicy) -> Termination {
    let fallback =
        policy == TerminationMessagePolicy::FallbackToLogsOnError && status.exit_code != 0;
    let mut message = read_message_file(status);
    if message.is_empty() && fallback {
        message = log_tail(Path::new(&status.log_path));
    }
    // As the kubelet: containerd's own message first, the container's after it.
    let message = match (status.message.is_empty(), message.is_empty()) {
        (_, true) => status.message.clone(),
        (true, false) => message,
        (false, false) => format!("{}: {message}", status.message),
    };
    Termination {
        container_id: status.id.clone(),
        exit_code: status.exit_code,
        reason: reason(status).to_string(),
        message,
        started_at_unix_nanos: status.started_at,
        finished_at_unix_nanos: status.finished_at,
        signal: 0,
    }
}

/// The termination message file of `status`: the host side of its mount at the annotated path.
fn read_message_file(status: &cri::ContainerStatus) -> String {
    let path = status
        .annotations
        .get(TERMINATION_MESSAGE_PATH_ANNOTATION)
        .map_or(DEFAULT_MESSAGE_PATH, String::as_str);
    let Some(mount) = status.mounts.iter().find(|m| m.container_path == path) else {
        return String::new();
    };
    let mut data = Vec::new();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        // The container writes the file; never follow a link it might have made to elsewhere.
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&mount.host_path);
    if let Ok(f) = opened {
        let _ = f.take(MESSAGE_MAX_BYTES).read_to_end(&mut data);
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// The content of the last [`LOG_TAIL_LINES`] lines of a CRI log file, at most
/// [`LOG_TAIL_MAX_BYTES`] of it (the first bytes of those lines, as the kubelet's limited reader).
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(LOG_READ_BYTES);
    let mut data = Vec::new();
    if f.seek(std::io::SeekFrom::Start(start)).is_err()
        || f.take(LOG_READ_BYTES).read_to_end(&mut data).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&data);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be cut.
        lines.remove(0);
    }
    let first = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut out = String::new();
    for line in &lines[first..] {
        // CRI log format: "<time> <stream> <P|F> <content>"; P(artial) lines continue.
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next());
        out.push_str(content.unwrap_or_default());
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let mut end = out.len().min(LOG_TAIL_MAX_BYTES);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

impl Lifecycle {
    fn termination_dir(&self, sandbox_id: &str) -> PathBuf {
        self.store.state_dir().join("termination").join(sandbox_id)
    }

    /// Creates the (empty, world-writable, as the kubelet's) termination message file of attempt
    /// `attempt` and returns its mount.
    pub(super) async fn termination_mount(
        &self,
        sandbox_id: &str,
        spec: &ContainerSpec,
        attempt: u32,
    ) -> Result<cri::Mount> {
        let dir = self.termination_dir(sandbox_id).join(&spec.name);
        let file = dir.join(attempt.to_string());
        let host = file.clone();
        run_blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&dir)?;
            std::fs::File::create(&file)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
        })
        .await
        .map_err(|e| Error::Internal(format!("creating the termination message file: {e}")))?;
        let container_path = if spec.termination_message_path.is_empty() {
            DEFAULT_MESSAGE_PATH.to_string()
        } else {
            spec.termination_message_path.clone()
        };
        Ok(cri::Mount {
            container_path,
            host_path: host.to_string_lossy().into_owned(),
            ..Default::default()
        })
    }

    /// Removes the termination message files of `name` in `sandbox_id` (of every name: `None`).
    pub(super) async fn remove_termination_files(&self, sandbox_id: &str, name: Option<&str>) {
        let mut dir = self.termination_dir(sandbox_id);
        if let Some(name) = name {
            dir.push(name);
        }
        run_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), error = %e, "removing termination message files failed");
            }
            _ => {}
        })
        .await;
    }

    /// Removes the termination message file of one attempt.
    pub(super) async fn remove_termination_file(&self, sandbox_id: &str, name: &str, attempt: u32) {
        let file = self
            .termination_dir(sandbox_id)
            .join(name)
            .join(attempt.to_string());
        run_blocking(move || {
            let _ = std::fs::remove_file(file);
        })
        .await;
    }

    /// How the exited attempt `status` ended (reads its message file or log off the relay).
    pub(super) async fn termination(&self, status: &cri::ContainerStatus) -> Termination {
        let policy = status
            .annotations
            .get(crate::dynamic::model::keys::SPEC_ANNOTATION)
            .and_then(|s| self.specs.decode(s))
            .map(|s| s.termination_message_policy)
            .unwrap_or_default();
        let status = status.clone();
        run_blocking(move || of(&status, policy)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, reason: &str) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: "c1".into(),
            exit_code: code,
            reason: reason.into(),
            state: cri::ContainerState::ContainerExited as i32,
            ..Default::default()
        }
    }

    #[test]
    fn reasons_as_the_kubelet_gives_them() {
        assert_eq!(reason(&exited(0, "Completed")), "Completed");
        assert_eq!(reason(&exited(0, "")), "Completed");
        assert_eq!(reason(&exited(2, "Error")), "Error");
        assert_eq!(reason(&exited(137, "OOMKilled")), "OOMKilled");
    }

    fn with_files(dir: &Path, message: &str, log: &str) -> cri::ContainerStatus {
        let msg = dir.join("msg");
        std::fs::write(&msg, message).unwrap();
        let log_path = dir.join("0.log");
        std::fs::write(&log_path, log).unwrap();
        let mut st = exited(1, "Error");
        st.annotations.insert(
            TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
            "/tmp/msg".into(),
        );
        st.mounts.push(cri::Mount {
            container_path: "/tmp/msg".into(),
            host_path: msg.to_string_lossy().into(),
            ..Default::default()
        });
        st.log_path = log_path.to_string_lossy().into();
        st
    }

    #[test]
    fn message_from_the_file_and_from_logs_only_when_asked_and_failed() {
        let dir = tempfile::tempdir().unwrap();
        let log = "2026-01-01T00:00:00Z stdout F hello\n2026-01-01T00:00:01Z stderr P par\n2026-01-01T00:00:01Z stderr F tial\n";
        let st = with_files(dir.path(), "from file", log);
        let fallback = TerminationMessagePolicy::FallbackToLogsOnError;
        assert_eq!(of(&st, TerminationMessagePolicy::File).message, "from file");
        assert_eq!(of(&st, fallback).message, "from file");
        let st = with_files(dir.path(), "", log);
        assert_eq!(of(&st, TerminationMessagePolicy::File).message, "");
        assert_eq!(of(&st, fallback).message, "hello\npartial\n");
        let mut ok = st.clone();
        ok.exit_code = 0;
        assert_eq!(of(&ok, fallback).message, "");
        assert_eq!(of(&ok, fallback).reason, "Completed");
    }

    #[test]
    fn file_message_is_capped_and_the_log_tail_is_80_lines_of_at_most_2048_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let st = with_files(dir.path(), &"x".repeat(10_000), "");
        assert_eq!(of(&st, TerminationMessagePolicy::File).message.len(), 4096);
        let log: String = (0..200)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F line{i}\n"))
            .collect();
        let st = with_files(dir.path(), "", &log);
        let m = of(&st, TerminationMessagePolicy::FallbackToLogsOnError).message;
        assert!(m.starts_with("line120\n"), "{m}");
        assert!(m.ends_with("line199\n"));
        let long: String = (0..200)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F {i:0>100}\n"))
            .collect();
        let st = with_files(dir.path(), "", &long);
        let m = of(&st, TerminationMessagePolicy::FallbackToLogsOnError).message;
        assert_eq!(m.len(), LOG_TAIL_MAX_BYTES);
        assert!(m.starts_with(&format!("{:0>100}\n", 120)));
    }

    #[test]
    fn a_symlinked_message_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let st = with_files(dir.path(), "", "");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "secret").unwrap();
        let msg = dir.path().join("msg");
        std::fs::remove_file(&msg).unwrap();
        std::os::unix::fs::symlink(&secret, &msg).unwrap();
        assert_eq!(of(&st, TerminationMessagePolicy::File).message, "");
    }
}
