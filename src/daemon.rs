//! `podgraft serve`: wires configuration, backends, interceptors and the socket together.

use std::future::Future;
use std::sync::Arc;

use crate::config::Settings;
use crate::server::backend::{Backend, BackendSettings};
use crate::server::intercept::Registry;
use crate::server::listener::{self, ListenError};
use crate::server::metrics::Metrics;
use crate::server::{Relay, ServerSettings, serve};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Listen(#[from] ListenError),
}

fn backend_settings(s: &Settings) -> BackendSettings {
    BackendSettings {
        connect_timeout: s.backend_connect_timeout,
        max_backoff: s.backend_max_backoff,
        ..BackendSettings::default()
    }
}

/// Builds the relay for `settings`: backends (connecting in the background) and the interceptors.
pub fn relay(settings: &Settings, metrics: Arc<Metrics>) -> Relay {
    let backend = backend_settings(settings);
    let runtime = Backend::start(settings.runtime_endpoint.clone(), backend.clone());
    let image = settings
        .image_endpoint
        .clone()
        .map(|p| Backend::start(p, backend));
    let mut registry = Registry::new();
    registry.observe(metrics);
    Relay::new(runtime, image, registry, settings.max_message_bytes)
}

/// Serves until `shutdown` resolves, then drains and removes the socket. Must run inside a Tokio
/// runtime. A backend that is down is not an error: calls get UNAVAILABLE until it returns.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let socket = listener::bind(&settings.listen, settings.socket_mode)?;
    let metrics = Arc::new(Metrics::new());
    let relay = Arc::new(relay(&settings, metrics.clone()));
    tracing::info!(
        listen = %settings.listen.display(),
        runtime_endpoint = %settings.runtime_endpoint.display(),
        image_endpoint = ?settings.image_endpoint,
        "podgraft serving CRI"
    );
    let server = ServerSettings {
        drain_timeout: settings.drain_timeout,
        ..ServerSettings::default()
    };
    serve(&socket.listener, relay, &server, shutdown).await;
    drop(socket);
    tracing::info!(summary = %metrics.summary(), "podgraft stopped");
    Ok(())
}
