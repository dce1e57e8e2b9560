//! Keeping dynamic containers alive under their restart policy, as the kubelet keeps its own:
//! Always restarts, OnFailure restarts after a non-zero exit, Never (the default) leaves the
//! container exited. Restarts back off as CrashLoopBackOff does: the first one at once, then
//! 10 s, doubling to 5 min, reset once an attempt has run 10 min. Each restart is a new attempt in
//! the same sandbox (attempt + 1, its log at `<name>/<attempt>.log`), created with exactly what
//! admission decided for the first (kept in an annotation), and keeping the container's
//! reservation and pod cgroup growth. The attempt that exited is kept until the new one runs;
//! the one before it goes then.

use std::time::Duration;

use super::Lifecycle;
use crate::dynamic::admission::Admitted;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::{ADMITTED_ANNOTATION, SPEC_ANNOTATION};
use crate::dynamic::model::spec::RestartPolicy;
use crate::dynamic::model::{ContainerState, EventKind, PodId};
use crate::dynamic::registry::{DueRestart, Entry, Restarts};
use crate::fault;

/// The kubelet's waiting reason while a restart backs off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// An attempt that ran this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Whether `policy` restarts a container that exited with `code`.
pub fn should_restart(policy: RestartPolicy, code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Never => false,
    }
}

