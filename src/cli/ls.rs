//! `podgraft ls`: label selectors and watch mode.

use anyhow::bail;
use tokio_stream::StreamExt;

use crate::api::{self, DynamicContainer};

/// One requirement of a `--selector`, in kubectl's equality-based syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// `k=v,k2!=v2,k3,!k4`: every requirement must hold (an empty selector matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses the repeatable `--selector` values, each a comma-separated list.
    pub fn parse(values: &[String]) -> anyhow::Result<Self> {
        let mut reqs = Vec::new();
        for part in values.iter().flat_map(|v| v.split(',')) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            let key = match &req {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::Absent(k) => k,
            };
            if key.is_empty() {
                bail!("--selector {part:?}: use KEY=VALUE, KEY!=VALUE, KEY or !KEY");
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, c: &DynamicContainer) -> bool {
        let label = |k: &str| c.labels.get(k).map(String::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
        })
    }
}

pub type Client = api::control_client::ControlClient<tonic::transport::Channel>;

/// One listing, filtered by the selector.
pub async fn list(
    client: &mut Client,
    pod: Option<&api::PodRef>,
    selector: &Selector,
    include_removed: bool,
) -> Result<Vec<DynamicContainer>, tonic::Status> {
    let req = api::ListContainersRequest {
        pod: pod.cloned(),
        include_removed,
    };
    let mut list = client.list_containers(req).await?.into_inner().containers;
    list.retain(|c| selector.matches(c));
    Ok(list)
}

/// Watch mode: renders the listing, then again after every event (several events arriving
/// together give one re-render). Subscribes before the first listing so that nothing between
/// the two is missed. Returns when podgraft ends the stream.
pub async fn watch(
    client: &mut Client,
    pod: Option<&api::PodRef>,
    selector: &Selector,
    include_removed: bool,
    mut render: impl FnMut(&[DynamicContainer]),
) -> Result<(), tonic::Status> {
    let req = api::WatchEventsRequest {
        pod: pod.cloned(),
        since_sequence: 0,
    };
    let mut events = client.watch_events(req).await?.into_inner();
    render(&list(client, pod, selector, include_removed).await?);
    while let Some(ev) = events.next().await {
        ev?;
        // Coalesce a burst (an add of several containers, a pod stop) into one re-render.
        while let Ok(Some(more)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), events.next()).await
        {
            more?;
        }
        render(&list(client, pod, selector, include_removed).await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(pairs: &[(&str, &str)]) -> DynamicContainer {
        DynamicContainer {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_follow_kubectls_equality_syntax() {
        let c = labelled(&[("app", "tool"), ("tier", "debug")]);
        let sel = |s: &str| Selector::parse(&[s.to_string()]).unwrap();
        for yes in [
            "",
            "app=tool",
            "app==tool",
            "app=tool,tier",
            "app!=web",
            "!owner",
        ] {
            assert!(sel(yes).matches(&c), "{yes:?} should match");
        }
        for no in [
            "app=web",
            "owner",
            "!app",
            "app=tool,tier=prod",
            "tier!=debug",
        ] {
            assert!(!sel(no).matches(&c), "{no:?} should not match");
        }
        let both = Selector::parse(&["app=tool".into(), "tier=prod".into()]).unwrap();
        assert!(!both.matches(&c), "repeated --selector values all apply");
        for bad in ["=x", "!", " != y"] {
            let err = Selector::parse(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains("--selector"), "{bad:?}: {err}");
        }
    }
}
