//! Who is on the other end of a control-socket connection, fixed when the connection is
//! accepted. The kernel records uid, gid and supplementary groups at connect time
//! (SO_PEERCRED, SO_PEERGROUPS); reading groups later from /proc/<pid> would judge a connection
//! kept open after its process exited by whatever process reuses that pid.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

/// The credentials of a connection's peer, as of its connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub groups: Vec<u32>,
}

/// An accepted control-socket connection with its peer's credentials.
pub struct PeerStream {
    stream: UnixStream,
    info: Option<PeerInfo>,
}

impl PeerStream {
    /// Reads the peer's credentials now; a connection whose peer cannot be read is kept but
    /// vouches for nobody (every call on it is refused).
    pub fn accept(stream: UnixStream) -> Self {
        let info = peer_info(&stream)
            .inspect_err(|e| tracing::warn!(error = %e, "control connection: no peer credentials"))
            .ok();
        Self { stream, info }
    }
}

fn peer_info(stream: &UnixStream) -> io::Result<PeerInfo> {
    let cred = stream.peer_cred()?;
    Ok(PeerInfo {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: peer_groups(stream.as_raw_fd())?,
    })
}

/// SO_PEERGROUPS: the supplementary groups the peer had when it connected.
fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes, and the kernel writes at most `len` bytes
        // and sets `len` to what it wrote (or, on ERANGE, to what it needs).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || needed <= groups.len() {
            return Err(err);
        }
        groups.resize(needed, 0);
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Option<PeerInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_are_the_connecting_process_s_at_connect_time() {
        let (a, _b) = UnixStream::pair().unwrap();
        let info = PeerStream::accept(a).info.expect("peer credentials");
        assert_eq!(info.uid, nix::unistd::getuid().as_raw());
        assert_eq!(info.gid, nix::unistd::getgid().as_raw());
        assert_eq!(info.pid, Some(std::process::id() as i32));
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut seen = info.groups.clone();
        ours.sort();
        seen.sort();
        assert_eq!(seen, ours);
    }

    #[test]
    fn more_groups_than_the_first_buffer_are_read_whole() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: setting 100 supplementary groups needs root");
            return;
        }
        // nextest runs each test in its own process, so changing our groups touches no other test.
        let want: Vec<nix::unistd::Gid> =
            (70_000..70_100).map(nix::unistd::Gid::from_raw).collect();
        nix::unistd::setgroups(&want).unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut groups = peer_groups(a.as_raw_fd()).unwrap();
        groups.sort();
        assert_eq!(groups, (70_000..70_100).collect::<Vec<u32>>());
    }
}
