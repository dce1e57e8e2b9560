//! Lifecycle behaviour through the manager facade against the in-memory CRI: atomic adds with
//! rollback, refusals, names, removal, pod teardown and exit events.

use std::sync::Arc;

use k8s_cri::v1 as cri;

use crate::cri::Cri;
use crate::dynamic::model::keys::DYNAMIC_LABEL;
use crate::dynamic::model::{ContainerSpec, ContainerState, EventKind as Type, PodSelector};
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Error, Manager, ManagerSettings};
use crate::testing::MemCri;

struct Fx {
    cri: Arc<MemCri>,
    manager: Manager,
    _dir: tempfile::TempDir,
}

/// A loaded manager with a mutable pod "agent" and a plain pod "web", both started.
async fn fixture() -> Fx {
    let fx = fixture_unloaded().await;
    fx.manager.load().await.unwrap();
    fx
}

async fn fixture_unloaded() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let cri = Arc::new(MemCri::new());
    cri.add_image("busybox:1");
    let store = SandboxStore::new(dir.path(), ["podgraft".to_string()]);
    let manager = Manager::new(cri.clone(), store, ManagerSettings::default());
    for (id, handler, name) in [("sb-mut", "podgraft", "agent"), ("sb-plain", "runc", "web")] {
        let config = cri.add_pod(id, handler, "default", name, &format!("uid-{name}"));
        manager
            .pod_started(
                id,
                &cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: handler.into(),
                },
            )
            .await;
    }
    Fx {
        cri,
        manager,
        _dir: dir,
    }
}

fn pod(name: &str) -> PodSelector {
    PodSelector::Name {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "busybox:1".into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

fn dynamic_names(cri: &MemCri) -> Vec<String> {
    let mut v: Vec<_> = cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.metadata.unwrap().name)
        .collect();
    v.sort();
    v
}

/// Every event so far, as (type, container name).
fn event_types(m: &Manager) -> Vec<(Type, String)> {
    m.events()
        .subscribe(1)
        .backlog
        .into_iter()
        .map(|e| (e.kind, e.name))
        .collect()
}

#[tokio::test]
async fn adds_and_starts_containers_with_the_pods_labels() {
    let fx = fixture().await;
    let added = fx
        .manager
        .add(&(pod("agent")), vec![spec("tool"), spec("helper")])
        .await
        .unwrap();
    assert_eq!(added.len(), 2);
    assert!(added.iter().all(|c| c.state == ContainerState::Running));
    assert_eq!(added[0].pod.sandbox_id, "sb-mut");
    assert_eq!(added[0].spec.image, "busybox:1");
    let (sandbox, status) = fx
        .cri
        .containers()
        .into_iter()
        .find(|(_, c)| c.metadata.as_ref().unwrap().name == "tool")
        .unwrap();
    assert_eq!(sandbox, "sb-mut");
    assert_eq!(status.labels["io.kubernetes.pod.uid"], "uid-agent");
    assert_eq!(status.labels[DYNAMIC_LABEL], "true");
    assert!(fx.manager.is_dynamic_id(&status.id));
    let types: Vec<_> = event_types(&fx.manager)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        types,
        [Type::Added, Type::Started, Type::Added, Type::Started]
    );
}

#[tokio::test]
async fn a_failed_member_rolls_back_the_whole_batch() {
    let fx = fixture().await;
    fx.cri.fail_start.lock().unwrap().insert("second".into());
    let err = fx
        .manager
        .add(
            &(pod("agent")),
            vec![spec("first"), spec("second"), spec("third")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Runtime { .. }), "{err:?}");
    assert!(err.to_string().contains("containers[1]"), "{err}");
    assert!(
        dynamic_names(&fx.cri).is_empty(),
        "nothing may remain: {:?}",
        dynamic_names(&fx.cri)
    );
    let calls = fx.cri.calls.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|c| c == "CreateContainer third"),
        "no step after the failure: {calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("RemoveContainer"))
            .count(),
        2
    );
    // The names were not consumed: a corrected retry succeeds.
    fx.cri.fail_start.lock().unwrap().clear();
    fx.manager
        .add(&(pod("agent")), vec![spec("first"), spec("second")])
        .await
        .unwrap();
    let failed = event_types(&fx.manager)
        .into_iter()
        .filter(|(t, _)| *t == Type::Failed)
        .count();
    assert_eq!(failed, 3);
}

