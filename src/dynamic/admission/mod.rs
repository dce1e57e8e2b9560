//! Every rule that can refuse an add. Each is a function of the typed request and facts about
//! the pod, so all of them are unit-tested without a runtime; lifecycle code gathers the facts and
//! acts on the decision.
//!
//! - [`shape`]: the request on its own (names, sizes, paths; no privileged, no hostPort);
//! - [`qos`]: the pod's QoS class never changes;
//! - [`names`]: names unique among all containers ever in the pod;
//! - [`mounts`]: only volumes the pod already mounts, never with more rights;
//! - [`security`] (with [`caps`]): no more privilege than the pod's containers run with.

pub mod caps;
pub mod mounts;
pub mod names;
pub mod qos;
pub mod security;
pub mod shape;

use std::collections::{BTreeSet, HashMap};

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::model::ContainerSpec;
use super::model::kubelet::{Qos, seccomp_profile_path};
use super::model::security::{Effective, ImageUser, PodSecurity};
use super::model::spec::Profile;
pub use names::TakenNames;

/// How many dynamic containers there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_pod: usize,
    pub per_node: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_pod: 64,
            per_node: 1024,
        }
    }
}

/// What admission needs to know about the pod a request adds to.
#[derive(Debug)]
pub struct PodFacts {
    pub sandbox_id: String,
    /// StopPodSandbox has arrived.
    pub stopping: bool,
    /// Dynamic containers of the pod and of the node, existing or being added.
    pub dynamic_in_pod: usize,
    pub dynamic_on_node: usize,
    pub limits: Limits,
    /// At least one of the kubelet's containers runs (KEP-5972: Running pods only).
    pub kubelet_running: bool,
    pub qos: Qos,
    pub names: TakenNames,
    /// What the kubelet's containers mount (only read when a container asks for a mount).
    pub mounts: Vec<cri::Mount>,
    /// What the kubelet's containers run with, and what the sandbox sets for all of them.
    pub security: PodSecurity,
    /// Seccomp profiles (node paths) the request names that do not exist on the node.
    pub missing_profiles: BTreeSet<String>,
    /// Host paths of the pod's and the request's mounts, resolved on the node (`..` and
    /// symlinks); a path not in here is compared as [`mounts::lexical`] folds it.
    pub resolved_paths: HashMap<String, String>,
}

/// What admission decided for one container; kept with it (annotation
/// [`ADMITTED_ANNOTATION`](crate::dynamic::model::keys::ADMITTED_ANNOTATION)) for its restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Admitted {
    /// Its mounts, resolved to the pod's own.
    pub mounts: Vec<cri::Mount>,
    /// Its security settings: its own, inherited or hardened to the pod's.
    pub security: Effective,
}

/// The checks that need no pod: run before anything is looked up.
pub fn request(specs: &[ContainerSpec]) -> Result<()> {
    shape::batch(specs)?;
    specs
        .iter()
        .enumerate()
        .try_for_each(|(i, spec)| shape::container(spec, i))
}

