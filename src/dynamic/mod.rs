//! Dynamic containers (KEP-5972, node side): containers added to a running, opted-in pod.
//!
//! - [`manager`]: the [`Manager`], its state and pod lookup; its operations live in `add` (validate,
//!   admit, grow, pull, create, start, roll back), `remove`, `queries` (list, get, exec) and `pods`
//!   (the pod lifecycle the relay reports, exit detection).
//! - [`sandboxes`]: which pods are mutable and the sandbox config their containers are created with.
//! - [`validate`], [`translate`], [`quantity`]: from a user's container spec to a CRI config.
//! - [`resources`], [`growth`]: QoS-preserving admission against pod ceilings and the node budget,
//!   and keeping each pod cgroup at the kubelet's baseline plus its dynamic containers' growth.
//! - [`events`]: the resumable event stream.

mod add;
pub mod batches;
pub mod error;
pub mod events;
pub mod growth;
pub mod manager;
mod pods;
pub mod quantity;
mod queries;
mod remove;
pub mod resources;
pub mod sandboxes;
pub mod translate;
pub mod validate;

pub use error::{Error, Result};
pub use manager::{Manager, ManagerSettings};
