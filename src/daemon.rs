//! `podgraft serve`: wires configuration, backends, interceptors, the dynamic-container manager and
//! both sockets together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cgroup::{Mode, RealIo};
use crate::config::Settings;
use crate::control::ControlService;
use crate::control::audit::AuditLog;
use crate::cri::CriClient;
use crate::dynamic::host::{Host, SystemHost};
use crate::dynamic::lifecycle::stored_spec::SpecCodec;
use crate::dynamic::resources::{Bounds, CgroupSettings};
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Manager, ManagerSettings};
use crate::server::backend::{Backend, BackendSettings};
use crate::server::intercept::Registry;
use crate::server::listener::{self, ListenError};
use crate::server::metrics::Metrics;
use crate::server::{Relay, ServerSettings, hide, serve};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("control API server: {0}")]
    Control(#[from] tonic::transport::Error),
    #[error("state_dir: {0}")]
    HostPath(#[from] crate::host_paths::HostPathError),
    #[error("starting the dynamic-container thread: {0}")]
    Plane(std::io::Error),
    #[error("the dynamic-container thread ended before it served")]
    PlaneEnded,
    #[error("audit_log: {0}")]
    Audit(std::io::Error),
    #[error("control_tls: {0}")]
    Tls(String),
}

fn backend_settings(s: &Settings) -> BackendSettings {
    BackendSettings {
        connect_timeout: s.backend_connect_timeout,
        max_backoff: s.backend_max_backoff,
        ..BackendSettings::default()
    }
}

/// The dynamic-container manager for `settings`, talking to containerd directly.
pub fn manager(settings: &Settings) -> Manager {
    let image = settings
        .image_endpoint
        .as_deref()
        .unwrap_or(&settings.runtime_endpoint);
    let cri = Arc::new(CriClient::new(&settings.runtime_endpoint, image));
    let store = SandboxStore::new(&settings.state_dir, settings.mutable_handlers.clone());
    let mode = if settings.cgroup_root == std::path::Path::new("/sys/fs/cgroup") {
        // The host's own hierarchy: ask cgroups-rs, which knows the mount-level signs.
        if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
            Mode::V2
        } else {
            Mode::V1
        }
    } else {
        Mode::detect(&settings.cgroup_root)
    };
    tracing::info!(root = %settings.cgroup_root.display(), ?mode, "managing pod cgroups");
    let host = Arc::new(SystemHost::default());
    if !host.can_write_root_files() {
        tracing::warn!(
            "podgraft is neither root nor holds CAP_DAC_OVERRIDE: pod cgroups cannot be grown, so adds of containers with limits will fail"
        );
    }
    Manager::new(
        cri,
        store,
        ManagerSettings {
            pod_stop_grace: settings.pod_stop_grace,
            poll_interval: settings.poll_interval,
            reconcile_interval: settings.reconcile_interval,
            gc_exited_after: settings.gc_exited_after,
            budget: Bounds {
                cpu_milli: settings.budget_cpu_milli,
                memory: settings.budget_memory,
            },
            cgroups: Some(CgroupSettings {
                root: settings.cgroup_root.clone(),
                mode,
                io: Arc::new(RealIo),
            }),
            host,
            specs: SpecCodec::with_legacy(crate::control::convert::legacy_spec),
            limits: settings.limits,
            ..ManagerSettings::default()
        },
    )
}

/// Keeps freed memory of large responses for reuse. By default glibc maps every allocation above
/// 128 KiB afresh and hands the top of the heap back to the kernel once 128 KiB are free, so each
/// multi-megabyte listing the relay moves would fault in new zeroed pages, which costs more than
/// relaying it. Up to 16 MiB freed stays in the heap; only blocks over 4 MiB are mapped apart.
/// Call once, before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// Builds the relay for `settings`: backends (connecting in the background) and the interceptors.
pub fn relay(settings: &Settings, metrics: Arc<Metrics>, manager: Arc<Manager>) -> Relay {
    let backend = backend_settings(settings);
    let runtime = Backend::start(settings.runtime_endpoint.clone(), backend.clone());
    let image = settings
        .image_endpoint
        .clone()
        .map(|p| Backend::start(p, backend));
    let mut registry = Registry::new();
    registry.observe(metrics);
    hide::register(&mut registry, manager);
    Relay::new(runtime, image, registry, settings.max_message_bytes)
}

