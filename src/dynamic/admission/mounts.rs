//! KEP-5972: no new volumes. An added container mounts only what the pod's containers already
//! mount, never with more rights than they have.

use std::collections::HashSet;

use k8s_cri::v1 as cri;

use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;

/// `path` with `.` and `..` folded by text: what is left when no symlink is known.
pub fn lexical(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Resolves the spec's volume mounts to mounts the pod's existing containers already have: a mount
/// names a pod volume (the last component of the kubelet's host path) or an existing host path.
/// Host paths are compared as `resolve` gives them (`..` and symlinks resolved on the node), so
/// no spelling reaches beyond what the pod mounts.
pub fn mounts(
    spec: &ContainerSpec,
    i: usize,
    existing: &[cri::Mount],
    resolve: &dyn Fn(&str) -> String,
) -> Result<Vec<cri::Mount>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(spec.volume_mounts.len());
    for (j, vm) in spec.volume_mounts.iter().enumerate() {
        let field = format!("containers[{i}].volumeMounts[{j}]");
        if !vm.mount_path.starts_with('/') {
            return Err(Error::invalid(
                format!("{field}.mountPath"),
                format!("{:?} must be an absolute path", vm.mount_path),
            ));
        }
        if !seen.insert(vm.mount_path.as_str()) {
            return Err(Error::invalid(
                format!("{field}.mountPath"),
                format!("{:?} is mounted twice", vm.mount_path),
            ));
        }
        let source = existing.iter().find(|m| {
            if vm.host_path.is_empty() {
                !vm.name.is_empty()
                    && m.host_path.trim_end_matches('/').rsplit('/').next()
                        == Some(vm.name.as_str())
            } else {
                resolve(&m.host_path) == resolve(&vm.host_path)
            }
        });
        let Some(source) = source else {
            let what = if vm.host_path.is_empty() {
                &vm.name
            } else {
                &vm.host_path
            };
            return Err(Error::PermissionDenied(format!(
                "{field}: {what:?} is not a volume of this pod; dynamic containers may only mount what the pod's containers already mount"
            )));
        };
        out.push(cri::Mount {
            container_path: vm.mount_path.clone(),
            host_path: source.host_path.clone(),
            // Never weaker than the existing mount: read-only stays read-only.
            readonly: vm.read_only || source.readonly,
            selinux_relabel: source.selinux_relabel,
            propagation: source.propagation,
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::spec::VolumeMount;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidArgument { field, .. } => field,
            Error::PermissionDenied(m) => format!("denied:{}", m.split(':').next().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn mounts_only_what_the_pod_already_mounts() {
        let existing = vec![cri::Mount {
            host_path: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/scratch".into(),
            container_path: "/scratch".into(),
            readonly: true,
            ..Default::default()
        }];
        let mut s = ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            ..Default::default()
        };
        s.volume_mounts = vec![VolumeMount {
            name: "scratch".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }];
        let plain = |p: &str| lexical(p);
        let mounts = |s: &ContainerSpec, i, existing: &[cri::Mount]| mounts(s, i, existing, &plain);
        let m = mounts(&s, 0, &existing).unwrap();
        assert_eq!(m[0].host_path, existing[0].host_path);
        assert!(m[0].readonly, "a read-only volume stays read-only");
        s.volume_mounts[0].name = "secrets".into();
        assert_eq!(
            field_of(mounts(&s, 0, &existing).unwrap_err()),
            "denied:containers[0].volumeMounts[0]"
        );
        s.volume_mounts[0].name = String::new();
        s.volume_mounts[0].host_path = "/etc".into();
        assert!(matches!(
            mounts(&s, 0, &existing),
            Err(Error::PermissionDenied(_))
        ));
        // Another spelling of the pod's volume is that volume, mounted as the pod mounts it...
        s.volume_mounts[0].host_path =
            "/var/lib/kubelet/pods/u1/volumes/./kubernetes.io~empty-dir/x/../scratch/".into();
        let m = mounts(&s, 0, &existing).unwrap();
        assert_eq!(m[0].host_path, existing[0].host_path);
        assert!(m[0].readonly);
        // ...and a spelling that climbs out of it is not.
        s.volume_mounts[0].host_path =
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/scratch/../../../../../etc"
                .into();
        assert!(matches!(
            mounts(&s, 0, &existing),
            Err(Error::PermissionDenied(_))
        ));
        // A symlink is compared by where it leads.
        let via_link = |p: &str| {
            if p == "/srv/link" {
                existing[0].host_path.clone()
            } else {
                lexical(p)
            }
        };
        s.volume_mounts[0].host_path = "/srv/link".into();
        let m = super::mounts(&s, 0, &existing, &via_link).unwrap();
        assert_eq!(m[0].host_path, existing[0].host_path);
        assert_eq!(lexical("/a/./b/../../c//d/"), "/c/d");
    }
}
