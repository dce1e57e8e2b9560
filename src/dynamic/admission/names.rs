//! KEP-5972: a name is unique among all containers ever in the pod. It stays taken while any
//! container of the pod has it (in any state), while an add of it is in flight, and for the pod's
//! last removals.

use std::collections::HashSet;

use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::state::REMOVED_NAMES_KEPT;

/// Names a pod's containers hold, one way or another.
#[derive(Debug, Default)]
pub struct TakenNames {
    pub containers: HashSet<String>,
    pub removed: HashSet<String>,
    pub in_flight: HashSet<String>,
}

pub fn check(specs: &[ContainerSpec], taken: &TakenNames) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        let name = &spec.name;
        if taken.containers.contains(name)
            || taken.removed.contains(name)
            || taken.in_flight.contains(name)
        {
            return Err(Error::AlreadyExists(format!(
                "containers[{i}].name: {name:?} is already used by a container of this pod (names of removed containers stay taken for the last {REMOVED_NAMES_KEPT} removals)",
            )));
        }
    }
    Ok(())
}
