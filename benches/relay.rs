//! Relay overhead: the same CRI calls sent directly to a backend and through a podgraft process in
//! front of it, interleaved in one run, printed side by side (p50/p99 and the added latency).
//!
//! Backends: the in-process fake CRI backend (Version; ListContainers with 1,000 containers) and, when
//! containerd is installed, a private real containerd (ListContainers, ContainerStatus).
//!
//!     cargo bench --bench relay            (or hack/bench.sh, which installs what it needs first)
//!     BENCH_SCALE=0.2 cargo bench ...      fewer samples, for a quick look
//!     cargo bench --bench relay -- fake     only the fake-backend part (`real`: only containerd;
//!                                           `version`: only the small calls)
//!     PODGRAFT_BENCH_BASELINE=/path/to/podgraft cargo bench ...
//!                                           also another build (say, from before a change) in
//!                                           front of the fake backend, as `baseline`

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Podgraft, PrivateContainerd, Samples, cpu_time, one_cpu, scale, set_affinity, us};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::client::uds_channel;
use podgraft::testing::{FakeCri, default_handler, handler_with_dynamic};
use tonic::transport::Channel;

type Client = RuntimeServiceClient<Channel>;

/// Runs `calls` calls of `op` on `conc` concurrent tasks sharing one channel; returns each latency.
async fn measure<F, Fut>(client: &Client, calls: usize, conc: usize, op: F) -> Vec<Duration>
where
    F: Fn(Client) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let client = client.clone();
        let op = op.clone();
        let n = calls / conc;
        tasks.spawn_local(async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                op(client.clone()).await;
                out.push(t.elapsed());
            }
            out
        });
    }
    let mut all = Vec::with_capacity(calls);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

/// Alternates direct and relayed rounds so that drift on the machine hits every path alike, and
/// prints one row per relayed path against the same direct samples.
async fn compare<F, Fut>(
    label: &str,
    direct: &Client,
    relayed: &[(&str, &Client, u32)],
    calls: usize,
    conc: usize,
    op: F,
) where
    F: Fn(Client) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let rounds = 10;
    let per_round = (calls / rounds).max(conc);
    // Warm-up: connections, allocator, caches.
    measure(direct, per_round, conc, op.clone()).await;
    for (_, client, _) in relayed {
        measure(client, per_round, conc, op.clone()).await;
    }
    let mut d = Samples::default();
    let mut r: Vec<(Samples, Duration)> = relayed
        .iter()
        .map(|_| (Samples::default(), Duration::ZERO))
        .collect();
    for _ in 0..rounds {
        d.0.extend(measure(direct, per_round, conc, op.clone()).await);
        for ((_, client, pid), (samples, cpu)) in relayed.iter().zip(r.iter_mut()) {
            let before = cpu_time(*pid);
            samples
                .0
                .extend(measure(client, per_round, conc, op.clone()).await);
            *cpu += cpu_time(*pid) - before;
        }
    }
    let (d50, d99) = (d.pct(50), d.pct(99));
    for ((path, _, _), (mut samples, cpu)) in relayed.iter().zip(r) {
        let (r50, r99) = (samples.pct(50), samples.pct(99));
        let cpu_per_call = us(cpu) / samples.0.len() as f64;
        println!(
            "{:<46} {conc:>4} {n:>7} | {:>9.1} {:>9.1} | {:>9.1} {:>9.1} | {:>+8.1} {:>+8.1} | {:>5.2}x {:>5.2}x | {cpu_per_call:>6.1}",
            format!("{label} via {path}"),
            us(d50),
            us(d99),
            us(r50),
            us(r99),
            us(r50) - us(d50),
            us(r99) - us(d99),
            r50.as_secs_f64() / d50.as_secs_f64(),
            r99.as_secs_f64() / d99.as_secs_f64(),
            n = d.0.len(),
        );
    }
}

/// [`compare`] with one caller, then with 16 concurrent callers making twice as many calls.
async fn compare_1_and_16<F, Fut>(
    label: &str,
    direct: &Client,
    relayed: &[(&str, &Client, u32)],
    calls: usize,
    op: F,
) where
    F: Fn(Client) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    compare(label, direct, relayed, scale(calls), 1, op.clone()).await;
    compare(label, direct, relayed, scale(2 * calls), 16, op).await;
}

