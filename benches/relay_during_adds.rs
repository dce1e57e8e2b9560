//! Relay latency of the kubelet's small calls while dynamic containers are being added (issue 8):
//! one client sends Version and ContainerStatus (of a pod's kubelet container) back to back, through
//! podgraft and straight to containerd in turn, in windows with no adds alternating with windows
//! during a burst of adds (10 concurrent add + remove loops into two mutable pods through the
//! control API). Everything an add does on podgraft's relay thread (state writes, cgroup writes)
//! shows up as relay latency here; the direct rows show what the burst costs containerd and the
//! machine by themselves.
//!
//!     cargo bench --bench relay_during_adds      (BENCH_SCALE=0.3 for fewer windows)

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Podgraft, PrivateContainerd, Samples, ms, scale};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::api::{self, control_client::ControlClient};
use podgraft::client::uds_channel;
use tonic::transport::Channel;

const IMAGE: &str = "podgraft.test/busybox:1";
/// The RuntimeClass handler podgraft treats as mutable in this bench.
const MUTABLE: &str = "podgraft";
/// Concurrent add + remove loops during a burst.
const BURST: usize = 10;
/// How long each window measures.
const WINDOW: Duration = Duration::from_secs(1);

type Client = RuntimeServiceClient<Channel>;

/// A mutable pod with one kubelet container, made through podgraft as the kubelet makes it;
/// returns the sandbox and the container's IDs.
async fn kubelet_pod(ctd: &PrivateContainerd, via: &mut Client, name: &str) -> (String, String) {
    let config = ctd.sandbox_config(name);
    let sandbox = via
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: MUTABLE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let container = via
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                labels: config.labels.clone(),
                log_path: "main/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    via.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .unwrap();
    (sandbox, container)
}

/// One add + remove loop of the burst: adds a container under a fresh name (removed names stay
/// taken for a while), removes it at once, until `stop`; counts completed adds.
async fn add_remove_loop(
    mut control: ControlClient<Channel>,
    sandbox: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    adds: Arc<AtomicU64>,
) {
    let pod = Some(api::PodRef {
        sandbox_id: sandbox,
        ..Default::default()
    });
    while !stop.load(Ordering::Relaxed) {
        let name = format!("burst-{worker}-{}", adds.fetch_add(1, Ordering::Relaxed));
        control
            .add_containers(api::AddContainersRequest {
                pod: pod.clone(),
                containers: vec![api::ContainerSpec {
                    name: name.clone(),
                    image: IMAGE.into(),
                    command: vec!["sleep".into(), "3600".into()],
                    ..Default::default()
                }],
            })
            .await
            .unwrap_or_else(|e| panic!("add {name}: {e}"));
        control
            .remove_containers(api::RemoveContainersRequest {
                pod: pod.clone(),
                names: vec![name.clone()],
                grace_period_seconds: Some(0),
            })
            .await
            .unwrap_or_else(|e| panic!("remove {name}: {e}"));
    }
}

/// A burst of adds on a thread (and runtime and control connection) of its own, so that the
/// measuring client's runtime runs nothing else.
struct Burst {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Burst {
    /// Starts the loops and returns once the first add has completed (the burst is under way).
    fn start(control: &std::path::Path, sandboxes: &[String], adds: &Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = adds.load(Ordering::Relaxed);
        let (control, sandboxes, adds2, stop2) = (
            control.to_path_buf(),
            sandboxes.to_vec(),
            adds.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let control = ControlClient::new(uds_channel(&control).await.unwrap());
                let loops: Vec<_> = (0..BURST)
                    .map(|k| {
                        tokio::spawn(add_remove_loop(
                            control.clone(),
                            sandboxes[k % sandboxes.len()].clone(),
                            k,
                            stop2.clone(),
                            adds2.clone(),
                        ))
                    })
                    .collect();
                for l in loops {
                    l.await.unwrap();
                }
            });
        });
        // Each loop counts its add as it begins: BURST more than before means every loop is in
        // its first add; one more means one of them has finished an add + remove.
        while adds.load(Ordering::Relaxed) <= started + BURST as u64 {
            assert!(!thread.is_finished(), "the burst's loops ended early");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { stop, thread }
    }

    /// Stops the loops and waits for their last add + remove to finish.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("a burst loop failed");
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Version,
    ContainerStatus,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Path {
    Podgraft,
    Direct,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Quiet,
    Adds,
}

async fn call(client: &mut Client, call: Call, container: &str) {
    match call {
        Call::Version => {
            client
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await
                .unwrap();
        }
        Call::ContainerStatus => {
            client
                .container_status(cri::ContainerStatusRequest {
                    container_id: container.into(),
                    verbose: false,
                })
                .await
                .unwrap();
        }
    }
}

