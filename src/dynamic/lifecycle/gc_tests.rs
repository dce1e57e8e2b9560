//! Garbage collection through the manager against the in-memory CRI on a virtual clock: the
//! delay before exited containers go, what restarts never goes, kept final statuses (capped,
//! persisted, reloaded), name reuse, orphans and unknown containers.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::termination_tests::{Fx, agent, events, fixture, spec};
use crate::cri::Cri;
use crate::dynamic::model::keys::{CONTAINER_NAME_LABEL, DYNAMIC_LABEL};
use crate::dynamic::model::spec::RestartPolicy;
use crate::dynamic::model::{ContainerState, EventKind};
use crate::dynamic::state::{REMOVED_STATUSES_KEPT, SandboxStore};
use crate::dynamic::{Manager, ManagerSettings};

fn settings() -> ManagerSettings {
    ManagerSettings {
        gc_exited_after: Duration::from_secs(60),
        ..ManagerSettings::default()
    }
}

fn live(fx: &Fx) -> Vec<String> {
    let mut v: Vec<_> = fx
        .cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.metadata.unwrap().name)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn exited_containers_that_will_not_restart_go_after_the_delay_and_keep_their_status() {
    let fx = fixture(settings()).await;
    let added = fx
        .manager
        .add(
            &agent(),
            vec![
                spec("once", RestartPolicy::Never),
                spec("job", RestartPolicy::OnFailure),
                spec("retry", RestartPolicy::OnFailure),
                spec("crash", RestartPolicy::Always),
            ],
        )
        .await
        .unwrap();
    let lc = &fx.manager.lifecycle;
    assert!(lc.ledger.holds("sb", "once"));
    fx.manager.poll_once().await.unwrap();
    for (c, code) in added.iter().zip([1, 0, 1, 1]) {
        fx.cri.set_exited(&c.container_id, code, "Error");
    }
    // An exit the poller has not seen yet is never collected.
    assert_eq!(fx.manager.collect_garbage().await.exited, []);
    fx.manager.poll_once().await.unwrap();
    fx.manager.restart_due().await;
    assert_eq!(
        fx.manager.collect_garbage().await.exited,
        [],
        "the delay starts"
    );
    fx.host.advance(Duration::from_secs(59));
    assert_eq!(fx.manager.collect_garbage().await.exited, []);
    fx.host.advance(Duration::from_secs(1));
    let mut swept = fx.manager.collect_garbage().await.exited;
    swept.sort();
    assert_eq!(
        swept,
        [("sb".into(), "job".into()), ("sb".into(), "once".into())]
    );
    assert_eq!(live(&fx), ["crash", "crash", "retry", "retry"]);
    assert!(!lc.ledger.holds("sb", "once"), "reservation released");
    let collected = events(&fx.manager, EventKind::Collected);
    assert_eq!(collected.len(), 2);
    assert!(collected.iter().all(|e| e.reason == "Exited"));

    // The final status stays readable; the name is free again.
    let kept = fx.manager.get(&agent(), "once").await.unwrap();
    assert_eq!(
        (kept.state, kept.exit_code, kept.reason.as_str()),
        (ContainerState::Exited, 1, "Error")
    );
    assert_eq!(kept.container_id, added[0].container_id);
    assert!(kept.removed_at_unix_nanos > 0);
    assert_eq!(kept.spec.restart_policy, RestartPolicy::Never);
    let removed = fx.manager.list_removed(None).await.unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(fx.manager.list(None).await.unwrap().len(), 2, "live only");
    let again = fx
        .manager
        .add(&agent(), vec![spec("once", RestartPolicy::Never)])
        .await
        .unwrap();
    let now = fx.manager.get(&agent(), "once").await.unwrap();
    assert_eq!(
        now.container_id, again[0].container_id,
        "a live container wins"
    );
    assert_eq!(now.removed_at_unix_nanos, 0);
}

