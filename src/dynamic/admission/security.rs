//! No escalation: an added container never holds more privilege than the pod's existing
//! containers actually run with. Stricter than KEP-5972 (which leaves this to API-server
//! admission), because nothing stands in front of podgraft's control socket.
//!
//! The new container's settings are first completed as Kubernetes would (unset fields inherit the
//! pod-level securityContext of the sandbox, then the runtime's and the image's defaults apply),
//! then compared field by field with what the pod's containers run with. Per field, a value the
//! user set that goes beyond the pod is refused (PERMISSION_DENIED naming the field); a value that
//! only inheritance or defaults produced is hardened to the pod's where the pod has one value
//! for it, and refused otherwise:
//!
//! | field | compared with | unset and escalating |
//! | --- | --- | --- |
//! | capabilities | union of the bounding sets of the containers running as the same user | drop ALL, add the defaults those have |
//! | runAsUser | uids in use; non-root if all are | the pod's uid if it has one, else refused |
//! | runAsGroup | gids in use | the pod's gid if it has one, else refused |
//! | allowPrivilegeEscalation | no_new_privs if every container has it | no_new_privs set |
//! | readOnlyRootFilesystem | read-only if every container has it | read-only |
//! | procMount / masked and read-only paths | Unmasked only if a container is; never fewer paths | the paths every container masks are added |
//! | seccomp | profiles in use; Unconfined only if a container is | the pod's profile if it has one, else RuntimeDefault if in use, else refused |
//! | AppArmor | profiles in use; unconfined only if a container is | the pod's profile if it has one, else refused |
//! | SELinux level | levels in use, or the sandbox's | (the runtime applies the sandbox's) |

use std::collections::BTreeSet;

use super::caps::{self, CapName};
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::kubelet::{MASKED_PATHS, READONLY_PATHS, seccomp_profile_path};
use crate::dynamic::model::security::{Effective, ImageUser, PodSecurity, SeccompFact};
use crate::dynamic::model::spec::{ProcMount, Profile};

/// containerd's name for its default AppArmor profile.
pub const APPARMOR_RUNTIME_DEFAULT: &str = "cri-containerd.apparmor.d";

fn denied(field: String, why: String) -> Error {
    Error::PermissionDenied(format!("{field}: {why}"))
}

/// The one value every container has, if they agree.
fn single<T: Ord + Clone>(values: impl Iterator<Item = T>) -> Option<T> {
    let set: BTreeSet<T> = values.collect();
    (set.len() == 1).then(|| set.into_iter().next().unwrap())
}

/// The effective security settings for `spec` (container `i` of the request) in this pod, or
/// why it would hold more than the pod's containers.
pub fn harden(
    spec: &ContainerSpec,
    i: usize,
    pod: &PodSecurity,
    image: &ImageUser,
) -> Result<Effective> {
    let f = |name: &str| format!("containers[{i}].securityContext.{name}");
    if pod.containers.is_empty() {
        return Err(Error::FailedPrecondition(
            "the pod has no container to compare privileges with".into(),
        ));
    }
    let mut out = Effective {
        supplemental_groups: pod.sandbox.supplemental_groups.clone(),
        ..Effective::default()
    };
    identity(spec, pod, image, &f, &mut out)?;
    // The user it runs as, now settled: capabilities are judged against the containers that run
    // as that same user, so root from one container and capabilities from another never combine.
    let uid = out
        .run_as_user
        .or(image.uid)
        .or_else(|| image.username.is_empty().then_some(0));
    capabilities(spec, pod, uid, &f, &mut out)?;
    flags(spec, pod, &f, &mut out)?;
    paths(spec, pod, &f, &mut out)?;
    seccomp(spec, pod, &f, &mut out)?;
    apparmor(spec, pod, &f, &mut out)?;
    selinux(spec, pod, &f, &mut out)?;
    Ok(out)
}