type Table = HashMap<(Call, Path, Phase), Samples>;

/// Sends the four (call, path) pairs in turn, back to back, for [`WINDOW`]; each latency goes to
/// its row of `phase`.
async fn window(
    table: &mut Table,
    phase: Phase,
    clients: &mut [(Path, Client)],
    container: &str,
) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < WINDOW {
        for c in [Call::Version, Call::ContainerStatus] {
            for (path, client) in clients.iter_mut() {
                let t = Instant::now();
                call(client, c, container).await;
                table
                    .entry((c, *path, phase))
                    .or_default()
                    .0
                    .push(t.elapsed());
                n += 1;
            }
        }
    }
    n
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::Builder::new()
        .prefix("pgr-")
        .tempdir_in("/tmp")
        .unwrap();
    let Some(ctd) = PrivateContainerd::start(&dir.path().join("node")) else {
        return;
    };
    let pg = Podgraft::start(dir.path(), "podgraft", &ctd.socket, &[MUTABLE]);
    let mut via = RuntimeServiceClient::new(uds_channel(&pg.listen).await.unwrap());
    let direct = RuntimeServiceClient::new(uds_channel(&ctd.socket).await.unwrap());

    let (sandbox_a, container) = kubelet_pod(&ctd, &mut via, "burst-a").await;
    let (sandbox_b, _) = kubelet_pod(&ctd, &mut via, "burst-b").await;
    let sandboxes = [sandbox_a.clone(), sandbox_b.clone()];
    let mut clients = [(Path::Podgraft, via.clone()), (Path::Direct, direct)];

    // Warm-up: connections, caches, the first adds' image and snapshot work.
    let adds = Arc::new(AtomicU64::new(0));
    let mut table = Table::new();
    window(&mut table, Phase::Quiet, &mut clients, &container).await;
    Burst::start(&pg.control, &sandboxes, &adds).stop();
    table.clear();

    // Quiet and burst windows alternate, so that drift on the machine hits both alike.
    let rounds = scale(40) / 4;
    let mut adds_in_windows = 0;
    let mut burst_time = Duration::ZERO;
    for _ in 0..rounds {
        window(&mut table, Phase::Quiet, &mut clients, &container).await;
        let burst = Burst::start(&pg.control, &sandboxes, &adds);
        let (before, t) = (adds.load(Ordering::Relaxed), Instant::now());
        window(&mut table, Phase::Adds, &mut clients, &container).await;
        adds_in_windows += adds.load(Ordering::Relaxed) - before;
        burst_time += t.elapsed();
        burst.stop();
        // Let the last removals' after-effects (events, cgroup shrink) pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!(
        "Small calls from one client, back to back, with no adds and during a burst of adds \
         ({BURST} concurrent add + remove loops into 2 mutable pods); {rounds} windows of {WINDOW:?} each; latencies in ms"
    );
    println!(
        "{:<50} {:>7} | {:>8} {:>8} | during adds / no adds p50/p99",
        "call", "samples", "p50", "p99"
    );
    for (path, path_label) in [
        (Path::Podgraft, "via podgraft"),
        (Path::Direct, "direct to containerd"),
    ] {
        for (c, call_label) in [
            (Call::Version, "Version"),
            (Call::ContainerStatus, "ContainerStatus"),
        ] {
            let mut quiet = table.remove(&(c, path, Phase::Quiet)).unwrap_or_default();
            let mut busy = table.remove(&(c, path, Phase::Adds)).unwrap_or_default();
            let (q50, q99) = (quiet.pct(50), quiet.pct(99));
            let (b50, b99) = (busy.pct(50), busy.pct(99));
            println!(
                "{:<50} {:>7} | {:>8.3} {:>8.3} |",
                format!("{call_label} {path_label}, no adds"),
                quiet.0.len(),
                ms(q50),
                ms(q99)
            );
            println!(
                "{:<50} {:>7} | {:>8.3} {:>8.3} | {:>6.2}x {:>6.2}x",
                format!("{call_label} {path_label}, during adds"),
                busy.0.len(),
                ms(b50),
                ms(b99),
                b50.as_secs_f64() / q50.as_secs_f64(),
                b99.as_secs_f64() / q99.as_secs_f64()
            );
        }
    }
    println!(
        "adds begun during the measured windows: {adds_in_windows} ({:.1}/s); podgraft RSS after the run: {} KiB",
        adds_in_windows as f64 / burst_time.as_secs_f64(),
        pg.rss_kib()
    );
    for sandbox in sandboxes {
        via.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
        via.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    }
}
