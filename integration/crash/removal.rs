//! Removals killed half-way (RemoveContainers of a restartPolicy Always container, and a garbage
//! collection): the removal is recorded before its first stop, so the next podgraft finishes it
//! at load instead of restarting what was being removed. After each kill: the container is gone
//! and stays gone, its final status is kept, its name is free, the pod cgroup holds only the
//! growth of what remains (the shared invariants), and no removal is left recorded.

use super::*;

/// Every step of a removal of one container, from before its first stop to after its record.
const POINTS: &[&str] = &[
    "remove.before_destroy",
    "destroy.before_stop",
    "destroy.before_remove",
    "destroy.after_remove",
    "remove.after_destroy",
    "remove.after_record",
];

/// After a kill during the removal of `name` (its newest attempt `id`): it is finished, by the
/// load if the kill came before the removal's end was recorded (`at_load`).
async fn finished(node: &Node, w: &World, name: &str, id: &str, reason: &str, at_load: bool) {
    let log = node.podgraft_log();
    let resumed = log.lines().any(|l| {
        l.contains("finishing a removal interrupted by a crash")
            && l.contains(&format!("name={name}"))
    });
    assert_eq!(
        resumed,
        at_load,
        "{name}: finished at load?\n{}",
        tail(node)
    );
    let mut c = wait_loaded(node).await;
    let get = c
        .get_container(api::GetContainerRequest {
            pod: pod_ref(&w.pod),
            name: name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        get.container_id, id,
        "{name}: the removed container's status"
    );
    assert_eq!(get.state, api::ContainerState::Exited as i32, "{get:?}");
    assert_eq!(get.reason, reason, "{get:?}");
    assert!(get.removed_at_unix_nanos > 0, "{get:?}");
    // A restart after load would come at once (the first restart of a name does not wait).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ctd = node.runtime(false).await;
    let left: Vec<_> = dynamic_in_containerd(&mut ctd)
        .await
        .into_iter()
        .filter(|c| c.pod_sandbox_id == w.sandbox && name_of(c) == name)
        .collect();
    assert!(
        left.is_empty(),
        "{name} came back: {left:?}\n{}",
        tail(node)
    );
    let record = node
        .dir
        .path()
        .join(format!("state/sandboxes/{}.json", w.sandbox));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert!(record.get("removing").is_none(), "{record}");
    // The name is free again.
    let again = c
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(&w.pod),
            containers: vec![spec(name, "exec sleep 3600", "Never")],
        })
        .await;
    assert!(again.is_ok(), "{name} is not free: {again:?}");
    c.remove_containers(api::RemoveContainersRequest {
        pod: pod_ref(&w.pod),
        names: vec![name.into()],
        grace_period_seconds: Some(0),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_removal_killed_half_way_is_finished_not_restarted() {
    let Some(mut node) =
        Node::start_with("reconcile_interval_ms = 300\ngc_exited_after_seconds = 1")
    else {
        return;
    };
    let (pod, sandbox, _) = start_pod(
        &node,
        "rmcrash",
        MUTABLE,
        "main",
        "exec sleep 3600",
        Some(16 << 20),
    )
    .await;
    std::fs::write(limit_path(&pod), BASELINE.to_string()).unwrap();
    let mut w = World {
        pod,
        sandbox,
        pairs: Vec::new(),
        restarts: HashMap::new(),
        next: 0,
        kills: 0,
    };
    let pref = pod_ref(&w.pod);
    // A neighbour that stays: its growth must stay too.
    let mut c = wait_loaded(&node).await;
    c.add_containers(api::AddContainersRequest {
        pod: pref.clone(),
        containers: vec![spec("stays", "exec sleep 3600", "Always")],
    })
    .await
    .unwrap();
    for &point in POINTS {
        let name = w.fresh("r");
        let mut c = wait_loaded(&node).await;
        let added = c
            .add_containers(api::AddContainersRequest {
                pod: pref.clone(),
                containers: vec![spec(&name, "exec sleep 3600", "Always")],
            })
            .await
            .unwrap()
            .into_inner();
        let id = added.containers[0].container_id.clone();
        let (p, names) = (pref.clone(), vec![name.clone()]);
        kill_at(&mut node, &mut w, point, 1, |c| remove(c, p, names)).await;
        let at_load = point != "remove.after_record";
        finished(&node, &w, &name, &id, "Removed", at_load).await;
    }
    // A garbage collection, killed before its first stop: a Never container that exited.
    let name = w.fresh("g");
    let (p, s) = (pref.clone(), spec(&name, "exit 0", "Never"));
    kill_at(
        &mut node,
        &mut w,
        "remove.before_destroy",
        1,
        |c| async move {
            add(c, p, vec![s]).await;
            // The kill comes from the collection, a second after the exit is seen.
            tokio::time::sleep(Duration::from_secs(20)).await;
        },
    )
    .await;
    let mut ctd = node.runtime(false).await;
    let stays = dynamic_in_containerd(&mut ctd).await;
    assert_eq!(stays.len(), 1, "{stays:?}");
    let mut c = wait_loaded(&node).await;
    let kept = c
        .get_container(api::GetContainerRequest {
            pod: pref.clone(),
            name: name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!kept.container_id.is_empty(), "{kept:?}");
    assert_eq!(kept.exit_code, 0, "{kept:?}");
    finished(&node, &w, &name, &kept.container_id, "Completed", true).await;
}
