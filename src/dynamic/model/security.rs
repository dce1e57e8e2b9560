//! Privilege as podgraft compares it: what each of a pod's existing containers actually runs
//! with (read from the OCI spec containerd made for it, and its CRI config), what the pod's
//! sandbox config sets for all its containers, and the effective security settings a new
//! container is created with once inheritance and hardening are applied.

use std::collections::BTreeSet;

use k8s_cri::v1 as cri;
use serde_json::Value;

use super::kubelet::{MASKED_PATHS, READONLY_PATHS};
use super::spec::{ContainerSpec, ProcMount, Profile};

/// A seccomp profile as a running container has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompFact {
    Unconfined,
    /// Confined by a profile whose CRI name is known.
    Profile(Profile),
    /// Confined, by a profile podgraft cannot name (no CRI config): matches nothing.
    Other,
}

/// What one existing container runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSecurity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: BTreeSet<u32>,
    /// The bounding set, as `CAP_*` names: everything the process may ever hold.
    pub capabilities: BTreeSet<String>,
    pub no_new_privs: bool,
    pub readonly_rootfs: bool,
    pub masked_paths: BTreeSet<String>,
    pub readonly_paths: BTreeSet<String>,
    pub seccomp: SeccompFact,
    /// "" when unconfined.
    pub apparmor: String,
    /// The SELinux level of its label, "" without one.
    pub selinux_level: String,
}

/// What the sandbox config sets for every container of the pod (pod-level securityContext).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub seccomp: Option<Profile>,
    pub apparmor: Option<Profile>,
    pub selinux_level: String,
}

/// Everything podgraft compares a new container with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSecurity {
    pub sandbox: SandboxSecurity,
    pub containers: Vec<ContainerSecurity>,
}

/// The user an image runs as when nothing else says: `uid` if numeric, else a name podgraft
/// cannot check, else root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// The security settings a new container is created with: its own, inherited from the pod, or
/// hardened to the pod's. Kept with the container, so a restart runs with the same settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Effective {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub no_new_privs: bool,
    pub readonly_rootfs: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<Profile>,
    pub apparmor: Option<Profile>,
    pub selinux_level: String,
}

impl Effective {
    /// The container's own settings with the kubelet's defaults, before any comparison with its
    /// pod (what a container would get if nothing were checked).
    pub fn requested(spec: &ContainerSpec) -> Effective {
        let sc = &spec.security;
        let unmasked = sc.proc_mount == ProcMount::Unmasked;
        let paths = |list: &[&str]| -> Vec<String> {
            if unmasked {
                Vec::new()
            } else {
                list.iter().map(|p| p.to_string()).collect()
            }
        };
        Effective {
            run_as_user: sc.run_as_user,
            run_as_group: sc.run_as_group,
            supplemental_groups: Vec::new(),
            capabilities_add: sc.capabilities.add.clone(),
            capabilities_drop: sc.capabilities.drop.clone(),
            no_new_privs: sc.allow_privilege_escalation == Some(false),
            readonly_rootfs: sc.read_only_root_filesystem == Some(true),
            masked_paths: paths(&MASKED_PATHS),
            readonly_paths: paths(&READONLY_PATHS),
            seccomp: sc.seccomp.clone(),
            apparmor: sc.apparmor.clone(),
            selinux_level: sc.se_linux_level.clone(),
        }
    }
}

pub(crate) fn profile_from_cri(p: &cri::SecurityProfile) -> Option<Profile> {
    use cri::security_profile::ProfileType;
    match ProfileType::try_from(p.profile_type).ok()? {
        ProfileType::RuntimeDefault => Some(Profile::RuntimeDefault),
        ProfileType::Unconfined => Some(Profile::Unconfined),
        ProfileType::Localhost => Some(Profile::Localhost(p.localhost_ref.clone())),
    }
}

impl SandboxSecurity {
    pub fn of(config: &cri::PodSandboxConfig) -> SandboxSecurity {
        let Some(sc) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
        else {
            return SandboxSecurity::default();
        };
        SandboxSecurity {
            run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
            run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: sc.supplemental_groups.clone(),
            seccomp: sc.seccomp.as_ref().and_then(profile_from_cri),
            apparmor: sc.apparmor.as_ref().and_then(profile_from_cri),
            selinux_level: sc
                .selinux_options
                .as_ref()
                .map(|o| o.level.clone())
                .unwrap_or_default(),
        }
    }
}

