//! The pod lifecycle as the relay reports it: RunPodSandbox (record mutable pods),
//! UpdatePodSandboxResources (the kubelet resized the pod), StopPodSandbox and RemovePodSandbox
//! (dynamic containers go first, gracefully).

use k8s_cri::v1 as cri;

use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::model::{ContainerState, EventKind, PodId};
use crate::dynamic::resources::Trigger;
use crate::fault;

impl Lifecycle {
    /// Starts a pod's teardown: no more adds, then its dynamic containers (listed under the pod's
    /// lock, so no add of this pod is between its checks and its reservation).
    async fn tear_down(&self, sandbox_id: &str) -> Option<(PodId, Vec<cri::Container>)> {
        let sandbox = self.store.get(sandbox_id)?;
        sandbox.mark_stopping();
        let _guard = sandbox.lock.lock().await;
        let containers = self
            .cri
            .list_containers(dynamic_filter(Some(sandbox_id)))
            .await
            .ok()?;
        Some((PodId::new(sandbox_id, &sandbox.config()), containers))
    }

    /// StopPodSandbox is coming: stop the pod's dynamic containers gracefully (containerd would
    /// kill them at once).
    pub async fn stop_pod(&self, sandbox_id: &str) {
        self.probes.stop_pod(sandbox_id);
        let Some((pod, containers)) = self.tear_down(sandbox_id).await else {
            return;
        };
        fault::point("teardown.before_stop");
        let grace = self.settings.pod_stop_grace.as_secs() as i64;
        let pod = &pod;
        let stops = containers
            .iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .map(|c| async move {
                if let Err(e) = self.cri.stop_container(&c.id, grace).await {
                    tracing::warn!(container = %c.id, error = %e, "stopping dynamic container for pod stop failed");
                }
                // Known as exited from here on, so exit detection does not report it again.
                self.registry.set_state(&c.id, ContainerState::Exited);
                self.emit(EventKind::Exited, pod, name_of(c), &c.id, "pod stopped");
            });
        futures_util::future::join_all(stops).await;
        fault::point("teardown.after_stop");
    }

    /// RemovePodSandbox is coming: remove the pod's dynamic containers first.
    pub async fn remove_pod(&self, sandbox_id: &str) {
        let Some((pod, containers)) = self.tear_down(sandbox_id).await else {
            return;
        };
        fault::point("teardown.before_remove");
        for c in &containers {
            if self.destroy(&c.id, 0).await {
                self.emit(EventKind::Removed, &pod, name_of(c), &c.id, "pod removed");
            }
        }
        fault::point("teardown.after_remove");
    }

    /// RemovePodSandbox succeeded: the pod's state goes too.
    pub async fn forget_pod(&self, sandbox_id: &str) {
        fault::point("teardown.before_forget");
        self.probes.stop_pod(sandbox_id);
        self.ledger.forget_pod(sandbox_id);
        self.registry.forget_pod(sandbox_id);
        self.store.forget(sandbox_id).await;
        self.remove_termination_files(sandbox_id, None).await;
    }

    /// RunPodSandbox succeeded: remember the sandbox if its handler is mutable.
    pub async fn pod_started(&self, sandbox_id: &str, req: &cri::RunPodSandboxRequest) {
        match self.store.record_run(sandbox_id, req).await {
            Ok(true) => {
                tracing::info!(sandbox = sandbox_id, handler = %req.runtime_handler, "mutable pod recorded")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not record mutable pod; it will be rebuilt from containerd")
            }
        }
    }

    /// The kubelet resized the pod (UpdatePodSandboxResources): adopt its new baseline.
    pub async fn pod_resized(&self, sandbox_id: &str) {
        if let Some(sandbox) = self.store.get(sandbox_id) {
            if let Err(e) = self.cgroups.apply(&sandbox, Trigger::KubeletResize).await {
                tracing::warn!(sandbox = sandbox_id, error = %e, "re-applying growth after a pod resize failed");
            }
        }
    }
}
