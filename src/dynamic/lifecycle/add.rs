//! Adding containers: the images first (admission needs the user each runs as), then a chain of
//! steps run by [`Chain`]: under the pod's lock, admission against the pod (shape, QoS, names,
//! mounts, no escalation), the name reservation and the growth (ledger and pod cgroup); then the
//! crash-safety record and, per container, create-and-start. Any failure undoes every step
//! before it: all of the request's containers, or none.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_cri::v1 as cri;

use super::Lifecycle;
use super::chain::{Chain, Step};
use crate::BoxFuture;
use crate::dynamic::admission;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::BATCH_LABEL;
use crate::dynamic::model::security::{ContainerSecurity, ImageUser};
use crate::dynamic::model::spec::PullPolicy;
use crate::dynamic::model::{
    ContainerSpec, ContainerState, ContainerView, EventKind, PodId, PodSelector,
};
use crate::dynamic::registry::Entry;
use crate::dynamic::resources::{Bounds, Trigger, growth_of};
use crate::dynamic::state::{Batch, Sandbox};
use crate::fault;

/// What every step of one add works on.
struct AddCx<'a> {
    lc: &'a Lifecycle,
    sandbox: Arc<Sandbox>,
    id: String,
    pod: PodId,
    config: cri::PodSandboxConfig,
}

