//! Recovery after podgraft was killed, against a containerd that may still be finishing the dead
//! process's calls (a CreateContainer landing after the roll-back, a StartContainer still under
//! way). Every cleanup step is retried with bounded back-off and verified by asking containerd;
//! what cannot be cleaned is logged and reported as a FAILED event (reason `CleanupFailed`).
//!
//! - interrupted adds are rolled back at load and their batches kept as tombstones, swept by the
//!   supervisor until no late create of theirs can land (`state::batches`);
//! - removals a crash cut short are finished at load (`unfinished`);
//! - containers left CREATED by an interrupted create→start (an add's or a restart's) are removed;
//! - the CrashLoopBackOff of every container is rebuilt from its attempt number and timestamps,
//!   so a kill neither resets the back-off nor restarts a crash-looping container early.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::restart::{INITIAL_BACKOFF, MAX_BACKOFF, RESET_AFTER, should_restart};
use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::{BATCH_LABEL, SPEC_ANNOTATION};
use crate::dynamic::model::{ContainerState, Event, EventKind, PodId};
use crate::dynamic::state::Batch;
use crate::dynamic::state::batches::TOMBSTONE_FOR;
use crate::fault;

/// Tries of one cleanup before it is reported (about 10 s with the back-off below).
const CLEANUP_TRIES: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// A container still CREATED this long after its creation is no create→start of a live podgraft
/// (those take milliseconds): a dead process's late create.
pub const LEFTOVER_AFTER: Duration = Duration::from_secs(30);

/// The wait before the restart that follows attempt `attempt` (the kubelet's CrashLoopBackOff:
/// the first restart at once, then 10 s doubling to 5 min).
pub fn backoff_after(attempt: u32) -> Option<Duration> {
    let doublings = attempt.checked_sub(1)?.min(16);
    Some(
        INITIAL_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF),
    )
}

