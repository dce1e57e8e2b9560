//! Pods as requests name them and as podgraft reports them.

use k8s_cri::v1 as cri;

use super::keys::{POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};

/// How a request names a pod: exactly one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSelector {
    Name { namespace: String, name: String },
    Uid(String),
    Sandbox(String),
}

/// A pod as podgraft reports it: all four names filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodId {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
}

impl PodId {
    pub fn new(sandbox_id: &str, config: &cri::PodSandboxConfig) -> PodId {
        let meta = config.metadata.clone().unwrap_or_default();
        PodId {
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            sandbox_id: sandbox_id.to_string(),
        }
    }
}

impl PodSelector {
    /// The one place that decides whether a reported pod is the one a selector names (event
    /// filters and lookups agree on it).
    pub fn matches(&self, pod: &PodId) -> bool {
        match self {
            PodSelector::Name { namespace, name } => {
                pod.name == *name && pod.namespace == *namespace
            }
            PodSelector::Uid(uid) => pod.uid == *uid,
            PodSelector::Sandbox(id) => pod.sandbox_id == *id,
        }
    }

    /// The CRI sandbox filter that finds the selected pod's sandboxes.
    pub fn sandbox_filter(&self) -> cri::PodSandboxFilter {
        let mut filter = cri::PodSandboxFilter::default();
        match self {
            PodSelector::Sandbox(id) => filter.id = id.clone(),
            PodSelector::Uid(uid) => {
                filter
                    .label_selector
                    .insert(POD_UID_LABEL.into(), uid.clone());
            }
            PodSelector::Name { namespace, name } => {
                filter
                    .label_selector
                    .insert(POD_NAME_LABEL.into(), name.clone());
                filter
                    .label_selector
                    .insert(POD_NAMESPACE_LABEL.into(), namespace.clone());
            }
        }
        filter
    }
}

impl std::fmt::Display for PodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodSelector::Name { namespace, name } => write!(f, "pod {namespace}/{name}"),
            PodSelector::Uid(uid) => write!(f, "pod with UID {uid}"),
            PodSelector::Sandbox(id) => write!(f, "sandbox {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_by_their_one_way() {
        let pod = PodId {
            namespace: "default".into(),
            name: "agent".into(),
            uid: "u1".into(),
            sandbox_id: "sb".into(),
        };
        assert!(
            PodSelector::Name {
                namespace: "default".into(),
                name: "agent".into()
            }
            .matches(&pod)
        );
        assert!(
            !PodSelector::Name {
                namespace: "other".into(),
                name: "agent".into()
            }
            .matches(&pod)
        );
        assert!(PodSelector::Uid("u1".into()).matches(&pod));
        assert!(!PodSelector::Sandbox("u1".into()).matches(&pod));
        let filter = PodSelector::Uid("u1".into()).sandbox_filter();
        assert_eq!(filter.label_selector[POD_UID_LABEL], "u1");
    }
}