/// The request's names, reserved while the add is in flight.
struct ReserveNames(Vec<String>);

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
struct Grow {
    growth: Vec<(String, crate::cgroup::Growth)>,
    reserved: bool,
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
struct RecordBatch(Batch);

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
struct CreateAndStart {
    i: usize,
    name: String,
    config: Option<cri::ContainerConfig>,
    created: Arc<std::sync::Mutex<Vec<String>>>,
    id: Option<String>,
    /// Every group id the pod's running containers hold (primary, supplementary, pod-level).
    allowed_gids: BTreeSet<u32>,
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

fn image_user(image: cri::Image) -> ImageUser {
    ImageUser {
        uid: image.uid.map(|u| u.value),
        username: image.username,
    }
}

impl Lifecycle {
    /// The runtime adds the groups the image's `/etc/group` gives the user, which podgraft can
    /// see only once the container exists: checked before it starts, against the groups the
    /// pod's containers hold (a failure undoes the create).
    async fn check_image_groups(
        &self,
        cid: &str,
        i: usize,
        name: &str,
        allowed: &BTreeSet<u32>,
    ) -> Result<()> {
        let status = self
            .cri
            .container_status(cid, true)
            .await
            .map_err(Error::runtime(format!("containers[{i}]: reading {name:?}")))?;
        let info = status
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok());
        let Some(created) = info
            .as_ref()
            .and_then(|i| ContainerSecurity::from_verbose(name, i))
        else {
            return Err(Error::Internal(format!(
                "containers[{i}]: cannot read the groups {name:?} was created with"
            )));
        };
        let extra: Vec<u32> = created
            .additional_gids
            .iter()
            .chain(std::iter::once(&created.gid))
            .filter(|g| !allowed.contains(g))
            .copied()
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "containers[{i}].image: its user would get groups {extra:?} (from the image's /etc/group) that no container of the pod has"
        )))
    }

    /// The image of `containers[i]`, as `imagePullPolicy` asks, and the user it runs as. Pulled
    /// before admission, which needs that user (as the kubelet pulls before it creates).
    async fn ensure_image(
        &self,
        i: usize,
        spec: &ContainerSpec,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<ImageUser> {
        let status = || async {
            self.cri
                .image_status(&spec.image)
                .await
                .map_err(Error::runtime("checking the image"))
        };
        if spec.pull_policy != PullPolicy::Always {
            if let Some(image) = status().await? {
                return Ok(image_user(image));
            }
            if spec.pull_policy == PullPolicy::Never {
                return Err(Error::FailedPrecondition(format!(
                    "containers[{i}].image: {:?} is not present and imagePullPolicy is Never",
                    spec.image
                )));
            }
        }
        let auth = spec.registry_auth.clone().map(|a| cri::AuthConfig {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        self.cri
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: spec.image.clone(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map_err(Error::runtime(format!(
                "containers[{i}].image: pulling {:?}",
                spec.image
            )))?;
        Ok(status().await?.map(image_user).unwrap_or_default())
    }

    /// Adds and starts `specs` in the pod: all of them, or none.
    pub async fn add(
        &self,
        pod: &PodSelector,
        specs: Vec<ContainerSpec>,
    ) -> Result<Vec<ContainerView>> {
        admission::request(&specs)?;
        let sandbox = self.resolve(pod).await?;
        let id = sandbox.id();
        let config = sandbox.config();
        let cx = AddCx {
            lc: self,
            pod: PodId::new(&id, &config),
            sandbox: sandbox.clone(),
            id: id.clone(),
            config,
        };
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let created = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut images = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            images.push(self.ensure_image(i, spec, &cx.config).await?);
        }
        let mut chain = Chain::new(&cx);
        let allowed_gids: BTreeSet<u32>;
        let admitted = {
            // Admission, the name reservation and growth are one step per pod, so concurrent
            // adds never overshoot or take one name twice.
            let _guard = sandbox.lock.lock().await;
            let facts = self.pod_facts(&sandbox, &specs).await?;
            let admitted = admission::admit(&specs, &images, &facts)?;
            allowed_gids = facts
                .security
                .containers
                .iter()
                .flat_map(|c| std::iter::once(c.gid).chain(c.additional_gids.iter().copied()))
                .chain(
                    facts
                        .security
                        .sandbox
                        .supplemental_groups
                        .iter()
                        .filter_map(|g| u32::try_from(*g).ok()),
                )
                .collect();
            chain.run(ReserveNames(names.clone())).await?;
            let growth = specs
                .iter()
                .map(|s| (s.name.clone(), growth_of(s)))
                .collect();
            chain
                .run(Grow {
                    growth,
                    reserved: false,
                })
                .await?;
            admitted
        };
        let result = async {
            let batch = self.batches.next(&id, names.clone());
            let batch_id = batch.id.clone();
            chain.run(RecordBatch(batch)).await?;
            for (i, (spec, admitted)) in specs.iter().zip(admitted).enumerate() {
                let mut config = self.container_config(spec, &admitted, &cx.config, 0);
                config
                    .mounts
                    .push(self.termination_mount(&id, spec, 0).await?);
                config.labels.insert(BATCH_LABEL.into(), batch_id.clone());
                chain
                    .run(CreateAndStart {
                        i,
                        name: spec.name.clone(),
                        config: Some(config),
                        created: created.clone(),
                        id: None,
                        allowed_gids: allowed_gids.clone(),
                    })
                    .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(failure) = result {
            let rolled_back = created.lock().unwrap_or_else(|e| e.into_inner()).len();
            for spec in &specs {
                // The add's names were free: their termination files are the add's own.
                self.remove_termination_files(&id, Some(&spec.name)).await;
                self.emit(
                    EventKind::Failed,
                    &cx.pod,
                    &spec.name,
                    "",
                    &failure.to_string(),
                );
            }
            tracing::warn!(sandbox = %id, error = %failure, rolled_back, "add failed; rolled back");
            return Err(failure);
        }
        chain.finish().await;
        let ids = created.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::with_capacity(ids.len());
        for (cid, spec) in ids.iter().zip(specs) {
            self.start_probes(&cx.pod, &spec.name, cid, &spec);
            out.push(self.describe_after_add(&sandbox, cid, spec).await);
        }
        Ok(out)
    }

    /// The new container as containerd reports it; if that read fails, what podgraft knows: the
    /// containers exist and run, so the add must not look failed (a retry would only meet
    /// ALREADY_EXISTS).
    async fn describe_after_add(
        &self,
        sandbox: &Sandbox,
        cid: &str,
        spec: ContainerSpec,
    ) -> ContainerView {
        match self.describe(sandbox, cid).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(container = cid, error = %e, "reading a new container's status failed; answering with what is known");
                let pod = PodId::new(&sandbox.id(), &sandbox.config());
                ContainerView {
                    pod,
                    name: spec.name.clone(),
                    container_id: cid.to_string(),
                    state: ContainerState::Running,
                    log_path: format!("{}/{}/0.log", sandbox.config().log_directory, spec.name),
                    spec,
                    ..Default::default()
                }
            }
        }
    }
}
