//! Hiding under load (issue 8): kubelet-like clients list through podgraft in tight loops while the
//! node's only dynamic container is added and removed over and over, so podgraft keeps going
//! between "no dynamic container on the node" (hiding interceptors step aside) and "one being added
//! or running" (they filter). Not one listed entry, stats entry, sandbox status entry or container
//! status may show a dynamic container.
//!
//! The defect this guards against: the exit poller replaced its whole set of dynamic ids with a
//! listing it had awaited, so an add landing in between could drop out of the set; with no other
//! dynamic container on the node, podgraft then believed the node had none and relayed listings
//! untouched until the next poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::api;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::start_pod;

/// The label every dynamic container carries (spelled out: the test checks the wire contract, not
/// podgraft's constant).
const DYNAMIC_LABEL: &str = "podgraft.io/dynamic";

/// Minimums of one run; the run goes on until both are reached (or [`TIME_BOUND`] passes, which
/// fails the test). `PODGRAFT_STRESS_CYCLES` raises the cycle count for a longer soak (the time
/// bound grows in proportion).
const MIN_LISTING_CALLS: u64 = 3000;
const MIN_CYCLES: u64 = 40;
const TIME_BOUND: Duration = Duration::from_secs(75);
/// A stuck add or remove fails with a message instead of running into nextest's timeout.
const CALL_BOUND: Duration = Duration::from_secs(20);

/// The kubelet's kinds of call, as the clients below make them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    ListAll,
    ListByPodUid,
    ListStats,
    SandboxStatus,
    ContainerStatus,
}

const LISTINGS: [Kind; 4] = [
    Kind::ListAll,
    Kind::ListByPodUid,
    Kind::ListStats,
    Kind::SandboxStatus,
];
const KINDS: [Kind; 5] = [
    Kind::ListAll,
    Kind::ListByPodUid,
    Kind::ListStats,
    Kind::SandboxStatus,
    Kind::ContainerStatus,
];

#[derive(Default)]
struct Counts {
    /// Calls made.
    calls: AtomicU64,
    /// Calls that began and ended while the cycler knew a dynamic container to exist (between its
    /// add's answer and its remove request): the calls that prove hiding was at work.
    while_present: AtomicU64,
    /// Calls whose answer showed a dynamic container, or that failed.
    failed: AtomicU64,
}

/// What the clients and the cycler share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// (cycle, id) of the dynamic container while it surely exists.
    present: Mutex<Option<(u64, String)>>,
    /// Every dynamic container id an add returned.
    dynamic_ids: Mutex<HashSet<String>>,
    /// Every container id a listing returned.
    seen: Mutex<HashSet<String>>,
    counts: HashMap<Kind, Counts>,
    /// Sandbox status entries seen (containerd 1.6 may leave `containers_statuses` empty).
    sandbox_entries: AtomicU64,
    /// Descriptions of the first failures.
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            counts: KINDS.iter().map(|k| (*k, Counts::default())).collect(),
            ..Default::default()
        }
    }

    fn present(&self) -> Option<(u64, String)> {
        self.present.lock().unwrap().clone()
    }

    /// Whether a listed container (id, labels) is dynamic, by its label or by an id an add
    /// returned. Every id is remembered, for the ContainerStatus client and the final check.
    fn is_dynamic(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        self.seen.lock().unwrap().insert(id.to_string());
        labels.contains_key(DYNAMIC_LABEL) || self.dynamic_ids.lock().unwrap().contains(id)
    }

    /// Checks a listing's (id, labels) entries: none dynamic and, where `expect` is given, exactly
    /// that container (a listing that lost the kubelet's container would be wrong too).
    fn check_listing<'a>(
        &self,
        kind: Kind,
        entries: impl IntoIterator<Item = (&'a str, &'a HashMap<String, String>)>,
        expect: Option<&str>,
    ) -> Result<(), String> {
        let entries: Vec<_> = entries.into_iter().collect();
        let leaked: Vec<_> = entries
            .iter()
            .filter(|(id, labels)| self.is_dynamic(id, labels))
            .collect();
        let ids: Vec<_> = entries.iter().map(|(id, _)| *id).collect();
        if !leaked.is_empty() {
            Err(format!("{kind:?} showed dynamic {leaked:?}"))
        } else if expect.is_some_and(|want| ids != [want]) {
            Err(format!("{kind:?} listed {ids:?}"))
        } else {
            Ok(())
        }
    }

    /// Records one finished call. `during` is what [`Shared::present`] said when the call began,
    /// if the call concerned that container.
    fn record(&self, kind: Kind, during: Option<(u64, String)>, outcome: Result<(), String>) {
        let counts = &self.counts[&kind];
        counts.calls.fetch_add(1, Ordering::Relaxed);
        if during.is_some() && during == self.present() {
            counts.while_present.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(what) = outcome {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            let mut failures = self.failures.lock().unwrap();
            if failures.len() < 10 {
                failures.push(what);
            }
        }
    }

    fn calls(&self, kind: Kind) -> u64 {
        self.counts[&kind].calls.load(Ordering::Relaxed)
    }

    fn while_present(&self, kind: Kind) -> u64 {
        self.counts[&kind].while_present.load(Ordering::Relaxed)
    }

    fn failed(&self, kind: Kind) -> u64 {
        self.counts[&kind].failed.load(Ordering::Relaxed)
    }

    fn listing_calls(&self) -> u64 {
        LISTINGS.iter().map(|k| self.calls(*k)).sum()
    }
}