#[tokio::test]
async fn refusals_are_precise_and_create_nothing() {
    let fx = fixture().await;
    let plain = fx
        .manager
        .add(&(pod("web")), vec![spec("tool")])
        .await
        .unwrap_err();
    assert!(
        matches!(&plain, Error::FailedPrecondition(m) if m.contains("\"runc\"")),
        "{plain:?}"
    );
    let missing = fx
        .manager
        .add(&(pod("nope")), vec![spec("tool")])
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));
    let clash = fx
        .manager
        .add(&(pod("agent")), vec![spec("main")])
        .await
        .unwrap_err();
    assert!(
        matches!(&clash, Error::AlreadyExists(m) if m.starts_with("containers[0].name")),
        "{clash:?}"
    );
    let twice = fx
        .manager
        .add(&(pod("agent")), vec![spec("a"), spec("a")])
        .await
        .unwrap_err();
    assert!(
        matches!(&twice, Error::InvalidArgument { field, .. } if field == "containers[1].name")
    );
    let never = ContainerSpec {
        image: "other:2".into(),
        pull_policy: crate::dynamic::model::spec::PullPolicy::Never,
        ..spec("x")
    };
    let err = fx
        .manager
        .add(&(pod("agent")), vec![never])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("containers[0].image")),
        "{err:?}"
    );
    let pull_fails = ContainerSpec {
        image: "missing:1".into(),
        ..spec("y")
    };
    let err = fx
        .manager
        .add(&(pod("agent")), vec![spec("ok"), pull_fails])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("containers[1].image"), "{err}");
    // (A pod named two ways is refused at the control edge: control::convert's tests.)
    assert!(dynamic_names(&fx.cri).is_empty());
}

#[tokio::test]
async fn removal_is_graceful_and_the_name_is_free_once_removed() {
    let fx = fixture().await;
    let by_uid = PodSelector::Uid("uid-agent".into());
    fx.manager.add(&by_uid, vec![spec("tool")]).await.unwrap();
    let removed = fx
        .manager
        .remove(&by_uid, &["tool".into()], Some(5))
        .await
        .unwrap();
    assert_eq!(removed, ["tool"]);
    assert!(dynamic_names(&fx.cri).is_empty());
    assert!(
        fx.cri
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("StopContainer") && c.ends_with(" 5"))
    );
    // KEP-5972: the container is completely removed, so its name is free; its final status is
    // kept (see termination_tests / gc_tests) but does not hold the name.
    let again = fx.manager.add(&by_uid, vec![spec("tool")]).await.unwrap();
    assert_eq!(again[0].name, "tool");
    let twice = fx
        .manager
        .add(&by_uid, vec![spec("tool")])
        .await
        .unwrap_err();
    assert!(
        matches!(twice, Error::AlreadyExists(_)),
        "a live container holds its name"
    );
    let unknown = fx
        .manager
        .remove(&by_uid, &["ghost".into()], None)
        .await
        .unwrap_err();
    assert!(matches!(&unknown, Error::NotFound(m) if m.starts_with("names[0]")));
}

