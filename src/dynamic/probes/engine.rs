//! The probe engine: one Tokio task per (container, probe kind) on the dynamic plane's runtime —
//! never a thread per probe — with a node-wide bound on probes in flight. Each task sleeps until
//! its probe is due (per [`ContainerProbes`]), runs it, records the outcome and acts on what
//! changed: events, and for a liveness or startup failure a stop with the probe's grace period
//! (the supervisor then sees the exit and the restart policy decides).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell, Semaphore};
use tokio::task::AbortHandle;

use super::http::HttpGet;
use super::target::{NO_POD_IP, host_of, resolve_port};
use super::worker::{ContainerProbes, Kind, Outcome, Timing, Transition};
use super::{exec, grpc, http, tcp};
use crate::cri::Cri;
use crate::dynamic::events::EventLog;
use crate::dynamic::host::Host;
use crate::dynamic::model::spec::{Probe, ProbeHandler};
use crate::dynamic::model::{ContainerSpec, Event, EventKind, PodId};

/// Probes running at once, node-wide: a burst of due probes queues here rather than opening
/// thousands of sockets or exec sessions at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The grace period of a kill caused by a failed probe that sets none (the pod default).
pub const DEFAULT_KILL_GRACE_SECONDS: i64 = 30;

/// The container whose probes run.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    pub pod: PodId,
    pub name: String,
    pub spec: ContainerSpec,
    /// How long the attempt has run already: initial delays count from its start, as the
    /// kubelet's do (zero for an attempt that has just started).
    pub running_for: Duration,
}

/// What the probe tasks share.
struct Engine {
    cri: Arc<dyn Cri>,
    events: Arc<EventLog>,
    host: Arc<dyn Host>,
    slots: Semaphore,
}

/// One container's probes: their state and the tasks running them.
struct Probed {
    target: Target,
    probes: Mutex<ContainerProbes>,
    /// Wakes the container's tasks when gating changes (the startup probe passed).
    wake: Notify,
    pod_ip: OnceCell<String>,
}

struct Running {
    probed: Arc<Probed>,
    tasks: Vec<AbortHandle>,
}

/// Runs the probes of dynamic containers.
pub struct Prober {
    engine: Arc<Engine>,
    running: Mutex<HashMap<String, Running>>,
    /// The runtime the tasks run on (the dynamic plane's): start may be called from elsewhere.
    runtime: Option<tokio::runtime::Handle>,
}

impl Prober {
    pub fn new(cri: Arc<dyn Cri>, events: Arc<EventLog>, host: Arc<dyn Host>) -> Self {
        Self::with_limit(cri, events, host, MAX_IN_FLIGHT)
    }

    pub fn with_limit(
        cri: Arc<dyn Cri>,
        events: Arc<EventLog>,
        host: Arc<dyn Host>,
        in_flight: usize,
    ) -> Self {
        Prober {
            engine: Arc::new(Engine {
                cri,
                events,
                host,
                slots: Semaphore::new(in_flight.max(1)),
            }),
            running: Mutex::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the probes of a container that has just started running (any earlier probes of the
    /// same container are replaced). A container without probes gets no task.
    pub fn start(&self, target: Target) {
        let cid = target.container_id.clone();
        let probes = ContainerProbes::new(
            &target.spec,
            self.engine.host.monotonic(),
            target.running_for,
        );
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| probes.has(*k)).collect();
        if kinds.is_empty() {
            self.stop(&cid);
            return;
        }
        let probed = Arc::new(Probed {
            target,
            probes: Mutex::new(probes),
            wake: Notify::new(),
            pod_ip: OnceCell::new(),
        });
        let tasks = kinds
            .into_iter()
            .map(|kind| {
                let task = run(self.engine.clone(), probed.clone(), kind);
                match &self.runtime {
                    Some(rt) => rt.spawn(task).abort_handle(),
                    None => tokio::spawn(task).abort_handle(),
                }
            })
            .collect();
        if let Some(old) = self.lock().insert(cid, Running { probed, tasks }) {
            old.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Stops the probes of a container that exited or is being removed.
    pub fn stop(&self, container_id: &str) {
        if let Some(old) = self.lock().remove(container_id) {
            old.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Stops the probes of every container of a pod.
    pub fn stop_pod(&self, sandbox_id: &str) {
        self.lock().retain(|_, r| {
            let keep = r.probed.target.pod.sandbox_id != sandbox_id;
            if !keep {
                r.tasks.iter().for_each(AbortHandle::abort);
            }
            keep
        });
    }

    /// (ready, started) of a container whose probes run; `None` if none run for it.
    pub fn status(&self, container_id: &str) -> Option<(bool, bool)> {
        let lock = self.lock();
        let probes = lock.get(container_id)?.probed.lock_probes();
        Some((probes.ready(), probes.started()))
    }

    /// Containers whose probes run.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for r in self.lock().values() {
            r.tasks.iter().for_each(AbortHandle::abort);
        }
    }
}

impl Probed {
    fn lock_probes(&self) -> std::sync::MutexGuard<'_, ContainerProbes> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn probe(&self, kind: Kind) -> Option<&Probe> {
        let spec = &self.target.spec;
        match kind {
            Kind::Startup => spec.startup_probe.as_ref(),
            Kind::Liveness => spec.liveness_probe.as_ref(),
            Kind::Readiness => spec.readiness_probe.as_ref(),
        }
    }
}

/// The task of one probe of one container; ends only when aborted.
async fn run(engine: Arc<Engine>, probed: Arc<Probed>, kind: Kind) {
    let Some(timing) = probed.lock_probes().timing(kind) else {
        return;
    };
    loop {
        let woken = probed.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let due = probed.lock_probes().due(kind);
        match due {
            // Gated or on hold: only a change of gating can make it due.
            None => {
                woken.await;
                continue;
            }
            Some(at) => {
                let now = engine.host.monotonic();
                if at > now {
                    tokio::select! {
                        () = tokio::time::sleep(at - now) => {}
                        () = &mut woken => {}
                    }
                    continue;
                }
            }
        }
        let (outcome, message) = {
            let _slot = engine.slots.acquire().await;
            run_once(&engine, &probed, kind, timing).await
        };
        crate::metrics::probe_result(
            match kind {
                Kind::Startup => "startup",
                Kind::Liveness => "liveness",
                Kind::Readiness => "readiness",
            },
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
                Outcome::Unknown => "error",
            },
        );
        if outcome == Outcome::Unknown {
            tracing::debug!(container = %probed.target.container_id, probe = kind.label(), %message, "probe could not run; result ignored");
        }
        let transitions = probed
            .lock_probes()
            .record(kind, engine.host.monotonic(), outcome);
        for transition in transitions {
            apply(&engine, &probed, transition, &message).await;
        }
    }
}

async fn apply(engine: &Engine, probed: &Probed, transition: Transition, message: &str) {
    let target = &probed.target;
    let emit = |kind: EventKind, reason: &str, message: String| {
        engine.events.emit(Event {
            kind,
            pod: Some(target.pod.clone()),
            name: target.name.clone(),
            container_id: target.container_id.clone(),
            message,
            reason: reason.to_string(),
            ..Default::default()
        });
    };
    match transition {
        Transition::StartupSucceeded => {
            emit(EventKind::StartupSucceeded, "", String::new());
            probed.wake.notify_waiters();
        }
        Transition::Ready => emit(EventKind::Ready, "", String::new()),
        Transition::NotReady => emit(
            EventKind::NotReady,
            "Unhealthy",
            format!("Readiness probe failed: {message}"),
        ),
        Transition::Kill(kind) => {
            let grace = probed
                .probe(kind)
                .and_then(|p| p.termination_grace_period_seconds)
                .unwrap_or(DEFAULT_KILL_GRACE_SECONDS);
            emit(
                EventKind::LivenessFailed,
                "Unhealthy",
                format!(
                    "{} probe failed: {message}; stopping the container (grace {grace}s)",
                    kind.label()
                ),
            );
            tracing::info!(container = %target.container_id, name = %target.name, probe = kind.label(), %message, "probe failed; stopping the container");
            match engine.cri.stop_container(&target.container_id, grace).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(container = %target.container_id, error = %e, "stopping a container that failed its probe failed; probing on");
                    probed.lock_probes().resume(kind, engine.host.monotonic());
                }
            }
        }
    }
}

