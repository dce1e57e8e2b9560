//! The supervisor: one loop, one shutdown signal. It detects exits of dynamic containers, runs
//! the restarts their policies ask for, collects garbage, sweeps what crashes left and keeps pod
//! cgroups in line. An exit it sees stops that container's probes (`dynamic::probes`).

use std::future::Future;
use std::time::Duration;

use super::{Lifecycle, dynamic_filter, name_of};
use crate::cri::CriError;
use crate::dynamic::model::{ContainerState, EventKind, PodId};
use crate::dynamic::registry::{Entry, Listed};

impl Lifecycle {
    /// One round of exit detection: emits EXITED for dynamic containers that stopped since the
    /// last round. The listing is merged into the registry, never written over it, so an add or
    /// removal that lands while the listing is on its way keeps its effect.
    pub async fn poll_once(&self) -> Result<(), CriError> {
        let token = self.registry.listing_token();
        let containers = self.cri.list_containers(dynamic_filter(None)).await?;
        let listed = containers
            .iter()
            .map(|c| Listed {
                id: c.id.clone(),
                entry: Entry {
                    sandbox_id: c.pod_sandbox_id.clone(),
                    name: name_of(c).to_string(),
                    state: ContainerState::from_cri(c.state),
                    attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
                },
            })
            .collect();
        let (changes, vanished) = self.registry.merge_listing(token, listed);
        for (id, _) in &vanished {
            self.probes.stop(id);
        }
        for change in changes {
            if change.entry.state != ContainerState::Exited
                || change.before == Some(ContainerState::Exited)
            {
                continue;
            }
            self.probes.stop(&change.id);
            let Some(sandbox) = self.store.get(&change.entry.sandbox_id) else {
                continue;
            };
            let pod = PodId::new(&change.entry.sandbox_id, &sandbox.config());
            let status = self
                .cri
                .container_status(&change.id, false)
                .await
                .ok()
                .and_then(|s| s.status);
            let code = status.as_ref().map_or(-1, |s| s.exit_code);
            let ended = match &status {
                Some(s) => Some(self.termination(s).await),
                None => None,
            };
            let message = match ended.as_ref().filter(|t| !t.message.is_empty()) {
                Some(t) => format!("exit code {code}: {}", t.message),
                None => format!("exit code {code}"),
            };
            self.emit_reason(
                EventKind::Exited,
                &pod,
                &change.entry.name,
                &change.id,
                ended.as_ref().map_or("", |t| t.reason.as_str()),
                &message,
            );
            if let Some(status) = status {
                self.on_exit(
                    &change.entry.sandbox_id,
                    &change.entry.name,
                    &change.id,
                    code,
                    &status.annotations,
                );
            }
        }
        Ok(())
    }

    /// Runs exit detection and cgroup reconciliation until `shutdown` resolves.
    pub async fn supervise(
        &self,
        poll_interval: Duration,
        reconcile_interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile = tokio::time::interval(reconcile_interval);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.poll_once().await {
                        tracing::debug!(error = %e, "dynamic container poll failed");
                    }
                    self.restart_due().await;
                    self.collect_garbage().await;
                }
                _ = reconcile.tick() => {
                    // Leftovers of a crash first: the reconcile then sizes what remains.
                    self.sweep_leftovers().await;
                    self.retry_stranded_removals().await;
                    self.cgroups.reconcile().await;
                }
                () = &mut shutdown => return,
            }
        }
    }
}
