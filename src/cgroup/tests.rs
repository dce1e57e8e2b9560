//! Fixture cgroup trees for v1 and v2 × cgroupfs and systemd × each QoS class.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

const PARENTS: [&str; 6] = [
    "/kubepods/podaaaa-1111",
    "/kubepods/burstable/podbbbb-2222",
    "/kubepods/besteffort/podcccc-3333",
    "kubepods-poddddd_4444.slice",
    "kubepods-burstable-podeeee_5555.slice",
    "kubepods-besteffort-podffff_6666.slice",
];

/// Writes a pod cgroup with the kernel's files the way each hierarchy shows them.
fn fixture(root: &Path, mode: Mode, parent: &str, limits: &Limits, usage: i64) -> PodCgroup {
    let rel = relative_path(parent).unwrap();
    let put = |dir: PathBuf, name: &str, value: String| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), value + "\n").unwrap();
    };
    match mode {
        Mode::V1 => {
            let (cpu, mem) = (root.join("cpu").join(&rel), root.join("memory").join(&rel));
            put(
                cpu.clone(),
                "cpu.cfs_quota_us",
                limits.cpu_quota.unwrap_or(-1).to_string(),
            );
            put(
                cpu.clone(),
                "cpu.cfs_period_us",
                limits.cpu_period.to_string(),
            );
            put(cpu, "cpu.shares", limits.cpu_shares.to_string());
            put(
                mem.clone(),
                "memory.limit_in_bytes",
                limits
                    .memory
                    .unwrap_or(9_223_372_036_854_771_712)
                    .to_string(),
            );
            put(mem, "memory.usage_in_bytes", usage.to_string());
        }
        Mode::V2 => {
            std::fs::write(
                root.join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
            let dir = root.join(&rel);
            let quota = limits
                .cpu_quota
                .map_or("max".to_string(), |q| q.to_string());
            put(
                dir.clone(),
                "cpu.max",
                format!("{quota} {}", limits.cpu_period),
            );
            put(
                dir.clone(),
                "cpu.weight",
                shares_to_weight(limits.cpu_shares).to_string(),
            );
            put(
                dir.clone(),
                "memory.max",
                limits.memory.map_or("max".to_string(), |m| m.to_string()),
            );
            put(dir, "memory.current", usage.to_string());
        }
    }
    assert_eq!(Mode::detect(root), mode);
    PodCgroup::new(root, mode, parent).unwrap()
}

/// The limits the kubelet gives each QoS class's pod cgroup.
fn kubelet_limits(parent: &str) -> Limits {
    if parent.contains("besteffort") {
        Limits {
            cpu_quota: None,
            cpu_period: 100_000,
            cpu_shares: 2,
            memory: None,
        }
    } else if parent.contains("burstable") {
        Limits {
            cpu_quota: None,
            cpu_period: 100_000,
            cpu_shares: 256,
            memory: Some(128 << 20),
        }
    } else {
        Limits {
            cpu_quota: Some(50_000),
            cpu_period: 100_000,
            cpu_shares: 512,
            memory: Some(64 << 20),
        }
    }
}

