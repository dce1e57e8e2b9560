//! Least privilege for podgraft itself. Running as root (the socket directories, pod cgroups,
//! the state dir and containerd's socket are root's), podgraft needs only a few capabilities on
//! top of file ownership; at start it drops every other one from all its capability sets,
//! bounding set included, and sets no_new_privs, so nothing it ever executes regains them.
//!
//! | capability | why |
//! | --- | --- |
//! | CAP_CHOWN | giving the sockets `socket_group` |
//! | CAP_DAC_OVERRIDE | writing pod cgroup files and state files not owned by root (e.g. delegated cgroups) |
//! | CAP_DAC_READ_SEARCH | reading kubelet directories (seccomp profiles, volume paths) whatever their mode |
//! | CAP_FOWNER | setting the mode of the sockets it creates under a directory it does not own |

use caps::{CapSet, Capability, CapsHashSet};

/// What podgraft keeps.
pub const KEPT: [Capability; 4] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
];

#[derive(Debug, thiserror::Error)]
#[error("dropping capabilities: {0}")]
pub struct PrivilegeError(String);

/// Drops every capability but [`KEPT`] from the bounding, inheritable, ambient, permitted and
/// effective sets, and sets no_new_privs. Call once at start, before any thread exists (the
/// sets are per thread).
pub fn drop_to_needed() -> Result<(), PrivilegeError> {
    let keep: CapsHashSet = KEPT.into_iter().collect();
    let err = |e: caps::errors::CapsError| PrivilegeError(e.to_string());
    // The bounding set needs CAP_SETPCAP, which goes with the permitted set: bounding first.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).map_err(err)? {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        let current = caps::read(None, set).map_err(err)?;
        let kept: CapsHashSet = current.intersection(&keep).copied().collect();
        caps::set(None, set, &kept).map_err(err)?;
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers and changes only this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(PrivilegeError(std::io::Error::last_os_error().to_string()));
    }
    Ok(())
}
