//! Relay behaviour against the in-memory fake backend: transparency, statuses, deadlines, limits,
//! reconnection, interception and shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use tokio::sync::oneshot;
use tonic::{Code, Status};

use super::intercept::{BoxFuture, CallContext, MessageInterceptor, Registry};
use super::metrics::Metrics;
use super::{Relay, ServerSettings, serve};
use crate::client::uds_channel;
use crate::config::{Config, Overrides};
use crate::server::backend::{Backend, BackendSettings};
use crate::testing::{FakeCri, RawClient, Recorded, Reply, container_list, default_handler};
use crate::wire;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const LIST: &str = "/runtime.v1.RuntimeService/ListContainers";

/// podgraft's server and relay in front of a backend socket the test serves (shared with the
/// relay tests of `prepass`).
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) socket: PathBuf,
    pub(super) backend: PathBuf,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    pub(super) fn start(configure: impl FnOnce(&mut Registry)) -> Self {
        Self::start_with(configure, 1 << 20)
    }

    fn start_with(configure: impl FnOnce(&mut Registry), max_message: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podgraft.sock");
        let backend = dir.path().join("backend.sock");
        let metrics = Arc::new(Metrics::new());
        let mut registry = Registry::new();
        registry.observe(metrics.clone());
        configure(&mut registry);
        let settings = BackendSettings {
            connect_timeout: Duration::from_millis(500),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..BackendSettings::default()
        };
        let relay = Arc::new(Relay::new(
            Backend::start(backend.clone(), settings),
            None,
            registry,
            max_message,
        ));
        let bound = super::listener::bind(&socket, 0o660, None).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_settings = ServerSettings {
            drain_timeout: Duration::from_secs(2),
            ..ServerSettings::default()
        };
        let server = tokio::spawn(async move {
            serve(&bound.listener, relay, &server_settings, async {
                let _ = stopped.await;
            })
            .await;
            drop(bound);
        });
        Self {
            _dir: dir,
            socket,
            backend,
            metrics,
            stop: Some(stop),
            server,
        }
    }

    async fn client(&self) -> RawClient {
        RawClient::connect(&self.socket).await.unwrap()
    }
}

/// Appends field 1000 (length-delimited "future"), which no CRI version defines.
fn with_unknown_field(msg: impl Message) -> Bytes {
    let mut raw = msg.encode_to_vec();
    raw.extend_from_slice(&[0xc2, 0x3e, 6, b'f', b'u', b't', b'u', b'r', b'e']);
    Bytes::from(raw)
}

#[tokio::test]
async fn unknown_fields_and_methods_reach_the_backend_byte_identical() {
    let fx = Fixture::start(|_| {});
    let fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(|req: &Recorded| Reply::raw(req.messages.clone())), // echo
    )
    .unwrap();
    let mut client = fx.client().await;
    let request = with_unknown_field(k8s_cri::v1::ListContainersRequest { filter: None });
    for method in [LIST, "/runtime.v9.FutureService/NotYetInvented"] {
        let answer = client
            .call(method, std::slice::from_ref(&request), HeaderMap::new())
            .await;
        assert_eq!(answer.code, Code::Ok, "{method}: {}", answer.message);
        assert_eq!(
            answer.messages,
            vec![request.clone()],
            "{method}: response bytes changed"
        );
    }
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, LIST);
    assert_eq!(seen[1].method, "/runtime.v9.FutureService/NotYetInvented");
    assert!(seen.iter().all(|r| r.messages == vec![request.clone()]));
}

#[tokio::test]
async fn large_request_metadata_reaches_the_backend() {
    let fx = Fixture::start(|_| {});
    let fake = FakeCri::start(&fx.backend).unwrap();
    let mut client = fx.client().await;
    let big = "m".repeat(64 << 10);
    let mut metadata = HeaderMap::new();
    metadata.insert("x-large", big.parse().unwrap());
    let answer = client.call(VERSION, &[Bytes::new()], metadata).await;
    assert_eq!(answer.code, Code::Ok, "{}", answer.message);
    assert_eq!(fake.requests()[0].metadata["x-large"], big.as_str());
}

