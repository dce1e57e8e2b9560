//! A guard that keeps tests off the host's own podgraft: its sockets, state and config.
//!
//! A test that binds `/run/podgraft/control.sock` or loads and prunes `/var/lib/podgraft` would, on
//! a node where podgraft is installed but stopped, take over its socket or delete its sandbox
//! records. Every place that opens one of those paths calls [`check`] first, which refuses them in
//! unit tests (`cfg(test)`) and in any process started with [`FORBID_ENV`] set to a non-empty value,
//! as the integration tests and benchmarks start the podgraft binary. Elsewhere it allows all.

use std::path::{Component, Path, PathBuf};

/// The host's podgraft directories: sockets, state and config.
pub const HOST_ROOTS: [&str; 3] = ["/run/podgraft", "/var/lib/podgraft", "/etc/podgraft"];

/// Set to a non-empty value, makes this process refuse paths under [`HOST_ROOTS`].
pub const FORBID_ENV: &str = "PODGRAFT_FORBID_HOST_PATHS";

/// A refused path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path}: refusing a path of the host's podgraft (under {root}) in a unit test or with {FORBID_ENV} set"
)]
pub struct HostPathError {
    /// The path as it was given.
    pub path: PathBuf,
    /// The host directory it lies in.
    pub root: &'static str,
}

/// Refuses `path` if it lies under one of [`HOST_ROOTS`] while host paths are forbidden (in unit
/// tests, or with [`FORBID_ENV`] set); allows every path otherwise.
pub fn check(path: &Path) -> Result<(), HostPathError> {
    if forbidden() {
        refuse_host_path(path)
    } else {
        Ok(())
    }
}

fn forbidden() -> bool {
    cfg!(test) || std::env::var_os(FORBID_ENV).is_some_and(|v| !v.is_empty())
}

/// Refuses `path` if it lies under one of [`HOST_ROOTS`], by its text (relative paths taken from
/// the current directory, `.` and `..` folded) or once the part of it that exists has its symbolic
/// links resolved (`/var/run` is a link to `/run`).
fn refuse_host_path(path: &Path) -> Result<(), HostPathError> {
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    for candidate in [normalize(&absolute), resolve(&absolute)] {
        if let Some(root) = HOST_ROOTS.iter().find(|r| candidate.starts_with(r)) {
            return Err(HostPathError {
                path: path.to_path_buf(),
                root,
            });
        }
    }
    Ok(())
}

/// Folds `.` and `..` by the text alone, as if no component were a symbolic link.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // `..` of the root is the root.
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The longest existing ancestor of `path` with its links resolved, the rest appended as text.
fn resolve(path: &Path) -> PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = ancestor.canonicalize() {
            let rest = path.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return normalize(&real.join(rest));
        }
    }
    normalize(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> bool {
        check(Path::new(path)).is_err()
    }

    #[test]
    fn refuses_the_host_roots_and_everything_below_them() {
        for root in HOST_ROOTS {
            assert!(refused(root), "{root}");
            assert!(refused(&format!("{root}/")), "{root}/");
            assert!(refused(&format!("{root}/control.sock")), "{root}");
            assert!(refused(&format!("{root}/a/b/c")), "{root}");
        }
        assert!(refused("/run/podgraft/podgraft.sock"));
        assert!(refused("/var/lib/podgraft/sandboxes"));
        assert!(refused("/etc/podgraft/config.toml"));
    }

    #[test]
    fn the_error_names_the_path_and_its_root() {
        let err = check(Path::new("/var/lib/podgraft/x.json")).unwrap_err();
        assert_eq!(err.path, PathBuf::from("/var/lib/podgraft/x.json"));
        assert_eq!(err.root, "/var/lib/podgraft");
        let text = err.to_string();
        assert!(text.contains("/var/lib/podgraft/x.json"), "{text}");
    }

    #[test]
    fn dot_dot_tricks_are_folded() {
        for path in [
            "/tmp/../run/podgraft/x",
            "/tmp/./../run/podgraft",
            "/../../etc/podgraft/config.toml",
            "/var/lib/./podgraft/../podgraft/state",
            "//run//podgraft//control.sock",
            "/nonexistent-dir/../var/lib/podgraft",
        ] {
            assert!(refused(path), "{path}");
        }
        // A relative path counts from the current directory.
        let up = "../".repeat(
            std::env::current_dir()
                .unwrap()
                .components()
                .count()
                .saturating_sub(1),
        );
        assert!(refused(&format!("{up}run/podgraft/podgraft.sock")));
    }

    #[test]
    fn refuses_a_host_root_reached_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/run", &link).unwrap();
        assert!(check(&link.join("podgraft/control.sock")).is_err());
        assert!(check(&link.join("containerd/containerd.sock")).is_ok());
    }

    #[test]
    fn accepts_temporary_and_other_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path()), Ok(()));
        assert_eq!(check(&dir.path().join("podgraft.sock")), Ok(()));
        assert_eq!(check(&dir.path().join("run/podgraft/control.sock")), Ok(()));
        for path in [
            "/tmp/podgraft/state",
            "/run/podgraft2/x.sock",
            "/run/containerd/containerd.sock",
            "/var/lib/podgraft-old",
            "/etc/podgraft.toml",
            "/sys/fs/cgroup",
            "/run/../tmp/podgraft",
        ] {
            assert_eq!(check(Path::new(path)), Ok(()), "{path}");
        }
    }
}