fn capabilities(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    uid: Option<i64>,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let sc = &spec.security;
    let parse = |names: &[String]| -> Vec<CapName> {
        // Names were validated by shape: unknown ones cannot reach here.
        names.iter().filter_map(|n| CapName::parse(n)).collect()
    };
    let (add, drop) = (parse(&sc.capabilities.add), parse(&sc.capabilities.drop));
    let held: BTreeSet<String> = pod
        .containers
        .iter()
        .filter(|c| Some(c.uid as i64) == uid)
        .flat_map(|c| c.capabilities.iter().cloned())
        .collect();
    let wanted = caps::effective(&add, &drop);
    let excess: Vec<&String> = wanted.difference(&held).collect();
    if excess.is_empty() {
        out.capabilities_add = add.iter().map(CapName::cri_name).collect();
        out.capabilities_drop = drop.iter().map(CapName::cri_name).collect();
        return Ok(());
    }
    if add.is_empty() && drop.is_empty() {
        // Unset: the runtime's defaults would exceed the pod. Keep the defaults it has.
        out.capabilities_drop = vec!["ALL".into()];
        out.capabilities_add = caps::RUNTIME_DEFAULT
            .iter()
            .filter(|c| held.contains(**c))
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect();
        return Ok(());
    }
    let added_explicitly = excess
        .iter()
        .any(|c| add.contains(&CapName::Cap((*c).clone())) || add.contains(&CapName::All));
    let field = if added_explicitly {
        f("capabilities.add")
    } else {
        f("capabilities.drop")
    };
    let names: Vec<&str> = excess.iter().map(|c| c.as_str()).collect();
    Err(denied(
        field,
        format!(
            "{} beyond what the pod's containers running as this user hold ({}); drop them",
            names.join(", "),
            if held.is_empty() {
                "none".to_string()
            } else {
                held.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        ),
    ))
}

fn identity(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    image: &ImageUser,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let sc = &spec.security;
    let uids: BTreeSet<i64> = pod.containers.iter().map(|c| c.uid as i64).collect();
    let gids: BTreeSet<i64> = pod.containers.iter().map(|c| c.gid as i64).collect();
    let list = |s: &BTreeSet<i64>| s.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    // The uid it would run as: its own, the pod's, the image's (None: a user name podgraft
    // cannot resolve).
    let inherited_uid = sc.run_as_user.or(pod.sandbox.run_as_user);
    let uid = inherited_uid
        .or(image.uid)
        .or_else(|| image.username.is_empty().then_some(0));
    // An id the user set must be one the pod's containers run with.
    let in_use =
        |field: &str, explicit: Option<i64>, set: &BTreeSet<i64>, what: &str| match explicit {
            Some(id) if !set.contains(&id) => Err(denied(
                f(field),
                format!("{id} is not among the pod's {what} ({})", list(set)),
            )),
            _ => Ok(()),
        };
    in_use("runAsUser", sc.run_as_user, &uids, "users")?;
    out.run_as_user = inherited_uid;
    if uid.is_none_or(|u| !uids.contains(&u)) {
        let Some(pods) = single(uids.iter().copied()) else {
            return Err(denied(
                f("runAsUser"),
                format!(
                    "unset, and the image's user ({}) is not among the pod's users ({}); set one",
                    uid.map_or_else(|| image.username.clone(), |u| u.to_string()),
                    list(&uids)
                ),
            ));
        };
        out.run_as_user = Some(pods);
    }
    let uid = out.run_as_user.or(uid);
    if sc.run_as_non_root == Some(true) && uid == Some(0) {
        return Err(Error::invalid(
            f("runAsNonRoot"),
            "the container would run as root (uid 0)",
        ));
    }
    // The primary group: its own, the pod's; unset, the runtime takes the user's group from the
    // image, which podgraft knows only for root (0).
    let inherited_gid = sc.run_as_group.or(pod.sandbox.run_as_group);
    in_use("runAsGroup", sc.run_as_group, &gids, "groups")?;
    out.run_as_group = inherited_gid;
    let gid = inherited_gid.or_else(|| (uid == Some(0)).then_some(0));
    if gid.is_none_or(|g| !gids.contains(&g)) {
        let (Some(pods), Some(uid)) = (single(gids.iter().copied()), uid) else {
            return Err(denied(
                f("runAsGroup"),
                format!(
                    "unset, and the pod's containers run with groups {}; set one",
                    list(&gids)
                ),
            ));
        };
        // CRI takes a group only together with a user.
        out.run_as_user = Some(uid);
        out.run_as_group = Some(pods);
    }
    Ok(())
}

/// A restriction every container of the pod has is kept: `restricted` says whether the user's
/// setting asks for it (`None`: unset, so hardened); the result is whether the new container has it.
fn kept(all_have_it: bool, restricted: Option<bool>, field: String, what: &str) -> Result<bool> {
    match restricted {
        Some(false) if all_have_it => {
            Err(denied(field, format!("every container of the pod {what}")))
        }
        Some(wanted) => Ok(wanted),
        None => Ok(all_have_it),
    }
}

fn flags(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let sc = &spec.security;
    out.no_new_privs = kept(
        pod.containers.iter().all(|c| c.no_new_privs),
        sc.allow_privilege_escalation.map(|allow| !allow),
        f("allowPrivilegeEscalation"),
        "runs with no_new_privs",
    )?;
    out.readonly_rootfs = kept(
        pod.containers.iter().all(|c| c.readonly_rootfs),
        sc.read_only_root_filesystem,
        f("readOnlyRootFilesystem"),
        "has a read-only root filesystem",
    )?;
    Ok(())
}

fn paths(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    if spec.security.proc_mount == ProcMount::Unmasked {
        if !pod.containers.iter().any(|c| c.masked_paths.is_empty()) {
            return Err(denied(
                f("procMount"),
                "Unmasked, but every container of the pod has masked paths".into(),
            ));
        }
        return Ok(());
    }
    // The kubelet's defaults, plus whatever every container of the pod masks beyond them.
    let common = |sets: Vec<&BTreeSet<String>>| -> BTreeSet<String> {
        let mut iter = sets.into_iter();
        let first = iter.next().cloned().unwrap_or_default();
        iter.fold(first, |acc, s| acc.intersection(s).cloned().collect())
    };
    let masked = common(pod.containers.iter().map(|c| &c.masked_paths).collect());
    let readonly = common(pod.containers.iter().map(|c| &c.readonly_paths).collect());
    let with = |defaults: &[&str], extra: BTreeSet<String>| -> Vec<String> {
        let mut v: Vec<String> = defaults.iter().map(|p| p.to_string()).collect();
        v.extend(
            extra
                .into_iter()
                .filter(|p| !defaults.contains(&p.as_str())),
        );
        v
    };
    out.masked_paths = with(&MASKED_PATHS, masked);
    out.readonly_paths = with(&READONLY_PATHS, readonly);
    Ok(())
}

fn seccomp(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let facts: Vec<&SeccompFact> = pod.containers.iter().map(|c| &c.seccomp).collect();
    // Nothing is beyond an unconfined container.
    let any_unconfined = facts.contains(&&SeccompFact::Unconfined);
    let in_use = |p: &Profile| facts.contains(&&SeccompFact::Profile(p.clone()));
    let explicit = spec.security.seccomp.clone();
    // Unset everywhere, the runtime runs it unconfined (as the kubelet's unset field does).
    let wanted = match explicit.clone().or_else(|| pod.sandbox.seccomp.clone()) {
        // Compared as the node path containerd is given.
        Some(Profile::Localhost(path)) => Profile::Localhost(seccomp_profile_path(&path)),
        Some(p) => p,
        None => Profile::Unconfined,
    };
    let allowed = any_unconfined || (wanted != Profile::Unconfined && in_use(&wanted));
    if allowed {
        out.seccomp = Some(wanted);
        return Ok(());
    }
    if let Some(explicit) = explicit {
        return Err(denied(
            f("seccompProfile"),
            format!("{explicit:?} is not a profile the pod's containers run with"),
        ));
    }
    let named: Vec<&Profile> = facts
        .iter()
        .filter_map(|s| match s {
            SeccompFact::Profile(p) => Some(p),
            _ => None,
        })
        .collect();
    let hardened = single(named.iter().map(|p| (*p).clone())).or_else(|| {
        named
            .contains(&&Profile::RuntimeDefault)
            .then_some(Profile::RuntimeDefault)
    });
    match hardened {
        Some(p) => {
            out.seccomp = Some(p);
            Ok(())
        }
        None => Err(denied(
            f("seccompProfile"),
            "unset, and the pod's containers run with profiles podgraft cannot name; set one they use"
                .into(),
        )),
    }
}

fn apparmor(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let in_use: BTreeSet<&str> = pod.containers.iter().map(|c| c.apparmor.as_str()).collect();
    let explicit = spec.security.apparmor.clone();
    let wanted = explicit.clone().or_else(|| pod.sandbox.apparmor.clone());
    // What the container would run with, as the OCI spec names it. Unset is the runtime's
    // default: its profile where the node has AppArmor, which only an in-use check can tell.
    let oci = match &wanted {
        None => None,
        Some(Profile::Unconfined) => Some(""),
        Some(Profile::RuntimeDefault) => Some(APPARMOR_RUNTIME_DEFAULT),
        Some(Profile::Localhost(name)) => Some(name.as_str()),
    };
    let allowed = in_use.contains("")
        || match oci {
            Some(name) => in_use.contains(name),
            // The runtime default applies: the same as the pod's containers got if they run it.
            None => in_use.contains(APPARMOR_RUNTIME_DEFAULT),
        };
    if allowed {
        out.apparmor = wanted;
        return Ok(());
    }
    if let Some(explicit) = explicit {
        return Err(denied(
            f("appArmorProfile"),
            format!("{explicit:?} is not a profile the pod's containers run with"),
        ));
    }
    match single(in_use.iter().copied()) {
        Some(name) => {
            out.apparmor = Some(if name == APPARMOR_RUNTIME_DEFAULT {
                Profile::RuntimeDefault
            } else {
                Profile::Localhost(name.to_string())
            });
            Ok(())
        }
        None => Err(denied(
            f("appArmorProfile"),
            "unset, and the pod's containers run with different profiles; set one they use".into(),
        )),
    }
}

fn selinux(
    spec: &ContainerSpec,
    pod: &PodSecurity,
    f: &dyn Fn(&str) -> String,
    out: &mut Effective,
) -> Result<()> {
    let level = &spec.security.se_linux_level;
    out.selinux_level = if level.is_empty() {
        pod.sandbox.selinux_level.clone()
    } else {
        level.clone()
    };
    if level.is_empty()
        || *level == pod.sandbox.selinux_level
        || pod.containers.iter().any(|c| c.selinux_level == *level)
    {
        return Ok(());
    }
    Err(denied(
        f("seLinuxOptions.level"),
        format!("{level:?} is not a level the pod's containers run with"),
    ))
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
