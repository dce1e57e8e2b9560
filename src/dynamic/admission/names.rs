//! KEP-5972: a name is unique among the pod's containers. It stays taken while any container of
//! the pod has it (in any state, every attempt) and while an add of it is in flight; once its
//! container is completely removed the name is free again, even while its final status is still
//! kept for GetContainer (state::removed).

use std::collections::HashSet;

use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;

/// Names a pod's containers hold, one way or another.
#[derive(Debug, Default)]
pub struct TakenNames {
    pub containers: HashSet<String>,
    pub in_flight: HashSet<String>,
}

pub fn check(specs: &[ContainerSpec], taken: &TakenNames) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        let name = &spec.name;
        if taken.containers.contains(name) || taken.in_flight.contains(name) {
            return Err(Error::AlreadyExists(format!(
                "containers[{i}].name: {name:?} is already used by a container of this pod (free again once that container is removed)",
            )));
        }
    }
    Ok(())
}
