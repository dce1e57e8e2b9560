//! Removals cut short by a crash (kill -9), against the in-memory CRI on a virtual clock: the
//! removal is recorded before its first stop, and the next podgraft finishes it at load (before
//! any restart is resumed) exactly as it would have finished: containers gone, final status kept,
//! reservation released, the name free again.

use std::sync::Arc;
use std::time::Duration;

use super::termination_tests::{Fx, agent, events, fixture, spec};
use crate::cri::Cri;
use crate::dynamic::host::FakeHost;
use crate::dynamic::model::keys::DYNAMIC_LABEL;
use crate::dynamic::model::spec::RestartPolicy;
use crate::dynamic::model::{ContainerState, EventKind};
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Manager, ManagerSettings};

fn live(cri: &crate::testing::MemCri) -> Vec<String> {
    let mut v: Vec<_> = cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.metadata.unwrap().name)
        .collect();
    v.sort();
    v
}

/// The sandbox record as a new podgraft would read it.
fn record_on_disk(fx: &Fx) -> serde_json::Value {
    let path = fx.dir.path().join("sandboxes/sb.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The first step of a removal of `name`, as `remove_names` takes it: the removal recorded
/// (with the final status read before any stop). Returns the IDs of its containers, for the
/// test to do what the dead podgraft did before its kill.
async fn removal_begun(fx: &Fx, name: &str, collected: &str) -> Vec<String> {
    let lc = &fx.manager.lifecycle;
    let sandbox = lc.store.get("sb").unwrap();
    let found = lc.find("sb", name).await.unwrap();
    let view = lc.final_status(&sandbox, &found).await;
    let pending = lc.pending_removal(name, view, collected);
    lc.store
        .begin_removal(&sandbox, vec![pending])
        .await
        .unwrap();
    found.into_iter().map(|c| c.id).collect()
}

/// The next podgraft, on the same state directory and containerd.
async fn restarted(fx: &Fx, host: Arc<FakeHost>) -> Manager {
    let manager = Manager::new(
        fx.cri.clone(),
        SandboxStore::new(fx.dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            host,
            gc_exited_after: Duration::from_secs(60),
            ..ManagerSettings::default()
        },
    );
    manager.load().await.unwrap();
    manager
}

#[tokio::test]
async fn a_removal_killed_between_stop_and_remove_is_finished_not_restarted() {
    let fx = fixture(ManagerSettings::default()).await;
    fx.manager
        .add(
            &agent(),
            vec![
                spec("doomed", RestartPolicy::Always),
                spec("kept", RestartPolicy::Always),
            ],
        )
        .await
        .unwrap();
    fx.manager.poll_once().await.unwrap();
    let ids = removal_begun(&fx, "doomed", "").await;
    assert_eq!(
        record_on_disk(&fx)["version"],
        3,
        "a record with a removal under way is refused by builds that would ignore it"
    );
    // Killed after StopContainer, before RemoveContainer: an exited container, policy Always.
    for id in &ids {
        fx.cri.stop_container(id, 0).await.unwrap();
    }

    let host = Arc::new(FakeHost::default());
    let again = restarted(&fx, host.clone()).await;
    assert_eq!(live(&fx.cri), ["kept"], "the removal is finished at load");
    let lc = &again.lifecycle;
    assert!(!lc.ledger.holds("sb", "doomed"), "reservation released");
    assert!(lc.ledger.holds("sb", "kept"));
    let kept = again.get(&agent(), "doomed").await.unwrap();
    assert_eq!(kept.state, ContainerState::Exited);
    assert_eq!(kept.container_id, ids[0]);
    assert_eq!(
        kept.reason, "Removed",
        "it was running when its removal began"
    );
    assert!(kept.removed_at_unix_nanos > 0);
    let removed = events(&again, EventKind::Removed);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].name, "doomed");
    let record = record_on_disk(&fx);
    assert!(record.get("removing").is_none(), "{record}");
    assert_eq!(record["version"], 2);
    assert_eq!(record["removed_names"], serde_json::json!(["doomed"]));

    // Nothing brings it back, and the name is free.
    host.advance(Duration::from_secs(600));
    again.poll_once().await.unwrap();
    again.restart_due().await;
    assert_eq!(live(&fx.cri), ["kept"]);
    again
        .add(&agent(), vec![spec("doomed", RestartPolicy::Always)])
        .await
        .unwrap();
    assert_eq!(live(&fx.cri), ["doomed", "kept"]);
}