/// Loads the manager's state from containerd, retrying while containerd is unreachable.
async fn load_until_done(manager: &Manager, mut stop: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1u64.. {
        match manager.load().await {
            Ok(()) => {
                tracing::info!("dynamic container state loaded from containerd");
                return;
            }
            // One warning per outage; the retries are debug noise.
            Err(e) if attempt == 1 => {
                tracing::warn!(error = %e, "loading dynamic container state failed; retrying")
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "loading dynamic container state failed again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The mutual-TLS listener of the control API: its TLS settings (client certificates required,
/// chained to the configured CA) and its bound socket.
async fn tls_listener(
    tls: &crate::config::ControlTls,
) -> Result<
    (
        tonic::transport::ServerTlsConfig,
        tokio_stream::wrappers::TcpListenerStream,
    ),
    DaemonError,
> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| DaemonError::Tls(format!("{}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let config = tonic::transport::ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(tonic::transport::Certificate::from_pem(read(
            &tls.client_ca,
        )?))
        .client_auth_optional(false);
    let listener = tokio::net::TcpListener::bind(tls.listen)
        .await
        .map_err(|e| DaemonError::Tls(format!("binding {}: {e}", tls.listen)))?;
    Ok((
        config,
        tokio_stream::wrappers::TcpListenerStream::new(listener),
    ))
}

/// The largest control API request podgraft decodes.
pub const CONTROL_MAX_REQUEST_BYTES: usize = 4 << 20;

/// The dynamic-container plane: the manager, its supervisor and the control API, on a thread and
/// runtime of their own. A burst of adds (protobuf, JSON, CRI calls, events) then neither waits
/// behind the kubelet's relayed calls nor delays them, whatever the relay's runtime is (one
/// thread by default). The relay's interceptors still call the manager's pod hooks directly.
struct Plane {
    manager: Arc<Manager>,
    thread: std::thread::JoinHandle<Result<(), DaemonError>>,
}

async fn start_plane(
    settings: &Settings,
    stop: watch::Receiver<bool>,
) -> Result<Plane, DaemonError> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let settings = settings.clone();
    let thread = std::thread::Builder::new()
        .name("podgraft-dynamic".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DaemonError::Plane)?;
            runtime.block_on(async move {
                let control_socket = match listener::bind(
                    &settings.control_listen,
                    settings.socket_mode,
                    settings.socket_group,
                ) {
                    Ok(socket) => socket,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return Ok(());
                    }
                };
                let audit = match AuditLog::open(&settings.audit) {
                    Ok(audit) => Arc::new(audit),
                    Err(e) => {
                        let _ = ready_tx.send(Err(DaemonError::Audit(e)));
                        return Ok(());
                    }
                };
                let tls = match &settings.control_tls {
                    None => None,
                    Some(tls) => match tls_listener(tls).await {
                        Ok(listener) => Some(listener),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    },
                };
                // Built here, so its CRI connection lives on this runtime.
                let manager = Arc::new(manager(&settings));
                let _ = ready_tx.send(Ok(manager.clone()));
                let stopped = |mut rx: watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                // Metrics and health (src/metrics), on this runtime: never the relay's thread.
                if let Some(addr) = settings.metrics_listen {
                    let health = crate::metrics::http::Health {
                        sockets: vec![settings.listen.clone(), settings.control_listen.clone()],
                        runtime_endpoint: settings.runtime_endpoint.clone(),
                    };
                    let stop = stopped(stop.clone());
                    crate::metrics::http::spawn(addr, manager.clone(), health, stop);
                }
                let background = {
                    let manager = manager.clone();
                    let rx = stop.clone();
                    tokio::spawn(async move {
                        load_until_done(&manager, rx.clone()).await;
                        manager.run(stopped(rx)).await;
                    })
                };
                // Requests are small (at most 32 container specs, each bounded): 4 MiB is
                // ample and bounds what a caller can make podgraft buffer.
                let status = Arc::new(crate::control::StatusInfo::new(&settings));
                let service = ControlService::new(manager, settings.access.clone(), audit)
                    .with_status(status);
                let server = |service: ControlService| {
                    crate::api::control_server::ControlServer::new(service)
                        .max_decoding_message_size(CONTROL_MAX_REQUEST_BYTES)
                };
                let incoming =
                    futures_util::stream::unfold(&control_socket.listener, |l| async move {
                        let accepted = l.accept().await;
                        Some((
                            accepted.map(|(s, _)| crate::control::peer::PeerStream::accept(s)),
                            l,
                        ))
                    });
                let local = tonic::transport::Server::builder()
                    .add_service(server(service.clone()))
                    .serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
                let remote = async {
                    let Some((config, incoming)) = tls else {
                        return Ok(());
                    };
                    tracing::info!("control API also on mutual TLS");
                    tonic::transport::Server::builder()
                        .tls_config(config)?
                        .add_service(server(service.clone()))
                        .serve_with_incoming_shutdown(incoming, stopped(stop.clone()))
                        .await
                        .map_err(DaemonError::from)
                };
                let (served, remote_served) = tokio::join!(local, remote);
                if let Err(e) = remote_served {
                    tracing::error!(error = %e, "control API TLS listener failed");
                }
                let _ = tokio::time::timeout(settings.drain_timeout, background).await;
                // The socket file goes as `control_socket` drops here.
                drop(control_socket);
                served.map_err(DaemonError::from)
            })
        })
        .map_err(DaemonError::Plane)?;
    match ready_rx.await {
        Ok(Ok(manager)) => Ok(Plane { manager, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(match thread.join() {
            Ok(Err(e)) => e,
            _ => DaemonError::PlaneEnded,
        }),
    }
}

/// Serves until `shutdown` resolves, then drains and removes the sockets. Must run inside a Tokio
/// runtime. A backend that is down is not an error: calls get UNAVAILABLE until it returns.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // The state dir is pruned at start: a test must never reach the host's.
    crate::host_paths::check(&settings.state_dir)?;
    let socket = listener::bind(
        &settings.listen,
        settings.socket_mode,
        settings.socket_group,
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let plane = start_plane(&settings, stop_rx).await?;
    let metrics = Arc::new(Metrics::new());
    let relay = Arc::new(relay(&settings, metrics.clone(), plane.manager.clone()));
    tracing::info!(
        listen = %settings.listen.display(),
        control = %settings.control_listen.display(),
        runtime_endpoint = %settings.runtime_endpoint.display(),
        image_endpoint = ?settings.image_endpoint,
        mutable_handlers = ?settings.mutable_handlers,
        "podgraft serving CRI"
    );
    let server = ServerSettings {
        drain_timeout: settings.drain_timeout,
        ..ServerSettings::default()
    };
    serve(&socket.listener, relay, &server, async {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    drop(socket);
    let thread = plane.thread;
    let joined = tokio::time::timeout(
        settings.drain_timeout * 2,
        tokio::task::spawn_blocking(move || thread.join()),
    )
    .await;
    tracing::info!(summary = %metrics.summary(), "podgraft stopped");
    match joined {
        Ok(Ok(Ok(result))) => result,
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    /// A test that forgot to move the state dir (the host's /var/lib/podgraft, whose records
    /// podgraft prunes at start) fails instead of touching it.
    #[tokio::test]
    async fn a_test_cannot_reach_the_hosts_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Config::parse(
            &format!(
                "runtime_endpoint = \"unix://{}\"",
                dir.path().join("cri.sock").display()
            ),
            std::path::Path::new("t"),
        )
        .unwrap()
        .settle(Overrides {
            listen: Some(dir.path().join("pg.sock").display().to_string()),
            control_listen: Some(dir.path().join("control.sock").display().to_string()),
            ..Default::default()
        })
        .unwrap();
        let err = run(settings, std::future::ready(())).await.unwrap_err();
        assert!(matches!(err, DaemonError::HostPath(_)), "{err}");
        assert!(!dir.path().join("pg.sock").exists(), "nothing was bound");
    }
}
