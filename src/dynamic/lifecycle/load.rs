//! Rebuilding what podgraft knows at start, from containerd (the source of truth) and the state
//! files: sandbox records, interrupted adds rolled back, the registry and the ledger filled from
//! the live dynamic containers, and the pod cgroups brought in line.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::{Lifecycle, dynamic_filter, name_of};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerState;
use crate::dynamic::model::keys::{BATCH_LABEL, SPEC_ANNOTATION};
use crate::dynamic::registry::Entry;
use crate::dynamic::resources::growth_of;

impl Lifecycle {
    pub async fn load(&self) -> Result<()> {
        self.store
            .load(self.cri.as_ref())
            .await
            .map_err(Error::runtime("loading sandboxes"))?;
        self.roll_back_interrupted_adds().await?;
        let containers = self
            .cri
            .list_containers(dynamic_filter(None))
            .await
            .map_err(Error::runtime("listing dynamic containers"))?;
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
        // Repair the pod cgroups (a crash may have left them half-grown).
        self.cgroups.reconcile().await;
        Ok(())
    }

    /// Each name's newest attempt: running ones count as started now; exited ones (they exited
    /// while podgraft was away) restart as their policy says.
    async fn resume_restarts(&self, containers: &[cri::Container]) {
        let mut newest: HashMap<(String, String), &cri::Container> = HashMap::new();
        for c in containers {
            let attempt = |c: &cri::Container| c.metadata.as_ref().map_or(0, |m| m.attempt);
            let key = (c.pod_sandbox_id.clone(), name_of(c).to_string());
            if newest.get(&key).is_none_or(|n| attempt(n) < attempt(c)) {
                newest.insert(key, c);
            }
        }
        let now = self.host.monotonic();
        for ((sandbox, name), c) in newest {
            match ContainerState::from_cri(c.state) {
                ContainerState::Exited => {
                    if let Ok(Some(status)) = self
                        .cri
                        .container_status(&c.id, false)
                        .await
                        .map(|s| s.status)
                    {
                        self.on_exit(
                            &sandbox,
                            &name,
                            &c.id,
                            status.exit_code,
                            &status.annotations,
                        );
                    }
                }
                _ => self.registry.started(&sandbox, &name, now),
            }
        }
    }

    /// Removes the containers of adds that a crash interrupted: an add is all or nothing, across
    /// restarts too.
    async fn roll_back_interrupted_adds(&self) -> Result<()> {
        for batch in self.batches.interrupted().await {
            let filter = cri::ContainerFilter {
                label_selector: [(BATCH_LABEL.to_string(), batch.id.clone())].into(),
                ..Default::default()
            };
            let found = self
                .cri
                .list_containers(filter)
                .await
                .map_err(Error::runtime("listing an interrupted add's containers"))?;
            tracing::warn!(sandbox = %batch.sandbox, names = ?batch.names, containers = found.len(), "rolling back an add interrupted by a restart");
            let mut all_gone = true;
            for c in &found {
                all_gone &= self.destroy(&c.id, 0).await;
            }
            if all_gone {
                self.batches.end(&batch).await;
            }
        }
        Ok(())
    }
}
