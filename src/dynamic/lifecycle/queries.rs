//! The read side: list, get, exec, and the view of one container.

use k8s_cri::v1 as cri;

use std::collections::HashMap;

use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::{RESTART_COUNT_ANNOTATION, SPEC_ANNOTATION};
use crate::dynamic::model::{ContainerState, ContainerView, PodId, PodSelector};
use crate::dynamic::state::Sandbox;

/// The IDs of the newest attempt and of the one before it.
pub(super) fn newest_two(mut attempts: Vec<&cri::Container>) -> (&str, Option<&str>) {
    attempts.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    (&attempts[0].id, attempts.get(1).map(|c| c.id.as_str()))
}

impl Lifecycle {
    /// The dynamic containers of the selected pod, or of every mutable pod.
    pub async fn list(&self, pod: Option<&PodSelector>) -> Result<Vec<ContainerView>> {
        let sandboxes = match pod {
            Some(p) => vec![self.resolve(p).await?],
            None => self.store.all(),
        };
        let mut out = Vec::new();
        for sandbox in sandboxes {
            let containers = self
                .cri
                .list_containers(dynamic_filter(Some(&sandbox.id())))
                .await
                .map_err(Error::runtime("listing dynamic containers"))?;
            // One view per name: its newest attempt, with the one before as its last state.
            let mut by_name: HashMap<&str, Vec<&cri::Container>> = HashMap::new();
            for c in &containers {
                by_name.entry(name_of(c)).or_default().push(c);
            }
            for (_, attempts) in by_name {
                let (newest, previous) = newest_two(attempts);
                match self.describe_attempt(&sandbox, newest, previous).await {
                    Ok(d) => out.push(d),
                    // Removed between the list and the status: not an error for a listing.
                    Err(Error::Runtime { source, .. }) if source.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| (&a.pod.sandbox_id, &a.name).cmp(&(&b.pod.sandbox_id, &b.name)));
        Ok(out)
    }

    /// The kept final statuses of removed containers, of the selected pod or every mutable pod.
    pub async fn list_removed(&self, pod: Option<&PodSelector>) -> Result<Vec<ContainerView>> {
        let sandboxes = match pod {
            Some(p) => vec![self.resolve(p).await?],
            None => self.store.all(),
        };
        Ok(sandboxes
            .iter()
            .flat_map(|s| self.removed_views(s))
            .collect())
    }

    pub async fn get(&self, pod: &PodSelector, name: &str) -> Result<ContainerView> {
        let sandbox = self.resolve(pod).await?;
        let found = self.find(&sandbox.id(), name).await?;
        if found.is_empty() {
            // No live container of that name: its kept final status, if any.
            if let Some(kept) = self
                .removed_views(&sandbox)
                .into_iter()
                .find(|v| v.name == name)
            {
                return Ok(kept);
            }
            return Err(Error::NotFound(format!(
                "name: no dynamic container {name:?} in sandbox {}",
                sandbox.id()
            )));
        }
        let (newest, previous) = newest_two(found.iter().collect());
        self.describe_attempt(&sandbox, newest, previous).await
    }

    pub async fn exec(
        &self,
        pod: &PodSelector,
        name: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        if cmd.is_empty() {
            return Err(Error::invalid("command", "must not be empty"));
        }
        let c = self.get(pod, name).await?;
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {name:?} is not running"
            )));
        }
        self.cri
            .exec_sync(cri::ExecSyncRequest {
                container_id: c.container_id,
                cmd,
                timeout,
            })
            .await
            .map_err(Error::runtime(format!("exec in {name:?}")))
    }

    /// The view of attempt `cid`, with how attempt `previous` ended as its last state.
    pub(super) async fn describe_attempt(
        &self,
        sandbox: &Sandbox,
        cid: &str,
        previous: Option<&str>,
    ) -> Result<ContainerView> {
        let mut view = self.describe(sandbox, cid).await?;
        if let Some(prev) = previous {
            // Gone meanwhile (a restart removes older attempts): no last state to show.
            if let Ok(Some(st)) = self
                .cri
                .container_status(prev, false)
                .await
                .map(|s| s.status)
            {
                if st.state == cri::ContainerState::ContainerExited as i32 {
                    view.last_state = Some(self.termination(&st).await);
                }
            }
        }
        let restarts = self.registry.restarts(&view.pod.sandbox_id, &view.name);
        let backing_off = restarts
            .pending
            .as_ref()
            .is_some_and(|p| p.due != std::time::Duration::MAX && p.due > self.host.monotonic());
        if backing_off && view.state == ContainerState::Exited {
            view.waiting_reason = super::restart::CRASH_LOOP_BACK_OFF.to_string();
        }
        Ok(view)
    }

    pub(super) async fn describe(&self, sandbox: &Sandbox, cid: &str) -> Result<ContainerView> {
        let status = self
            .cri
            .container_status(cid, false)
            .await
            .map_err(Error::runtime("reading container status"))?;
        let st = status.status.unwrap_or_default();
        let spec = st
            .annotations
            .get(SPEC_ANNOTATION)
            .and_then(|s| self.specs.decode(s))
            .unwrap_or_default();
        let (ready, started) = self.probe_status(cid, ContainerState::from_cri(st.state), &spec);
        let (reason, message) = if st.state == cri::ContainerState::ContainerExited as i32 {
            let t = self.termination(&st).await;
            (t.reason, t.message)
        } else {
            (st.reason.clone(), st.message.clone())
        };
        Ok(ContainerView {
            pod: PodId::new(&sandbox.id(), &sandbox.config()),
            name: st
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            container_id: st.id.clone(),
            state: ContainerState::from_cri(st.state),
            exit_code: st.exit_code,
            reason,
            message,
            created_at_unix_nanos: st.created_at,
            started_at_unix_nanos: st.started_at,
            finished_at_unix_nanos: st.finished_at,
            restart_count: st
                .annotations
                .get(RESTART_COUNT_ANNOTATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            image_id: st.image_ref.clone(),
            log_path: st.log_path.clone(),
            ready,
            started,
            spec,
            ..Default::default()
        })
    }
}
