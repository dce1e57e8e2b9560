//! Garbage collection of dynamic containers, one sweep per supervisor tick: one listing of the
//! dynamic containers and one of the sandboxes; a CRI call per container only when it acts.
//!
//! - Exited: a container that will not restart (policy Never, OnFailure after exit 0) is removed
//!   `gc_exited_after` after the sweep first saw it exited, as RemoveContainers removes it: its
//!   reservation and pod growth are released and its final status is kept.
//! - Orphaned: a container whose sandbox containerd no longer has, or has not ready (stopped or
//!   being removed), is stopped and removed; a gone pod is forgotten.
//! - Unknown: a container with the dynamic label is adopted (restarts, growth and collection like
//!   any other) when it carries a readable spec and admission record and its sandbox is a ready
//!   mutable pod podgraft knows; otherwise it is stopped and removed.
//!
//! Every removal is reported as COLLECTED with reason Exited, Orphaned or Unknown. The delay
//! counts from the first sweep that saw the exit, so after a podgraft restart it starts again:
//! a container is never collected earlier than configured.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::restart::should_restart;
use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::model::keys::{ADMITTED_ANNOTATION, SPEC_ANNOTATION};
use crate::dynamic::model::spec::RestartPolicy;
use crate::dynamic::model::{ContainerState, EventKind, PodId};
use crate::dynamic::resources::{Trigger, growth_of};

/// How long an exited container that will not restart stays before it is collected.
pub const DEFAULT_EXITED_AFTER: Duration = Duration::from_secs(300);
/// The grace period of collected containers that still run (the kubelet's for containers of
/// pods it does not know).
const COLLECT_GRACE_SECONDS: i64 = 1;

/// What the sweeps remember between them.
#[derive(Default)]
pub(crate) struct GcState {
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Exited containers and when a sweep first saw them exited (monotonic).
    exited_since: HashMap<String, Duration>,
    /// Containers judged podgraft's (adopted if need be), with their restart policy: their
    /// spec is decoded once, not on every sweep.
    policies: HashMap<String, RestartPolicy>,
}

/// What one sweep found to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub exited: Vec<(String, String)>,
    pub orphaned: Vec<String>,
    pub unknown: Vec<String>,
    pub adopted: Vec<String>,
    /// Pods containerd no longer has.
    pub forgotten: Vec<String>,
    /// Exited attempts older than a name's previous one (a restart's cleanup cut short).
    pub superseded: Vec<String>,
}

