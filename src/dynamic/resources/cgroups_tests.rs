//! Growth of pod cgroups through the manager: in-memory CRI plus a fixture cgroup v1 tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1 as cri;

use super::*;
use crate::cgroup::{Limits, Mode, RealIo};
use crate::dynamic::model::keys::MAX_MEMORY_ANNOTATION;
use crate::dynamic::model::spec::testing::with_resources;
use crate::dynamic::model::{ContainerSpec, PodSelector};
use crate::dynamic::resources::Bounds;
use crate::dynamic::state::SandboxStore;
use crate::dynamic::{Error, Manager, ManagerSettings};
use crate::testing::MemCri;

const BASE_MEMORY: i64 = 128 << 20;

struct Fx {
    cri: Arc<MemCri>,
    state: tempfile::TempDir,
    cgroups: tempfile::TempDir,
    budget: Bounds,
}

fn memory_file(root: &Path, uid: &str) -> PathBuf {
    root.join(format!(
        "memory/kubepods/burstable/pod{uid}/memory.limit_in_bytes"
    ))
}

fn write_pod_cgroup(root: &Path, uid: &str, memory: i64, usage: i64) {
    let cpu = root.join(format!("cpu/kubepods/burstable/pod{uid}"));
    let mem = root.join(format!("memory/kubepods/burstable/pod{uid}"));
    std::fs::create_dir_all(&cpu).unwrap();
    std::fs::create_dir_all(&mem).unwrap();
    std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1\n").unwrap();
    std::fs::write(cpu.join("cpu.cfs_period_us"), "100000\n").unwrap();
    std::fs::write(cpu.join("cpu.shares"), "256\n").unwrap();
    std::fs::write(mem.join("memory.limit_in_bytes"), format!("{memory}\n")).unwrap();
    std::fs::write(mem.join("memory.usage_in_bytes"), format!("{usage}\n")).unwrap();
}

fn read_memory(fx: &Fx, uid: &str) -> i64 {
    std::fs::read_to_string(memory_file(fx.cgroups.path(), uid))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Fx {
    fn new(budget: Bounds) -> Fx {
        let fx = Fx {
            cri: Arc::new(MemCri::new()),
            state: tempfile::tempdir().unwrap(),
            cgroups: tempfile::tempdir().unwrap(),
            budget,
        };
        fx.cri.add_image("busybox:1");
        for name in ["agent", "capped"] {
            fx.cri.add_pod(
                &format!("sb-{name}"),
                "podgraft",
                "default",
                name,
                &format!("uid-{name}"),
            );
            write_pod_cgroup(
                fx.cgroups.path(),
                &format!("uid-{name}"),
                BASE_MEMORY,
                16 << 20,
            );
        }
        fx
    }

    /// A manager over the fixture; a second call is podgraft after a restart.
    async fn manager(&self) -> Manager {
        let m = self.build();
        self.start_pods(&m).await;
        m.load().await.unwrap();
        m
    }

    /// A manager that learns of the pods only as they start (RunPodSandbox), after its load.
    async fn manager_pods_started_after_load(&self) -> Manager {
        let m = self.build();
        m.load().await.unwrap();
        self.start_pods(&m).await;
        m
    }

    fn build(&self) -> Manager {
        let store = SandboxStore::new(self.state.path(), ["podgraft".to_string()]);
        let settings = ManagerSettings {
            budget: self.budget,
            cgroups: Some(CgroupSettings {
                root: self.cgroups.path().to_path_buf(),
                mode: Mode::V1,
                io: Arc::new(RealIo),
            }),
            ..ManagerSettings::default()
        };
        Manager::new(self.cri.clone(), store, settings)
    }

    async fn start_pods(&self, m: &Manager) {
        for name in ["agent", "capped"] {
            let id = format!("sb-{name}");
            let mut config = self.cri.sandbox_config(&id);
            if name == "capped" {
                config
                    .annotations
                    .insert(MAX_MEMORY_ANNOTATION.into(), "48Mi".into());
            }
            m.pod_started(
                &id,
                &cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: "podgraft".into(),
                },
            )
            .await;
        }
    }
}

