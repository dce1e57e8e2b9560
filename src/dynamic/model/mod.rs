//! The typed domain of dynamic containers. The control edge converts its wire types into these
//! (and back); nothing under `dynamic/` sees a control-API type.
//!
//! - [`spec`]: a container as requested, with enums and parsed quantities;
//! - [`pod`]: how a request names a pod, and how podgraft reports one;
//! - [`view`]: a container as podgraft reports it, and its lifecycle events;
//! - [`keys`]: the labels and annotations podgraft reads and writes on containers;
//! - [`kubelet`]: the kubelet's formulas (QoS class, CPU shares and quota, oom_score_adj);
//! - [`quantity`]: Kubernetes resource quantities;
//! - [`security`]: privilege as podgraft compares it (what containers run with, what a new one gets).

pub mod keys;
pub mod kubelet;
pub mod pod;
pub mod quantity;
pub mod security;
pub mod spec;
pub mod view;

pub use pod::{PodId, PodSelector};
pub use spec::ContainerSpec;
pub use view::{ContainerState, ContainerView, Event, EventKind};
