//! One garbage-collection sweep and one exit poll over 1,000 dynamic containers, side by side in
//! one run, on the in-process MemCri backend (what podgraft itself costs, without containerd's
//! listing time), plus the resident memory per dynamic container (of this process: podgraft's
//! state and MemCri's copy of the containers together, so an upper bound).
//!
//!     cargo bench --bench gc        (BENCH_SCALE=0.5 for fewer samples)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Samples, scale, us};
use k8s_cri::v1 as cri;
use podgraft::dynamic::model::keys::DYNAMIC_LABEL;
use podgraft::dynamic::model::{ContainerSpec, PodSelector};
use podgraft::dynamic::state::SandboxStore;
use podgraft::dynamic::{Manager, ManagerSettings};
use podgraft::testing::MemCri;

const PODS: usize = 20;
const PER_POD: usize = 50;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let cri = Arc::new(MemCri::new());
    cri.add_image("busybox:1");
    let manager = Manager::new(
        cri.clone(),
        SandboxStore::new(dir.path(), ["podgraft".to_string()]),
        ManagerSettings {
            // Long enough that no sweep acts: the cost of looking, not of removing.
            gc_exited_after: Duration::from_secs(3600),
            ..ManagerSettings::default()
        },
    );
    manager.load().await.unwrap();
    for p in 0..PODS {
        let (id, name) = (format!("sb{p}"), format!("pod{p}"));
        let config = cri.add_pod(&id, "podgraft", "default", &name, &format!("uid-{p}"));
        manager
            .pod_started(
                &id,
                &cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: "podgraft".into(),
                },
            )
            .await;
    }
    let before = rss_kib();
    // Adds take at most 32 containers: two batches of 25 per pod.
    for (p, half) in (0..PODS).flat_map(|p| [(p, 0), (p, 1)]) {
        let specs = (half * PER_POD / 2..(half + 1) * PER_POD / 2)
            .map(|i| ContainerSpec {
                name: format!("c{i}"),
                image: "busybox:1".into(),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            })
            .collect();
        let pod = PodSelector::Name {
            namespace: "default".into(),
            name: format!("pod{p}"),
        };
        manager.add(&pod, specs).await.unwrap();
    }
    manager.poll_once().await.unwrap();
    let after = rss_kib();
    // A tenth of them exited (and seen): the sweep considers them, the poll has news for none.
    let dynamic: Vec<String> = cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.labels.contains_key(DYNAMIC_LABEL))
        .map(|(_, c)| c.id)
        .collect();
    for id in dynamic.iter().step_by(10) {
        cri.set_exited(id, 0, "Completed");
    }
    let exited: Vec<String> = cri
        .containers()
        .into_iter()
        .filter(|(_, c)| c.state == cri::ContainerState::ContainerExited as i32)
        .map(|(_, c)| c.id)
        .collect();
    manager.poll_once().await.unwrap();
    let n = PODS * PER_POD;
    let rounds = scale(200);
    let (mut poll, mut sweep) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let t = Instant::now();
        manager.poll_once().await.unwrap();
        poll.0.push(t.elapsed());
        let t = Instant::now();
        let s = manager.collect_garbage().await;
        sweep.0.push(t.elapsed());
        assert!(s.exited.is_empty() && s.orphaned.is_empty() && s.unknown.is_empty());
    }
    println!(
        "{n} dynamic containers ({} exited), {rounds} rounds each, in-process MemCri",
        exited.len()
    );
    println!("{:<34} {:>10} {:>10}", "", "p50 µs", "p99 µs");
    for (what, s) in [
        ("exit poll (poll_once)", &mut poll),
        ("GC sweep (collect_garbage)", &mut sweep),
    ] {
        println!("{what:<34} {:>10.0} {:>10.0}", us(s.pct(50)), us(s.pct(99)));
    }
    println!(
        "RSS: {before} KiB before, {after} KiB after: {:.1} KiB per dynamic container (podgraft + MemCri)",
        (after.saturating_sub(before)) as f64 / n as f64
    );
}
