//! Adding containers: the images first (admission needs the user each runs as), then a chain of
//! steps run by [`Chain`]: under the pod's lock, admission against the pod (shape, QoS, names,
//! mounts, no escalation), the name reservation and the growth (ledger and pod cgroup); then the
//! crash-safety record and, per container, create-and-start. Any failure undoes every step
//! before it: all of the request's containers, or none.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_cri::v1 as cri;

mod steps;

use super::Lifecycle;
use super::chain::Chain;
use crate::dynamic::admission;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::BATCH_LABEL;
use crate::dynamic::model::security::{ContainerSecurity, ImageUser};
use crate::dynamic::model::spec::PullPolicy;
use crate::dynamic::model::{
    ContainerSpec, ContainerState, ContainerView, EventKind, PodId, PodSelector,
};
use crate::dynamic::resources::growth_of;
use crate::dynamic::state::Sandbox;
use steps::{AddCx, CreateAndStart, Grow, RecordBatch, ReserveNames};

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