fn pod(name: &str) -> PodSelector {
    PodSelector::Name {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn with_memory(name: &str, memory: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "busybox:1".into(),
        ..with_resources(("", ""), ("250m", memory))
    }
}

#[tokio::test]
async fn grows_before_adding_and_shrinks_after_removing() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    m.add(
        &pod("agent"),
        vec![with_memory("a", "32Mi"), with_memory("b", "16Mi")],
    )
    .await
    .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (48 << 20));
    let quota = std::fs::read_to_string(
        fx.cgroups
            .path()
            .join("cpu/kubepods/burstable/poduid-agent/cpu.cfs_quota_us"),
    )
    .unwrap();
    assert_eq!(quota.trim(), "-1", "an unlimited pod quota stays unlimited");
    m.remove(&pod("agent"), &["a".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (16 << 20));
    m.remove(&pod("agent"), &["b".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY);
}

#[tokio::test]
async fn the_first_add_to_a_newly_started_pod_grows_it() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager_pods_started_after_load().await;
    m.add(&pod("agent"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (32 << 20));
}

#[tokio::test]
async fn a_failed_add_gives_the_room_back() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    fx.cri.fail_start.lock().unwrap().insert("b".into());
    m.add(
        &pod("agent"),
        vec![with_memory("a", "32Mi"), with_memory("b", "16Mi")],
    )
    .await
    .unwrap_err();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY);
}