async fn names(m: &Manager) -> Vec<String> {
    let mut v: Vec<_> = m
        .list_removed(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn ten_removed_statuses_are_kept_per_pod_and_survive_a_restart() {
    let fx = fixture(settings()).await;
    for n in 0..12 {
        let name = format!("c{n}");
        fx.manager
            .add(&agent(), vec![spec(&name, RestartPolicy::Never)])
            .await
            .unwrap();
        fx.manager.remove(&agent(), &[name], Some(0)).await.unwrap();
    }
    let expected: Vec<String> = {
        let mut v: Vec<_> = (2..12).map(|n| format!("c{n}")).collect();
        v.sort();
        v
    };
    assert_eq!(names(&fx.manager).await, expected);
    assert_eq!(expected.len(), REMOVED_STATUSES_KEPT);
    let kept = fx.manager.get(&agent(), "c11").await.unwrap();
    assert_eq!(kept.reason, "Removed", "it was running when removed");
    assert!(matches!(
        fx.manager.get(&agent(), "c0").await,
        Err(crate::dynamic::Error::NotFound(_))
    ));

    // A new podgraft on the same state reads them back.
    let again = Manager::new(
        fx.cri.clone(),
        SandboxStore::new(fx.dir.path(), ["podgraft".to_string()]),
        settings(),
    );
    again.load().await.unwrap();
    assert_eq!(names(&again).await, expected);
    // They go with the pod.
    again.forget_pod("sb").await;
    assert!(!fx.dir.path().join("sandboxes/sb.json").exists());
}

#[tokio::test]
async fn orphans_of_stopped_or_vanished_pods_are_collected() {
    let fx = fixture(settings()).await;
    fx.manager
        .add(&agent(), vec![spec("tool", RestartPolicy::Always)])
        .await
        .unwrap();
    fx.manager.poll_once().await.unwrap();
    fx.cri
        .set_sandbox_state("sb", Some(cri::PodSandboxState::SandboxNotready));
    let sweep = fx.manager.collect_garbage().await;
    assert_eq!(sweep.orphaned.len(), 1);
    assert!(live(&fx).is_empty());
    assert!(!fx.manager.lifecycle.ledger.holds("sb", "tool"));
    let collected = events(&fx.manager, EventKind::Collected);
    assert_eq!(collected[0].reason, "Orphaned");
    assert_eq!(collected[0].pod.as_ref().unwrap().name, "agent");
    assert!(!fx.manager.is_dynamic_id(&collected[0].container_id));

    // A pod removed behind podgraft's back is forgotten once its containers are collected.
    fx.cri
        .set_sandbox_state("sb", Some(cri::PodSandboxState::SandboxReady));
    fx.manager
        .add(&agent(), vec![spec("tool", RestartPolicy::Never)])
        .await
        .unwrap();
    fx.cri.set_sandbox_state("sb", None);
    let sweep = fx.manager.collect_garbage().await;
    assert_eq!(sweep.orphaned.len(), 1);
    assert_eq!(sweep.forgotten, ["sb"]);
    assert!(fx.manager.store().get("sb").is_none());
    assert!(!fx.manager.lifecycle.ledger.holds("sb", "tool"));
}

#[tokio::test]
async fn unknown_containers_are_adopted_only_with_a_spec_an_admission_record_and_a_known_pod() {
    let fx = fixture(settings()).await;
    let added = fx
        .manager
        .add(&agent(), vec![spec("tool", RestartPolicy::Never)])
        .await
        .unwrap();
    let (_, made) = fx
        .cri
        .containers()
        .into_iter()
        .find(|(_, c)| c.id == added[0].container_id)
        .unwrap();
    let create = |name: &str, annotations: std::collections::HashMap<String, String>| {
        let cri = fx.cri.clone();
        let name = name.to_string();
        async move {
            let id = cri
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: "sb".into(),
                    config: Some(cri::ContainerConfig {
                        metadata: Some(cri::ContainerMetadata {
                            name: name.clone(),
                            attempt: 0,
                        }),
                        image: Some(cri::ImageSpec {
                            image: "busybox:1".into(),
                            ..Default::default()
                        }),
                        labels: [
                            (DYNAMIC_LABEL.to_string(), "true".to_string()),
                            (CONTAINER_NAME_LABEL.to_string(), name),
                        ]
                        .into(),
                        annotations,
                        ..Default::default()
                    }),
                    sandbox_config: None,
                })
                .await
                .unwrap();
            cri.start_container(&id).await.unwrap();
            id
        }
    };
    // No spec: stopped and removed.
    let stray = create("stray", Default::default()).await;
    // The spec and admission record of a real one, in a pod podgraft knows: adopted.
    let mut annotations = made.annotations.clone();
    let s = spec("twin", RestartPolicy::Never);
    annotations.insert(
        crate::dynamic::model::keys::SPEC_ANNOTATION.into(),
        fx.manager.lifecycle.specs.encode(&s),
    );
    let twin = create("twin", annotations).await;
    fx.manager.poll_once().await.unwrap();
    let sweep = fx.manager.collect_garbage().await;
    assert_eq!(sweep.unknown, std::slice::from_ref(&stray));
    assert_eq!(sweep.adopted, std::slice::from_ref(&twin));
    assert_eq!(live(&fx), ["tool", "twin"]);
    assert!(fx.manager.lifecycle.ledger.holds("sb", "twin"));
    let collected = events(&fx.manager, EventKind::Collected);
    assert_eq!(
        (
            collected[0].reason.as_str(),
            collected[0].container_id.as_str()
        ),
        ("Unknown", stray.as_str())
    );
    // Adopted: collected like any other once it exits.
    fx.cri.set_exited(&twin, 0, "Completed");
    fx.manager.poll_once().await.unwrap();
    fx.manager.collect_garbage().await;
    fx.host.advance(Duration::from_secs(60));
    assert_eq!(
        fx.manager.collect_garbage().await.exited,
        [("sb".to_string(), "twin".to_string())]
    );
}

