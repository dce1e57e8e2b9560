//! podgraft: a CRI runtime shim that relays the kubelet's CRI calls to containerd and, for pods that
//! opted in, adds containers to running pods (the node half of KEP-5972, Dynamic Containers).
//!
//! # Layout
//! Public modules are what the binary, the benchmarks and the integration tests use; the others
//! are private to the crate.
//! - [`cgroup`]: pod cgroup discovery and limits (v1/v2, cgroupfs/systemd), root as a parameter.
//! - [`cli`]: the command line (`serve`, the control API client commands, and `cri`: a small
//!   kubelet-like CRI client for hack/up.sh's demo); [`client`]: Unix socket channels (one
//!   connector, eager and lazy channels).
//! - [`config`]: the TOML file and flags, checked into [`config::Settings`].
//! - [`control`]: the control API edge (podgraft.v1alpha1): converts wire types into the domain's
//!   ([`control::convert`]), delegates to [`dynamic::Manager`], maps errors to gRPC statuses.
//! - [`daemon`]: `podgraft serve`, wiring settings, backends, interceptors and the socket.
//! - `server` (private): the kubelet-facing edge, an HTTP/2 relay that forwards gRPC frames
//!   untouched:
//!   - `server::prepass`: what clients send, read before h2's server does, so that h2 takes every
//!     request containerd takes (`:authority` normalized, CONTINUATION frames joined);
//!   - `server::relay`: routing, pass-through and intercepted calls;
//!   - `server::backend`: the reconnecting HTTP/2 connection to containerd;
//!   - `server::intercept`: the per-method interceptor registry and call observers;
//!   - `server::body`, `server::grpc`, `server::h2body`: body wrappers and gRPC framing;
//!   - `server::mask`: hiding entries of a streamed listing by padding them in place;
//!   - `server::listener`: Unix socket set-up; `server::metrics`: the metrics observer;
//!   - `server::span`: each relayed call's tracing span (DEBUG: method, pod/container ID, code);
//!   - `server::hide`: the interceptors that hide dynamic containers and follow pod lifecycles.
//! - [`logging`]: the log subscriber (text or JSON, `log_format`).
//! - [`metrics`]: Prometheus metrics and the /healthz, /readyz endpoints (`metrics_listen`), and
//!   the functions the rest of podgraft records with.
//! - [`privileges`]: the capabilities podgraft keeps, everything else dropped at start.
//! - [`host_paths`]: the guard that keeps tests and benchmarks off the host's podgraft paths.
//! - `cri` (private): the CRI calls podgraft makes itself, behind a trait with an in-memory fake;
//!   `tasks` (private): the one non-CRI call, killing a task a cancelled start left behind.
//! - [`dynamic`]: dynamic containers behind the [`dynamic::Manager`] facade: [`dynamic::model`],
//!   [`dynamic::admission`], [`dynamic::resources`], [`dynamic::registry`], [`dynamic::lifecycle`],
//!   [`dynamic::state`], [`dynamic::events`], [`dynamic::host`], [`dynamic::probes`].
//! - [`fault`]: named fault points (SIGKILL at the N-th hit) for the crash tests; compiled in
//!   only with the `testing` feature.
//! - `wire` (private): protobuf wire-format helpers (varints included) that read or drop fields
//!   while keeping all other bytes.
//! - `testing` (only in tests, or with the `testing` feature that the test, bench and example
//!   targets turn on): fakes for unit tests, benchmarks and integration tests: a raw gRPC CRI
//!   backend and client, and an in-memory `cri::Cri`.
//! - [`api`]: the generated control API types; [`grpc_health`]: grpc.health.v1 (gRPC probes).

pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
mod cri;
pub mod daemon;
pub mod dynamic;
pub mod fault;
/// Entry points of the fuzz targets (`fuzz/`), for cargo-fuzz and the replay tests.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod host_paths;
pub mod logging;
pub mod metrics;
pub mod privileges;
mod server;
mod tasks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod wire;

/// podgraft's control API, generated from `proto/podgraft/v1alpha1/control.proto`.
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("podgraft.v1alpha1");

    /// Redacted: registry credentials never reach logs.
    impl std::fmt::Debug for RegistryAuth {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RegistryAuth")
                .field("username", &self.username)
                .field("server_address", &self.server_address)
                .finish_non_exhaustive()
        }
    }

    /// Redacted: env values (and header values) never reach logs.
    impl std::fmt::Debug for KeyValue {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("KeyValue")
                .field("name", &self.name)
                .finish_non_exhaustive()
        }
    }
}

/// The standard gRPC health service (grpc.health.v1), generated from
/// `proto/grpc/health/v1/health.proto`: podgraft's gRPC probes are its clients.
pub mod grpc_health {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("grpc.health.v1");
}

/// A boxed future, for async methods of object-safe traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
