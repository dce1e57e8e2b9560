//! The read side: list, get, exec, and the view of one container.

use k8s_cri::v1 as cri;

use super::{Lifecycle, dynamic_filter};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::{RESTART_COUNT_ANNOTATION, SPEC_ANNOTATION};
use crate::dynamic::model::{ContainerState, ContainerView, PodId, PodSelector};
use crate::dynamic::state::Sandbox;

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
            for c in containers {
                match self.describe(&sandbox, &c.id).await {
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

    pub async fn get(&self, pod: &PodSelector, name: &str) -> Result<ContainerView> {
        let sandbox = self.resolve(pod).await?;
        let found = self.find(&sandbox.id(), name).await?;
        let Some(newest) = found.into_iter().max_by_key(|c| c.created_at) else {
            return Err(Error::NotFound(format!(
                "name: no dynamic container {name:?} in sandbox {}",
                sandbox.id()
            )));
        };
        self.describe(&sandbox, &newest.id).await
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
            reason: st.reason.clone(),
            message: st.message.clone(),
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
