//! Finding a pod on a CRI socket by name or sandbox ID, reading its config back, its image, and
//! the `ps` table.

use anyhow::{Context, bail};
use k8s_cri::v1 as cri;
use tonic::transport::Channel;

use super::{Listed, Runtime, status};

/// `[NAMESPACE/]NAME` → (namespace, name); the namespace is "default" if omitted.
pub fn split_name(pod: &str) -> (String, String) {
    match pod.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => ("default".to_string(), pod.to_string()),
    }
}

/// The sandbox `pod` names: a sandbox ID (or a unique prefix of one), else `[NAMESPACE/]NAME`
/// by the kubelet's labels; of several attempts of one pod, the ready one, else the newest.
pub async fn resolve(rt: &mut Runtime, pod: &str) -> anyhow::Result<cri::PodSandbox> {
    let all = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(status("ListPodSandbox"))?
        .into_inner()
        .items;
    let by_id: Vec<_> = all.iter().filter(|s| s.id.starts_with(pod)).collect();
    match by_id.as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        _ => bail!("{pod:?} is a prefix of several sandbox IDs"),
    }
    let (namespace, name) = split_name(pod);
    all.into_iter()
        .filter(|s| {
            s.metadata
                .as_ref()
                .is_some_and(|m| m.namespace == namespace && m.name == name)
        })
        .max_by_key(|s| {
            (
                s.state == cri::PodSandboxState::SandboxReady as i32,
                s.created_at,
            )
        })
        .with_context(|| format!("no pod {namespace}/{name} and no sandbox ID {pod:?}"))
}

/// The pod's config as the runtime recorded it (containerd's verbose status), which
/// CreateContainer wants alongside the container's own.
pub async fn sandbox_config(
    rt: &mut Runtime,
    sandbox: &str,
) -> anyhow::Result<cri::PodSandboxConfig> {
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.to_string(),
            verbose: true,
        })
        .await
        .map_err(status("PodSandboxStatus"))?
        .into_inner();
    let info: serde_json::Value = status
        .info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .with_context(|| format!("sandbox {sandbox}: no verbose info in its status"))?;
    crate::dynamic::state::verbose::config_from_verbose(&info["config"])
        .with_context(|| format!("sandbox {sandbox}: no config in its verbose info"))
}

/// Pulls `image` unless the runtime has it (the kubelet's IfNotPresent).
pub async fn ensure_image(channel: Channel, image: &str) -> anyhow::Result<()> {
    let mut images = cri::image_service_client::ImageServiceClient::new(channel);
    let spec = cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let present = images
        .image_status(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .map_err(status("ImageStatus"))?
        .into_inner()
        .image
        .is_some();
    if !present {
        images
            .pull_image(cri::PullImageRequest {
                image: Some(spec),
                ..Default::default()
            })
            .await
            .map_err(status("PullImage"))?;
    }
    Ok(())
}

/// `CONTAINER NAME STATE POD IMAGE`, IDs shortened to 13 characters as crictl does.
pub fn container_table(list: &[Listed]) -> String {
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|c| {
            [
                c.id.chars().take(13).collect(),
                c.name.clone(),
                c.state.clone(),
                c.pod.clone(),
                c.image.clone(),
            ]
        })
        .collect();
    let header = ["CONTAINER", "NAME", "STATE", "POD", "IMAGE"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_the_default_namespace() {
        assert_eq!(split_name("demo"), ("default".into(), "demo".into()));
        assert_eq!(split_name("ns/demo"), ("ns".into(), "demo".into()));
    }

    #[test]
    fn table_aligns_columns_and_shortens_ids() {
        let table = container_table(&[Listed {
            id: "0123456789abcdef0123".into(),
            name: "app".into(),
            state: "RUNNING".into(),
            pod: "default/demo".into(),
            sandbox_id: "s".into(),
            image: "busybox".into(),
        }]);
        assert_eq!(
            table,
            "CONTAINER      NAME  STATE    POD           IMAGE\n\
             0123456789abc  app   RUNNING  default/demo  busybox\n"
        );
    }
}
