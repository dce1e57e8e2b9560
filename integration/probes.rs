//! Probes of dynamic containers on a real containerd: exec, TCP, HTTP and gRPC probes against
//! the pod's IP; readiness flapping, a liveness failure restarting the container under its
//! policy, and the startup probe holding liveness back.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use podgraft::api;
use podgraft::api::probe::Handler;
use podgraft::grpc_health::health_check_response::ServingStatus;
use podgraft::grpc_health::health_server::{Health, HealthServer};
use podgraft::grpc_health::{HealthCheckRequest, HealthCheckResponse};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::{PodSpec, start_pod};

type Control = api::control_client::ControlClient<Channel>;
type Events = tonic::Streaming<api::Event>;
use api::event::Type;

fn pod_ref(pod: &PodSpec) -> Option<api::PodRef> {
    Some(api::PodRef {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..Default::default()
    })
}

fn container(name: &str, script: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// A fast probe: every second, one result decides.
fn probe(handler: Handler) -> Option<api::Probe> {
    Some(api::Probe {
        handler: Some(handler),
        period_seconds: 1,
        timeout_seconds: 1,
        failure_threshold: 1,
        success_threshold: 1,
        ..Default::default()
    })
}

fn exec(cmd: &[&str]) -> Handler {
    Handler::Exec(api::ExecAction {
        command: cmd.iter().map(|s| s.to_string()).collect(),
    })
}

async fn add(control: &mut Control, pod: &PodSpec, specs: Vec<api::ContainerSpec>) {
    control
        .add_containers(api::AddContainersRequest {
            pod: pod_ref(pod),
            containers: specs,
        })
        .await
        .unwrap();
}

async fn get(control: &mut Control, pod: &PodSpec, name: &str) -> api::DynamicContainer {
    control
        .get_container(api::GetContainerRequest {
            pod: pod_ref(pod),
            name: name.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn watch(control: &mut Control, pod: &PodSpec) -> Events {
    control
        .watch_events(api::WatchEventsRequest {
            pod: pod_ref(pod),
            since_sequence: 1,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next event of `name` of type `want`; every event of `name` seen on the way is kept in
/// `seen`. Panics after `within`.
async fn wait_event(
    events: &mut Events,
    seen: &mut Vec<api::Event>,
    name: &str,
    want: Type,
    within: Duration,
) -> api::Event {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, events.message())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} of {name} within {within:?}; saw {seen:#?}"))
            .unwrap()
            .expect("event stream ended");
        if ev.name != name {
            continue;
        }
        seen.push(ev.clone());
        if ev.r#type == want as i32 {
            return ev;
        }
    }
}

fn types(seen: &[api::Event]) -> Vec<Type> {
    seen.iter()
        .map(|e| Type::try_from(e.r#type).unwrap())
        .collect()
}

/// Only the probe-driven events.
fn probe_types(seen: &[api::Event]) -> Vec<Type> {
    types(seen)
        .into_iter()
        .filter(|t| {
            matches!(
                t,
                Type::Ready | Type::NotReady | Type::StartupSucceeded | Type::LivenessFailed
            )
        })
        .collect()
}

fn cli_exec(node: &Node, pod: &PodSpec, name: &str, script: &str) {
    let (code, _, err) = node.cli(&["exec", &pod.name, name, "--", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exec_and_tcp_readiness_follow_the_container() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = start_pod(
        &node,
        "probe-ready",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut web = container("web", "sleep 2; touch /tmp/ready; exec sleep 3600");
    web.readiness_probe = probe(exec(&["test", "-f", "/tmp/ready"]));
    // The TCP probe names its port; the listener comes up after 2 s and can be stopped alone.
    let mut lsn = container(
        "lsn",
        "sleep 2; nc -ll -p 9000 -e /bin/true; exec sleep 3600",
    );
    lsn.ports = vec![api::ContainerPort {
        name: "listen".into(),
        container_port: 9000,
        ..Default::default()
    }];
    lsn.readiness_probe = probe(Handler::TcpSocket(api::TcpSocketAction {
        port_name: "listen".into(),
        ..Default::default()
    }));
    add(&mut control, &pod, vec![web, lsn]).await;
    let (w, l) = (
        get(&mut control, &pod, "web").await,
        get(&mut control, &pod, "lsn").await,
    );
    assert!(!w.ready && !l.ready, "readiness starts false");
    assert!(
        w.started && l.started,
        "no startup probe: started once running"
    );

    let mut web_seen = Vec::new();
    let mut lsn_seen = Vec::new();
    wait_event(&mut events, &mut web_seen, "web", Type::Ready, WAIT).await;
    assert!(get(&mut control, &pod, "web").await.ready);
    cli_exec(&node, &pod, "web", "rm /tmp/ready");
    let not_ready = wait_event(&mut events, &mut web_seen, "web", Type::NotReady, WAIT).await;
    assert!(
        not_ready.message.contains("Readiness probe failed"),
        "{not_ready:?}"
    );
    assert!(!get(&mut control, &pod, "web").await.ready);
    cli_exec(&node, &pod, "web", "touch /tmp/ready");
    wait_event(&mut events, &mut web_seen, "web", Type::Ready, WAIT).await;
    assert!(get(&mut control, &pod, "web").await.ready);
    assert_eq!(
        probe_types(&web_seen),
        [Type::Ready, Type::NotReady, Type::Ready]
    );

    // lsn: its events came on the same stream; read them again from the start.
    let mut events = watch(&mut control, &pod).await;
    wait_event(&mut events, &mut lsn_seen, "lsn", Type::Ready, WAIT).await;
    cli_exec(&node, &pod, "lsn", "killall nc");
    let down = wait_event(&mut events, &mut lsn_seen, "lsn", Type::NotReady, WAIT).await;
    assert!(down.message.contains("9000"), "{down:?}");
    let l = get(&mut control, &pod, "lsn").await;
    assert!(!l.ready && l.state == api::ContainerState::Running as i32);

    // ls shows READY.
    let (code, out, _) = node.cli(&["ls", &pod.name]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().contains("READY"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" web ") && l.contains("1/1")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" lsn ") && l.contains("0/1")),
        "{out}"
    );
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn a_failing_http_liveness_probe_restarts_the_container() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = start_pod(
        &node,
        "probe-live",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut web = container(
        "web",
        "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8081 -h /www",
    );
    web.restart_policy = "Always".into();
    web.ports = vec![api::ContainerPort {
        name: "http".into(),
        container_port: 8081,
        ..Default::default()
    }];
    web.liveness_probe = Some(api::Probe {
        failure_threshold: 2,
        termination_grace_period_seconds: Some(1),
        ..probe(Handler::HttpGet(api::HttpGetAction {
            path: "/healthz".into(),
            port_name: "http".into(),
            ..Default::default()
        }))
        .unwrap()
    });
    add(&mut control, &pod, vec![web]).await;
    let first = get(&mut control, &pod, "web").await;
    assert!(first.ready && first.started, "no readiness probe: ready");

    // Healthy for a few periods: nothing happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut seen = Vec::new();
    while let Ok(Ok(Some(ev))) =
        tokio::time::timeout(Duration::from_millis(200), events.message()).await
    {
        if ev.name == "web" {
            seen.push(ev);
        }
        if seen.len() > 10 {
            break;
        }
    }
    assert!(!types(&seen).contains(&Type::LivenessFailed), "{seen:#?}");

    // 404 twice in a row: killed, and restarted by its policy.
    cli_exec(&node, &pod, "web", "rm /www/healthz");
    let failed = wait_event(&mut events, &mut seen, "web", Type::LivenessFailed, WAIT).await;
    assert!(failed.message.contains("404"), "{failed:?}");
    assert_eq!(failed.container_id, first.container_id);
    assert_eq!(failed.reason, "Unhealthy");
    let started = wait_event(&mut events, &mut seen, "web", Type::Started, WAIT).await;
    assert_ne!(started.container_id, first.container_id);
    let now = get(&mut control, &pod, "web").await;
    assert_eq!(now.restart_count, 1);
    assert_eq!(now.container_id, started.container_id);
    assert_eq!(now.state, api::ContainerState::Running as i32);
    // The new attempt serves /healthz again: it stays up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = get(&mut control, &pod, "web").await;
    assert_eq!(
        (later.container_id.as_str(), later.restart_count),
        (now.container_id.as_str(), 1)
    );
    let (code, out, _) = node.cli(&["ls", &pod.name]);
    assert_eq!(code, 0);
    // The exited attempt is listed too (kept until the next restart); the running one:
    let row = out
        .lines()
        .find(|l| l.contains(" web ") && l.contains("Running"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["web", "1/1", "Running", "-"], "{out}");
    assert_eq!(cells[5], "1", "{out}");
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn the_startup_probe_holds_liveness_back() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = start_pod(
        &node,
        "probe-start",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut slow = container("slow", "sleep 3; touch /tmp/started; exec sleep 3600");
    slow.startup_probe = Some(api::Probe {
        failure_threshold: 30,
        ..probe(exec(&["test", "-f", "/tmp/started"])).unwrap()
    });
    // Would fail at once: it must not run before the startup probe passes.
    slow.liveness_probe = Some(api::Probe {
        failure_threshold: 2,
        termination_grace_period_seconds: Some(1),
        ..probe(exec(&["test", "-f", "/tmp/alive"])).unwrap()
    });
    add(&mut control, &pod, vec![slow]).await;
    let added_at = Instant::now();
    let c = get(&mut control, &pod, "slow").await;
    assert!(!c.started && !c.ready);
    let mut seen = Vec::new();
    let startup = wait_event(&mut events, &mut seen, "slow", Type::StartupSucceeded, WAIT).await;
    assert!(added_at.elapsed() >= Duration::from_secs(2), "{seen:#?}");
    let killed = wait_event(&mut events, &mut seen, "slow", Type::LivenessFailed, WAIT).await;
    assert!(
        killed.message.starts_with("Liveness probe failed"),
        "{killed:?}"
    );
    assert_eq!(
        probe_types(&seen),
        [Type::StartupSucceeded, Type::Ready, Type::LivenessFailed]
    );
    // Two failures one period apart, after startup.
    assert!(killed.time_unix_nanos - startup.time_unix_nanos >= 900_000_000);
    // restartPolicy Never: it stays exited, neither started nor ready.
    wait_event(&mut events, &mut seen, "slow", Type::Exited, WAIT).await;
    let c = get(&mut control, &pod, "slow").await;
    assert_eq!(c.state, api::ContainerState::Exited as i32);
    assert!(!c.started && !c.ready);
    node.remove_pod(&sandbox).await;
}

/// grpc.health.v1 as the test serves it: SERVING or NOT_SERVING, and the service asked for.
#[derive(Clone, Default)]
struct Toggle {
    serving: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl Health for Toggle {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.asked.lock().unwrap().push(req.into_inner().service);
        let status = if self.serving.load(Ordering::SeqCst) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// A listener bound inside the network namespace of process `pid` (the socket stays there).
fn listen_in_netns(pid: u32, port: u16) -> std::net::TcpListener {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn grpc_readiness_follows_the_health_service() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, main_id) = start_pod(
        &node,
        "probe-grpc",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let status = node
        .runtime(false)
        .await
        .container_status(cri::ContainerStatusRequest {
            container_id: main_id,
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let pid = info["pid"].as_u64().unwrap() as u32;
    let listener = tokio::net::TcpListener::from_std(listen_in_netns(pid, 50051)).unwrap();
    let health = Toggle::default();
    health.serving.store(true, Ordering::SeqCst);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(health.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut svc = container("svc", "exec sleep 3600");
    svc.readiness_probe = probe(Handler::Grpc(api::GrpcAction {
        port: 50051,
        service: "podgraft.test".into(),
    }));
    add(&mut control, &pod, vec![svc]).await;
    let mut seen = Vec::new();
    wait_event(&mut events, &mut seen, "svc", Type::Ready, WAIT).await;
    assert!(get(&mut control, &pod, "svc").await.ready);
    health.serving.store(false, Ordering::SeqCst);
    let down = wait_event(&mut events, &mut seen, "svc", Type::NotReady, WAIT).await;
    assert!(down.message.contains("NotServing"), "{down:?}");
    assert!(!get(&mut control, &pod, "svc").await.ready);
    health.serving.store(true, Ordering::SeqCst);
    wait_event(&mut events, &mut seen, "svc", Type::Ready, WAIT).await;
    assert_eq!(
        probe_types(&seen),
        [Type::Ready, Type::NotReady, Type::Ready]
    );
    assert!(
        health
            .asked
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "podgraft.test")
    );
    server.abort();
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn probes_start_over_after_podgraft_is_killed() {
    let Some(mut node) = Node::start() else {
        return;
    };
    let (pod, sandbox, _) = start_pod(
        &node,
        "probe-again",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut web = container("web", "exec sleep 3600");
    web.readiness_probe = Some(api::Probe {
        initial_delay_seconds: 4,
        ..probe(exec(&["true"])).unwrap()
    });
    add(&mut control, &pod, vec![web]).await;
    let added_at = Instant::now();
    let mut seen = Vec::new();
    wait_event(&mut events, &mut seen, "web", Type::Ready, WAIT).await;
    assert!(
        added_at.elapsed() >= Duration::from_millis(3500),
        "initial delay"
    );
    let id = get(&mut control, &pod, "web").await.container_id;

    // kill -9: probe state is runtime state; the new process probes the running container again.
    node.kill_podgraft();
    node.start_podgraft();
    let restarted_at = Instant::now();
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut seen = Vec::new();
    let ready = wait_event(&mut events, &mut seen, "web", Type::Ready, WAIT).await;
    assert_eq!(ready.container_id, id);
    // The initial delay counts from the container's start, long past: no new 4 s wait.
    assert!(
        restarted_at.elapsed() < Duration::from_secs(3),
        "{:?} {seen:#?}",
        restarted_at.elapsed()
    );
    assert!(get(&mut control, &pod, "web").await.ready);
    node.remove_pod(&sandbox).await;
}

#[tokio::test]
async fn an_exec_probe_that_outlives_its_timeout_fails() {
    let Some(node) = Node::start() else { return };
    let (pod, sandbox, _) = start_pod(
        &node,
        "probe-slow",
        MUTABLE,
        "main",
        "exec sleep 3600",
        None,
    )
    .await;
    let mut control = node.control_client().await;
    let mut events = watch(&mut control, &pod).await;
    let mut hung = container("hung", "exec sleep 3600");
    hung.liveness_probe = Some(api::Probe {
        termination_grace_period_seconds: Some(0),
        ..probe(exec(&["sleep", "30"])).unwrap()
    });
    add(&mut control, &pod, vec![hung]).await;
    let started = Instant::now();
    let mut seen = Vec::new();
    let failed = wait_event(&mut events, &mut seen, "hung", Type::LivenessFailed, WAIT).await;
    assert!(failed.message.contains("timed out"), "{failed:?}");
    // 1 s timeout (plus containerd's own answer), not the command's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    wait_event(&mut events, &mut seen, "hung", Type::Exited, WAIT).await;
    node.remove_pod(&sandbox).await;
}
