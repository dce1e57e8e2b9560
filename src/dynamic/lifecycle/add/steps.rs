//! The steps of an add, each with its undo, in the order [`Chain`](super::super::chain::Chain)
//! runs them: the names reserved, the room made (ledger and pod cgroup), the add recorded for
//! crash recovery, then each container created and started.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_cri::v1 as cri;

use super::super::Lifecycle;
use super::super::chain::Step;
use crate::BoxFuture;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::{ContainerState, EventKind, PodId};
use crate::dynamic::registry::Entry;
use crate::dynamic::resources::{Bounds, Trigger};
use crate::dynamic::state::{Batch, Sandbox};
use crate::fault;

/// What every step of one add works on.
pub(super) struct AddCx<'a> {
    pub(super) lc: &'a Lifecycle,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) id: String,
    pub(super) pod: PodId,
    pub(super) config: cri::PodSandboxConfig,
}

/// The request's names, reserved while the add is in flight.
pub(super) struct ReserveNames(pub(super) Vec<String>);

impl Step<AddCx<'_>> for ReserveNames {
    fn name(&self) -> String {
        "reserve names".into()
    }

    fn run<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, Result<()>> {
        let result = cx
            .lc
            .registry
            .reserve_names(&cx.id, &self.0)
            .map_err(|name| {
                Error::AlreadyExists(format!("{name:?} is being added to this pod already"))
            });
        Box::pin(std::future::ready(result))
    }

    fn undo<'a>(&'a mut self, cx: &'a AddCx<'_>, _clean: bool) -> BoxFuture<'a, bool> {
        cx.lc.registry.release_names(&cx.id, &self.0);
        Box::pin(std::future::ready(true))
    }

    // The containers are in the registry by now, so the node never looks free of dynamic
    // containers in between.
    fn finish<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, ()> {
        cx.lc.registry.release_names(&cx.id, &self.0);
        Box::pin(std::future::ready(()))
    }
}

/// Room for the new containers: reserved in the ledger, then the pod cgroup grown to hold it,
/// before any of them exists.
pub(super) struct Grow {
    pub(super) growth: Vec<(String, crate::cgroup::Growth)>,
    pub(super) reserved: bool,
}

impl Step<AddCx<'_>> for Grow {
    fn name(&self) -> String {
        "reserve and grow".into()
    }

    fn run<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !cx.lc.cgroups.knows_baseline(&cx.sandbox) {
                // First growth of this pod: learn its baseline before the new reservation counts.
                cx.lc.cgroups.apply(&cx.sandbox, Trigger::Reconcile).await?;
            }
            cx.lc
                .ledger
                .reserve(&cx.id, Bounds::from_pod(&cx.config), &self.growth)?;
            self.reserved = true;
            cx.lc
                .cgroups
                .apply(&cx.sandbox, Trigger::GrowthChanged)
                .await?;
            fault::point("add.after_grow");
            Ok(())
        })
    }

    fn undo<'a>(&'a mut self, cx: &'a AddCx<'_>, _clean: bool) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if !self.reserved {
                return true;
            }
            let names: Vec<String> = self.growth.iter().map(|(n, _)| n.clone()).collect();
            cx.lc.ledger.release(&cx.id, &names);
            if let Err(e) = cx
                .lc
                .cgroups
                .apply(&cx.sandbox, Trigger::GrowthChanged)
                .await
            {
                tracing::warn!(sandbox = %cx.id, error = %e, "shrinking the pod after a failed add failed; reconcile will retry");
            }
            true
        })
    }
}

/// The add, on disk until it has finished or been rolled back (see `state::batches`).
pub(super) struct RecordBatch(pub(super) Batch);

impl Step<AddCx<'_>> for RecordBatch {
    fn name(&self) -> String {
        "record the add".into()
    }

    fn run<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            fault::point("add.before_record");
            cx.lc
                .batches
                .begin(&self.0)
                .await
                .map_err(|e| Error::Internal(format!("recording the add: {e}")))?;
            fault::point("add.after_record");
            Ok(())
        })
    }

    /// A container that could not be removed now is removed later: the record stays, and the
    /// batch becomes a tombstone that the supervisor sweeps (and the next start, after a crash).
    fn undo<'a>(&'a mut self, cx: &'a AddCx<'_>, clean: bool) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if clean {
                cx.lc.batches.end(&self.0).await;
            } else {
                let until = cx.lc.host.monotonic() + crate::dynamic::state::batches::TOMBSTONE_FOR;
                cx.lc.batches.bury(self.0.clone(), until);
            }
            clean
        })
    }

    fn finish<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            fault::point("add.before_end");
            cx.lc.batches.end(&self.0).await;
            fault::point("add.after_end");
        })
    }
}

/// One container, created and started; undone by stopping and removing it.
pub(super) struct CreateAndStart {
    pub(super) i: usize,
    pub(super) name: String,
    pub(super) config: Option<cri::ContainerConfig>,
    pub(super) created: Arc<std::sync::Mutex<Vec<String>>>,
    pub(super) id: Option<String>,
    /// Every group id the pod's running containers hold (primary, supplementary, pod-level).
    pub(super) allowed_gids: BTreeSet<u32>,
}

impl Step<AddCx<'_>> for CreateAndStart {
    fn name(&self) -> String {
        format!("containers[{}]: create and start", self.i)
    }

    fn run<'a>(&'a mut self, cx: &'a AddCx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (i, name) = (self.i, self.name.clone());
            let req = cri::CreateContainerRequest {
                pod_sandbox_id: cx.id.clone(),
                config: self.config.take(),
                sandbox_config: Some(cx.config.clone()),
            };
            fault::point("add.before_create");
            let cid = cx
                .lc
                .cri
                .create_container(req)
                .await
                .map_err(Error::runtime(format!(
                    "containers[{i}]: creating {name:?}"
                )))?;
            let entry = Entry {
                sandbox_id: cx.id.clone(),
                name: name.clone(),
                state: ContainerState::Created,
                attempt: 0,
            };
            fault::point("add.after_create");
            cx.lc.registry.upsert(&cid, entry);
            self.id = Some(cid.clone());
            cx.lc
                .check_image_groups(&cid, i, &name, &self.allowed_gids)
                .await?;
            // StopPodSandbox may have come since admission: the teardown's listing may not
            // have seen this container, so it must not start (the undo removes it).
            if cx.sandbox.is_stopping() {
                return Err(Error::FailedPrecondition(format!(
                    "sandbox {} is being torn down",
                    cx.id
                )));
            }
            self.created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cid.clone());
            cx.lc.emit(EventKind::Added, &cx.pod, &name, &cid, "");
            fault::point("add.before_start");
            cx.lc
                .cri
                .start_container(&cid)
                .await
                .map_err(Error::runtime(format!(
                    "containers[{i}]: starting {name:?}"
                )))?;
            fault::point("add.after_start");
            cx.lc.registry.set_state(&cid, ContainerState::Running);
            cx.lc
                .registry
                .started(&cx.id, &name, cx.lc.host.monotonic());
            cx.lc.emit(EventKind::Started, &cx.pod, &name, &cid, "");
            Ok(())
        })
    }

    fn undo<'a>(&'a mut self, cx: &'a AddCx<'_>, _clean: bool) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match &self.id {
                Some(cid) => cx.lc.destroy(cid, 0).await,
                None => true,
            }
        })
    }
}
