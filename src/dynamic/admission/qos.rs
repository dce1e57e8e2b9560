//! KEP-5972: an added container never changes the pod's QoS class.

use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::kubelet::Qos;

/// Refuses a container that would change the pod's QoS class.
pub fn check(qos: Qos, spec: &ContainerSpec, i: usize) -> Result<()> {
    let (req, lim) = (&spec.resources.requests, &spec.resources.limits);
    let field = format!("containers[{i}].resources");
    match qos {
        Qos::BestEffort => {
            if !spec.resources.is_empty() {
                return Err(Error::invalid(
                    field,
                    "the pod is BestEffort: its containers may set no requests or limits",
                ));
            }
        }
        Qos::Guaranteed => {
            for (name, request, limit) in [
                ("cpu", &req.cpu, &lim.cpu),
                ("memory", &req.memory, &lim.memory),
            ] {
                let Some(limit) = limit else {
                    return Err(Error::invalid(
                        format!("{field}.limits.{name}"),
                        "the pod is Guaranteed: every container needs cpu and memory limits",
                    ));
                };
                if request.as_ref().is_some_and(|r| r.value != limit.value) {
                    return Err(Error::invalid(
                        format!("{field}.requests.{name}"),
                        "the pod is Guaranteed: requests must equal limits",
                    ));
                }
            }
        }
        // A Burstable pod stays Burstable whatever is added: its existing containers keep it so.
        Qos::Burstable => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::spec::testing::with_resources as spec;

    fn check_qos(qos: Qos, spec: &ContainerSpec, i: usize) -> Result<()> {
        check(qos, spec, i)
    }

    #[test]
    fn qos_class_never_changes() {
        assert!(check_qos(Qos::BestEffort, &spec(("", ""), ("", "")), 0).is_ok());
        assert!(check_qos(Qos::BestEffort, &spec(("100m", ""), ("", "")), 0).is_err());
        assert!(check_qos(Qos::Guaranteed, &spec(("", ""), ("1", "64Mi")), 0).is_ok());
        assert!(check_qos(Qos::Guaranteed, &spec(("1000m", "64Mi"), ("1", "64Mi")), 0).is_ok());
        match check_qos(Qos::Guaranteed, &spec(("500m", ""), ("1", "64Mi")), 3) {
            Err(Error::InvalidArgument { field, .. }) => {
                assert_eq!(field, "containers[3].resources.requests.cpu")
            }
            other => panic!("{other:?}"),
        }
        assert!(check_qos(Qos::Guaranteed, &spec(("", ""), ("1", "")), 0).is_err());
        assert!(check_qos(Qos::Burstable, &spec(("100m", ""), ("", "1Gi")), 0).is_ok());
    }
}
