//! The pod lifecycle as the relay reports it (RunPodSandbox, StopPodSandbox, RemovePodSandbox)
//! and exit detection of dynamic containers.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::manager::{Manager, dynamic_filter, name_of, pod_ref, state_of};
use crate::api::PodRef;
use crate::api::event::Type as EventType;
use crate::cri::CriError;

impl Manager {
    /// Starts a pod's teardown: no more adds, then its dynamic containers (listed under the pod's
    /// lock, so no add of this pod is between its checks and its reservation).
    async fn tear_down(&self, sandbox_id: &str) -> Option<(PodRef, Vec<cri::Container>)> {
        let sandbox = self.store.get(sandbox_id)?;
        sandbox.mark_stopping();
        let _guard = sandbox.lock.lock().await;
        let containers = self
            .cri
            .list_containers(dynamic_filter(Some(sandbox_id)))
            .await
            .ok()?;
        Some((pod_ref(sandbox_id, &sandbox.config()), containers))
    }

    /// StopPodSandbox is coming: stop the pod's dynamic containers gracefully (containerd would
    /// kill them at once).
    pub async fn stop_pod(&self, sandbox_id: &str) {
        let Some((pod, containers)) = self.tear_down(sandbox_id).await else {
            return;
        };
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
                self.ids.lock().unwrap().insert(c.id.clone(), cri::ContainerState::ContainerExited);
                self.emit(EventType::Exited, pod, name_of(c), &c.id, "pod stopped");
            });
        futures_util::future::join_all(stops).await;
    }

    /// RemovePodSandbox is coming: remove the pod's dynamic containers first.
    pub async fn remove_pod(&self, sandbox_id: &str) {
        let Some((pod, containers)) = self.tear_down(sandbox_id).await else {
            return;
        };
        for c in &containers {
            if self.destroy(&c.id, 0).await {
                self.emit(EventType::Removed, &pod, name_of(c), &c.id, "pod removed");
            }
        }
    }

    /// RemovePodSandbox succeeded: the pod's state goes too.
    pub fn forget_pod(&self, sandbox_id: &str) {
        self.store.forget(sandbox_id);
        self.ledger.forget_pod(sandbox_id);
        self.pending.lock().unwrap().remove(sandbox_id);
    }

    /// RunPodSandbox succeeded: remember the sandbox if its handler is mutable.
    pub fn pod_started(&self, sandbox_id: &str, req: &cri::RunPodSandboxRequest) {
        match self.store.record_run(sandbox_id, req) {
            Ok(true) => {
                tracing::info!(sandbox = sandbox_id, handler = %req.runtime_handler, "mutable pod recorded")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not record mutable pod; it will be rebuilt from containerd")
            }
        }
    }

    /// One round of exit detection: emits EXITED for dynamic containers that stopped since the last
    /// round and REMOVED for ones that vanished without podgraft removing them.
    pub async fn poll_once(&self) -> std::result::Result<(), CriError> {
        let containers = self.cri.list_containers(dynamic_filter(None)).await?;
        let now: HashMap<String, (cri::ContainerState, cri::Container)> = containers
            .into_iter()
            .map(|c| (c.id.clone(), (state_of(c.state), c)))
            .collect();
        let before = std::mem::replace(
            &mut *self.ids.lock().unwrap(),
            now.iter().map(|(k, (s, _))| (k.clone(), *s)).collect(),
        );
        for (cid, (state, c)) in &now {
            let was = before.get(cid).copied();
            if *state == cri::ContainerState::ContainerExited
                && was != Some(cri::ContainerState::ContainerExited)
            {
                let Some(sandbox) = self.store.get(&c.pod_sandbox_id) else {
                    continue;
                };
                let pod = pod_ref(&c.pod_sandbox_id, &sandbox.config());
                let code = self
                    .cri
                    .container_status(cid, false)
                    .await
                    .ok()
                    .and_then(|s| s.status)
                    .map(|s| s.exit_code)
                    .unwrap_or(-1);
                self.emit(
                    EventType::Exited,
                    &pod,
                    name_of(c),
                    cid,
                    &format!("exit code {code}"),
                );
            }
        }
        Ok(())
    }

    /// Runs exit detection and cgroup reconciliation until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile = tokio::time::interval(self.settings.reconcile_interval);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.poll_once().await {
                        tracing::debug!(error = %e, "dynamic container poll failed");
                    }
                }
                _ = reconcile.tick() => self.reconcile_cgroups(),
                () = &mut shutdown => return,
            }
        }
    }
}