#[tokio::test]
async fn ceilings_and_budget_bound_growth() {
    let fx = Fx::new(Bounds {
        cpu_milli: None,
        memory: Some(64 << 20),
    });
    let m = fx.manager().await;
    // The pod ceiling (48Mi) refuses what the node budget would allow.
    m.add(&pod("capped"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    let err = m
        .add(&pod("capped"), vec![with_memory("b", "32Mi")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ResourceExhausted(msg) if msg.contains("podgraft.io/max-")),
        "{err:?}"
    );
    // The node budget (64Mi) refuses across pods.
    m.add(&pod("agent"), vec![with_memory("c", "32Mi")])
        .await
        .unwrap();
    let err = m
        .add(&pod("agent"), vec![with_memory("d", "1Mi")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ResourceExhausted(msg) if msg.contains("node budget") && msg.contains("available")),
        "{err:?}"
    );
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (32 << 20));
    assert_eq!(read_memory(&fx, "uid-capped"), BASE_MEMORY + (32 << 20));
}

#[tokio::test]
async fn restart_recounts_growth_and_follows_kubelet_resizes() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    m.add(&pod("agent"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    drop(m);
    // podgraft restarts: growth comes from the live containers, not added a second time.
    let m = fx.manager().await;
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (32 << 20));
    // The kubelet resizes the pod to 256Mi (its baseline) and announces it.
    std::fs::write(
        memory_file(fx.cgroups.path(), "uid-agent"),
        format!("{}\n", 256 << 20),
    )
    .unwrap();
    m.pod_resized("sb-agent").await;
    assert_eq!(read_memory(&fx, "uid-agent"), (256 << 20) + (32 << 20));
    // Anything else that changes the cgroup is drift: reconcile restores baseline + growth.
    std::fs::write(memory_file(fx.cgroups.path(), "uid-agent"), "1000000000\n").unwrap();
    m.reconcile_cgroups().await;
    assert_eq!(read_memory(&fx, "uid-agent"), (256 << 20) + (32 << 20));
    m.remove(&pod("agent"), &["a".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), 256 << 20);
}

#[tokio::test]
async fn a_shrink_below_usage_waits_for_room() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    m.add(&pod("agent"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    // The pod's other containers now use more than the baseline.
    let usage = fx
        .cgroups
        .path()
        .join("memory/kubepods/burstable/poduid-agent/memory.usage_in_bytes");
    std::fs::write(&usage, format!("{}\n", 150 << 20)).unwrap();
    m.remove(&pod("agent"), &["a".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(
        read_memory(&fx, "uid-agent"),
        BASE_MEMORY + (32 << 20),
        "never below usage"
    );
    std::fs::write(&usage, format!("{}\n", 20 << 20)).unwrap();
    m.reconcile_cgroups().await;
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY);
}

#[tokio::test]
async fn limits_read_back_unchanged_when_there_is_no_growth() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    m.reconcile_cgroups().await;
    let pod = crate::cgroup::PodCgroup::new(
        fx.cgroups.path(),
        Mode::V1,
        "/kubepods/burstable/poduid-agent",
    )
    .unwrap();
    assert_eq!(
        pod.read(&RealIo).unwrap(),
        Limits {
            cpu_quota: None,
            cpu_period: 100_000,
            cpu_shares: 256,
            memory: Some(BASE_MEMORY),
        }
    );
}

/// The same add/remove through the manager on every hierarchy and driver: v1 and v2 fixture trees,
/// cgroupfs and systemd parents.
#[tokio::test]
async fn grows_on_v2_and_systemd_trees_too() {
    use crate::cgroup::{PodCgroup, relative_path};
    for mode in [Mode::V1, Mode::V2] {
        for parent in [
            "/kubepods/burstable/podu-9",
            "kubepods-burstable-podu_9.slice",
            "kubepods-podu_9.slice",
        ] {
            let root = tempfile::tempdir().unwrap();
            let state = tempfile::tempdir().unwrap();
            let rel = relative_path(parent).unwrap();
            let files: &[(&str, &str, &str)] = match mode {
                Mode::V1 => &[
                    ("cpu", "cpu.cfs_quota_us", "200000"),
                    ("cpu", "cpu.cfs_period_us", "100000"),
                    ("cpu", "cpu.shares", "2048"),
                    ("memory", "memory.limit_in_bytes", "134217728"),
                    ("memory", "memory.usage_in_bytes", "1048576"),
                ],
                Mode::V2 => &[
                    ("", "cpu.max", "200000 100000"),
                    ("", "cpu.weight", "79"),
                    ("", "memory.max", "134217728"),
                    ("", "memory.current", "1048576"),
                ],
            };
            if mode == Mode::V2 {
                std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n")
                    .unwrap();
            }
            for (controller, file, value) in files {
                let dir = root.path().join(controller).join(&rel);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(file), format!("{value}\n")).unwrap();
            }
            let cri = Arc::new(MemCri::new());
            cri.add_image("busybox:1");
            let config = cri.add_pod_in("sb", "podgraft", "default", "agent", "u-9", parent);
            let settings = ManagerSettings {
                cgroups: Some(CgroupSettings {
                    root: root.path().to_path_buf(),
                    mode,
                    io: Arc::new(RealIo),
                }),
                ..ManagerSettings::default()
            };
            let m = Manager::new(
                cri.clone(),
                SandboxStore::new(state.path(), ["podgraft".to_string()]),
                settings,
            );
            m.load().await.unwrap();
            m.pod_started(
                "sb",
                &cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: "podgraft".into(),
                },
            )
            .await;
            let pod_cg = PodCgroup::new(root.path(), mode, parent).unwrap();
            let before = pod_cg.read(&RealIo).unwrap();
            let spec = ContainerSpec {
                resources: with_resources(("", ""), ("500m", "32Mi")).resources,
                ..with_memory("a", "")
            };
            if parent.starts_with("kubepods-pod") {
                // A Guaranteed pod: the container must have cpu and memory limits (and requests =
                // limits); one without a cpu limit would make the pod Burstable.
                let no_cpu = ContainerSpec {
                    resources: with_resources(("", ""), ("", "32Mi")).resources,
                    ..with_memory("bad", "")
                };
                let err = m.add(&pod("agent"), vec![no_cpu]).await.unwrap_err();
                assert!(
                    matches!(&err, Error::InvalidArgument { field, .. } if field == "containers[0].resources.limits.cpu"),
                    "{err:?}"
                );
            }
            m.add(&pod("agent"), vec![spec]).await.unwrap();
            let grown = pod_cg.read(&RealIo).unwrap();
            assert_eq!(
                grown.memory,
                Some((128 << 20) + (32 << 20)),
                "{mode:?} {parent}"
            );
            assert_eq!(grown.cpu_quota, Some(250_000), "{mode:?} {parent}");
            m.remove(&pod("agent"), &["a".into()], Some(0))
                .await
                .unwrap();
            assert_eq!(pod_cg.read(&RealIo).unwrap(), before, "{mode:?} {parent}");
        }
    }
}