#[tokio::test]
async fn statuses_and_metadata_come_back_as_the_backend_sent_them() {
    let fx = Fixture::start(|_| {});
    let _fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(|req: &Recorded| {
            // The client's metadata reached the backend: echo it back in headers and trailers.
            let tag = req
                .metadata
                .get("x-trace")
                .cloned()
                .unwrap_or(HeaderValue::from_static("none"));
            let mut reply = if req.method == VERSION {
                Reply::ok(k8s_cri::v1::VersionResponse::default())
            } else {
                Reply::error(Code::NotFound, "container \"abc\" not found: ünïcode")
            };
            reply.headers.insert("x-echo", tag.clone());
            reply.trailers.insert("x-trailer", tag);
            reply
        }),
    )
    .unwrap();
    let mut client = fx.client().await;
    let mut md = HeaderMap::new();
    md.insert("x-trace", HeaderValue::from_static("t-123"));

    let ok = client.call(VERSION, &[Bytes::new()], md.clone()).await;
    assert_eq!(ok.code, Code::Ok);
    assert_eq!(ok.headers.get("x-echo").unwrap(), "t-123");
    assert!(
        ok.headers.get("date").is_none(),
        "the relay must not add headers"
    );
    assert_eq!(ok.trailers.get("x-trailer").unwrap(), "t-123");

    let err = client
        .call(
            "/runtime.v1.RuntimeService/ContainerStatus",
            &[Bytes::new()],
            md,
        )
        .await;
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(err.message, "container \"abc\" not found: ünïcode");
    assert_eq!(err.headers.get("x-echo").unwrap(), "t-123");

    // The typed client sees the same through the relay.
    let mut typed = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(
        uds_channel(&fx.socket).await.unwrap(),
    );
    let status = typed
        .container_status(k8s_cri::v1::ContainerStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // The observer is told when the relay lets go of the response, which may be just after the
    // client has it.
    let mut stats = fx.metrics.snapshot();
    for _ in 0..100 {
        if stats
            .get("/runtime.v1.RuntimeService/ContainerStatus")
            .map(|s| s.calls)
            == Some(2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        stats = fx.metrics.snapshot();
    }
    assert_eq!(stats[VERSION].calls, 1);
    assert_eq!(
        stats["/runtime.v1.RuntimeService/ContainerStatus"].errors[&(Code::NotFound as i32)],
        2
    );
}

type TypedClient =
    k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// A backend that answers Version after `delay`, and a typed client going through podgraft.
async fn slow_version(fx: &Fixture, delay: Duration) -> (FakeCri, TypedClient) {
    let fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(move |_: &Recorded| {
            let mut r = Reply::ok(k8s_cri::v1::VersionResponse::default());
            r.delay = delay;
            r
        }),
    )
    .unwrap();
    let typed = TypedClient::new(uds_channel(&fx.socket).await.unwrap());
    (fake, typed)
}

#[tokio::test]
async fn deadlines_pass_through() {
    let fx = Fixture::start(|_| {});
    let (fake, mut typed) = slow_version(&fx, Duration::from_millis(500)).await;
    let mut req = tonic::Request::new(k8s_cri::v1::VersionRequest::default());
    req.set_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let err = typed.version(req).await.unwrap_err();
    // tonic reports its own expired deadline as CANCELLED "Timeout expired"; a real backend that
    // honours grpc-timeout answers DEADLINE_EXCEEDED (covered by the integration tests).
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(450));
    let seen = fake.requests();
    let timeout = seen[0]
        .metadata
        .get("grpc-timeout")
        .expect("grpc-timeout forwarded");
    let timeout = timeout.to_str().unwrap();
    let (value, unit) = timeout.split_at(timeout.len() - 1);
    let micros: u64 = value.parse::<u64>().unwrap()
        * match unit {
            "u" => 1,
            "m" => 1000,
            "n" => 0,
            other => panic!("unexpected grpc-timeout unit {other}"),
        };
    assert!(
        (1..=100_000).contains(&micros),
        "grpc-timeout {timeout} does not carry the 100 ms deadline"
    );
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_at_the_backend_too() {
    let fx = Fixture::start(|_| {});
    let (fake, mut typed) = slow_version(&fx, Duration::from_secs(5)).await;
    let call = typed.version(k8s_cri::v1::VersionRequest::default());
    // The client gives up (drops the call, which resets its stream) while containerd still works.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(gave_up.is_err(), "the slow call cannot have finished");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while fake.cancelled() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backend never saw the call cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.cancelled(), 1);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn dead_backend_is_unavailable_then_reconnects() {
    let fx = Fixture::start(|_| {});
    let mut client = fx.client().await;
    let down = client
        .call(VERSION, &[Bytes::new()], HeaderMap::new())
        .await;
    assert_eq!(down.code, Code::Unavailable);
    assert!(
        down.message.contains(&fx.backend.display().to_string()),
        "{}",
        down.message
    );

    let fake = FakeCri::start(&fx.backend).unwrap();
    let up = client
        .call(VERSION, &[Bytes::new()], HeaderMap::new())
        .await;
    assert_eq!(up.code, Code::Ok, "{}", up.message);

    // The backend goes away and comes back: the relay follows without a restart.
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let gone = client
        .call(VERSION, &[Bytes::new()], HeaderMap::new())
        .await;
    assert_eq!(gone.code, Code::Unavailable);
    let _fake = FakeCri::start(&fx.backend).unwrap();
    let back = client
        .call(VERSION, &[Bytes::new()], HeaderMap::new())
        .await;
    assert_eq!(back.code, Code::Ok, "{}", back.message);
}

