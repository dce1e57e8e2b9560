//! A mutable sandbox's config rebuilt from containerd's verbose PodSandboxStatus, for pods that
//! started while podgraft was not running (or whose record was lost).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use serde_json::Value;

/// The pod's cgroup parent from the sandbox's OCI runtime spec, when the recorded config lacks it:
/// the parent of the pause container's `cgroupsPath` (cgroupfs `/kubepods/…/pod<uid>/<id>`, systemd
/// `kubepods-…-pod<uid>.slice:cri-containerd:<id>`).
pub fn cgroup_parent_from_spec(spec: &Value) -> Option<String> {
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec.clone()).ok()?;
    let path = spec.linux().as_ref()?.cgroups_path().clone()?;
    let path = path.to_str()?;
    match path.split_once(':') {
        Some((slice, _)) => Some(slice.to_string()),
        None => Some(std::path::Path::new(path).parent()?.to_str()?.to_string()),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_default()
}

fn map(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default()
}

/// The parts of a PodSandboxConfig that container creation uses, from containerd's verbose
/// sandbox info (the CRI message as JSON with snake_case names and empty fields omitted).
pub fn config_from_verbose(c: &Value) -> Option<cri::PodSandboxConfig> {
    let meta = c.get("metadata")?;
    let linux = &c["linux"];
    let sc = &linux["security_context"];
    let ns = &sc["namespace_options"];
    Some(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: s(&meta["name"]),
            uid: s(&meta["uid"]),
            namespace: s(&meta["namespace"]),
            attempt: i(&meta["attempt"]) as u32,
        }),
        hostname: s(&c["hostname"]),
        log_directory: s(&c["log_directory"]),
        dns_config: c.get("dns_config").map(|d| cri::DnsConfig {
            servers: strings(&d["servers"]),
            searches: strings(&d["searches"]),
            options: strings(&d["options"]),
        }),
        labels: map(&c["labels"]),
        annotations: map(&c["annotations"]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: s(&linux["cgroup_parent"]),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: i(&ns["network"]) as i32,
                    pid: i(&ns["pid"]) as i32,
                    ipc: i(&ns["ipc"]) as i32,
                    target_id: s(&ns["target_id"]),
                    ..Default::default()
                }),
                run_as_user: sc.get("run_as_user").map(|u| cri::Int64Value {
                    value: i(&u["value"]),
                }),
                run_as_group: sc.get("run_as_group").map(|g| cri::Int64Value {
                    value: i(&g["value"]),
                }),
                readonly_rootfs: sc["readonly_rootfs"].as_bool().unwrap_or(false),
                supplemental_groups: sc["supplemental_groups"]
                    .as_array()
                    .map(|a| a.iter().map(i).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            sysctls: map(&linux["sysctls"]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_config_from_containerd_verbose_info() {
        // Shape of containerd 1.6's verbose PodSandboxStatus "info" (trimmed).
        let info: Value = serde_json::from_str(
            r#"{"pid":1,"runtimeHandler":"podgraft","config":{"metadata":{"name":"web","uid":"u-1","namespace":"default"},
            "hostname":"web","log_directory":"/var/log/pods/default_web_u-1","labels":{"io.kubernetes.pod.uid":"u-1"},
            "linux":{"cgroup_parent":"/kubepods/burstable/podu-1","security_context":{"namespace_options":{"pid":1}}}}}"#,
        )
        .unwrap();
        let c = config_from_verbose(&info["config"]).unwrap();
        assert_eq!(c.metadata.unwrap().uid, "u-1");
        assert_eq!(c.log_directory, "/var/log/pods/default_web_u-1");
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/burstable/podu-1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!((ns.network, ns.pid, ns.ipc), (0, 1, 0));
        assert!(config_from_verbose(&Value::Null).is_none());
    }

    #[test]
    fn cgroup_parent_from_the_pause_containers_oci_spec() {
        let spec =
            |path: &str| serde_json::json!({"ociVersion": "1.0.2", "linux": {"cgroupsPath": path}});
        assert_eq!(
            cgroup_parent_from_spec(&spec("/kubepods/burstable/podu-1/abc123")).as_deref(),
            Some("/kubepods/burstable/podu-1")
        );
        assert_eq!(
            cgroup_parent_from_spec(&spec(
                "kubepods-burstable-podu_1.slice:cri-containerd:abc123"
            ))
            .as_deref(),
            Some("kubepods-burstable-podu_1.slice")
        );
        assert_eq!(
            cgroup_parent_from_spec(&serde_json::json!({"ociVersion": "1.0.2"})),
            None
        );
    }
}