#[tokio::test]
async fn pod_teardown_stops_then_removes_dynamic_containers() {
    let fx = fixture().await;
    fx.manager
        .add(&(pod("agent")), vec![spec("a"), spec("b")])
        .await
        .unwrap();
    fx.manager.stop_pod("sb-mut").await;
    let states: Vec<_> = fx
        .cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.state)
        .collect();
    assert_eq!(states, [cri::ContainerState::ContainerExited as i32; 2]);
    fx.manager.poll_once().await.unwrap();
    let exits = event_types(&fx.manager)
        .into_iter()
        .filter(|(t, _)| *t == Type::Exited)
        .count();
    assert_eq!(
        exits, 2,
        "one EXITED per container, not a second one from exit detection"
    );
    let refused = fx
        .manager
        .add(&(pod("agent")), vec![spec("late")])
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::FailedPrecondition(_)));
    fx.manager.remove_pod("sb-mut").await;
    assert!(dynamic_names(&fx.cri).is_empty());
    fx.manager.forget_pod("sb-mut").await;
    assert!(fx.manager.store().get("sb-mut").is_none());
}

#[tokio::test]
async fn exits_become_events_and_list_shows_the_exit_code() {
    let fx = fixture().await;
    let added = fx
        .manager
        .add(&(pod("agent")), vec![spec("job")])
        .await
        .unwrap();
    fx.manager.poll_once().await.unwrap();
    fx.cri.set_state(
        &added[0].container_id,
        cri::ContainerState::ContainerExited,
        3,
    );
    fx.manager.poll_once().await.unwrap();
    fx.manager.poll_once().await.unwrap();
    let exits: Vec<_> = fx
        .manager
        .events()
        .subscribe(1)
        .backlog
        .into_iter()
        .filter(|e| e.kind == Type::Exited)
        .collect();
    assert_eq!(exits.len(), 1, "one event per exit");
    assert_eq!(exits[0].message, "exit code 3");
    let listed = fx.manager.list(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].state, listed[0].exit_code),
        (ContainerState::Exited, 3)
    );
}

#[tokio::test]
async fn hiding_is_needed_only_while_dynamic_containers_may_exist() {
    let fx = fixture_unloaded().await;
    assert!(
        fx.manager.may_have_dynamic(),
        "unknown until loaded from containerd"
    );
    fx.manager.load().await.unwrap();
    assert!(
        !fx.manager.may_have_dynamic(),
        "loaded, and the node has none"
    );
    fx.manager
        .add(&(pod("agent")), vec![spec("tool")])
        .await
        .unwrap();
    assert!(fx.manager.may_have_dynamic());
    fx.manager
        .remove(&(pod("agent")), &["tool".into()], Some(0))
        .await
        .unwrap();
    assert!(!fx.manager.may_have_dynamic());
}