fn header(title: &str) {
    println!("\n{title}");
    println!(
        "{:<46} {:>4} {:>7} | {:>19} | {:>19} | {:>17} | {:>13} | {:>6}",
        "call",
        "conc",
        "samples",
        "direct p50/p99 µs",
        "relayed p50/p99 µs",
        "added p50/p99 µs",
        "ratio p50/p99",
        "CPU µs"
    );
}

/// The floor for any relay process: a byte pipe (this benchmark binary re-run with `--pipe`) that
/// copies each connection to the backend with no HTTP/2 or gRPC processing at all.
struct Pipe(Child);

impl Pipe {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn start(listen: &Path, backend: &Path) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("--pipe")
            .arg(listen)
            .arg(backend)
            .spawn()
            .expect("spawn pipe");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(listen).is_err() {
            assert!(Instant::now() < deadline, "pipe did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self(child)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_pipe(listen: &str, backend: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(listen).unwrap();
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let backend = backend.to_string();
            tokio::spawn(async move {
                let mut upstream = tokio::net::UnixStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
}

async fn version(mut c: Client) {
    c.version(cri::VersionRequest::default()).await.unwrap();
}

async fn list_all(mut c: Client) {
    c.list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap();
}

/// Another build of podgraft (`PODGRAFT_BENCH_BASELINE`, e.g. one from before a change) in
/// front of `backend`, if one is given, and a client of it.
async fn baseline(dir: &Path, name: &str, backend: &Path) -> Option<(Podgraft, Client)> {
    let binary = std::env::var_os("PODGRAFT_BENCH_BASELINE")?;
    let pg = Podgraft::start_binary(Path::new(&binary), dir, name, backend, &[]);
    let client = RuntimeServiceClient::new(uds_channel(&pg.listen).await.unwrap());
    Some((pg, client))
}

/// A fake backend on a thread and runtime of its own, as containerd has its own process.
fn spawn_fake(path: &Path, handler: podgraft::testing::Handler) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let _fake = FakeCri::with_handler(&path, handler).unwrap();
            ready_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    ready_rx.recv().unwrap();
}

async fn fake_backend(dir: &Path, version_only: bool) {
    let fake_sock = dir.join("fake.sock");
    spawn_fake(&fake_sock, default_handler(1000));
    let pg = Podgraft::start(dir, "podgraft", &fake_sock, &[]);
    let relay_sock = pg.listen.clone();
    let pipe_sock = dir.join("pipe.sock");
    let pipe = Pipe::start(&pipe_sock, &fake_sock);
    let direct = RuntimeServiceClient::new(uds_channel(&fake_sock).await.unwrap());
    let relayed = RuntimeServiceClient::new(uds_channel(&relay_sock).await.unwrap());
    let piped = RuntimeServiceClient::new(uds_channel(&pipe_sock).await.unwrap());
    let baseline = baseline(dir, "baseline", &fake_sock).await;
    let mut paths = vec![
        ("podgraft", &relayed, pg.pid()),
        ("byte pipe", &piped, pipe.pid()),
    ];
    if let Some((b, client)) = &baseline {
        paths.insert(1, ("baseline", client, b.pid()));
    }
    let rss_before = pg.rss_kib();
    header(
        "In-process fake CRI backend; podgraft and a byte pipe (the floor) as processes in front",
    );
    compare_1_and_16("Version", &direct, &paths, 20_000, version).await;
    if !version_only {
        compare_1_and_16(
            "ListContainers (1000 containers)",
            &direct,
            &paths,
            1_000,
            list_all,
        )
        .await;
    }
    println!(
        "podgraft RSS: {} KiB at start of run, {} KiB after it",
        rss_before,
        pg.rss_kib()
    );

    let mut everyone = vec![std::process::id(), pg.pid(), pipe.pid()];
    everyone.extend(baseline.as_ref().map(|(b, _)| b.pid()));
    let all_cpus = set_affinity(&everyone, &one_cpu(0));
    header(
        "Small calls again, client, backend, podgraft and the pipe pinned to one CPU (no cross-CPU wake-ups)",
    );
    compare_1_and_16("Version", &direct, &paths, 20_000, version).await;
    set_affinity(&everyone, &all_cpus);
    if version_only {
        return;
    }

    // The same listing on a node with dynamic containers: every 10th entry is one, and podgraft
    // pads those out of the stream.
    let fake_sock = dir.join("fake-dyn.sock");
    spawn_fake(&fake_sock, handler_with_dynamic(1000, Some(10)));
    let pg = Podgraft::start(dir, "podgraft-dyn", &fake_sock, &[]);
    let direct = RuntimeServiceClient::new(uds_channel(&fake_sock).await.unwrap());
    let relayed = RuntimeServiceClient::new(uds_channel(&pg.listen).await.unwrap());
    let hidden = relayed
        .clone()
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap();
    assert_eq!(
        hidden.into_inner().containers.len(),
        900,
        "podgraft hides the 100 dynamic containers"
    );
    header("The same with 100 of the 1000 containers dynamic (hidden by podgraft)");
    let paths = [("podgraft", &relayed, pg.pid())];
    compare_1_and_16(
        "ListContainers (1000, 100 hidden)",
        &direct,
        &paths,
        1_000,
        list_all,
    )
    .await;
}

async fn real_containerd(dir: &Path) {
    let node_dir = dir.join("node");
    let Some(ctd) = PrivateContainerd::start(&node_dir) else {
        return;
    };
    let ctd_sock = ctd.socket.clone();
    let pg = Podgraft::start(dir, "podgraft-real", &ctd_sock, &[]);
    let relay_sock = pg.listen.clone();
    let pipe_sock = dir.join("pipe-real.sock");
    let pipe = Pipe::start(&pipe_sock, &ctd_sock);
    let mut direct = RuntimeServiceClient::new(uds_channel(&ctd_sock).await.unwrap());
    let relayed = RuntimeServiceClient::new(uds_channel(&relay_sock).await.unwrap());
    let piped = RuntimeServiceClient::new(uds_channel(&pipe_sock).await.unwrap());
    let baseline = baseline(dir, "baseline-real", &ctd_sock).await;
    let mut paths = vec![
        ("podgraft", &relayed, pg.pid()),
        ("byte pipe", &piped, pipe.pid()),
    ];
    if let Some((b, client)) = &baseline {
        paths.insert(1, ("baseline", client, b.pid()));
    }

    // One pod with 10 running containers, so the list is not trivially small.
    let uid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string();
    let cgroup_parent = format!("/kubepods/burstable/pod{uid}");
    ctd.track_cgroup(&cgroup_parent);
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "bench".into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: node_dir.join("pods").display().to_string(),
        labels: [("io.kubernetes.pod.uid".to_string(), uid)].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent,
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = direct
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut first = String::new();
    for i in 0..10 {
        let id = direct
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: format!("c{i}"),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: "podgraft.test/busybox:1".into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: format!("c{i}.log"),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        direct
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        if i == 0 {
            first = id;
        }
    }
    header("Real containerd 1.6 (1 pod, 10 running containers)");
    compare_1_and_16("ListContainers", &direct, &paths, 4_000, list_all).await;
    let status = move |mut c: Client| {
        let id = first.clone();
        async move {
            c.container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await
            .unwrap();
        }
    };
    compare_1_and_16("ContainerStatus", &direct, &paths, 4_000, status).await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, listen, backend] = &args[..] {
        if flag == "--pipe" {
            return run_pipe(listen, backend);
        }
    }
    // `cargo bench` passes --bench; one more argument picks a part: `fake` or `real`.
    let part = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let dir = tempfile::Builder::new()
        .prefix("pgb-")
        .tempdir_in("/tmp")
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    println!("podgraft relay benchmark: client on a current-thread runtime; latencies per call");
    local.block_on(&rt, async {
        if part.is_empty() || part == "fake" || part == "version" {
            fake_backend(dir.path(), part == "version").await;
        }
        if part.is_empty() || part == "real" {
            real_containerd(dir.path()).await;
        }
    });
}
