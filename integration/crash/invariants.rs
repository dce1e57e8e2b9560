//! The invariants the crash tests check after each restart, and the helpers they share: what
//! containerd holds, what podgraft lists, the pod cgroup, restart counts and the state directory.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::api;
use podgraft::api::control_client::ControlClient;
use podgraft::dynamic::model::keys::{BATCH_LABEL, DYNAMIC_LABEL};
use tonic::transport::Channel;

use crate::harness::{BUSYBOX, Node};
use crate::pod::PodSpec;

/// Every dynamic container of these tests has this memory limit: its pod grows by it.
pub(super) const GROWTH: i64 = 8 << 20;
pub(super) const BASELINE: i64 = 256 << 20;

pub(super) fn spec(name: &str, script: &str, policy: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        restart_policy: policy.into(),
        resources: Some(api::Resources {
            requests: None,
            limits: Some(api::ResourceList {
                cpu: String::new(),
                memory: "8Mi".into(),
            }),
        }),
        ..Default::default()
    }
}

pub(super) fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        uid: pod.uid.clone(),
        ..Default::default()
    })
}

pub(super) fn limit_path(pod: &PodSpec) -> String {
    format!(
        "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
        pod.cgroup_parent()
    )
}

/// What the test knows must hold of the shared pod.
pub(super) struct World {
    pub(super) pod: PodSpec,
    pub(super) sandbox: String,
    /// Adds a kill may have interrupted: both names exist, or neither.
    pub(super) pairs: Vec<(String, String)>,
    /// The highest restart count seen per restarting name: it never goes back.
    pub(super) restarts: HashMap<String, u32>,
    pub(super) next: usize,
    pub(super) kills: usize,
}

impl World {
    pub(super) fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }
}

pub(super) async fn control(node: &Node) -> Option<ControlClient<Channel>> {
    podgraft::client::uds_channel(&node.control)
        .await
        .ok()
        .map(ControlClient::new)
}

/// Waits until podgraft answers control calls (its state is loaded).
pub(super) async fn wait_loaded(node: &Node) -> ControlClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mut c) = control(node).await {
            if c.list_containers(api::ListContainersRequest::default())
                .await
                .is_ok()
            {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "podgraft did not load; log tail:\n{}",
            tail(node)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn tail(node: &Node) -> String {
    let log = node.podgraft_log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" DEBUG ")).collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

pub(super) async fn dynamic_in_containerd(
    ctd: &mut RuntimeServiceClient<Channel>,
) -> Vec<cri::Container> {
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
}

pub(super) fn name_of(c: &cri::Container) -> &str {
    c.metadata.as_ref().map_or("", |m| m.name.as_str())
}

pub(super) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// One look at the invariants; the first that does not hold, described.
pub(super) async fn check(node: &Node, w: &mut World) -> Result<(), String> {
    let mut ctd = node.runtime(false).await;
    let all = dynamic_in_containerd(&mut ctd).await;
    for c in &all {
        let state = cri::ContainerState::try_from(c.state).unwrap();
        if matches!(
            state,
            cri::ContainerState::ContainerCreated | cri::ContainerState::ContainerUnknown
        ) {
            return Err(format!("{} ({}) is left {state:?}", name_of(c), c.id));
        }
    }
    let mut control = control(node).await.ok_or("no control socket")?;
    let listed = control
        .list_containers(api::ListContainersRequest::default())
        .await
        .map_err(|e| format!("list: {e}"))?
        .into_inner()
        .containers;
    // A listing shows each name's newest attempt; the attempt before it is kept (as the kubelet
    // keeps it) and named by its last state.
    let known: BTreeSet<&str> = listed
        .iter()
        .flat_map(|c| {
            let previous = c.last_state.as_ref().map(|t| t.container_id.as_str());
            std::iter::once(c.container_id.as_str()).chain(previous.filter(|id| !id.is_empty()))
        })
        .collect();
    let there: BTreeSet<&str> = all.iter().map(|c| c.id.as_str()).collect();
    if known != there {
        let unknown: Vec<String> = all
            .iter()
            .filter(|c| !known.contains(c.id.as_str()))
            .map(|c| {
                let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
                let state = cri::ContainerState::try_from(c.state).map(|s| format!("{s:?}"));
                format!(
                    "{} attempt {attempt} {} in {} ({})",
                    name_of(c),
                    state.unwrap_or_default(),
                    &c.pod_sandbox_id[..12],
                    &c.id[..12]
                )
            })
            .collect();
        return Err(format!(
            "podgraft knows {known:?}, containerd has {there:?}; not known: {unknown:?}"
        ));
    }
    let ours: Vec<&cri::Container> = all
        .iter()
        .filter(|c| c.pod_sandbox_id == w.sandbox)
        .collect();
    let names: BTreeSet<&str> = ours.iter().map(|c| name_of(c)).collect();
    for (a, b) in &w.pairs {
        if names.contains(a.as_str()) != names.contains(b.as_str()) {
            return Err(format!("add of {a} and {b} is half there: {names:?}"));
        }
    }
    let want = BASELINE + GROWTH * names.len() as i64;
    let got: i64 = std::fs::read_to_string(limit_path(&w.pod))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if got != want {
        return Err(format!(
            "pod memory limit {got}, want baseline + {} x 8Mi = {want}",
            names.len()
        ));
    }
    for (name, seen) in w.restarts.iter_mut() {
        let now = ours
            .iter()
            .filter(|c| name_of(c) == name)
            .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt))
            .max();
        match now {
            Some(n) if n < *seen => {
                return Err(format!("{name} went back from restart {seen} to {n}"));
            }
            Some(n) => *seen = n,
            None => return Err(format!("{name} is lost")),
        }
    }
    let state = node.dir.path().join("state");
    for f in files_under(&state) {
        if f.extension().is_some_and(|e| e == "tmp") {
            return Err(format!("temporary file left: {}", f.display()));
        }
        if f.parent().is_some_and(|p| p.ends_with("batches")) {
            let id = f.file_stem().unwrap().to_str().unwrap().to_string();
            if let Some(c) = all.iter().find(|c| c.labels.get(BATCH_LABEL) == Some(&id)) {
                return Err(format!(
                    "batch {id} is still recorded and {} of it is still there",
                    name_of(c)
                ));
            }
        }
    }
    Ok(())
}

/// Waits (bounded) for the invariants: recovery and the sweep may still be finishing.
pub(super) async fn settle(node: &mut Node, w: &mut World, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let result = check(node, w).await;
        match result {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                panic!("after {after}: {e}\npodgraft log tail:\n{}", tail(node))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(node.podgraft_running(), "podgraft died after {after}");
}
