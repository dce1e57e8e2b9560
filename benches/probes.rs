//! The probe engine under load, and what that load does to the relay: 1,000 TCP and 1,000 HTTP
//! probes per second (readiness probes, period 1 s, started spread over one second) against
//! listeners in this process, run by `dynamic::probes::Prober` on a thread and current-thread
//! runtime of its own, as the daemon's dynamic plane runs it. Printed: probes per second achieved,
//! that thread's CPU time over wall time, CPU per probe, this process's RSS before and during the
//! load; and Version through a podgraft process (in front of the in-process fake backend, as
//! benches/relay.rs does), p50/p99 without and with the probe load, alternated in rounds.
//!
//! The engine runs in this process rather than inside the podgraft process: it shares the
//! machine's CPUs with the relay as the dynamic plane's thread would (the relay and the plane are
//! separate threads either way), without needing 2,000 real containers.
//!
//!     cargo bench --bench probes              (hack/bench.sh runs it with the others)
//!     BENCH_SCALE=0.2 cargo bench --bench probes      fewer relay samples, for a quick look

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Podgraft, Samples, scale, us};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::client::uds_channel;
use podgraft::dynamic::events::EventLog;
use podgraft::dynamic::host::{Host, SystemHost};
use podgraft::dynamic::model::spec::{PortRef, Probe, ProbeHandler, Scheme};
use podgraft::dynamic::model::{ContainerSpec, PodId};
use podgraft::dynamic::probes::{Prober, Target};
use podgraft::testing::{FakeCri, MemCri, default_handler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const PER_KIND: usize = 1000;
const ROUNDS: usize = 3;

/// The scheduler's CPU account of one thread of this process.
fn thread_cpu(tid: i32) -> Duration {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Enough descriptors for the probes in flight and the listeners' ends.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Listeners {
    tcp: u16,
    http: u16,
    hits: Arc<AtomicU64>,
}

/// A TCP listener that accepts and closes, and an HTTP one answering 200, on a thread of their
/// own; `hits` counts the connections both served.
fn spawn_listeners() -> Listeners {
    let hits = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let counted = hits.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((
                tcp.local_addr().unwrap().port(),
                http.local_addr().unwrap().port(),
            ))
            .unwrap();
            let c = counted.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok((s, _)) = tcp.accept().await {
                        c.fetch_add(1, Ordering::Relaxed);
                        drop(s);
                    }
                }
            });
            loop {
                let Ok((mut s, _)) = http.accept().await else {
                    continue;
                };
                let c = counted.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    c.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
    });
    let (tcp, http) = rx.recv().unwrap();
    Listeners { tcp, http, hits }
}

enum Load {
    Start,
    Stop,
}

fn readiness(handler: ProbeHandler) -> Option<Probe> {
    Some(Probe {
        handler,
        initial_delay_seconds: 0,
        timeout_seconds: 1,
        period_seconds: 1,
        success_threshold: 1,
        failure_threshold: 3,
        termination_grace_period_seconds: None,
    })
}

/// The probe engine on its own thread and current-thread runtime (the dynamic plane's shape);
/// returns the commands' sender and the thread's id.
fn spawn_probe_plane(l: &Listeners) -> (mpsc::UnboundedSender<Load>, i32) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (tcp_port, http_port) = (l.tcp, l.http);
    std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mem = Arc::new(MemCri::new());
            // No network in the fake's sandbox status: the engine probes 127.0.0.1.
            let config = mem.add_pod("sb", "podgraft", "default", "bench", "uid-bench");
            let pod = PodId::new("sb", &config);
            let host: Arc<dyn Host> = Arc::new(SystemHost::default());
            let prober = Prober::new(mem, Arc::new(EventLog::new(host.clone())), host);
            let target = |i: usize, kind: &str, handler: ProbeHandler| Target {
                container_id: format!("{kind}-{i}"),
                pod: pod.clone(),
                name: format!("{kind}-{i}"),
                spec: ContainerSpec {
                    name: format!("{kind}-{i}"),
                    readiness_probe: readiness(handler),
                    ..Default::default()
                },
                running_for: Duration::ZERO,
            };
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Load::Start => {
                        // Spread over a second, as containers started over time would be.
                        for i in 0..PER_KIND {
                            prober.start(target(
                                i,
                                "tcp",
                                ProbeHandler::TcpSocket {
                                    port: PortRef::Number(tcp_port.into()),
                                    host: String::new(),
                                },
                            ));
                            prober.start(target(
                                i,
                                "http",
                                ProbeHandler::HttpGet {
                                    path: "/healthz".into(),
                                    port: PortRef::Number(http_port.into()),
                                    host: String::new(),
                                    scheme: Scheme::Http,
                                    headers: vec![],
                                },
                            ));
                            tokio::time::sleep(Duration::from_micros(1_000_000 / PER_KIND as u64))
                                .await;
                        }
                    }
                    Load::Stop => {
                        for i in 0..PER_KIND {
                            prober.stop(&format!("tcp-{i}"));
                            prober.stop(&format!("http-{i}"));
                        }
                    }
                }
            }
        });
    });
    (tx, tid_rx.recv().unwrap())
}