/// For an exit seen at `now`: when to restart, and the wait before the restart after that.
pub fn plan(r: &Restarts, now: Duration) -> (Duration, Duration) {
    let reset = now.saturating_sub(r.started_at) >= RESET_AFTER;
    let delay = if reset { None } else { r.delay };
    let due = now + delay.unwrap_or(Duration::ZERO);
    let next = delay.map_or(INITIAL_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
    (due, next)
}

impl Lifecycle {
    /// Attempt `id` of `name` exited with `code`: schedules its restart if its policy says so.
    pub(super) fn on_exit(
        &self,
        sandbox_id: &str,
        name: &str,
        id: &str,
        code: i32,
        annotations: &std::collections::HashMap<String, String>,
    ) {
        let Some(spec) = annotations
            .get(SPEC_ANNOTATION)
            .and_then(|s| self.specs.decode(s))
        else {
            return;
        };
        let stopping = self.store.get(sandbox_id).is_none_or(|s| s.is_stopping());
        // A removal under way (or one recovery has yet to finish) holds the name: no restart.
        let removing = self
            .store
            .get(sandbox_id)
            .is_some_and(|s| s.record().removing.iter().any(|r| r.name == name));
        if stopping || removing || !should_restart(spec.restart_policy, code) {
            return;
        }
        let now = self.host.monotonic();
        let (due, next) = plan(&self.registry.restarts(sandbox_id, name), now);
        tracing::info!(
            sandbox = sandbox_id,
            name,
            exit_code = code,
            in_seconds = (due - now).as_secs(),
            "scheduling a restart"
        );
        self.registry
            .schedule_restart(sandbox_id, name, id, due, next);
        if let Some(sandbox) = self.store.get(sandbox_id) {
            let wait = due - now;
            // The first restart is immediate: no back-off, hence no CrashLoopBackOff yet.
            let reason = if wait.is_zero() {
                ""
            } else {
                CRASH_LOOP_BACK_OFF
            };
            self.emit_reason(
                EventKind::Restarting,
                &PodId::new(sandbox_id, &sandbox.config()),
                name,
                id,
                reason,
                &format!("back-off {}s before restarting", wait.as_secs()),
            );
        }
    }

    /// Runs the restarts that are due; a failed one is tried again after its back-off.
    pub async fn restart_due(&self) {
        let now = self.host.monotonic();
        for due in self.registry.take_due_restarts(now) {
            if let Err(e) = self.restart(&due).await {
                tracing::warn!(sandbox = %due.sandbox_id, name = %due.name, error = %e, "restart failed; backing off");
                let now = self.host.monotonic();
                self.registry.schedule_restart(
                    &due.sandbox_id,
                    &due.name,
                    &due.exited,
                    now + due.next_delay,
                    (due.next_delay * 2).min(MAX_BACKOFF),
                );
            }
        }
    }

    async fn restart(&self, due: &DueRestart) -> Result<()> {
        let Some(sandbox) = self.store.get(&due.sandbox_id).filter(|s| !s.is_stopping()) else {
            return Ok(());
        };
        let _restarting = sandbox.restart_lock.lock().await;
        let status = self
            .cri
            .container_status(&due.exited, false)
            .await
            .map_err(Error::runtime("reading the exited attempt"))?
            .status
            .unwrap_or_default();
        let spec = status
            .annotations
            .get(SPEC_ANNOTATION)
            .and_then(|s| self.specs.decode(s))
            .ok_or_else(|| Error::Internal("the exited attempt has no readable spec".into()))?;
        // Containers made before admission results were kept cannot be restarted safely: their
        // hardened settings are unknown.
        let admitted: Admitted = status
            .annotations
            .get(ADMITTED_ANNOTATION)
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or_else(|| {
                Error::FailedPrecondition(
                    "the exited attempt carries no admission record (made by an older podgraft)"
                        .into(),
                )
            })?;
        let attempt = status.metadata.as_ref().map_or(0, |m| m.attempt) + 1;
        let config = sandbox.config();
        let pod = PodId::new(&due.sandbox_id, &config);
        fault::point("restart.before_create");
        let mut container = self.container_config(&spec, &admitted, &config, attempt);
        container.mounts.push(
            self.termination_mount(&due.sandbox_id, &spec, attempt)
                .await?,
        );
        let cid = self
            .cri
            .create_container(k8s_cri::v1::CreateContainerRequest {
                pod_sandbox_id: due.sandbox_id.clone(),
                config: Some(container),
                sandbox_config: Some(config.clone()),
            })
            .await
            .map_err(Error::runtime(format!("restarting {:?}", due.name)))?;
        fault::point("restart.after_create");
        let entry = Entry {
            sandbox_id: due.sandbox_id.clone(),
            name: due.name.clone(),
            state: ContainerState::Created,
            attempt,
        };
        self.registry.upsert(&cid, entry);
        if !self
            .registry
            .restart_wanted(&due.sandbox_id, &due.name, due.token)
        {
            // Removed while the restart was on its way.
            self.destroy(&cid, 0).await;
            return Ok(());
        }
        if let Err(e) = self.cri.start_container(&cid).await {
            self.destroy(&cid, 0).await;
            return Err(Error::runtime(format!("starting {:?}", due.name))(e));
        }
        fault::point("restart.after_start");
        self.registry.set_state(&cid, ContainerState::Running);
        self.start_probes(&pod, &due.name, &cid, &spec);
        crate::metrics::restart();
        self.registry.restarted(
            &due.sandbox_id,
            &due.name,
            self.host.monotonic(),
            due.next_delay,
        );
        self.emit(
            EventKind::Started,
            &pod,
            &due.name,
            &cid,
            &format!("restarted (restart {attempt})"),
        );
        // The exited attempt stays until this one runs; the ones before it go now.
        for old in self.find(&due.sandbox_id, &due.name).await? {
            let old_attempt = old.metadata.as_ref().map_or(0, |m| m.attempt);
            if old.id != cid
                && old.id != due.exited
                && old_attempt < attempt
                && self.destroy(&old.id, 0).await
            {
                self.remove_termination_file(&due.sandbox_id, &due.name, old_attempt)
                    .await;
            }
        }
        fault::point("restart.after_cleanup");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_the_kubelets_back_off() {
        assert!(should_restart(RestartPolicy::Always, 0));
        assert!(should_restart(RestartPolicy::OnFailure, 3));
        assert!(!should_restart(RestartPolicy::OnFailure, 0));
        assert!(!should_restart(RestartPolicy::Never, 1));
        let s = Duration::from_secs;
        let mut r = Restarts::default();
        // First exit: at once; then 10 s, 20 s, ... up to 5 min.
        let mut delays = Vec::new();
        let mut now = s(5);
        r.started_at = now;
        for _ in 0..8 {
            now += s(1);
            let (due, next) = plan(&r, now);
            delays.push((due - now).as_secs());
            r.delay = Some(next);
            r.started_at = due;
            now = due;
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        // Ten minutes of clean running reset it.
        let (due, next) = plan(&r, r.started_at + RESET_AFTER);
        assert_eq!(
            (due - (r.started_at + RESET_AFTER), next),
            (Duration::ZERO, INITIAL_BACKOFF)
        );
    }
}