/// Defect (issue 8): reconcile treated any change the kubelet did not announce as drift and wrote
/// it back, also on pods where podgraft held no growth at all (a baseline the kubelet set after
/// the pod started was reverted). podgraft writes a pod cgroup only while it holds growth there.
#[tokio::test]
async fn a_pod_without_dynamic_growth_is_left_to_the_kubelet() {
    let fx = Fx::new(Bounds::default());
    let m = fx.manager().await;
    let file = memory_file(fx.cgroups.path(), "uid-agent");
    // An older kubelet resizes the pod without UpdatePodSandboxResources.
    std::fs::write(&file, format!("{}\n", 256 << 20)).unwrap();
    m.reconcile_cgroups().await;
    assert_eq!(
        read_memory(&fx, "uid-agent"),
        256 << 20,
        "not drift: re-learned"
    );
    // Growth goes on top of the re-learned baseline, and goes again with the container.
    m.add(&pod("agent"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), (256 << 20) + (32 << 20));
    m.remove(&pod("agent"), &["a".into()], Some(0))
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), 256 << 20);
    // Unlimited, as the kubelet may set it: left alone too.
    std::fs::write(&file, "9223372036854771712\n").unwrap();
    m.reconcile_cgroups().await;
    assert_eq!(read_memory(&fx, "uid-agent"), 9_223_372_036_854_771_712);
}

/// Pod cgroup reads and writes run on the blocking pool, never on the thread that relays the
/// kubelet's calls (a current-thread runtime here, as podgraft's default).
#[tokio::test(flavor = "current_thread")]
async fn cgroup_io_leaves_the_async_thread() {
    use std::sync::Mutex;
    use std::thread::ThreadId;

    struct Recording(Mutex<Vec<ThreadId>>);
    impl crate::cgroup::CgroupIo for Recording {
        fn read(&self, path: &Path) -> Result<String, crate::cgroup::CgroupError> {
            self.0.lock().unwrap().push(std::thread::current().id());
            RealIo.read(path)
        }
        fn write(&self, path: &Path, value: &str) -> Result<(), crate::cgroup::CgroupError> {
            self.0.lock().unwrap().push(std::thread::current().id());
            RealIo.write(path, value)
        }
    }
    let fx = Fx::new(Bounds::default());
    let io = Arc::new(Recording(Mutex::new(Vec::new())));
    let m = Manager::new(
        fx.cri.clone(),
        SandboxStore::new(fx.state.path(), ["podgraft".to_string()]),
        ManagerSettings {
            cgroups: Some(CgroupSettings {
                root: fx.cgroups.path().to_path_buf(),
                mode: Mode::V1,
                io: io.clone(),
            }),
            ..ManagerSettings::default()
        },
    );
    fx.start_pods(&m).await;
    m.load().await.unwrap();
    m.add(&pod("agent"), vec![with_memory("a", "32Mi")])
        .await
        .unwrap();
    assert_eq!(read_memory(&fx, "uid-agent"), BASE_MEMORY + (32 << 20));
    let here = std::thread::current().id();
    let seen = io.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|t| *t != here),
        "cgroup I/O on the async thread"
    );
}