#[tokio::test]
async fn attempts_older_than_the_previous_one_go_and_the_newest_two_stay() {
    let fx = fixture(settings()).await;
    let added = fx
        .manager
        .add(&agent(), vec![spec("crash", RestartPolicy::Always)])
        .await
        .unwrap();
    let first = added[0].container_id.clone();
    let status = fx.cri.container_status(&first, false).await.unwrap();
    let st = status.status.unwrap();
    let labels = fx
        .cri
        .containers()
        .into_iter()
        .find(|(_, c)| c.id == first)
        .unwrap()
        .1
        .labels;
    // Two later attempts, as a restart makes them, and a kill that cut short the removal of the
    // first: attempts 0 and 1 exited, 2 running.
    let mut ids = vec![first.clone()];
    for attempt in 1..=2 {
        let id = fx
            .cri
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: "sb".into(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "crash".into(),
                        attempt,
                    }),
                    image: Some(cri::ImageSpec {
                        image: "busybox:1".into(),
                        ..Default::default()
                    }),
                    labels: labels.clone(),
                    annotations: st.annotations.clone(),
                    ..Default::default()
                }),
                sandbox_config: None,
            })
            .await
            .unwrap();
        fx.cri.start_container(&id).await.unwrap();
        ids.push(id);
    }
    fx.cri.set_exited(&ids[0], 1, "Error");
    fx.cri.set_exited(&ids[1], 1, "Error");
    let sweep = fx.manager.collect_garbage().await;
    assert_eq!(sweep.superseded, [ids[0].clone()]);
    let left: Vec<String> = fx
        .cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.id)
        .collect();
    assert!(!left.contains(&ids[0]), "{left:?}");
    assert!(left.contains(&ids[1]) && left.contains(&ids[2]), "{left:?}");
    // The name keeps its reservation: its newest attempt runs.
    assert!(fx.manager.lifecycle.ledger.holds("sb", "crash"));
    assert!(fx.manager.collect_garbage().await.superseded.is_empty());
}
