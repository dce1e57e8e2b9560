//! Every rule that can refuse an add. Each is a function of the typed request and facts about
//! the pod, so all of them are unit-tested without a runtime; lifecycle code gathers the facts and
//! acts on the decision.
//!
//! - [`shape`]: the request on its own (names, sizes, paths; no privileged, no hostPort);
//! - [`qos`]: the pod's QoS class never changes;
//! - [`names`]: names unique among all containers ever in the pod;
//! - [`mounts`]: only volumes the pod already mounts, never with more rights.

pub mod mounts;
pub mod names;
pub mod qos;
pub mod shape;

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::model::ContainerSpec;
use super::model::kubelet::Qos;
pub use names::TakenNames;

/// What admission needs to know about the pod a request adds to.
#[derive(Debug)]
pub struct PodFacts {
    pub sandbox_id: String,
    /// StopPodSandbox has arrived.
    pub stopping: bool,
    /// At least one of the kubelet's containers runs (KEP-5972: Running pods only).
    pub kubelet_running: bool,
    pub qos: Qos,
    pub names: TakenNames,
    /// What the kubelet's containers mount (only read when a container asks for a mount).
    pub mounts: Vec<cri::Mount>,
}

/// The checks that need no pod: run before anything is looked up.
pub fn request(specs: &[ContainerSpec]) -> Result<()> {
    shape::batch(specs)?;
    specs
        .iter()
        .enumerate()
        .try_for_each(|(i, spec)| shape::container(spec, i))
}

/// The checks against the pod; returns each container's mounts, resolved to the pod's own.
pub fn admit(specs: &[ContainerSpec], pod: &PodFacts) -> Result<Vec<Vec<cri::Mount>>> {
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
    for (i, spec) in specs.iter().enumerate() {
        qos::check(pod.qos, spec, i)?;
    }
    names::check(specs, &pod.names)?;
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| mounts::mounts(spec, i, &pod.mounts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PodFacts {
        PodFacts {
            sandbox_id: "sb".into(),
            stopping: false,
            kubelet_running: true,
            qos: Qos::Burstable,
            names: TakenNames::default(),
            mounts: vec![],
        }
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
        assert_eq!(admit(&[spec("a")], &facts()).unwrap(), vec![vec![]]);
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
        for taken in [
            TakenNames {
                containers: ["b".to_string()].into(),
                ..Default::default()
            },
            TakenNames {
                removed: ["b".to_string()].into(),
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
}