#[test]
fn paths_for_both_drivers() {
    assert_eq!(
        relative_path("/kubepods/burstable/podu1").unwrap(),
        PathBuf::from("kubepods/burstable/podu1")
    );
    assert_eq!(
        relative_path("kubepods-burstable-podu_1.slice").unwrap(),
        PathBuf::from("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu_1.slice")
    );
    assert_eq!(
        relative_path("kubepods-podu_1.slice").unwrap(),
        PathBuf::from("kubepods.slice/kubepods-podu_1.slice")
    );
    assert_eq!(Driver::of("kubepods-podu_1.slice"), Driver::Systemd);
    for bad in [
        "",
        "/",
        "/kubepods/../etc",
        "/kubepods/burstable",
        "system.slice",
        "kubepods-burstable.slice",
    ] {
        assert!(
            matches!(relative_path(bad), Err(CgroupError::NotAPod(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn grows_and_shrinks_every_mode_driver_and_qos() {
    let growth = Growth {
        cpu_milli: 500,
        cpu_shares: 512,
        memory: 32 << 20,
    };
    for mode in [Mode::V1, Mode::V2] {
        for parent in PARENTS {
            let dir = tempfile::tempdir().unwrap();
            let base = kubelet_limits(parent);
            let pod = fixture(dir.path(), mode, parent, &base, 1 << 20);
            assert_eq!(
                pod.read(&RealIo).unwrap(),
                base.normalized(mode),
                "{mode:?} {parent}"
            );
            let grown = base.plus(&growth);
            pod.write(&RealIo, &base, &grown).unwrap();
            let read = pod.read(&RealIo).unwrap();
            assert_eq!(read, grown.normalized(mode), "{mode:?} {parent}");
            // An unlimited limit stays unlimited; a limited one grows by exactly the growth.
            assert_eq!(read.memory, base.memory.map(|m| m + (32 << 20)));
            assert_eq!(read.cpu_quota, base.cpu_quota.map(|q| q + 50_000));
            pod.write(&RealIo, &grown, &base).unwrap();
            assert_eq!(
                pod.read(&RealIo).unwrap(),
                base.normalized(mode),
                "shrinks back: {mode:?} {parent}"
            );
        }
    }
}

#[test]
fn kubelet_weight_formula() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    for shares in [2, 3, 100, 1024, 5000, 262_144] {
        assert_eq!(
            shares_to_weight(weight_to_shares(shares_to_weight(shares))),
            shares_to_weight(shares)
        );
    }
}

/// Records writes, and refuses what the kernel refuses: a memory limit below usage.
struct Kernel {
    writes: Mutex<Vec<String>>,
}

impl CgroupIo for Kernel {
    fn read(&self, path: &Path) -> Result<String, CgroupError> {
        RealIo.read(path)
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        self.writes
            .lock()
            .unwrap()
            .push(path.file_name().unwrap().to_string_lossy().into_owned());
        RealIo.write(path, value)
    }
}

#[test]
fn memory_goes_first_when_growing_and_last_when_shrinking() {
    let dir = tempfile::tempdir().unwrap();
    let base = kubelet_limits("/kubepods/podx");
    let pod = fixture(dir.path(), Mode::V1, "/kubepods/podx", &base, 1 << 20);
    let grown = base.plus(&Growth {
        cpu_milli: 100,
        cpu_shares: 102,
        memory: 1 << 20,
    });
    let kernel = Kernel {
        writes: Mutex::new(vec![]),
    };
    pod.write(&kernel, &base, &grown).unwrap();
    pod.write(&kernel, &grown, &base).unwrap();
    assert_eq!(
        *kernel.writes.lock().unwrap(),
        [
            "memory.limit_in_bytes",
            "cpu.cfs_quota_us",
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.shares",
            "memory.limit_in_bytes"
        ]
    );
}

#[test]
fn never_below_usage_and_nothing_written_then() {
    for mode in [Mode::V1, Mode::V2] {
        let dir = tempfile::tempdir().unwrap();
        let base = kubelet_limits("/kubepods/burstable/podu");
        let pod = fixture(
            dir.path(),
            mode,
            "/kubepods/burstable/podu",
            &base,
            100 << 20,
        );
        let too_small = Limits {
            memory: Some(64 << 20),
            cpu_shares: 1024,
            ..base
        };
        let kernel = Kernel {
            writes: Mutex::new(vec![]),
        };
        match pod.write(&kernel, &base, &too_small) {
            Err(CgroupError::BelowUsage { limit, usage }) => {
                assert_eq!((limit, usage), (64 << 20, 100 << 20))
            }
            other => panic!("expected BelowUsage, got {other:?}"),
        }
        assert!(kernel.writes.lock().unwrap().is_empty());
        assert_eq!(pod.read(&RealIo).unwrap(), base.normalized(mode));
    }
}