/// What the kubelet-like clients know of the pod.
#[derive(Clone)]
struct PodFacts {
    sandbox: String,
    uid: String,
    /// The kubelet's own container, the only one any listing may show.
    container: String,
}

/// One kubelet-like client on its own connection: makes `kind` of call back to back until told
/// to stop, checking every answer.
async fn kubelet_client(
    kind: Kind,
    mut cri: RuntimeServiceClient<Channel>,
    shared: Arc<Shared>,
    pod: PodFacts,
) {
    let mut status_targets: Vec<String> = Vec::new();
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        let before = shared.present();
        let mut during = before.clone();
        let outcome = match kind {
            Kind::ListAll | Kind::ListByPodUid => {
                let filter = (kind == Kind::ListByPodUid).then(|| cri::ContainerFilter {
                    label_selector: [("io.kubernetes.pod.uid".to_string(), pod.uid.clone())].into(),
                    ..Default::default()
                });
                match cri
                    .list_containers(cri::ListContainersRequest { filter })
                    .await
                {
                    Ok(list) => shared.check_listing(
                        kind,
                        (list.into_inner().containers.iter()).map(|c| (c.id.as_str(), &c.labels)),
                        Some(&pod.container),
                    ),
                    Err(e) => Err(format!("{kind:?} failed: {e}")),
                }
            }
            Kind::ListStats => {
                match cri
                    .list_container_stats(cri::ListContainerStatsRequest { filter: None })
                    .await
                {
                    Ok(stats) => {
                        let attributes: Vec<_> = (stats.into_inner().stats.into_iter())
                            .map(|s| s.attributes.unwrap_or_default())
                            .collect();
                        shared.check_listing(
                            kind,
                            attributes.iter().map(|a| (a.id.as_str(), &a.labels)),
                            Some(&pod.container),
                        )
                    }
                    Err(e) => Err(format!("{kind:?} failed: {e}")),
                }
            }
            Kind::SandboxStatus => {
                match cri
                    .pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id: pod.sandbox.clone(),
                        verbose: false,
                    })
                    .await
                {
                    Ok(status) => {
                        let status = status.into_inner();
                        shared
                            .sandbox_entries
                            .fetch_add(status.containers_statuses.len() as u64, Ordering::Relaxed);
                        let ready = status.status.as_ref().map(|s| s.state)
                            == Some(cri::PodSandboxState::SandboxReady as i32);
                        // Whether containerd fills containers_statuses at all, no entry may be
                        // dynamic; the kubelet's own may be missing (containerd 1.6 leaves it out).
                        shared
                            .check_listing(
                                kind,
                                (status.containers_statuses.iter())
                                    .map(|c| (c.id.as_str(), &c.labels)),
                                None,
                            )
                            .and_then(|()| {
                                ready
                                    .then_some(())
                                    .ok_or_else(|| format!("sandbox not ready: {status:?}"))
                            })
                    }
                    Err(e) => Err(format!("{kind:?} failed: {e}")),
                }
            }
            Kind::ContainerStatus => {
                // In turn: the dynamic container of the moment (hidden: NOT_FOUND, as containerd
                // answers for a container it does not have), and the ids listings have returned.
                if status_targets.is_empty() || n % 64 == 0 {
                    status_targets = shared.seen.lock().unwrap().iter().cloned().collect();
                    status_targets.sort();
                }
                let target = match &before {
                    Some((_, id)) if n % 2 == 0 => id.clone(),
                    _ if !status_targets.is_empty() => {
                        status_targets[n / 2 % status_targets.len()].clone()
                    }
                    _ => pod.container.clone(),
                };
                n += 1;
                // Only a call about the present container counts as hiding at work.
                if before.as_ref().is_none_or(|(_, id)| *id != target) {
                    during = None;
                }
                let dynamic = shared.dynamic_ids.lock().unwrap().contains(&target);
                let answer = cri
                    .container_status(cri::ContainerStatusRequest {
                        container_id: target.clone(),
                        verbose: false,
                    })
                    .await;
                match (dynamic, answer) {
                    (true, Err(e)) if e.code() == Code::NotFound => Ok(()),
                    (true, other) => Err(format!(
                        "ContainerStatus of dynamic container {target}: {:?}",
                        other.map(|r| r.into_inner().status)
                    )),
                    (false, Ok(status)) => {
                        let status = status.into_inner().status.unwrap_or_default();
                        shared.check_listing(kind, [(status.id.as_str(), &status.labels)], None)
                    }
                    (false, Err(e)) => Err(format!("ContainerStatus of {target} failed: {e}")),
                }
            }
        };
        shared.record(kind, during, outcome);
    }
}