#[tokio::test]
async fn an_add_interrupted_by_a_crash_is_rolled_back_at_start() {
    let fx = fixture().await;
    fx.manager
        .add(&(pod("agent")), vec![spec("kept")])
        .await
        .unwrap();
    // podgraft dies after creating the first container of a two-container add.
    let batches = &fx.manager.lifecycle.batches;
    let batch = batches.next("sb-mut", vec!["half".into(), "never".into()]);
    batches.begin(&batch).await.unwrap();
    let codec = crate::dynamic::lifecycle::stored_spec::SpecCodec::default();
    let mut config = super::translate::container_config(
        &spec("half"),
        &crate::dynamic::model::security::Effective::requested(&spec("half")),
        codec.encode(&spec("half")),
        &fx.cri.sandbox_config("sb-mut"),
        vec![],
        0,
        1 << 30,
    );
    config.labels.insert(
        crate::dynamic::model::keys::BATCH_LABEL.into(),
        batch.id.clone(),
    );
    // The batch's second container, whose create was still in containerd when podgraft died.
    let mut late_config = config.clone();
    late_config.metadata.as_mut().unwrap().name = "never".into();
    late_config.labels.insert(
        crate::dynamic::model::keys::CONTAINER_NAME_LABEL.into(),
        "never".into(),
    );
    fx.cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "sb-mut".into(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .unwrap();
    assert_eq!(dynamic_names(&fx.cri), ["half", "kept"]);

    assert!(
        fx.manager.lifecycle.batches.interrupted().await == [batch.clone()],
        "finished adds leave no batch behind"
    );

    // The next podgraft finds the unfinished batch and finishes it the only safe way: removal.
    let host = Arc::new(crate::dynamic::host::FakeHost::default());
    let restarted = Manager::new(
        fx.cri.clone(),
        SandboxStore::new(fx._dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            host: host.clone(),
            ..ManagerSettings::default()
        },
    );
    restarted.load().await.unwrap();
    assert_eq!(dynamic_names(&fx.cri), ["kept"]);
    // The dead process's CreateContainer may still land: the batch stays a tombstone (its record
    // too, so another crash rolls it back again) and the supervisor's sweep removes a late one.
    assert_eq!(
        restarted.lifecycle.batches.interrupted().await,
        std::slice::from_ref(&batch)
    );
    fx.cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "sb-mut".into(),
            config: Some(late_config),
            sandbox_config: None,
        })
        .await
        .unwrap();
    assert_eq!(dynamic_names(&fx.cri), ["kept", "never"]);
    restarted.lifecycle.sweep_leftovers().await;
    assert_eq!(dynamic_names(&fx.cri), ["kept"], "the late create is swept");
    assert!(!restarted.lifecycle.batches.buried().is_empty());
    host.advance(crate::dynamic::state::batches::TOMBSTONE_FOR);
    restarted.lifecycle.sweep_leftovers().await;
    assert!(restarted.lifecycle.batches.buried().is_empty());
    assert!(restarted.lifecycle.batches.interrupted().await.is_empty());
}

/// Defect (issue 8): the exit poller used to replace the whole id set with a listing taken before
/// an add landed, so the node's only dynamic container dropped out of it and the hiding
/// interceptors stepped aside. The listing is now merged, never written over what changed.
#[tokio::test]
async fn an_add_that_lands_while_the_poller_lists_stays_known_and_hidden() {
    use crate::testing::ListGate;
    let fx = fixture().await;
    assert!(!fx.manager.may_have_dynamic());
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let (open_tx, open_rx) = tokio::sync::oneshot::channel();
    *fx.cri.list_gate.lock().unwrap() = Some(ListGate {
        snapshot_taken: taken_tx,
        open: open_rx,
    });
    let add = async {
        // The poller's listing (no dynamic container yet) is on its way...
        taken_rx.await.unwrap();
        let added = fx
            .manager
            .add(&pod("agent"), vec![spec("tool")])
            .await
            .unwrap();
        // ...and arrives only after the add has finished.
        open_tx.send(()).unwrap();
        added[0].container_id.clone()
    };
    let (polled, id) = tokio::join!(fx.manager.poll_once(), add);
    polled.unwrap();
    assert!(fx.manager.is_dynamic_id(&id), "the new container is known");
    assert!(
        fx.manager.may_have_dynamic(),
        "the node's only dynamic container must stay hidden"
    );
    // The next listing sees it; after removal the node is quiet again.
    fx.manager.poll_once().await.unwrap();
    assert!(fx.manager.is_dynamic_id(&id));
    fx.manager
        .remove(&pod("agent"), &["tool".into()], Some(0))
        .await
        .unwrap();
    assert!(!fx.manager.may_have_dynamic());
}

/// Defect (issue 8): an add whose containers run but whose final status read failed answered
/// with an error, and the caller's retry met ALREADY_EXISTS. It answers with what it knows.
#[tokio::test]
async fn an_add_whose_status_read_fails_still_reports_its_running_containers() {
    let fx = fixture().await;
    fx.cri
        .fail_status
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let added = fx
        .manager
        .add(&pod("agent"), vec![spec("tool")])
        .await
        .unwrap();
    fx.cri
        .fail_status
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].name, "tool");
    assert_eq!(added[0].state, ContainerState::Running);
    assert!(fx.manager.is_dynamic_id(&added[0].container_id));
    assert_eq!(added[0].pod.sandbox_id, "sb-mut");
    assert_eq!(dynamic_names(&fx.cri), ["tool"]);
}