/// Runs one probe: its outcome and a message for events.
async fn run_once(
    engine: &Engine,
    probed: &Probed,
    kind: Kind,
    timing: Timing,
) -> (Outcome, String) {
    let Some(probe) = probed.probe(kind) else {
        return (Outcome::Unknown, "no such probe".into());
    };
    let spec = &probed.target.spec;
    let timeout = timing.timeout;
    match &probe.handler {
        ProbeHandler::Exec { command } => {
            exec::run(
                engine.cri.as_ref(),
                &probed.target.container_id,
                command,
                timeout,
            )
            .await
        }
        ProbeHandler::TcpSocket { port, host } => {
            let port = match resolve_port(port, spec) {
                Ok(p) => p,
                Err(e) => return (Outcome::Unknown, e),
            };
            match address(engine, probed, host).await {
                Ok(host) => tcp::run(&host, port, timeout).await,
                Err(e) => (Outcome::Unknown, e),
            }
        }
        ProbeHandler::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        } => {
            let port = match resolve_port(port, spec) {
                Ok(p) => p,
                Err(e) => return (Outcome::Unknown, e),
            };
            let host = match address(engine, probed, host).await {
                Ok(host) => host,
                Err(e) => return (Outcome::Unknown, e),
            };
            let get = HttpGet {
                scheme: *scheme,
                host,
                port,
                path: path.clone(),
                headers: headers.clone(),
            };
            http::run(&get, timeout).await
        }
        ProbeHandler::Grpc { port, service } => {
            let Some(port) = u16::try_from(*port).ok().filter(|p| *p > 0) else {
                return (Outcome::Unknown, format!("port {port} is out of range"));
            };
            match address(engine, probed, "").await {
                Ok(host) => grpc::run(&host, port, service, timeout).await,
                Err(e) => (Outcome::Unknown, e),
            }
        }
    }
}

/// The probe's host, or the pod's IP from containerd (asked once per container).
async fn address(engine: &Engine, probed: &Probed, probe_host: &str) -> Result<String, String> {
    if !probe_host.is_empty() {
        return Ok(probe_host.to_string());
    }
    let ip = probed
        .pod_ip
        .get_or_try_init(|| async {
            let status = engine
                .cri
                .pod_sandbox_status(&probed.target.pod.sandbox_id, false)
                .await
                .map_err(|e| e.to_string())?;
            let ip = status
                .status
                .and_then(|s| s.network)
                .map(|n| n.ip)
                .unwrap_or_default();
            Ok::<_, String>(if ip.is_empty() {
                NO_POD_IP.to_string()
            } else {
                ip
            })
        })
        .await?;
    Ok(host_of(probe_host, ip).to_string())
}
