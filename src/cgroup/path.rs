//! From the cgroup parent the kubelet passes in RunPodSandbox to the pod cgroup's path.

use std::path::PathBuf;

use super::CgroupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `/kubepods/burstable/pod<uid>`
    Cgroupfs,
    /// `kubepods-burstable-pod<uid_with_underscores>.slice`
    Systemd,
}

impl Driver {
    pub fn of(cgroup_parent: &str) -> Driver {
        if cgroup_parent.ends_with(".slice") {
            Driver::Systemd
        } else {
            Driver::Cgroupfs
        }
    }
}

/// The pod cgroup's path relative to a hierarchy root. A systemd slice name expands into its
/// nested slices: `kubepods-burstable-podX.slice` → `kubepods.slice/kubepods-burstable.slice/
/// kubepods-burstable-podX.slice`.
pub fn relative_path(cgroup_parent: &str) -> Result<PathBuf, CgroupError> {
    let not_a_pod = || CgroupError::NotAPod(cgroup_parent.to_string());
    match Driver::of(cgroup_parent) {
        Driver::Cgroupfs => {
            let rel = cgroup_parent.trim_start_matches('/');
            let last = rel.rsplit('/').next().unwrap_or_default();
            if !last.starts_with("pod") || rel.split('/').any(|c| c.is_empty() || c == "..") {
                return Err(not_a_pod());
            }
            Ok(PathBuf::from(rel))
        }
        Driver::Systemd => {
            let name = cgroup_parent.rsplit('/').next().unwrap_or_default();
            let stem = name.strip_suffix(".slice").ok_or_else(not_a_pod)?;
            if !stem
                .rsplit('-')
                .next()
                .is_some_and(|p| p.starts_with("pod"))
                || stem.contains("..")
            {
                return Err(not_a_pod());
            }
            let mut path = PathBuf::new();
            let mut prefix = String::new();
            for part in stem.split('-') {
                if !prefix.is_empty() {
                    prefix.push('-');
                }
                prefix.push_str(part);
                path.push(format!("{prefix}.slice"));
            }
            Ok(path)
        }
    }
}