/// Defect (issue 8): the control API answered before podgraft had loaded its state (an empty
/// list, NOT_FOUND, a reservation the load could lose). Control calls now wait for the load.
#[tokio::test]
async fn control_calls_wait_for_the_load() {
    let fx = fixture_unloaded().await;
    let agent = pod("agent");
    let add = fx.manager.add(&agent, vec![spec("tool")]);
    let load = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            dynamic_names(&fx.cri).is_empty(),
            "nothing added before the load"
        );
        fx.manager.load().await.unwrap();
    };
    let (added, ()) = tokio::join!(add, load);
    assert_eq!(added.unwrap().len(), 1);

    // A load that never finishes: the call gives up with UNAVAILABLE, not a wrong answer.
    let dir = tempfile::tempdir().unwrap();
    let never = Manager::new(
        fx.cri.clone(),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            load_wait: std::time::Duration::from_millis(20),
            ..ManagerSettings::default()
        },
    );
    assert!(matches!(
        never.list(None).await,
        Err(Error::Unavailable(m)) if m.contains("loading")
    ));
}

/// Restart policies with the kubelet's back-off, on a virtual clock: Always and OnFailure
/// restart as a new attempt (the exited one kept until the new one runs, older ones removed),
/// Never does not; a removal cancels what is scheduled.
#[tokio::test]
async fn containers_restart_under_their_policy_with_the_kubelets_back_off() {
    use crate::dynamic::host::FakeHost;
    use crate::dynamic::model::spec::RestartPolicy;
    let dir = tempfile::tempdir().unwrap();
    let cri = Arc::new(MemCri::new());
    cri.add_image("busybox:1");
    let host = Arc::new(FakeHost::default());
    let manager = Manager::new(
        cri.clone(),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            host: host.clone(),
            ..ManagerSettings::default()
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
    let with = |name: &str, policy| ContainerSpec {
        restart_policy: policy,
        ..spec(name)
    };
    let added = manager
        .add(
            &pod("agent"),
            vec![
                with("crash", RestartPolicy::Always),
                with("job", RestartPolicy::OnFailure),
                with("once", RestartPolicy::Never),
            ],
        )
        .await
        .unwrap();
    let attempts = |name: &str| -> Vec<(u32, i32)> {
        let mut v: Vec<_> = cri
            .containers()
            .into_iter()
            .filter(|(_, c)| c.metadata.as_ref().unwrap().name == name)
            .map(|(_, c)| (c.metadata.unwrap().attempt, c.state))
            .collect();
        v.sort();
        v
    };
    let (running, exited) = (
        cri::ContainerState::ContainerRunning as i32,
        cri::ContainerState::ContainerExited as i32,
    );
    manager.poll_once().await.unwrap();
    cri.set_state(
        &added[0].container_id,
        cri::ContainerState::ContainerExited,
        1,
    );
    cri.set_state(
        &added[1].container_id,
        cri::ContainerState::ContainerExited,
        0,
    );
    cri.set_state(
        &added[2].container_id,
        cri::ContainerState::ContainerExited,
        1,
    );
    manager.poll_once().await.unwrap();
    manager.restart_due().await;
    assert_eq!(
        attempts("crash"),
        [(0, exited), (1, running)],
        "the first restart is at once"
    );
    assert_eq!(attempts("job"), [(0, exited)], "OnFailure: exit 0 is done");
    assert_eq!(attempts("once"), [(0, exited)], "Never");
    let listed = manager.get(&pod("agent"), "crash").await.unwrap();
    assert_eq!(listed.restart_count, 1);

    // Attempt 1 crashes: the next restart waits 10 s, then the attempt before it goes.
    let attempt1 = listed.container_id.clone();
    cri.set_state(&attempt1, cri::ContainerState::ContainerExited, 2);
    manager.poll_once().await.unwrap();
    manager.restart_due().await;
    assert_eq!(attempts("crash"), [(0, exited), (1, exited)], "backing off");
    host.advance(std::time::Duration::from_secs(9));
    manager.restart_due().await;
    assert_eq!(attempts("crash").len(), 2, "still backing off after 9 s");
    host.advance(std::time::Duration::from_secs(1));
    manager.restart_due().await;
    assert_eq!(attempts("crash"), [(1, exited), (2, running)]);
    let restarted = manager.get(&pod("agent"), "crash").await.unwrap();
    assert_eq!(restarted.restart_count, 2);
    assert!(manager.is_dynamic_id(&restarted.container_id));

    // Attempt 2 crashes; removing the container cancels the restart (now due in 20 s).
    cri.set_state(
        &restarted.container_id,
        cri::ContainerState::ContainerExited,
        1,
    );
    manager.poll_once().await.unwrap();
    manager
        .remove(&pod("agent"), &["crash".into()], Some(0))
        .await
        .unwrap();
    host.advance(std::time::Duration::from_secs(60));
    manager.restart_due().await;
    assert!(attempts("crash").is_empty(), "{:?}", attempts("crash"));
}

/// An exited kubelet container (an init container, e.g. a mesh's iptables setup holding
/// NET_ADMIN) runs nothing and lends no privilege to an added container.
#[tokio::test]
async fn exited_containers_of_the_pod_lend_no_privilege() {
    let fx = fixture().await;
    let mut info = MemCri::default_info();
    info["runtimeSpec"]["process"]["capabilities"]["bounding"] =
        serde_json::json!(["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    fx.cri
        .verbose_info
        .lock()
        .unwrap()
        .insert("init".into(), info);
    let init = fx
        .cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "sb-mut".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "init".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .unwrap();
    fx.cri
        .set_state(&init, cri::ContainerState::ContainerExited, 0);
    let net_admin = ContainerSpec {
        security: crate::dynamic::model::spec::SecurityContext {
            capabilities: crate::dynamic::model::spec::Capabilities {
                add: vec!["NET_ADMIN".into()],
                drop: vec![],
            },
            ..Default::default()
        },
        ..spec("tool")
    };
    let err = fx
        .manager
        .add(&pod("agent"), vec![net_admin])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PermissionDenied(m) if m.contains("capabilities.add")),
        "{err:?}"
    );
    // While it runs, it is part of what the pod has.
    fx.cri
        .set_state(&init, cri::ContainerState::ContainerRunning, 0);
    let admin_while_init_runs = ContainerSpec {
        security: crate::dynamic::model::spec::SecurityContext {
            capabilities: crate::dynamic::model::spec::Capabilities {
                add: vec!["NET_ADMIN".into()],
                drop: vec!["ALL".into()],
            },
            ..Default::default()
        },
        ..spec("tool")
    };
    fx.manager
        .add(&pod("agent"), vec![admin_while_init_runs])
        .await
        .unwrap();
}

/// The groups the image gives its user (`/etc/group`) are seen only once the container exists:
/// a group no container of the pod holds undoes the add.
#[tokio::test]
async fn groups_from_the_image_beyond_the_pods_undo_the_add() {
    let fx = fixture().await;
    let mut info = MemCri::default_info();
    info["runtimeSpec"]["process"]["user"]["additionalGids"] = serde_json::json!([0, 999]);
    fx.cri
        .verbose_info
        .lock()
        .unwrap()
        .insert("grouped".into(), info);
    let err = fx
        .manager
        .add(&pod("agent"), vec![spec("grouped")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PermissionDenied(m) if m.contains("[999]")),
        "{err:?}"
    );
    assert!(dynamic_names(&fx.cri).is_empty(), "the create was undone");
    fx.manager
        .add(&pod("agent"), vec![spec("plain")])
        .await
        .unwrap();
}
