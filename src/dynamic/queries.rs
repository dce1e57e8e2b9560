//! Read-side operations of the [`Manager`]: list, get, exec, and the API view of a container.

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::manager::{Manager, api_state, dynamic_filter, pod_ref};
use super::sandboxes::Sandbox;
use super::translate::{self, RESTART_COUNT_ANNOTATION, SPEC_ANNOTATION};
use crate::api::{self, DynamicContainer, PodRef};

impl Manager {
    pub async fn list(&self, pod: Option<&PodRef>) -> Result<Vec<DynamicContainer>> {
        let sandboxes = match pod {
            Some(p) if *p != PodRef::default() => vec![self.resolve(Some(p)).await?],
            _ => self.store.all(),
        };
        let mut out = Vec::new();
        for sandbox in sandboxes {
            let containers = self
                .cri
                .list_containers(dynamic_filter(Some(&sandbox.id())))
                .await
                .map_err(Error::runtime("listing dynamic containers"))?;
            for c in containers {
                match self.describe_container(&sandbox, &c.id).await {
                    Ok(d) => out.push(d),
                    // Removed between the list and the status: not an error for a listing.
                    Err(Error::Runtime { source, .. }) if source.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.pod.as_ref().map(|p| &p.sandbox_id), &a.name)
                .cmp(&(&b.pod.as_ref().map(|p| &p.sandbox_id), &b.name))
        });
        Ok(out)
    }

    pub async fn get(&self, pod: Option<&PodRef>, name: &str) -> Result<DynamicContainer> {
        let sandbox = self.resolve(pod).await?;
        let found = self.find(&sandbox.id(), name).await?;
        let Some(newest) = found.into_iter().max_by_key(|c| c.created_at) else {
            return Err(Error::NotFound(format!(
                "name: no dynamic container {name:?} in sandbox {}",
                sandbox.id()
            )));
        };
        self.describe_container(&sandbox, &newest.id).await
    }

    pub async fn exec(
        &self,
        pod: Option<&PodRef>,
        name: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        if cmd.is_empty() {
            return Err(Error::invalid("command", "must not be empty"));
        }
        let c = self.get(pod, name).await?;
        if c.state != api::ContainerState::Running as i32 {
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

    pub(super) async fn describe_container(
        &self,
        sandbox: &Sandbox,
        cid: &str,
    ) -> Result<DynamicContainer> {
        let status = self
            .cri
            .container_status(cid, false)
            .await
            .map_err(Error::runtime("reading container status"))?;
        let st = status.status.unwrap_or_default();
        let spec = st
            .annotations
            .get(SPEC_ANNOTATION)
            .and_then(|s| translate::decode_spec(s))
            .unwrap_or_default();
        let config = sandbox.config();
        Ok(DynamicContainer {
            pod: Some(pod_ref(&sandbox.id(), &config)),
            name: st
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            container_id: st.id.clone(),
            state: api_state(st.state) as i32,
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
            image: spec.image.clone(),
            image_id: st.image_ref.clone(),
            resources: spec.resources.clone(),
            labels: spec.labels.clone(),
            log_path: st.log_path.clone(),
            spec: Some(spec),
        })
    }
}