#[tokio::test]
async fn a_collection_killed_after_its_removal_keeps_the_status_it_took() {
    let fx = fixture(ManagerSettings::default()).await;
    let added = fx
        .manager
        .add(&agent(), vec![spec("job", RestartPolicy::Never)])
        .await
        .unwrap();
    fx.manager.poll_once().await.unwrap();
    fx.cri.set_exited(&added[0].container_id, 3, "Error");
    fx.manager.poll_once().await.unwrap();
    let ids = removal_begun(&fx, "job", "Exited").await;
    // Killed after RemoveContainer, before the status was kept: containerd no longer has it,
    // the record still does.
    for id in &ids {
        fx.cri.remove_container(id).await.unwrap();
    }

    let again = restarted(&fx, Arc::new(FakeHost::default())).await;
    assert!(live(&fx.cri).is_empty());
    let kept = again.get(&agent(), "job").await.unwrap();
    assert_eq!(
        (kept.state, kept.exit_code, kept.reason.as_str()),
        (ContainerState::Exited, 3, "Error")
    );
    let collected = events(&again, EventKind::Collected);
    assert_eq!(collected.len(), 1);
    assert_eq!(collected[0].reason, "Exited");
    assert!(record_on_disk(&fx).get("removing").is_none());
    // Finished once: a further start has nothing left to do.
    let third = restarted(&fx, Arc::new(FakeHost::default())).await;
    assert!(events(&third, EventKind::Collected).is_empty());
    assert_eq!(
        third.get(&agent(), "job").await.unwrap().container_id,
        ids[0]
    );
}

#[tokio::test]
async fn a_removal_that_completes_leaves_nothing_under_way() {
    let fx = fixture(ManagerSettings::default()).await;
    fx.manager
        .add(&agent(), vec![spec("tool", RestartPolicy::Always)])
        .await
        .unwrap();
    fx.manager
        .remove(&agent(), &["tool".into()], Some(0))
        .await
        .unwrap();
    let record = record_on_disk(&fx);
    assert!(record.get("removing").is_none(), "{record}");
    assert_eq!(record["version"], 2);
    assert_eq!(record["removed_statuses"][0]["name"], "tool");
}

#[tokio::test(start_paused = true)]
async fn a_removal_recovery_cannot_finish_at_load_is_retried_by_the_supervisor() {
    let fx = fixture(ManagerSettings::default()).await;
    fx.manager
        .add(&agent(), vec![spec("doomed", RestartPolicy::Always)])
        .await
        .unwrap();
    fx.manager.poll_once().await.unwrap();
    let ids = removal_begun(&fx, "doomed", "").await;
    // containerd refuses to stop or remove it for as long as the next start's recovery tries.
    fx.cri.fail_destroy.lock().unwrap().insert("doomed".into());

    let host = Arc::new(FakeHost::default());
    let again = restarted(&fx, host.clone()).await;
    assert_eq!(
        live(&fx.cri),
        ["doomed"],
        "containerd still has it, running"
    );
    assert_eq!(events(&again, EventKind::Failed).len(), 1, "reported");
    assert_eq!(record_on_disk(&fx)["removing"][0]["name"], "doomed");

    // It exits meanwhile: the removal still holds the name, so it is not restarted.
    fx.cri.set_exited(&ids[0], 1, "Error");
    again.poll_once().await.unwrap();
    host.advance(Duration::from_secs(600));
    again.restart_due().await;
    assert_eq!(live(&fx.cri), ["doomed"]);
    assert!(events(&again, EventKind::Restarting).is_empty());

    // containerd recovers; the supervisor's next sweep finishes the removal.
    fx.cri.fail_destroy.lock().unwrap().clear();
    again.lifecycle.retry_stranded_removals().await;
    assert!(live(&fx.cri).is_empty());
    assert!(record_on_disk(&fx).get("removing").is_none());
    assert!(!again.lifecycle.ledger.holds("sb", "doomed"));
    assert_eq!(events(&again, EventKind::Removed).len(), 1);
    assert_eq!(
        again.get(&agent(), "doomed").await.unwrap().reason,
        "Removed"
    );
    // Done once: a further sweep has nothing left.
    again.lifecycle.retry_stranded_removals().await;
    assert_eq!(events(&again, EventKind::Removed).len(), 1);
}
