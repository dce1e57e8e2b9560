//! Unix socket set-up: replaces a stale socket, refuses one a live process still serves, applies the
//! socket's mode, and removes the file again when the server stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::host_paths::{self, HostPathError};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A test or benchmark asked for the host's own podgraft socket.
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error("{path}: socket is in use by a live process (is another podgraft running?)")]
    InUse { path: PathBuf },
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{path}: {op}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

/// A bound Unix socket whose file is removed when this value is dropped.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> ListenError + 'a {
    move |source| ListenError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Binds `path` with permission bits `mode` (and group `group`, for clients that are not root),
/// creating its directory if needed. Refuses the host's podgraft paths in tests ([`host_paths`]).
pub fn bind(path: &Path, mode: u32, group: Option<u32>) -> Result<BoundSocket, ListenError> {
    host_paths::check(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // Nobody listens: a crashed predecessor left it behind.
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing stale socket");
                std::fs::remove_file(path).map_err(io_err(path, "remove stale socket"))?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "stat")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(path, "bind"))?;
    let bound = BoundSocket {
        listener,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "chmod"))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| io_err(path, "chown")(std::io::Error::from(e)))?;
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replaces_stale_refuses_live_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/podgraft.sock");
        // A stale socket: bound once, listener gone, file left behind.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());

        // As root (CI), give the socket another group than our own, to see the chown happen.
        let other = nix::unistd::Group::from_name("nogroup").ok().flatten();
        let gid = match other {
            Some(g) if nix::unistd::geteuid().is_root() => g.gid.as_raw(),
            _ => nix::unistd::getegid().as_raw(),
        };
        let live = bind(&path, 0o660, Some(gid)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&path).unwrap()),
            gid
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        match bind(&path, 0o660, None) {
            Err(ListenError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(live);
        assert!(!path.exists(), "socket file must be removed on drop");

        std::fs::write(&path, b"not a socket").unwrap();
        assert!(matches!(
            bind(&path, 0o660, None),
            Err(ListenError::NotASocket { .. })
        ));
    }

    #[test]
    fn default_settings_cannot_bind_under_test() {
        let settings = crate::config::Config::default()
            .settle(crate::config::Overrides::default())
            .unwrap();
        for path in [&settings.listen, &settings.control_listen] {
            match bind(path, 0o660, None) {
                Err(ListenError::HostPath(e)) => {
                    assert_eq!(&e.path, path);
                    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
                }
                other => panic!("{}: expected HostPath, got {other:?}", path.display()),
            }
        }
    }
}