/// A fake backend on a thread and runtime of its own, as containerd has its own process.
fn spawn_fake(path: &std::path::Path) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let _fake = FakeCri::with_handler(&path, default_handler(10)).unwrap();
            ready_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    ready_rx.recv().unwrap();
}

type Client = RuntimeServiceClient<tonic::transport::Channel>;

async fn versions(client: &Client, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .clone()
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
        out.push(t.elapsed());
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let listeners = spawn_listeners();
    let (load, tid) = spawn_probe_plane(&listeners);
    let fake_sock = dir.path().join("fake.sock");
    spawn_fake(&fake_sock);
    let pg = Podgraft::start(dir.path(), "podgraft", &fake_sock, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = RuntimeServiceClient::new(uds_channel(&pg.listen).await.unwrap());
        versions(&client, scale(2_000)).await;
        let n = scale(5_000);
        let (mut off, mut on) = (Samples::default(), Samples::default());
        let (mut cpu, mut wall, mut probes) = (Duration::ZERO, Duration::ZERO, 0u64);
        let rss_idle = rss_kib();
        let mut rss_loaded = 0;
        for _ in 0..ROUNDS {
            off.0.extend(versions(&client, n).await);
            load.send(Load::Start).unwrap();
            // The load ramps up over a second; measure once every probe runs.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            let (c0, h0, t0) = (
                thread_cpu(tid),
                listeners.hits.load(Ordering::Relaxed),
                Instant::now(),
            );
            on.0.extend(versions(&client, n).await);
            // At least 3 s of load per round for the CPU figure.
            let left = Duration::from_secs(3).saturating_sub(t0.elapsed());
            tokio::time::sleep(left).await;
            cpu += thread_cpu(tid) - c0;
            wall += t0.elapsed();
            probes += listeners.hits.load(Ordering::Relaxed) - h0;
            rss_loaded = rss_loaded.max(rss_kib());
            load.send(Load::Stop).unwrap();
            // Probes in flight finish; the listeners go quiet.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        let rate = probes as f64 / wall.as_secs_f64();
        println!(
            "\nProbe engine: {PER_KIND} TCP + {PER_KIND} HTTP readiness probes (period 1 s) against local listeners, {ROUNDS} rounds"
        );
        println!(
            "{:>12} | {:>22} | {:>16} | {:>24}",
            "probes/s", "engine thread CPU/wall", "CPU µs per probe", "process RSS idle/loaded"
        );
        println!(
            "{rate:>12.0} | {:>21.1}% | {:>16.1} | {:>12} / {:>6} KiB",
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            us(cpu) / probes.max(1) as f64,
            rss_idle,
            rss_loaded
        );
        println!(
            "\nRelay: Version through podgraft (fake backend), {} samples each, alternated",
            off.0.len()
        );
        println!(
            "{:<22} | {:>9} {:>9}",
            "probe load", "p50 µs", "p99 µs"
        );
        println!(
            "{:<22} | {:>9.1} {:>9.1}",
            "none",
            us(off.pct(50)),
            us(off.pct(99))
        );
        println!(
            "{:<22} | {:>9.1} {:>9.1}",
            "2,000 probes/s",
            us(on.pct(50)),
            us(on.pct(99))
        );
    });
}
