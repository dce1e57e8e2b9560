//! Room for dynamic containers: the [`ledger`] of reserved growth (per-pod ceilings, node
//! budget) and the pod [`cgroups`] grown to hold it.

pub mod cgroups;
pub mod ledger;

pub use cgroups::{CgroupSettings, PodCgroups, Trigger};
pub use ledger::{Bounds, Ledger, growth_of};
