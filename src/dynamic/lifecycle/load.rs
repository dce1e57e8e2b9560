//! Rebuilding what podgraft knows at start, from containerd (the source of truth) and the state
//! files: temporary files of a killed write removed, sandbox records, interrupted adds rolled
//! back, interrupted removals finished and leftovers of interrupted creates removed (`recovery`), the registry and the ledger
//! filled from the live dynamic containers, back-offs resumed, and the pod cgroups brought in line.

use k8s_cri::v1 as cri;

use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerState;
use crate::dynamic::model::keys::SPEC_ANNOTATION;
use crate::dynamic::registry::Entry;
use crate::dynamic::resources::growth_of;
use crate::dynamic::state::writer::{remove_stale_temps, run_blocking};
use crate::fault;

impl Lifecycle {
    pub async fn load(&self) -> Result<()> {
        let dir = self.store.state_dir().to_path_buf();
        for path in run_blocking(move || remove_stale_temps(&dir)).await {
            tracing::info!(path = %path.display(), "removed a temporary file a crash left behind");
        }
        self.store
            .load(self.cri.as_ref())
            .await
            .map_err(Error::runtime("loading sandboxes"))?;
        fault::point("load.after_sandboxes");
        self.mark_stopped_pods().await?;
        self.roll_back_interrupted_adds().await?;
        // Before the listing the restarts are resumed from: nothing being removed comes back.
        self.finish_interrupted_removals().await;
        let containers = self
            .cri
            .list_containers(dynamic_filter(None))
            .await
            .map_err(Error::runtime("listing dynamic containers"))?;
        let containers = self.remove_unstarted(containers).await;
        fault::point("load.after_cleanup");
        for c in &containers {
            let spec = c
                .annotations
                .get(SPEC_ANNOTATION)
                .and_then(|s| self.specs.decode(s));
            if let Some(spec) = spec {
                // Growth is recounted from the live containers: nothing is counted twice.
                self.ledger
                    .adopt(&c.pod_sandbox_id, &spec.name, growth_of(&spec));
            }
            let entry = Entry {
                sandbox_id: c.pod_sandbox_id.clone(),
                name: name_of(c).to_string(),
                state: ContainerState::from_cri(c.state),
                attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
            };
            self.registry.upsert(&c.id, entry);
            self.resume_probes(c);
        }
        self.resume_restarts(&containers).await;
        self.registry.mark_loaded();
        fault::point("load.before_reconcile");
        // Repair the pod cgroups (a crash may have left them half-grown).
        self.cgroups.reconcile().await;
        fault::point("load.done");
        Ok(())
    }

    /// Pods stopped while podgraft was away (or whose teardown a crash cut short) are being torn
    /// down: no add, and no restart of a container their stop killed.
    async fn mark_stopped_pods(&self) -> Result<()> {
        let sandboxes = self
            .cri
            .list_pod_sandbox(cri::PodSandboxFilter::default())
            .await
            .map_err(Error::runtime("listing sandboxes"))?;
        for s in sandboxes {
            if s.state == cri::PodSandboxState::SandboxNotready as i32 {
                if let Some(sandbox) = self.store.get(&s.id) {
                    sandbox.mark_stopping();
                }
            }
        }
        Ok(())
    }
}
