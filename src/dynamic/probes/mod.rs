//! Liveness, readiness and startup probes of dynamic containers. The kubelet probes only the
//! containers of a pod's spec, so podgraft runs these itself, with the kubelet's semantics:
//!
//! - [`worker`]: the pure state machine of one container's probes on the `Host` clock (delays,
//!   periods, thresholds, startup gating, what a result changes);
//! - `engine`: the Tokio tasks that run them on the dynamic plane's runtime, bounded in flight,
//!   and act on results (events; a stop on liveness or startup failure);
//! - the runners: `exec` (CRI ExecSync), `tcp`, `http` (HTTP(S) GET), `grpc`
//!   (grpc.health.v1); `target`: the address and port a network probe goes to.
//!
//! Probe state is runtime state: after a podgraft restart probes start over (readiness false
//! until the probe passes again), as the kubelet's do after a kubelet restart.

mod engine;
mod exec;
mod grpc;
pub(crate) mod http;
mod target;
mod tcp;
pub mod worker;

pub use engine::{DEFAULT_KILL_GRACE_SECONDS, MAX_IN_FLIGHT, Prober, Target};
pub use target::NO_POD_IP;

#[cfg(test)]
mod worker_tests;

/// Makes a probe's connection close with a RST (SO_LINGER 0, set when it opens, acts when it is
/// dropped): no FIN exchange and no TIME_WAIT socket left on the node per probe, which at high
/// rates towards one pod would use up its ephemeral ports (kubernetes#89898). Nothing is lost:
/// a probe drops its connection when it has sent nothing (TCP) or has read the whole answer
/// (HTTP, gRPC), or when it gives up. The kubelet lingers 1 s instead; on a non-blocking socket
/// a non-zero linger would block the runtime's thread in close.
fn close_abortively(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "setting SO_LINGER on a probe connection failed");
    }
}