impl Lifecycle {
    /// One garbage collection sweep; returns what it collected (and adopted).
    pub async fn collect_garbage(&self) -> Sweep {
        let mut sweep = Sweep::default();
        if !self.registry.is_loaded() {
            return sweep;
        }
        let listed = tokio::join!(
            self.cri.list_containers(dynamic_filter(None)),
            self.cri.list_pod_sandbox(cri::PodSandboxFilter::default()),
        );
        let (containers, sandboxes) = match listed {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "garbage collection listing failed");
                return sweep;
            }
        };
        let ready: HashSet<&str> = sandboxes
            .iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .map(|s| s.id.as_str())
            .collect();
        let existing: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        // The newest attempt of each (sandbox, name): only it can be final.
        let mut newest: HashMap<(&str, &str), i64> = HashMap::new();
        for c in &containers {
            let at = newest.entry((&c.pod_sandbox_id, name_of(c))).or_default();
            *at = (*at).max(c.created_at);
        }
        // The attempt before the newest is kept (as the kubelet keeps it); older ones go. A
        // restart removes them itself once its new attempt runs; this catches what a kill or a
        // failed removal left behind.
        let mut by_name: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
        for c in &containers {
            by_name
                .entry((&c.pod_sandbox_id, name_of(c)))
                .or_default()
                .push(c.created_at);
        }
        for c in &containers {
            let mut created = by_name[&(c.pod_sandbox_id.as_str(), name_of(c))].clone();
            created.sort_unstable_by(|a, b| b.cmp(a));
            let superseded = created.get(1).is_some_and(|second| c.created_at < *second);
            if superseded
                && c.state == cri::ContainerState::ContainerExited as i32
                && ready.contains(c.pod_sandbox_id.as_str())
                && self.store.get(&c.pod_sandbox_id).is_some()
            {
                sweep.superseded.push(c.id.clone());
            }
        }
        let now = self.host.monotonic();
        let mut due = Vec::new();
        {
            let mut seen = self.gc.inner.lock().unwrap_or_else(|e| e.into_inner());
            let Seen {
                exited_since: since,
                policies,
            } = &mut *seen;
            let ids: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
            since.retain(|id, _| ids.contains(id.as_str()));
            policies.retain(|id, _| ids.contains(id.as_str()));
            for c in &containers {
                let sid = c.pod_sandbox_id.as_str();
                if !ready.contains(sid) {
                    sweep.orphaned.push(c.id.clone());
                    continue;
                }
                if self.store.get(sid).is_none() {
                    sweep.unknown.push(c.id.clone());
                    continue;
                }
                let policy = match policies.get(&c.id) {
                    Some(p) => *p,
                    None => {
                        let spec = c
                            .annotations
                            .get(SPEC_ANNOTATION)
                            .and_then(|s| self.specs.decode(s))
                            .filter(|_| c.annotations.contains_key(ADMITTED_ANNOTATION));
                        let Some(spec) = spec else {
                            sweep.unknown.push(c.id.clone());
                            continue;
                        };
                        if !self.ledger.holds(sid, &spec.name) {
                            self.ledger.adopt(sid, &spec.name, growth_of(&spec));
                            sweep.adopted.push(c.id.clone());
                            crate::metrics::gc("adopt_unknown");
                        }
                        policies.insert(c.id.clone(), spec.restart_policy);
                        spec.restart_policy
                    }
                };
                let exited = c.state == cri::ContainerState::ContainerExited as i32;
                let newest_attempt = newest[&(sid, name_of(c))] == c.created_at;
                // Only exits the poller has seen (and handed to the restart policy) count.
                let seen = self.registry.state(&c.id) == Some(ContainerState::Exited);
                let restarting = self.registry.restarts(sid, name_of(c)).pending.is_some();
                if !exited
                    || !newest_attempt
                    || !seen
                    || restarting
                    || policy == RestartPolicy::Always
                {
                    continue;
                }
                let first = *since.entry(c.id.clone()).or_insert(now);
                if now.saturating_sub(first) >= self.settings.gc_exited_after {
                    due.push((c.clone(), policy));
                }
            }
        }
        for c in sweep.adopted.clone() {
            if let Some(sb) = containers
                .iter()
                .find(|x| x.id == c)
                .and_then(|x| self.store.get(&x.pod_sandbox_id))
            {
                if let Err(e) = self.cgroups.apply(&sb, Trigger::GrowthChanged).await {
                    tracing::warn!(error = %e, "growing the pod for an adopted container deferred");
                }
            }
        }
        for (c, policy) in due {
            if self.collect_exited(&c, policy).await {
                sweep
                    .exited
                    .push((c.pod_sandbox_id.clone(), name_of(&c).to_string()));
            }
        }
        for id in &sweep.superseded {
            let c = containers.iter().find(|c| &c.id == id).expect("listed");
            let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
            tracing::info!(container = %c.id, name = name_of(c), attempt, "removing an attempt older than the previous one");
            if self.destroy(&c.id, 0).await {
                self.remove_termination_file(&c.pod_sandbox_id, name_of(c), attempt)
                    .await;
                crate::metrics::gc("remove_superseded");
            }
        }
        for (ids, reason) in [(&sweep.orphaned, "Orphaned"), (&sweep.unknown, "Unknown")] {
            for id in ids {
                let c = containers.iter().find(|c| &c.id == id).expect("listed");
                self.collect_stray(c, reason).await;
            }
        }
        // Pods removed behind podgraft's back (containerd removes their containers with them):
        // forgotten, with their reservations and kept statuses. A sandbox recorded after the
        // listing was taken is not in it, so containerd is asked before anything is forgotten.
        for sandbox in self.store.all() {
            let sid = sandbox.id();
            if existing.contains(sid.as_str()) {
                continue;
            }
            match self.cri.pod_sandbox_status(&sid, false).await {
                Err(e) if e.is_not_found() => {
                    tracing::info!(sandbox = %sid, "forgetting a pod containerd no longer has");
                    self.forget_pod(&sid).await;
                    sweep.forgotten.push(sid);
                }
                _ => {}
            }
        }
        sweep
    }

    /// Removes an exited container that will not restart; false if it turned out to restart or
    /// the removal failed.
    async fn collect_exited(&self, c: &cri::Container, policy: RestartPolicy) -> bool {
        if policy == RestartPolicy::OnFailure {
            match self.cri.container_status(&c.id, false).await {
                Ok(r)
                    if r.status
                        .as_ref()
                        .is_some_and(|s| !should_restart(policy, s.exit_code)) => {}
                _ => return false,
            }
        }
        let Some(sandbox) = self.store.get(&c.pod_sandbox_id) else {
            return false;
        };
        let name = name_of(c).to_string();
        match self.remove_names(&sandbox, &[name], 0, "Exited").await {
            Ok(_) => {
                crate::metrics::gc("remove_exited");
                true
            }
            Err(e) => {
                tracing::warn!(container = %c.id, error = %e, "collecting an exited container failed");
                false
            }
        }
    }

    /// Stops and removes an orphaned or unknown container, releasing what podgraft held for it.
    async fn collect_stray(&self, c: &cri::Container, reason: &str) {
        if !self.destroy(&c.id, COLLECT_GRACE_SECONDS).await {
            return;
        }
        let name = name_of(c).to_string();
        let sandbox = self.store.get(&c.pod_sandbox_id);
        let pod = match &sandbox {
            Some(s) => PodId::new(&c.pod_sandbox_id, &s.config()),
            None => PodId {
                sandbox_id: c.pod_sandbox_id.clone(),
                ..Default::default()
            },
        };
        tracing::info!(container = %c.id, name, reason, "collected a dynamic container");
        crate::metrics::gc(if reason == "Orphaned" {
            "remove_orphaned"
        } else {
            "remove_unknown"
        });
        self.emit_reason(EventKind::Collected, &pod, &name, &c.id, reason, "");
        // An unknown container may share its name with a live one podgraft holds: release
        // only what no other container of the name still needs.
        let others = self
            .find(&c.pod_sandbox_id, &name)
            .await
            .map_or(true, |v| !v.is_empty());
        if reason == "Orphaned" || !others {
            self.ledger
                .release(&c.pod_sandbox_id, std::slice::from_ref(&name));
            self.registry.forget_restarts(&c.pod_sandbox_id, &[name]);
            if let Some(sb) = sandbox {
                if let Err(e) = self.cgroups.apply(&sb, Trigger::GrowthChanged).await {
                    tracing::debug!(error = %e, "shrinking after collection deferred");
                }
            }
        }
    }
}
