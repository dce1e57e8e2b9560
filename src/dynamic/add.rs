//! Adding containers: validation against the pod, admission and pod growth, then pull, create
//! and start each container, all rolled back if any step fails.

use std::collections::HashSet;

use k8s_cri::v1 as cri;

use super::batches::BATCH_LABEL;
use super::error::{Error, Result};
use super::growth::Trigger;
use super::manager::{Manager, name_of, pod_ref};
use super::resources::{self, Bounds};
use super::sandboxes::Sandbox;
use super::translate::{self, DYNAMIC_LABEL};
use super::validate;
use crate::api::{ContainerSpec, DynamicContainer, PodRef, event::Type as EventType};

impl Manager {
    /// Adds and starts `specs` in the pod: all of them, or none (each step is rolled back).
    pub async fn add(
        &self,
        pod: Option<&PodRef>,
        specs: Vec<ContainerSpec>,
    ) -> Result<Vec<DynamicContainer>> {
        if specs.is_empty() || specs.len() > validate::MAX_BATCH {
            return Err(Error::invalid(
                "containers",
                format!("give 1 to {} containers", validate::MAX_BATCH),
            ));
        }
        let mut names = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            validate::spec(spec, i)?;
            if !names.insert(spec.name.as_str()) {
                return Err(Error::invalid(
                    format!("containers[{i}].name"),
                    format!("{:?} appears twice in the request", spec.name),
                ));
            }
        }
        let sandbox = self.resolve(pod).await?;
        let id = sandbox.id();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let prepared = {
            // Validation against the pod, resource admission, growing the pod cgroup and the name
            // reservation are one step per pod, so concurrent adds never overshoot.
            let _guard = sandbox.lock.lock().await;
            let prepared = self.prepare(&sandbox, &specs).await?;
            if sandbox.record().cgroup.is_none() {
                // First growth of this pod: learn its baseline before the new reservation counts.
                self.apply_growth(&sandbox, Trigger::Reconcile)?;
            }
            let batch: Vec<_> = specs
                .iter()
                .map(|s| (s.name.clone(), resources::growth_of(s)))
                .collect();
            self.ledger
                .reserve(&id, Bounds::from_pod(&sandbox.config()), &batch)?;
            // Grow the pod before any of its new containers exists.
            if let Err(e) = self.apply_growth(&sandbox, Trigger::GrowthChanged) {
                self.ledger.release(&id, &names);
                return Err(e);
            }
            self.pending
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .extend(names.iter().cloned());
            prepared
        };
        let result = self.create_all(&sandbox, &specs, prepared).await;
        if let Some(set) = self.pending.lock().unwrap().get_mut(&id) {
            for name in &names {
                set.remove(name);
            }
        }
        if result.is_err() {
            // The containers are gone again: shrink the pod back.
            let _guard = sandbox.lock.lock().await;
            self.ledger.release(&id, &names);
            if let Err(e) = self.apply_growth(&sandbox, Trigger::GrowthChanged) {
                tracing::warn!(sandbox = %id, error = %e, "shrinking the pod after a failed add failed; reconcile will retry");
            }
        }
        let ids = result?;
        let mut out = Vec::with_capacity(ids.len());
        for cid in ids {
            out.push(self.describe_container(&sandbox, &cid).await?);
        }
        Ok(out)
    }

    /// Checks the pod's state, name uniqueness and mounts; returns each container's CRI config.
    async fn prepare(
        &self,
        sandbox: &Sandbox,
        specs: &[ContainerSpec],
    ) -> Result<Vec<cri::ContainerConfig>> {
        let id = sandbox.id();
        if sandbox.is_stopping() {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} is being torn down"
            )));
        }
        let all = self
            .cri
            .list_containers(cri::ContainerFilter {
                pod_sandbox_id: id.clone(),
                ..Default::default()
            })
            .await
            .map_err(Error::runtime("listing the pod's containers"))?;
        let kubelet: Vec<_> = all
            .iter()
            .filter(|c| !c.labels.contains_key(DYNAMIC_LABEL))
            .collect();
        if !kubelet
            .iter()
            .any(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} has no running container: dynamic containers join running pods only"
            )));
        }
        let config = sandbox.config();
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or("");
        let qos = translate::Qos::from_cgroup_parent(parent);
        for (i, spec) in specs.iter().enumerate() {
            resources::check_qos(qos, spec, i)?;
        }
        let removed = sandbox.record().removed_names.clone();
        let pending = self
            .pending
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default();
        for (i, spec) in specs.iter().enumerate() {
            let taken = all.iter().any(|c| name_of(c) == spec.name)
                || removed.contains(&spec.name)
                || pending.contains(&spec.name);
            if taken {
                return Err(Error::AlreadyExists(format!(
                    "containers[{i}].name: {:?} is already used by a container of this pod (names of removed containers stay taken for the last {} removals)",
                    spec.name,
                    super::sandboxes::REMOVED_NAMES_KEPT
                )));
            }
        }
        let mut existing_mounts = Vec::new();
        if specs.iter().any(|s| !s.volume_mounts.is_empty()) {
            for c in &kubelet {
                let status = self
                    .cri
                    .container_status(&c.id, false)
                    .await
                    .map_err(Error::runtime("reading the pod's mounts"))?;
                existing_mounts.extend(status.status.map(|s| s.mounts).unwrap_or_default());
            }
        }
        let config = sandbox.config();
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mounts = validate::mounts(spec, i, &existing_mounts)?;
                Ok(translate::container_config(
                    spec,
                    &config,
                    mounts,
                    0,
                    self.settings.memory_capacity,
                ))
            })
            .collect()
    }

    async fn ensure_image(
        &self,
        spec: &ContainerSpec,
        i: usize,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<()> {
        let policy = if spec.image_pull_policy.is_empty() {
            "IfNotPresent"
        } else {
            spec.image_pull_policy.as_str()
        };
        if policy != "Always" {
            let present = self
                .cri
                .image_status(&spec.image)
                .await
                .map_err(Error::runtime("checking the image"))?
                .is_some();
            if present {
                return Ok(());
            }
            if policy == "Never" {
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
        Ok(())
    }

    /// Pulls, creates and starts each container; on any failure removes every container this call
    /// created and reports the failure.
    async fn create_all(
        &self,
        sandbox: &Sandbox,
        specs: &[ContainerSpec],
        configs: Vec<cri::ContainerConfig>,
    ) -> Result<Vec<String>> {
        let id = sandbox.id();
        let pod_config = sandbox.config();
        let pod = pod_ref(&id, &pod_config);
        let names = specs.iter().map(|s| s.name.clone()).collect();
        let batch = self
            .batches
            .begin(&id, names)
            .map_err(|e| Error::Internal(format!("recording the add: {e}")))?;
        let mut created: Vec<String> = Vec::new();
        let mut failure = None;
        for (i, (spec, mut config)) in specs.iter().zip(configs).enumerate() {
            config.labels.insert(BATCH_LABEL.into(), batch.id.clone());
            if let Err(e) = self.ensure_image(spec, i, &pod_config).await {
                failure = Some(e);
                break;
            }
            let req = cri::CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            };
            match self.cri.create_container(req).await {
                Ok(cid) => {
                    self.ids
                        .lock()
                        .unwrap()
                        .insert(cid.clone(), cri::ContainerState::ContainerCreated);
                    created.push(cid.clone());
                    self.emit(EventType::Added, &pod, &spec.name, &cid, "");
                    if let Err(e) = self.cri.start_container(&cid).await {
                        failure = Some(Error::runtime(format!(
                            "containers[{i}]: starting {:?}",
                            spec.name
                        ))(e));
                        break;
                    }
                    self.ids
                        .lock()
                        .unwrap()
                        .insert(cid.clone(), cri::ContainerState::ContainerRunning);
                    self.emit(EventType::Started, &pod, &spec.name, &cid, "");
                }
                Err(e) => {
                    failure = Some(Error::runtime(format!(
                        "containers[{i}]: creating {:?}",
                        spec.name
                    ))(e));
                    break;
                }
            }
        }
        let Some(failure) = failure else {
            self.batches.end(&batch);
            return Ok(created);
        };
        let mut all_gone = true;
        for cid in created.iter().rev() {
            all_gone &= self.destroy(cid, 0).await;
        }
        // A container that could not be removed now is removed at the next start.
        if all_gone {
            self.batches.end(&batch);
        }
        for spec in specs {
            self.emit(
                EventType::Failed,
                &pod,
                &spec.name,
                "",
                &failure.to_string(),
            );
        }
        tracing::warn!(sandbox = %id, error = %failure, rolled_back = created.len(), "add failed; rolled back");
        Err(failure)
    }
}