/// The level of an SELinux label `user:role:type:level` (the level may itself hold colons).
fn selinux_level(label: &str) -> String {
    label.splitn(4, ':').nth(3).unwrap_or_default().to_string()
}

fn set<T: Ord + Clone>(v: &Option<Vec<T>>) -> BTreeSet<T> {
    v.iter().flatten().cloned().collect()
}

/// A profile from a CRI config as containerd prints it (Go JSON: the zero enum value,
/// RuntimeDefault, is omitted), or from the older path field ("runtime/default", "unconfined",
/// "localhost/<path>").
fn config_profile(sc: &Value, field: &str, legacy: &str) -> Option<Profile> {
    if let Some(v) = sc.get(field).filter(|v| v.is_object()) {
        let profile = cri::SecurityProfile {
            profile_type: v["profile_type"].as_i64().unwrap_or(0) as i32,
            localhost_ref: v["localhost_ref"].as_str().unwrap_or_default().to_string(),
        };
        return profile_from_cri(&profile);
    }
    match sc.get(legacy)?.as_str()? {
        "runtime/default" | "docker/default" => Some(Profile::RuntimeDefault),
        "unconfined" => Some(Profile::Unconfined),
        other => other
            .strip_prefix("localhost/")
            .map(|p| Profile::Localhost(p.to_string())),
    }
}

impl ContainerSecurity {
    /// From containerd's verbose ContainerStatus `info`: `runtimeSpec` (the OCI spec the
    /// container runs with) and `config` (its CRI config, for the profile names an OCI spec does
    /// not keep). `None` if the OCI spec cannot be read.
    pub fn from_verbose(name: &str, info: &Value) -> Option<ContainerSecurity> {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(info.get("runtimeSpec")?.clone()).ok()?;
        let process = spec.process().as_ref()?;
        let user = process.user();
        let capabilities = process
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().as_ref())
            .map(|caps| {
                caps.iter()
                    .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let linux = spec.linux().as_ref();
        let config_sc = &info["config"]["linux"]["security_context"];
        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            None => SeccompFact::Unconfined,
            Some(_) => match config_profile(config_sc, "seccomp", "seccomp_profile_path") {
                Some(p) if p != Profile::Unconfined => SeccompFact::Profile(p),
                _ => SeccompFact::Other,
            },
        };
        Some(ContainerSecurity {
            name: name.to_string(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: set(user.additional_gids()),
            capabilities,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            readonly_rootfs: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            masked_paths: linux.map(|l| set(l.masked_paths())).unwrap_or_default(),
            readonly_paths: linux.map(|l| set(l.readonly_paths())).unwrap_or_default(),
            seccomp,
            apparmor: process.apparmor_profile().clone().unwrap_or_default(),
            selinux_level: selinux_level(process.selinux_label().as_deref().unwrap_or("")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_container_runs_with_from_containerds_verbose_info() {
        let info = serde_json::json!({
            "config": {"linux": {"security_context": {"seccomp": {}}}},
            "runtimeSpec": {
                "ociVersion": "1.0.2",
                "process": {
                    "user": {"uid": 1000, "gid": 3000, "additionalGids": [3000, 4000]},
                    "cwd": "/",
                    "capabilities": {"bounding": ["CAP_NET_BIND_SERVICE"], "effective": []},
                    "noNewPrivileges": true,
                    "selinuxLabel": "system_u:system_r:container_t:s0:c1,c2"
                },
                "root": {"path": "rootfs", "readonly": true},
                "linux": {
                    "maskedPaths": ["/proc/kcore"],
                    "readonlyPaths": ["/proc/sys"],
                    "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}
                }
            }
        });
        let c = ContainerSecurity::from_verbose("main", &info).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 3000));
        assert_eq!(c.additional_gids, [3000, 4000].into());
        assert_eq!(c.capabilities, ["CAP_NET_BIND_SERVICE".to_string()].into());
        assert!(c.no_new_privs && c.readonly_rootfs);
        assert_eq!(c.seccomp, SeccompFact::Profile(Profile::RuntimeDefault));
        assert_eq!(c.selinux_level, "s0:c1,c2");
        assert!(c.masked_paths.contains("/proc/kcore"));
        let bare = serde_json::json!({"runtimeSpec": {"ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/"}}});
        let c = ContainerSecurity::from_verbose("main", &bare).unwrap();
        assert_eq!(c.seccomp, SeccompFact::Unconfined);
        assert!(c.capabilities.is_empty() && !c.no_new_privs);
        assert!(ContainerSecurity::from_verbose("x", &serde_json::json!({})).is_none());
    }
}
