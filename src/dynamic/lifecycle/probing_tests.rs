//! Probes follow each attempt's life (the in-memory CRI answers every exec with exit 0).

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

use crate::dynamic::model::spec::{Probe, ProbeHandler};
use crate::dynamic::model::{ContainerSpec, EventKind, PodSelector};
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Manager, ManagerSettings};
use crate::testing::MemCri;

fn exec_probe() -> Option<Probe> {
    Some(Probe {
        handler: ProbeHandler::Exec {
            command: vec!["true".into()],
        },
        initial_delay_seconds: 0,
        timeout_seconds: 1,
        period_seconds: 1,
        success_threshold: 1,
        failure_threshold: 1,
        termination_grace_period_seconds: None,
    })
}

fn spec(name: &str, readiness: Option<Probe>) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "busybox:1".into(),
        readiness_probe: readiness,
        ..Default::default()
    }
}

#[tokio::test]
async fn probes_run_while_an_attempt_runs_and_decide_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemCri::new());
    mem.add_image("busybox:1");
    let manager = Manager::new(
        mem.clone(),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings::default(),
    );
    let config = mem.add_pod("sb", "podgraft", "default", "agent", "uid-agent");
    let req = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: "podgraft".into(),
    };
    manager.pod_started("sb", &req).await;
    manager.load().await.unwrap();
    let pod = PodSelector::Sandbox("sb".into());
    let added = manager
        .add(
            &pod,
            vec![spec("probed", exec_probe()), spec("plain", None)],
        )
        .await
        .unwrap();
    // Readiness starts false; a container without probes is ready and started, and gets no task.
    assert!(!added[0].ready && added[0].started);
    assert!(added[1].ready && added[1].started);
    let probes = &manager.lifecycle.probes;
    assert_eq!(probes.len(), 1);
    // The first probe runs at once (no initial delay) on this runtime.
    let mut ready = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready = manager.get(&pod, "probed").await.unwrap().ready;
        if ready {
            break;
        }
    }
    assert!(ready, "exec exit 0 makes it ready");
    let events: Vec<EventKind> = manager
        .events()
        .subscribe(1)
        .backlog
        .iter()
        .filter(|e| e.name == "probed")
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        events,
        [EventKind::Added, EventKind::Started, EventKind::Ready]
    );
    // The exit stops its probes; so does a removal.
    let probed = added[0].container_id.clone();
    mem.set_state(&probed, cri::ContainerState::ContainerExited, 1);
    manager.poll_once().await.unwrap();
    assert_eq!(probes.len(), 0);
    let view = manager.get(&pod, "probed").await.unwrap();
    assert!(
        !view.ready && !view.started,
        "an exited container is neither"
    );
    probes.start(crate::dynamic::probes::Target {
        container_id: added[1].container_id.clone(),
        pod: added[1].pod.clone(),
        name: "plain".into(),
        spec: spec("plain", exec_probe()),
        running_for: Duration::ZERO,
    });
    assert_eq!(probes.len(), 1);
    manager
        .remove(&pod, &["plain".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(probes.len(), 0);
}