/// For attempt `attempt` that ran from `started_ns` to `finished_ns` (wall clock), seen exited at
/// `now_ns`: how long until its restart is due, and the wait before the restart after that.
pub fn resumed_plan(
    attempt: u32,
    started_ns: i64,
    finished_ns: i64,
    now_ns: i64,
) -> (Duration, Duration) {
    let nanos = |d: i64| Duration::from_nanos(d.max(0) as u64);
    let ran = nanos(finished_ns - started_ns);
    let delay = if ran >= RESET_AFTER {
        None
    } else {
        backoff_after(attempt)
    };
    let wait = delay
        .unwrap_or(Duration::ZERO)
        .saturating_sub(nanos(now_ns - finished_ns));
    let next = delay.map_or(INITIAL_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
    (wait, next)
}

impl Lifecycle {
    /// Stops (at once) and removes `cid`, retrying until containerd says it no longer has it. Stop
    /// comes first every time: a container whose start is still under way cannot be removed, and
    /// a task left by a cancelled start must be killed again before containerd lets it go.
    pub(super) async fn destroy_verified(&self, cid: &str) -> Result<(), String> {
        self.registry.set_removing(cid, true);
        let mut wait = FIRST_RETRY;
        let mut last = String::new();
        for attempt in 0..CLEANUP_TRIES {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
            let stop = match self.cri.stop_container(cid, 0).await {
                Err(e) if !e.is_not_found() => format!(" (after {e})"),
                _ => String::new(),
            };
            match self.cri.remove_container(cid).await {
                Err(e) if !e.is_not_found() => {
                    last = format!("{e}{stop}");
                    // A task CRI cannot stop or delete (a start cancelled half-way): killed and
                    // deleted through containerd's task API before the next try.
                    if attempt > 0 {
                        if let Err(k) = self.cri.kill_task(cid).await {
                            last = format!("{last}; killing its task: {k}");
                        }
                    }
                    continue;
                }
                _ => {}
            }
            match self.cri.container_status(cid, false).await {
                Err(e) if e.is_not_found() => {
                    self.registry.remove(cid);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
                Ok(_) => last = "containerd still has it after RemoveContainer".into(),
            }
        }
        self.registry.set_removing(cid, false);
        Err(last)
    }

    /// Destroys `containers` at once (each verified, as `destroy_verified`); whether all are
    /// gone. What cannot be removed is reported when `report` is set.
    pub(super) async fn destroy_all_verified(
        &self,
        containers: &[cri::Container],
        report: bool,
    ) -> bool {
        let results =
            futures_util::future::join_all(containers.iter().map(|c| self.destroy_verified(&c.id)))
                .await;
        let mut clean = true;
        for (c, result) in containers.iter().zip(results) {
            if let Err(why) = result {
                clean = false;
                if report {
                    self.report_uncleanable(c, &why);
                }
            }
        }
        clean
    }

    /// Logs and reports (FAILED, reason `CleanupFailed`) a container recovery could not remove.
    fn report_uncleanable(&self, c: &cri::Container, why: &str) {
        tracing::error!(container = %c.id, sandbox = %c.pod_sandbox_id, error = why, "could not clean up a dynamic container after a crash; will retry");
        self.events.emit(Event {
            kind: EventKind::Failed,
            pod: self
                .store
                .get(&c.pod_sandbox_id)
                .map(|s| PodId::new(&c.pod_sandbox_id, &s.config())),
            name: name_of(c).to_string(),
            container_id: c.id.clone(),
            message: format!("could not remove a leftover of an interrupted operation: {why}"),
            reason: "CleanupFailed".into(),
            ..Default::default()
        });
    }

    /// Removes every container of `batch`, concurrently; whether all are gone.
    async fn clear_batch(&self, batch: &Batch, report: bool) -> Result<bool> {
        let filter = cri::ContainerFilter {
            label_selector: [(BATCH_LABEL.to_string(), batch.id.clone())].into(),
            ..Default::default()
        };
        let found = self
            .cri
            .list_containers(filter)
            .await
            .map_err(Error::runtime("listing an interrupted add's containers"))?;
        if !found.is_empty() {
            tracing::warn!(sandbox = %batch.sandbox, names = ?batch.names, containers = found.len(), "rolling back an add interrupted by a crash");
        }
        let clean = self.destroy_all_verified(&found, report).await;
        Ok(clean)
    }

    /// At load: the containers of every add a crash interrupted are removed; the batch stays a
    /// tombstone for [`TOMBSTONE_FOR`] (a late create may still land), unless its pod is gone.
    pub(super) async fn roll_back_interrupted_adds(&self) -> Result<()> {
        for batch in self.batches.interrupted().await {
            fault::point("load.before_rollback");
            let clean = self.clear_batch(&batch, true).await?;
            fault::point("load.after_rollback");
            if clean && self.store.get(&batch.sandbox).is_none() {
                // No container can be created in a sandbox containerd no longer has.
                self.batches.lay_to_rest(&batch).await;
            } else {
                let until = self.host.monotonic() + TOMBSTONE_FOR;
                self.batches.bury(batch, until);
            }
        }
        Ok(())
    }

    /// At load: containers a crash left between create and start are removed (no podgraft call
    /// is in flight yet); the rest are returned.
    pub(super) async fn remove_unstarted(
        &self,
        containers: Vec<cri::Container>,
    ) -> Vec<cri::Container> {
        let mut kept = Vec::with_capacity(containers.len());
        for c in containers {
            let unstarted = match ContainerState::from_cri(c.state) {
                ContainerState::Created => true,
                // A start cancelled half-way; only a restart's (attempt > 0), as an add's first
                // attempt is its batch's to roll back.
                ContainerState::Unknown => c.metadata.as_ref().is_some_and(|m| m.attempt > 0),
                _ => false,
            };
            if !unstarted {
                kept.push(c);
                continue;
            }
            tracing::warn!(container = %c.id, name = name_of(&c), "removing a container a crash left unstarted");
            if let Err(why) = self.destroy_verified(&c.id).await {
                self.report_uncleanable(&c, &why);
                kept.push(c);
            }
        }
        kept
    }

    /// Supervisor: tombstones of rolled-back adds are swept (and laid to rest once their time
    /// is up with nothing left), and containers a dead process created late are removed.
    pub(super) async fn sweep_leftovers(&self) {
        let now = self.host.monotonic();
        for (batch, until) in self.batches.buried() {
            let expired = now >= until;
            match self.clear_batch(&batch, expired).await {
                Ok(true) if expired => self.batches.lay_to_rest(&batch).await,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "sweeping a rolled-back add failed"),
            }
        }
        let Ok(containers) = self.cri.list_containers(dynamic_filter(None)).await else {
            return;
        };
        let now_ns = self.host.now_unix_nanos();
        let leftover = LEFTOVER_AFTER.as_nanos() as i64;
        for c in containers {
            if ContainerState::from_cri(c.state) == ContainerState::Created
                && now_ns.saturating_sub(c.created_at) > leftover
            {
                tracing::warn!(container = %c.id, name = name_of(&c), "removing a container left unstarted");
                if let Err(why) = self.destroy_verified(&c.id).await {
                    self.report_uncleanable(&c, &why);
                }
            }
        }
    }

    /// At load: each name's newest attempt resumes its CrashLoopBackOff where it was. A running
    /// one keeps the back-off its attempt number implies; an exited one (it exited while podgraft
    /// was away) restarts as its policy says, when its back-off from its exit has passed.
    pub(super) async fn resume_restarts(&self, containers: &[cri::Container]) {
        let attempt = |c: &cri::Container| c.metadata.as_ref().map_or(0, |m| m.attempt);
        let mut newest: std::collections::HashMap<(String, String), &cri::Container> =
            std::collections::HashMap::new();
        for c in containers {
            let key = (c.pod_sandbox_id.clone(), name_of(c).to_string());
            if newest.get(&key).is_none_or(|n| attempt(n) < attempt(c)) {
                newest.insert(key, c);
            }
        }
        for ((sandbox, name), c) in newest {
            let status = match self.cri.container_status(&c.id, false).await {
                Ok(s) => s.status.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "reading a container at load failed; its back-off starts over");
                    self.registry
                        .started(&sandbox, &name, self.host.monotonic());
                    continue;
                }
            };
            let (now, now_ns) = (self.host.monotonic(), self.host.now_unix_nanos());
            let n = attempt(c);
            if ContainerState::from_cri(c.state) != ContainerState::Exited {
                let ran =
                    Duration::from_nanos(now_ns.saturating_sub(status.started_at).max(0) as u64);
                let started = now.saturating_sub(ran);
                match backoff_after(n) {
                    Some(delay) => self.registry.restarted(&sandbox, &name, started, delay),
                    None => self.registry.started(&sandbox, &name, started),
                }
                continue;
            }
            let Some(spec) = status
                .annotations
                .get(SPEC_ANNOTATION)
                .and_then(|s| self.specs.decode(s))
            else {
                continue;
            };
            let stopping = self.store.get(&sandbox).is_none_or(|s| s.is_stopping());
            // A removal recovery could not finish still holds its name: no restart.
            let removing = self
                .store
                .get(&sandbox)
                .is_some_and(|s| s.record().removing.iter().any(|r| r.name == name));
            if stopping || removing || !should_restart(spec.restart_policy, status.exit_code) {
                continue;
            }
            let (wait, next) = resumed_plan(n, status.started_at, status.finished_at, now_ns);
            tracing::info!(
                sandbox,
                name,
                attempt = n,
                in_seconds = wait.as_secs(),
                "resuming a restart after a crash"
            );
            self.registry
                .schedule_restart(&sandbox, &name, &c.id, now + wait, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_resumes_from_the_attempt_and_the_exit_time() {
        let s = |n: u64| Duration::from_secs(n);
        let ns = |n: i64| n * 1_000_000_000;
        assert_eq!(backoff_after(0), None);
        assert_eq!(backoff_after(1), Some(s(10)));
        assert_eq!(backoff_after(3), Some(s(40)));
        assert_eq!(backoff_after(40), Some(MAX_BACKOFF));
        // First exit: restart at once, then 10 s.
        assert_eq!(resumed_plan(0, ns(100), ns(101), ns(105)), (s(0), s(10)));
        // Attempt 2 exited 5 s ago: 20 s back-off, 15 s left, then 40 s.
        assert_eq!(resumed_plan(2, ns(100), ns(101), ns(106)), (s(15), s(40)));
        // Long past its back-off: due now.
        assert_eq!(resumed_plan(2, ns(100), ns(101), ns(1000)), (s(0), s(40)));
        // An attempt that ran ten minutes resets the back-off.
        assert_eq!(resumed_plan(5, ns(0), ns(600), ns(601)), (s(0), s(10)));
    }
}
