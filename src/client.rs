//! Client-side helpers shared by the CLI, podgraft's own CRI client, the tests and the benchmarks:
//! tonic channels over Unix sockets.

use std::future::Future;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// A tonic channel over the Unix socket `path` that connects now (fails if nothing listens).
pub async fn uds_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    endpoint()
        .connect_with_connector(endpoint_connector(path))
        .await
}

/// A tonic channel over the Unix socket `path` that connects on first use and reconnects after
/// the server went away, for a server that may be down when the client starts.
pub fn lazy_uds_channel(path: &Path) -> Channel {
    endpoint().connect_with_connector_lazy(endpoint_connector(path))
}

/// The URI only names the authority HTTP/2 sends; the connector decides where to connect.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://localhost")
}

/// Dials `path` for each connection the channel makes; refuses the host's podgraft sockets where
/// tests run ([`crate::host_paths`]).
fn endpoint_connector(
    path: &Path,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send + use<>,
>
+ Clone
+ Send
+ 'static
+ use<> {
    let path: PathBuf = path.to_path_buf();
    tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move {
            crate::host_paths::check(&path).map_err(std::io::Error::other)?;
            Ok(TokioIo::new(UnixStream::connect(path).await?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_refuse_the_hosts_sockets_under_test() {
        let path = Path::new("/run/podgraft/control.sock");
        let err = uds_channel(path).await.unwrap_err();
        let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains("/run/podgraft/control.sock"), "{chain}");
    }
}
