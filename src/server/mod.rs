//! The kubelet-facing edge: an HTTP/2 server on a Unix socket relaying CRI to the backend.

pub mod backend;
pub mod body;
pub mod grpc;
pub mod h2body;
pub mod hide;
pub mod intercept;
pub mod listener;
pub mod mask;
pub mod metrics;
pub mod relay;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;

pub use relay::Relay;

/// HTTP/2 settings of the kubelet-facing server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    /// How long in-flight calls may run on after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            max_frame_size: 1 << 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts connections until `shutdown` resolves, then stops accepting, asks every connection to
/// finish (HTTP/2 GOAWAY) and waits for in-flight calls up to the drain timeout.
pub async fn serve(
    listener: &UnixListener,
    relay: Arc<Relay>,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        // Response headers are the backend's; adding our own `date` would change them.
        .auto_date_header(false);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let relay = relay.clone();
                    let service = service_fn(move |req| relay.clone().handle(req));
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!(%err, "client connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning; the listener stays usable.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: draining in-flight calls");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all calls drained"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout expired; closing remaining calls");
        }
    }
}

#[cfg(test)]
mod tests;
