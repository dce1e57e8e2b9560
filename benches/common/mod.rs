//! Pieces shared by the benchmarks: a podgraft process, a private containerd, percentiles.
#![allow(dead_code)]

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sample counts scale with BENCH_SCALE (default 1), for a quick look with fewer samples.
pub fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as usize).max(20)
}

pub fn wait_for_socket(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The release podgraft binary as its own process, with its sockets and state under `dir`.
pub struct Podgraft {
    child: Child,
    pub listen: PathBuf,
    pub control: PathBuf,
}

impl Podgraft {
    pub fn start(dir: &Path, name: &str, backend: &Path, mutable_handlers: &[&str]) -> Self {
        let binary = Path::new(env!("CARGO_BIN_EXE_podgraft"));
        Self::start_binary(binary, dir, name, backend, mutable_handlers)
    }

    /// [`Podgraft::start`] with another build of podgraft, e.g. one from before a change.
    pub fn start_binary(
        binary: &Path,
        dir: &Path,
        name: &str,
        backend: &Path,
        mutable_handlers: &[&str],
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        let handlers: Vec<String> = mutable_handlers.iter().map(|h| format!("{h:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "mutable_handlers = [{}]\nstate_dir = \"{}\"\naudit_log = \"{}\"\n",
                handlers.join(", "),
                dir.join(format!("{name}-state")).display(),
                // Audited as in production, to a file rather than into the bench's output.
                dir.join(format!("{name}-audit.log")).display()
            ),
        )
        .unwrap();
        let listen = dir.join(format!("{name}.sock"));
        let control = dir.join(format!("{name}-control.sock"));
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(&listen)
            .arg("--control")
            .arg(&control)
            .arg("--runtime-endpoint")
            .arg(backend)
            .env("PODGRAFT_LOG", "warn")
            .env(podgraft::host_paths::FORBID_ENV, "1")
            .spawn()
            .expect("spawn podgraft");
        wait_for_socket(&listen, "podgraft");
        wait_for_socket(&control, "podgraft control");
        Self {
            child,
            listen,
            control,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Podgraft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private containerd (hack/containerd.sh) that is stopped, leaving nothing, when dropped.
pub struct PrivateContainerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl PrivateContainerd {
    /// A pod as the kubelet would configure it (Burstable cgroup parent, the kubelet's labels),
    /// in namespace "bench"; its pod cgroup is cleaned up with the node.
    pub fn sandbox_config(&self, name: &str) -> k8s_cri::v1::PodSandboxConfig {
        let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .unwrap()
            .trim()
            .to_string();
        let cgroup_parent = format!("/kubepods/burstable/pod{uid}");
        self.track_cgroup(&cgroup_parent);
        k8s_cri::v1::PodSandboxConfig {
            metadata: Some(k8s_cri::v1::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "bench".into(),
                attempt: 0,
            }),
            log_directory: self.dir.join(format!("pods/{name}")).display().to_string(),
            labels: [
                ("io.kubernetes.pod.uid".to_string(), uid),
                ("io.kubernetes.pod.name".to_string(), name.to_string()),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    "bench".to_string(),
                ),
            ]
            .into(),
            linux: Some(k8s_cri::v1::LinuxPodSandboxConfig {
                cgroup_parent,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `None` (with a loud notice) where containerd is not installed.
    pub fn start(dir: &Path) -> Option<Self> {
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            println!(
                "\n*** SKIPPED: real containerd part: containerd not installed (hack/install-deps.sh) ***"
            );
            return None;
        }
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/containerd.sh"))
            .arg("start")
            .arg(dir)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "hack/containerd.sh start failed");
        let socket = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Some(Self {
            dir: dir.to_path_buf(),
            socket,
        })
    }

    /// Records a cgroup for `hack/containerd.sh stop` to remove.
    pub fn track_cgroup(&self, path: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("cgroups"))
            .unwrap();
        writeln!(f, "{path}").unwrap();
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/containerd.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[derive(Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn pct(&mut self, p: usize) -> Duration {
        self.0.sort_unstable();
        self.0[(self.0.len() * p / 100).min(self.0.len() - 1)]
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time a process has used so far, all its threads together (the scheduler's own nanosecond
/// account, /proc/PID/task/*/schedstat). Per relayed call this shows a relay's cost without the
/// wake-up latencies of the machine, which dominate wall-clock figures on a VM.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Moves every thread of each process onto `cpus`; returns the set the first process had before.
/// With client, relay and backend on one CPU no call waits for another CPU to wake up (an
/// inter-processor interrupt, costly on a VM), so the figures show what each hop's own work costs.
pub fn set_affinity(pids: &[u32], cpus: &CpuSet) -> CpuSet {
    let before = pids
        .first()
        .and_then(|p| sched_getaffinity(Pid::from_raw(*p as i32)).ok())
        .unwrap_or_default();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                sched_setaffinity(Pid::from_raw(tid), cpus).expect("set CPU affinity");
            }
        }
    }
    before
}

/// The set holding just `cpu`.
pub fn one_cpu(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu).expect("CPU number in range");
    set
}
