//! The metric families and their text exposition.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 50 µs .. ~1.6 s: a relayed call takes tens of microseconds, a listing or a create milliseconds.
fn relay_buckets() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 16))
}

/// 5 ms .. ~41 s: an add is a create + start (~50 ms) plus a pull when the image is missing.
fn control_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The CRI methods of runtime.v1 and v1alpha2 (kubelet, crictl), labelled by name; anything else
/// is "other", so that made-up method paths cannot grow the series without bound.
const SERVICES: [&str; 4] = [
    "runtime.v1.RuntimeService",
    "runtime.v1.ImageService",
    "runtime.v1alpha2.RuntimeService",
    "runtime.v1alpha2.ImageService",
];
const RUNTIME_METHODS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "StreamPodSandboxMetrics",
];
const IMAGE_METHODS: &[&str] = &[
    "ListImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
    "StreamImages",
];

/// The series of one known method: created at its first call (a listing shows only methods
/// that were called), then resolved without label hashing.
struct Method {
    label: &'static str,
    series: OnceLock<(Counter, Histogram)>,
}

pub struct Families {
    registry: Registry,
    methods: HashMap<&'static str, Method>,
    other: Method,
    cri_calls: Family<Labels2, Counter>,
    cri_seconds: Histograms<Labels1>,
    pub add_seconds: Histograms<Labels1>,
    pub remove_seconds: Histograms<Labels1>,
    pub authorization_denials: Family<Labels1, Counter>,
    pub admission_refusals: Family<Labels1, Counter>,
    pub restarts: Counter,
    pub probe_results: Family<Labels2, Counter>,
    pub gc_actions: Family<Labels1, Counter>,
    dynamic_containers: Family<[(&'static str, String); 1], Gauge>,
    growth_cpu: Gauge,
    growth_memory: Gauge,
    loaded: Gauge,
}

impl Families {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("podgraft");
        let cri_calls = Family::<Labels2, Counter>::default();
        let cri_seconds: Histograms<Labels1> = Family::new_with_constructor(relay_buckets);
        r.register(
            "cri_calls",
            "Relayed CRI calls by method and gRPC code",
            cri_calls.clone(),
        );
        r.register(
            "cri_call_duration_seconds",
            "Latency of relayed CRI calls through podgraft, by method",
            cri_seconds.clone(),
        );
        let method = |label: &'static str| Method {
            label,
            series: OnceLock::new(),
        };
        let mut methods = HashMap::new();
        for service in SERVICES {
            let names = if service.ends_with("ImageService") {
                IMAGE_METHODS
            } else {
                RUNTIME_METHODS
            };
            for name in names {
                // Leaked once per known method at start: the labels live as long as the process.
                let path: &'static str = Box::leak(format!("/{service}/{name}").into_boxed_str());
                methods.insert(path, method(&path[1..]));
            }
        }
        let other = method("other");
        let add_seconds: Histograms<Labels1> = Family::new_with_constructor(control_buckets);
        let remove_seconds: Histograms<Labels1> = Family::new_with_constructor(control_buckets);
        r.register(
            "add_duration_seconds",
            "AddContainers latency by outcome (ok or the gRPC code)",
            add_seconds.clone(),
        );
        r.register(
            "remove_duration_seconds",
            "RemoveContainers latency by outcome (ok or the gRPC code)",
            remove_seconds.clone(),
        );
        let authorization_denials = Family::<Labels1, Counter>::default();
        r.register(
            "authorization_denials",
            "Control calls refused by the [[access]] rules, by verb",
            authorization_denials.clone(),
        );
        let admission_refusals = Family::<Labels1, Counter>::default();
        r.register(
            "admission_refusals",
            "Adds refused by admission, by reason (the gRPC code)",
            admission_refusals.clone(),
        );
        let restarts = Counter::default();
        r.register(
            "restarts",
            "Dynamic container restarts by their restart policy",
            restarts.clone(),
        );
        let probe_results = Family::<Labels2, Counter>::default();
        r.register(
            "probe_results",
            "Probe runs of dynamic containers by kind and result",
            probe_results.clone(),
        );
        let gc_actions = Family::<Labels1, Counter>::default();
        r.register(
            "gc_actions",
            "Garbage collection actions",
            gc_actions.clone(),
        );
        let dynamic_containers = Family::<[(&'static str, String); 1], Gauge>::default();
        r.register(
            "dynamic_containers",
            "Dynamic containers on the node by state",
            dynamic_containers.clone(),
        );
        let growth_cpu = Gauge::default();
        r.register(
            "pod_cgroup_growth_cpu_millicores",
            "CPU limits dynamic containers add to their pods' cgroups, all pods together",
            growth_cpu.clone(),
        );
        let growth_memory = Gauge::default();
        r.register(
            "pod_cgroup_growth_memory_bytes",
            "Memory limits dynamic containers add to their pods' cgroups, all pods together",
            growth_memory.clone(),
        );
        let loaded = Gauge::default();
        r.register(
            "state_loaded",
            "1 once dynamic container state is loaded from containerd",
            loaded.clone(),
        );
        Self {
            registry: r,
            methods,
            other,
            cri_calls,
            cri_seconds,
            add_seconds,
            remove_seconds,
            authorization_denials,
            admission_refusals,
            restarts,
            probe_results,
            gc_actions,
            dynamic_containers,
            growth_cpu,
            growth_memory,
            loaded,
        }
    }

    /// The relay's per-call path: one lookup, then atomics (and a lock for a non-OK code's series).
    pub fn cri_call(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        let m = self.methods.get(path).unwrap_or(&self.other);
        let (ok, seconds) = m.series.get_or_init(|| {
            let ok = self
                .cri_calls
                .get_or_create(&[("method", m.label), ("code", "ok")]);
            let seconds = self.cri_seconds.get_or_create(&[("method", m.label)]);
            (ok.clone(), seconds.clone())
        });
        seconds.observe(elapsed.as_secs_f64());
        if code == tonic::Code::Ok {
            ok.inc();
        } else {
            self.cri_calls
                .get_or_create(&[("method", m.label), ("code", code_name(code))])
                .inc();
        }
    }

    pub fn render(&self, manager: Option<&crate::dynamic::Manager>) -> String {
        if let Some(manager) = manager {
            // Read now: the four known states always show (0 when empty), others while they
            // have containers.
            self.dynamic_containers.clear();
            for state in ["unknown", "created", "running", "exited"] {
                self.dynamic_containers
                    .get_or_create(&[("state", state.to_string())])
                    .set(0);
            }
            for (state, n) in manager.counts_by_state() {
                let state = format!("{state:?}").to_lowercase();
                self.dynamic_containers
                    .get_or_create(&[("state", state)])
                    .set(n as i64);
            }
            let growth = manager.node_growth();
            self.growth_cpu.set(growth.cpu_milli);
            self.growth_memory.set(growth.memory);
            self.loaded.set(i64::from(manager.is_loaded()));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A gRPC code as a label value: "ok", "not_found", ...
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}
