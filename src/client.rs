//! Client-side helpers shared by the CLI, the tests and the benchmarks.

use std::path::Path;

use hyper_util::rt::TokioIo;

/// A tonic channel over a Unix socket (connects now, fails if nothing listens).
pub async fn uds_channel(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}