#[tokio::test]
async fn oversized_messages_are_refused_in_both_directions() {
    let fx = Fixture::start_with(|_| {}, 4096);
    let _fake = FakeCri::with_handler(&fx.backend, default_handler(200)).unwrap();
    let mut client = fx.client().await;
    let big = client
        .call(VERSION, &[Bytes::from(vec![0u8; 5000])], HeaderMap::new())
        .await;
    assert_eq!(big.code, Code::ResourceExhausted, "{}", big.message);
    assert!(big.message.contains("max_message_bytes"));

    let list = client.call(LIST, &[Bytes::new()], HeaderMap::new()).await;
    assert_eq!(list.code, Code::ResourceExhausted, "{}", list.message);
    assert!(list.messages.is_empty());
}

#[tokio::test]
async fn server_streams_are_relayed_message_by_message() {
    let fx = Fixture::start(|_| {});
    let events: Vec<Bytes> = (0..5)
        .map(|i| {
            Bytes::from(
                k8s_cri::v1::ContainerEventResponse {
                    container_id: format!("c{i}"),
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let stream = events.clone();
    let _fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(move |_: &Recorded| {
            let mut r = Reply::raw(stream.clone());
            r.delay = Duration::from_millis(5);
            r
        }),
    )
    .unwrap();
    let mut typed = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(
        uds_channel(&fx.socket).await.unwrap(),
    );
    let mut s = typed
        .get_container_events(k8s_cri::v1::GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(ev) = s.message().await.unwrap() {
        ids.push(ev.container_id);
    }
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
}

/// Hides containers labelled `podgraft.io/dynamic` and refuses requests with a poisoned filter: the
/// shape the dynamic-containers interceptors will take.
struct HideDynamic;

fn visible(entry: &[u8]) -> Result<bool, wire::WireError> {
    Ok(wire::map_get(entry, 8, "podgraft.io/dynamic")?.is_none())
}

impl MessageInterceptor for HideDynamic {
    fn on_request<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Bytes, Status>> {
        Box::pin(async move {
            let filter =
                wire::get_bytes(&msg, 1).map_err(|e| Status::invalid_argument(e.to_string()))?;
            match filter.map(|f| wire::get_string(f, 1)) {
                Some(Ok(Some(id))) if id == "forbidden" => {
                    Err(Status::permission_denied("filter.id: forbidden"))
                }
                _ => Ok(msg),
            }
        })
    }

    fn on_response<'a>(
        &'a self,
        _: &'a CallContext,
        msg: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Status>> {
        Box::pin(async move {
            let kept = wire::retain_repeated(&msg, 1, visible)
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Some(kept))
        })
    }
}

#[tokio::test]
async fn interceptors_edit_at_the_wire_level_and_keep_other_bytes() {
    let fx = Fixture::start(|r| r.intercept(LIST, Arc::new(HideDynamic)));
    let mut list = container_list(6);
    for c in list.containers.iter_mut().step_by(2) {
        c.labels.insert("podgraft.io/dynamic".into(), "true".into());
    }
    let response = with_unknown_field(list.clone());
    let canned = response.clone();
    let fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(move |_: &Recorded| Reply::raw(vec![canned.clone()])),
    )
    .unwrap();
    let mut client = fx.client().await;

    let request = with_unknown_field(k8s_cri::v1::ListContainersRequest::default());
    let answer = client
        .call(LIST, std::slice::from_ref(&request), HeaderMap::new())
        .await;
    assert_eq!(answer.code, Code::Ok, "{}", answer.message);
    assert_eq!(
        fake.requests()[0].messages,
        vec![request],
        "request bytes changed"
    );
    let got = k8s_cri::v1::ListContainersResponse::decode(&answer.messages[0][..]).unwrap();
    let names: Vec<_> = got
        .containers
        .iter()
        .map(|c| c.metadata.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, ["container-1", "container-3", "container-5"]);
    assert!(
        answer.messages[0].ends_with(b"future"),
        "unknown field dropped"
    );
    // Every kept byte is as the backend sent it: the answer is the original minus the dropped entries.
    let expected = wire::retain_repeated(&response, 1, visible).unwrap();
    assert_eq!(answer.messages[0], expected);

    let forbidden = k8s_cri::v1::ListContainersRequest {
        filter: Some(k8s_cri::v1::ContainerFilter {
            id: "forbidden".into(),
            ..Default::default()
        }),
    };
    let refused = client
        .call(
            LIST,
            &[Bytes::from(forbidden.encode_to_vec())],
            HeaderMap::new(),
        )
        .await;
    assert_eq!(refused.code, Code::PermissionDenied);
    assert_eq!(
        fake.requests().len(),
        1,
        "a refused request must not reach the backend"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_calls_and_removes_the_socket() {
    let mut fx = Fixture::start(|_| {});
    let _fake = FakeCri::with_handler(
        &fx.backend,
        Arc::new(|_: &Recorded| {
            let mut r = Reply::ok(k8s_cri::v1::VersionResponse::default());
            r.delay = Duration::from_millis(300);
            r
        }),
    )
    .unwrap();
    let mut client = fx.client().await;
    let call = tokio::spawn(async move {
        client
            .call(VERSION, &[Bytes::new()], HeaderMap::new())
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fx.stop.take().unwrap().send(()).unwrap();
    let answer = call.await.unwrap();
    assert_eq!(
        answer.code,
        Code::Ok,
        "in-flight call must finish: {}",
        answer.message
    );
    tokio::time::timeout(Duration::from_secs(3), &mut fx.server)
        .await
        .unwrap()
        .unwrap();
    assert!(!fx.socket.exists());
    assert!(RawClient::connect(&fx.socket).await.is_err());
}

#[tokio::test]
async fn daemon_serves_with_settings_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("pg.sock");
    let control = dir.path().join("control.sock");
    let backend = dir.path().join("cri.sock");
    let state = dir.path().join("state");
    let cgroup_root = dir.path().join("cgroup");
    std::fs::create_dir(&cgroup_root).unwrap();
    let _fake = FakeCri::start(&backend).unwrap();
    // Every path in the temporary directory: none of the host's podgraft's, and no host cgroups.
    let settings = Config::parse(
        &format!(
            "runtime_endpoint = \"unix://{}\"\nstate_dir = \"{}\"\ncgroup_root = \"{}\"",
            backend.display(),
            state.display(),
            cgroup_root.display(),
        ),
        Path::new("t"),
    )
    .unwrap()
    .settle(Overrides {
        listen: Some(listen.display().to_string()),
        control_listen: Some(control.display().to_string()),
        ..Default::default()
    })
    .unwrap();
    for path in [
        &settings.listen,
        &settings.control_listen,
        &settings.runtime_endpoint,
        &settings.state_dir,
        &settings.cgroup_root,
    ] {
        assert!(path.starts_with(dir.path()), "{}", path.display());
    }
    assert_eq!(settings.image_endpoint, None);
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::daemon::run(settings, async {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if listen.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut typed = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(
        uds_channel(&listen).await.unwrap(),
    );
    let v = typed
        .version(k8s_cri::v1::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "fake-cri");
    stop.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    assert!(!listen.exists());
    assert!(!control.exists());
}
