//! The kubelet's formulas, so that a dynamic container gets the numbers the kubelet would have
//! given the same container in the same pod.

use k8s_cri::v1 as cri;

/// The pod's QoS class, as the kubelet encodes it in the pod's cgroup parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// `/kubepods/burstable/pod<uid>` → Burstable; `/kubepods/pod<uid>` → Guaranteed; systemd
    /// slices (`kubepods-burstable-pod…slice`) likewise.
    pub fn from_cgroup_parent(parent: &str) -> Qos {
        if parent.contains("besteffort") {
            Qos::BestEffort
        } else if parent.contains("burstable") {
            Qos::Burstable
        } else {
            Qos::Guaranteed
        }
    }
}

/// The pod's cgroup parent as the kubelet passed it in RunPodSandbox ("" if it did not).
pub fn cgroup_parent(config: &cri::PodSandboxConfig) -> &str {
    config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or("")
}

/// The kubelet's default masked and read-only paths for unprivileged containers (procMount Default).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where the kubelet keeps seccomp profiles (`--root-dir` default + `seccomp`).
pub const SECCOMP_ROOT: &str = "/var/lib/kubelet/seccomp";

/// The node path of a `localhost/<path>` seccomp profile: as the kubelet resolves it, relative to
/// its seccomp root unless absolute.
pub fn seccomp_profile_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{SECCOMP_ROOT}/{path}")
    }
}

/// CPU shares from milli-CPU, as the kubelet computes them (clamped to [2, 262144]).
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return 2;
    }
    (milli * 1024 / 1000).clamp(2, 262_144)
}

/// CFS quota from a milli-CPU limit with the kubelet's 1000 µs floor.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(1000)
}

/// The kubelet's oom_score_adj for a container of a pod of class `qos`.
pub fn oom_score_adj(qos: Qos, memory_request: i64, memory_capacity: i64) -> i64 {
    match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let adj = 1000 - (1000 * memory_request) / memory_capacity.max(1);
            // Burstable containers must score above Guaranteed ones and below BestEffort ones.
            adj.clamp(2, 999)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cpu_and_memory_numbers() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
        assert_eq!(milli_cpu_to_quota(5, 100_000), 1000, "1000 µs floor");
        assert_eq!(milli_cpu_to_quota(500, 100_000), 50_000);
        assert_eq!(oom_score_adj(Qos::Burstable, 0, 1 << 30), 999);
        assert_eq!(oom_score_adj(Qos::Burstable, 1 << 30, 1 << 30), 2);
        assert_eq!(oom_score_adj(Qos::Guaranteed, 0, 1), -997);
        assert_eq!(Qos::from_cgroup_parent("/kubepods/pod123"), Qos::Guaranteed);
        assert_eq!(
            Qos::from_cgroup_parent("kubepods-besteffort-pod1_2.slice"),
            Qos::BestEffort
        );
    }
}
