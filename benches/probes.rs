//! The probe engine under load, and what that load does to the relay: 1,000 TCP and 1,000 HTTP
//! probes per second (readiness probes, period 1 s, started spread over one second) against
//! listeners in this process, run by `dynamic::probes::Prober` on a thread and current-thread
//! runtime of its own, as the daemon's dynamic plane runs it; side by side, in alternated rounds,
//! the floor: the same connections made by bare sockets on that thread (most of a probe's CPU
//! is the kernel's loopback TCP, both ends of which run in the connecting thread's system time).
//! Printed: probes per second achieved, that thread's CPU (user and system) over wall time and
//! per probe, this process's RSS before and during the load; and Version through a podgraft
//! process (in front of the in-process fake backend, as benches/relay.rs does), p50/p99 without
//! and with the probe load, alternated in rounds.
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

/// User and system CPU time of one thread of this process (clock ticks, from its stat file).
fn thread_user_sys(tid: i32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    (ticks(field(14)), ticks(field(15)))
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

/// What runs the probes: podgraft's engine, or the floor: bare sockets doing the same network
/// work (connect and close; connect, a minimal GET, read to the end) on the same kind of thread,
/// with nothing else (no state machine, no HTTP library, no timers but the period).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Engine,
    Bare,
}

enum Load {
    Start(Mode),
    Stop,
}

/// One bare TCP "probe" per second until aborted.
async fn bare_tcp(port: u16) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            drop(s);
        }
    }
}

/// One bare HTTP GET per second until aborted: the request written, the answer read to its end.
async fn bare_http(port: u16) {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.36\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 1024];
    loop {
        tick.tick().await;
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        if s.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
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
            let mut bare = Vec::new();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Load::Start(mode) => {
                        // Spread over a second, as containers started over time would be.
                        for i in 0..PER_KIND {
                            if mode == Mode::Bare {
                                bare.push(tokio::spawn(bare_tcp(tcp_port)));
                                bare.push(tokio::spawn(bare_http(http_port)));
                            } else {
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
                            }
                            tokio::time::sleep(Duration::from_micros(1_000_000 / PER_KIND as u64))
                                .await;
                        }
                    }
                    Load::Stop => {
                        bare.drain(..).for_each(|t| t.abort());
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

/// The probe thread's CPU and the listeners' count at one instant.
struct Reading {
    at: Instant,
    cpu: Duration,
    user: Duration,
    sys: Duration,
    hits: u64,
}

impl Reading {
    fn take(tid: i32, listeners: &Listeners) -> Self {
        let (user, sys) = thread_user_sys(tid);
        Reading {
            at: Instant::now(),
            cpu: thread_cpu(tid),
            user,
            sys,
            hits: listeners.hits.load(Ordering::Relaxed),
        }
    }
}

/// CPU, wall time and probes summed over the rounds of one mode.
#[derive(Default)]
struct Account {
    cpu: Duration,
    user: Duration,
    sys: Duration,
    wall: Duration,
    probes: u64,
}

impl Account {
    fn add(&mut self, start: &Reading, end: &Reading) {
        self.cpu += end.cpu - start.cpu;
        self.user += end.user - start.user;
        self.sys += end.sys - start.sys;
        self.wall += end.at - start.at;
        self.probes += end.hits - start.hits;
    }

    fn percent(&self, d: Duration) -> f64 {
        100.0 * d.as_secs_f64() / self.wall.as_secs_f64()
    }
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
        let (mut engine, mut floor) = (Account::default(), Account::default());
        // PROBE_BENCH_ONLY=engine|bare runs one side, to trace or profile it alone.
        let modes: Vec<Mode> = match std::env::var("PROBE_BENCH_ONLY").as_deref() {
            Ok("engine") => vec![Mode::Engine],
            Ok("bare") => vec![Mode::Bare],
            _ => vec![Mode::Engine, Mode::Bare],
        };
        let rss_idle = rss_kib();
        let mut rss_loaded = 0;
        for _ in 0..ROUNDS {
            off.0.extend(versions(&client, n).await);
            for mode in modes.iter().copied() {
                load.send(Load::Start(mode)).unwrap();
                // The load ramps up over a second; measure once every probe runs.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                let start = Reading::take(tid, &listeners);
                if mode == Mode::Engine {
                    on.0.extend(versions(&client, n).await);
                    rss_loaded = rss_loaded.max(rss_kib());
                }
                // At least 3 s of load per round for the CPU figure.
                let left = Duration::from_secs(3).saturating_sub(start.at.elapsed());
                tokio::time::sleep(left).await;
                let account = if mode == Mode::Engine {
                    &mut engine
                } else {
                    &mut floor
                };
                account.add(&start, &Reading::take(tid, &listeners));
                load.send(Load::Stop).unwrap();
                // Probes in flight finish; the listeners go quiet.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
        }
        println!(
            "\nProbes: {PER_KIND} TCP + {PER_KIND} HTTP per second (period 1 s) against local listeners, {ROUNDS} rounds alternated"
        );
        println!(
            "{:<22} | {:>9} | {:>14} | {:>10} | {:>10} | {:>12}",
            "run by", "probes/s", "thread CPU/wall", "user", "system", "µs per probe"
        );
        for (label, a) in [("podgraft engine", &engine), ("bare sockets (floor)", &floor)] {
            println!(
                "{label:<22} | {:>9.0} | {:>13.1}% | {:>9.1}% | {:>9.1}% | {:>12.1}",
                a.probes as f64 / a.wall.as_secs_f64(),
                a.percent(a.cpu),
                a.percent(a.user),
                a.percent(a.sys),
                us(a.cpu) / a.probes.max(1) as f64,
            );
        }
        println!(
            "engine / floor CPU: {:.2}; process RSS idle / under the engine's load: {rss_idle} / {rss_loaded} KiB",
            engine.percent(engine.cpu) / floor.percent(floor.cpu).max(f64::MIN_POSITIVE),
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
