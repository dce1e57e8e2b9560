//! Wire types of the control API to the domain's types and back. Parsing lives here: a policy
//! string that is not one of its values, a malformed quantity or profile, a pod named two ways,
//! each becomes INVALID_ARGUMENT naming the field. Rules about what may be added live in
//! `dynamic::admission`. `to_model` parses requests; `to_api` shows the domain's values.

mod to_api;
mod to_model;

use base64::Engine;
use prost::Message;

use crate::api;
use crate::dynamic::Error;
use crate::dynamic::model::{ContainerSpec, PodSelector};

pub use to_api::{api_spec, container, event, pod_ref};
pub use to_model::{container_spec, container_specs};

type Result<T> = std::result::Result<T, Error>;

/// Parses an enum field; empty means the default.
fn choice<T: Copy + Default>(field: &str, value: &str, allowed: &[(&str, T)]) -> Result<T> {
    if value.is_empty() {
        return Ok(T::default());
    }
    allowed
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            Error::invalid(
                field,
                format!("{value:?} is not one of {}", names.join(", ")),
            )
        })
}

/// The pod a request names: exactly one of namespace+name, uid or sandbox_id.
pub fn pod_selector(pod: Option<&api::PodRef>) -> Result<PodSelector> {
    let Some(pod) = pod else {
        return Err(Error::invalid("pod", "is required"));
    };
    let by_name = !pod.name.is_empty() || !pod.namespace.is_empty();
    let ways = [by_name, !pod.uid.is_empty(), !pod.sandbox_id.is_empty()];
    if ways.iter().filter(|w| **w).count() != 1 {
        return Err(Error::invalid(
            "pod",
            "set exactly one of namespace+name, uid or sandbox_id",
        ));
    }
    if by_name && (pod.name.is_empty() || pod.namespace.is_empty()) {
        return Err(Error::invalid(
            if pod.name.is_empty() {
                "pod.name"
            } else {
                "pod.namespace"
            },
            "is required with the other",
        ));
    }
    Ok(if !pod.sandbox_id.is_empty() {
        PodSelector::Sandbox(pod.sandbox_id.clone())
    } else if !pod.uid.is_empty() {
        PodSelector::Uid(pod.uid.clone())
    } else {
        PodSelector::Name {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        }
    })
}

/// A pod filter (list, watch): unset or empty means every pod.
pub fn pod_filter(pod: Option<&api::PodRef>) -> Result<Option<PodSelector>> {
    match pod {
        Some(p) if *p != api::PodRef::default() => pod_selector(Some(p)).map(Some),
        _ => Ok(None),
    }
}

/// Reads the spec annotation of containers made by podgraft builds that stored the control API's
/// protobuf (base64) there; handed to `dynamic` as its legacy decoder.
pub fn legacy_spec(text: &str) -> Option<ContainerSpec> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let spec = api::ContainerSpec::decode(raw.as_slice()).ok()?;
    container_spec(&spec, 0)
        .inspect_err(|e| tracing::warn!(error = %e, "unreadable stored container spec"))
        .ok()
}

#[cfg(test)]
mod tests;
