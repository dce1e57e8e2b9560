//! Termination states through the manager against the in-memory CRI and a virtual clock: the
//! termination message file podgraft mounts, exit reasons, last state after a restart, the
//! CrashLoopBackOff waiting reason and the events that report them.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

use crate::dynamic::host::FakeHost;
use crate::dynamic::model::spec::{RestartPolicy, TerminationMessagePolicy};
use crate::dynamic::model::{ContainerSpec, ContainerState, Event, EventKind, PodSelector};
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Manager, ManagerSettings};
use crate::testing::MemCri;

pub(super) struct Fx {
    pub cri: Arc<MemCri>,
    pub host: Arc<FakeHost>,
    pub manager: Manager,
    pub dir: tempfile::TempDir,
}

/// A loaded manager on a virtual clock with one mutable pod "agent" (sandbox "sb").
pub(super) async fn fixture(settings: ManagerSettings) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let cri = Arc::new(MemCri::new());
    cri.add_image("busybox:1");
    let host = Arc::new(FakeHost::default());
    let manager = Manager::new(
        cri.clone(),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            host: host.clone(),
            ..settings
        },
    );
    let config = cri.add_pod("sb", "podgraft", "default", "agent", "uid-agent");
    manager.load().await.unwrap();
    manager
        .pod_started(
            "sb",
            &cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: "podgraft".into(),
            },
        )
        .await;
    Fx {
        cri,
        host,
        manager,
        dir,
    }
}

pub(super) fn agent() -> PodSelector {
    PodSelector::Name {
        namespace: "default".into(),
        name: "agent".into(),
    }
}

pub(super) fn spec(name: &str, policy: RestartPolicy) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "busybox:1".into(),
        command: vec!["sleep".into(), "3600".into()],
        restart_policy: policy,
        ..Default::default()
    }
}

pub(super) fn events(m: &Manager, kind: EventKind) -> Vec<Event> {
    m.events()
        .subscribe(1)
        .backlog
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

/// The host side of the termination message mount of container `id`.
fn message_file(cri: &MemCri, id: &str, path: &str) -> std::path::PathBuf {
    let (_, st) = cri
        .containers()
        .into_iter()
        .find(|(_, c)| c.id == id)
        .unwrap();
    let mount = st.mounts.iter().find(|m| m.container_path == path).unwrap();
    mount.host_path.clone().into()
}

#[tokio::test]
async fn exits_report_reason_and_message_and_restarts_keep_the_last_state() {
    let fx = fixture(ManagerSettings::default()).await;
    let mut crash = spec("crash", RestartPolicy::Always);
    crash.termination_message_path = "/tmp/why".into();
    let added = fx.manager.add(&agent(), vec![crash]).await.unwrap();
    let first = added[0].container_id.clone();
    let file = message_file(&fx.cri, &first, "/tmp/why");
    assert!(
        file.starts_with(fx.dir.path().join("termination/sb/crash")),
        "{file:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o666,
        "writable by any user in the container, as the kubelet's"
    );
    fx.manager.poll_once().await.unwrap();

    // Attempt 0 fails after writing its message; the first restart is at once.
    std::fs::write(&file, "disk full").unwrap();
    fx.cri.set_exited(&first, 1, "Error");
    fx.manager.poll_once().await.unwrap();
    let exited = events(&fx.manager, EventKind::Exited);
    assert_eq!(
        (exited[0].reason.as_str(), exited[0].message.as_str()),
        ("Error", "exit code 1: disk full")
    );
    let restarting = events(&fx.manager, EventKind::Restarting);
    assert_eq!(restarting.len(), 1);
    assert_eq!(
        restarting[0].reason, "",
        "the first restart does not back off"
    );
    fx.manager.restart_due().await;
    let view = fx.manager.get(&agent(), "crash").await.unwrap();
    assert_eq!(view.restart_count, 1);
    assert_eq!(view.state, ContainerState::Running);
    let last = view.last_state.clone().expect("last state after a restart");
    assert_eq!(
        (
            last.container_id.as_str(),
            last.exit_code,
            last.reason.as_str()
        ),
        (first.as_str(), 1, "Error")
    );
    assert_eq!(last.message, "disk full");
    assert_eq!(view.waiting_reason, "");
    let second_file = message_file(&fx.cri, &view.container_id, "/tmp/why");
    assert_ne!(second_file, file, "one file per attempt");

    // Attempt 1 is OOM-killed: it backs off 10 s, shown as CrashLoopBackOff.
    fx.cri.set_exited(&view.container_id, 137, "OOMKilled");
    fx.manager.poll_once().await.unwrap();
    let exited = events(&fx.manager, EventKind::Exited);
    assert_eq!(exited[1].reason, "OOMKilled");
    let restarting = events(&fx.manager, EventKind::Restarting);
    assert_eq!(restarting[1].reason, "CrashLoopBackOff");
    assert!(
        restarting[1].message.contains("10s"),
        "{}",
        restarting[1].message
    );
    let waiting = fx.manager.get(&agent(), "crash").await.unwrap();
    assert_eq!(waiting.state, ContainerState::Exited);
    assert_eq!(
        (waiting.reason.as_str(), waiting.exit_code),
        ("OOMKilled", 137)
    );
    assert_eq!(waiting.waiting_reason, "CrashLoopBackOff");
    assert_eq!(waiting.last_state.unwrap().container_id, first);
    let listed = fx.manager.list(None).await.unwrap();
    assert_eq!(listed.len(), 1, "one view per name, not per attempt");
    assert_eq!(listed[0].waiting_reason, "CrashLoopBackOff");

    // The restart after the back-off removes attempt 0 and its file.
    fx.host.advance(Duration::from_secs(10));
    fx.manager.restart_due().await;
    assert!(!file.exists(), "the file goes with its attempt");
    let view = fx.manager.get(&agent(), "crash").await.unwrap();
    assert_eq!(view.waiting_reason, "");
    assert_eq!(view.last_state.unwrap().reason, "OOMKilled");

    // Removal takes the name's files with it.
    fx.manager
        .remove(&agent(), &["crash".into()], Some(0))
        .await
        .unwrap();
    assert!(!fx.dir.path().join("termination/sb/crash").exists());
}

#[tokio::test]
async fn fallback_to_logs_reads_the_log_tail_only_after_a_failure_with_no_message() {
    let fx = fixture(ManagerSettings::default()).await;
    let mut job = spec("job", RestartPolicy::Never);
    job.termination_message_policy = TerminationMessagePolicy::FallbackToLogsOnError;
    let added = fx.manager.add(&agent(), vec![job]).await.unwrap();
    let id = added[0].container_id.clone();
    // MemCri reports the log path as given (relative); point it at a real file.
    let log = fx.dir.path().join("job.log");
    std::fs::write(&log, "2026-01-01T00:00:00Z stderr F no such file\n").unwrap();
    fx.cri.set_log_path(&id, &log.to_string_lossy());
    fx.manager.poll_once().await.unwrap();
    fx.cri.set_exited(&id, 2, "Error");
    fx.manager.poll_once().await.unwrap();
    let view = fx.manager.get(&agent(), "job").await.unwrap();
    assert_eq!(
        (view.reason.as_str(), view.message.as_str()),
        ("Error", "no such file\n")
    );
    assert!(
        events(&fx.manager, EventKind::Restarting).is_empty(),
        "Never"
    );
}