/// The checks against the pod, with the user each container's image runs as.
pub fn admit(
    specs: &[ContainerSpec],
    images: &[ImageUser],
    pod: &PodFacts,
) -> Result<Vec<Admitted>> {
    let id = &pod.sandbox_id;
    if pod.stopping {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {id} is being torn down"
        )));
    }
    if !pod.kubelet_running {
        return Err(Error::FailedPrecondition(format!(
            "sandbox {id} has no running container: dynamic containers join running pods only"
        )));
    }
    for (scope, have, max, key) in [
        (
            "the pod",
            pod.dynamic_in_pod,
            pod.limits.per_pod,
            "max_dynamic_per_pod",
        ),
        (
            "the node",
            pod.dynamic_on_node,
            pod.limits.per_node,
            "max_dynamic_per_node",
        ),
    ] {
        if have + specs.len() > max {
            return Err(Error::ResourceExhausted(format!(
                "containers: {scope} has {have} dynamic containers; adding {} would pass its limit of {max} ({key})",
                specs.len()
            )));
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        qos::check(pod.qos, spec, i)?;
    }
    names::check(specs, &pod.names)?;
    specs
        .iter()
        .zip(images)
        .enumerate()
        .map(|(i, (spec, image))| {
            if let Some(Profile::Localhost(path)) = &spec.security.seccomp {
                let node_path = seccomp_profile_path(path);
                if pod.missing_profiles.contains(&node_path) {
                    return Err(Error::invalid(
                        format!("containers[{i}].securityContext.seccompProfile"),
                        format!("{node_path} does not exist on the node"),
                    ));
                }
            }
            Ok(Admitted {
                security: security::harden(spec, i, &pod.security, image)?,
                mounts: mounts::mounts(spec, i, &pod.mounts, &|p: &str| {
                    pod.resolved_paths
                        .get(p)
                        .cloned()
                        .unwrap_or_else(|| mounts::lexical(p))
                })?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::security::ContainerSecurity;

    fn facts() -> PodFacts {
        PodFacts {
            sandbox_id: "sb".into(),
            stopping: false,
            dynamic_in_pod: 0,
            dynamic_on_node: 0,
            limits: Limits::default(),
            kubelet_running: true,
            qos: Qos::Burstable,
            names: TakenNames::default(),
            mounts: vec![],
            security: PodSecurity {
                containers: vec![
                    ContainerSecurity::from_verbose(
                        "main",
                        &serde_json::json!({"runtimeSpec": {"ociVersion": "1.0.2",
                        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/"}}}),
                    )
                    .unwrap(),
                ],
                ..Default::default()
            },
            missing_profiles: BTreeSet::new(),
            resolved_paths: HashMap::new(),
        }
    }

    fn admit(specs: &[ContainerSpec], pod: &PodFacts) -> Result<Vec<Admitted>> {
        super::admit(specs, &vec![ImageUser::default(); specs.len()], pod)
    }

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "busybox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_pod_must_run_and_names_stay_unique() {
        let admitted = admit(&[spec("a")], &facts()).unwrap();
        assert_eq!(admitted.len(), 1);
        assert!(admitted[0].mounts.is_empty());
        let stopping = PodFacts {
            stopping: true,
            ..facts()
        };
        assert!(matches!(
            admit(&[spec("a")], &stopping),
            Err(Error::FailedPrecondition(m)) if m.contains("torn down")
        ));
        let idle = PodFacts {
            kubelet_running: false,
            ..facts()
        };
        assert!(matches!(
            admit(&[spec("a")], &idle),
            Err(Error::FailedPrecondition(m)) if m.contains("no running container")
        ));
        let full = PodFacts {
            dynamic_in_pod: 63,
            ..facts()
        };
        assert!(matches!(
            admit(&[spec("a"), spec("b")], &full),
            Err(Error::ResourceExhausted(m)) if m.contains("max_dynamic_per_pod")
        ));
        let busy = PodFacts {
            dynamic_on_node: 1024,
            ..facts()
        };
        assert!(matches!(
            admit(&[spec("a")], &busy),
            Err(Error::ResourceExhausted(m)) if m.contains("max_dynamic_per_node")
        ));
        for taken in [
            TakenNames {
                containers: ["b".to_string()].into(),
                ..Default::default()
            },
            TakenNames {
                in_flight: ["b".to_string()].into(),
                ..Default::default()
            },
        ] {
            let pod = PodFacts {
                names: taken,
                ..facts()
            };
            assert!(matches!(
                admit(&[spec("a"), spec("b")], &pod),
                Err(Error::AlreadyExists(m)) if m.starts_with("containers[1].name")
            ));
        }
    }

    #[test]
    fn a_seccomp_file_that_does_not_exist_is_invalid_before_any_runtime_call() {
        let spec = ContainerSpec {
            security: crate::dynamic::model::spec::SecurityContext {
                seccomp: Some(Profile::Localhost("profiles/none.json".into())),
                ..Default::default()
            },
            ..spec("a")
        };
        let pod = PodFacts {
            missing_profiles: ["/var/lib/kubelet/seccomp/profiles/none.json".to_string()].into(),
            ..facts()
        };
        match admit(&[spec], &pod) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "containers[0].securityContext.seccompProfile");
                assert!(reason.contains("does not exist"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