fn spec(name: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

/// The node's dynamic containers as containerd itself lists them (podgraft bypassed).
async fn dynamic_in_containerd(ctd: &mut RuntimeServiceClient<Channel>) -> Vec<String> {
    ctd.list_containers(cri::ListContainersRequest {
        filter: Some(cri::ContainerFilter {
            label_selector: [(DYNAMIC_LABEL.to_string(), "true".to_string())].into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .containers
    .into_iter()
    .map(|c| c.id)
    .collect()
}

#[tokio::test]
async fn no_dynamic_container_leaks_while_the_only_one_comes_and_goes() {
    // The exit poller at the shortest interval podgraft accepts (100 ms, config validation), so
    // many polls overlap the adds.
    let Some(node) = Node::start_with("poll_interval_ms = 100") else {
        return;
    };
    let (pod, sandbox, kubelet_container) =
        start_pod(&node, "stress", MUTABLE, "main", "exec sleep 3600", None).await;
    let min_cycles = std::env::var("PODGRAFT_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_CYCLES)
        .max(MIN_CYCLES);
    let time_bound = TIME_BOUND * (min_cycles / MIN_CYCLES) as u32;

    let shared = Arc::new(Shared::new());
    let mut clients = Vec::new();
    let facts = PodFacts {
        sandbox: sandbox.clone(),
        uid: pod.uid.clone(),
        container: kubelet_container,
    };
    for kind in KINDS {
        // Each client on its own connection, so that their calls overlap inside podgraft.
        let cri = node.runtime(true).await;
        clients.push(tokio::spawn(kubelet_client(
            kind,
            cri,
            shared.clone(),
            facts.clone(),
        )));
    }

    let mut control = node.control_client().await;
    let mut ctd = node.runtime(false).await;
    let pod_ref = Some(api::PodRef {
        sandbox_id: sandbox.clone(),
        ..Default::default()
    });
    let started = Instant::now();
    let mut cycles = 0u64;
    while (cycles < min_cycles || shared.listing_calls() < MIN_LISTING_CALLS)
        && started.elapsed() < time_bound
    {
        // A fresh name each time: the last removed names stay taken.
        let name = format!("stress-{cycles}");
        let added = tokio::time::timeout(
            CALL_BOUND,
            control.add_containers(api::AddContainersRequest {
                pod: pod_ref.clone(),
                containers: vec![spec(&name)],
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("add {cycles} took over {CALL_BOUND:?}"))
        .unwrap_or_else(|e| panic!("add {cycles}: {e}"))
        .into_inner()
        .containers;
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].state, api::ContainerState::Running as i32);
        let id = added[0].container_id.clone();
        shared.dynamic_ids.lock().unwrap().insert(id.clone());
        // The container is real (containerd has it, podgraft has to hide it) and the node's only
        // dynamic one.
        assert_eq!(
            dynamic_in_containerd(&mut ctd).await,
            std::slice::from_ref(&id)
        );

        // Keep it until every client has made a whole call while it surely existed.
        *shared.present.lock().unwrap() = Some((cycles, id.clone()));
        let covered = KINDS.map(|k| shared.while_present(k));
        let wait = Instant::now();
        while KINDS
            .iter()
            .zip(covered)
            .any(|(k, before)| shared.while_present(*k) == before)
            && wait.elapsed() < Duration::from_secs(2)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        *shared.present.lock().unwrap() = None;

        let removed = tokio::time::timeout(
            CALL_BOUND,
            control.remove_containers(api::RemoveContainersRequest {
                pod: pod_ref.clone(),
                names: vec![name.clone()],
                grace_period_seconds: Some(0),
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("remove {cycles} took over {CALL_BOUND:?}"))
        .unwrap_or_else(|e| panic!("remove {cycles}: {e}"))
        .into_inner()
        .removed;
        assert_eq!(removed, [name]);
        // Gone: the node has no dynamic container until the next add.
        assert_eq!(dynamic_in_containerd(&mut ctd).await, Vec::<String>::new());
        cycles += 1;
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("kubelet-like client panicked");
    }

    let summary = {
        let kinds = KINDS.map(|k| {
            format!(
                "{k:?} {} ({} with a dynamic container present, {} failed)",
                shared.calls(k),
                shared.while_present(k),
                shared.failed(k)
            )
        });
        format!(
            "{cycles} add/remove cycles, {} listing calls in {elapsed:.1?}: {}; {} sandbox status entries",
            shared.listing_calls(),
            kinds.join(", "),
            shared.sandbox_entries.load(Ordering::Relaxed)
        )
    };
    eprintln!("hiding stress: {summary}");
    let failures: u64 = KINDS.iter().map(|k| shared.failed(*k)).sum();
    assert_eq!(
        failures,
        0,
        "{failures} calls showed a dynamic container or failed, over {summary}; first ones: {:#?}",
        shared.failures.lock().unwrap()
    );
    let dynamic_ids = shared.dynamic_ids.lock().unwrap().clone();
    let leaked: Vec<_> = shared
        .seen
        .lock()
        .unwrap()
        .intersection(&dynamic_ids)
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "listed dynamic ids {leaked:?} over {summary}"
    );
    // Not vacuous: the run did its share, and every kind of call met a present dynamic container.
    assert!(
        cycles >= min_cycles && shared.listing_calls() >= MIN_LISTING_CALLS,
        "run cut short by the {time_bound:?} bound: {summary}"
    );
    assert_eq!(dynamic_ids.len() as u64, cycles, "one fresh id per add");
    for kind in KINDS {
        assert!(
            shared.while_present(kind) >= cycles / 2,
            "too few {kind:?} calls while a dynamic container was present: {summary}"
        );
    }
    node.remove_pod(&sandbox).await;
}
