//! An in-memory fake CRI backend for unit tests and benchmarks.
//!
//! It speaks raw gRPC over HTTP/2 on a Unix socket, records every request exactly as it arrived
//! (method, metadata, message bytes) and answers from a handler, so tests can check that the relay
//! changed nothing and can script statuses, metadata, delays and streams. It is never a stand-in for
//! containerd in the integration tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::UnixListener;
use tonic::{Code, Status};

use crate::server::body::{BodyError, RelayBody};
use crate::server::grpc::{MessageDecoder, encode_message, status_trailers};
use futures_util::StreamExt;

/// One request as the fake backend received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request's `:authority`, as the fake's HTTP/2 server read it.
    pub authority: Option<String>,
    pub metadata: HeaderMap,
    /// The request messages, without the gRPC prefix, byte for byte.
    pub messages: Vec<Bytes>,
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub messages: Vec<Bytes>,
    pub status: Code,
    pub message: String,
    /// Response header metadata.
    pub headers: HeaderMap,
    /// Trailer metadata besides grpc-status.
    pub trailers: HeaderMap,
    /// Wait before answering, and between stream messages.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(msg: impl Message) -> Self {
        Self::raw(vec![Bytes::from(msg.encode_to_vec())])
    }

    pub fn raw(messages: Vec<Bytes>) -> Self {
        Self {
            messages,
            status: Code::Ok,
            message: String::new(),
            headers: HeaderMap::new(),
            trailers: HeaderMap::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn error(status: Code, message: &str) -> Self {
        Self {
            status,
            message: message.to_string(),
            ..Self::raw(Vec::new())
        }
    }
}

pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A running fake backend; stops when dropped.
pub struct FakeCri {
    path: PathBuf,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    cancelled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeCri {
    /// Serves on `path` with [`default_handler`] (Version and a canned container list).
    pub fn start(path: &Path) -> std::io::Result<Self> {
        Self::with_handler(path, default_handler(0))
    }

    pub fn with_handler(path: &Path, handler: Handler) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            recorded.clone(),
            handler,
            cancelled.clone(),
        ));
        Ok(Self {
            path: path.to_path_buf(),
            recorded,
            cancelled,
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// Calls whose client went away (a reset stream) while the fake was still preparing the answer.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for FakeCri {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers Version, ListPodSandbox (no pods) and ListContainers with `containers` canned containers
/// (honouring a label selector); everything else is UNIMPLEMENTED, as a backend that does not know
/// the method would answer.
pub fn default_handler(containers: usize) -> Handler {
    handler_with_dynamic(containers, None)
}

/// Like [`default_handler`], with every `every`-th container labelled as a dynamic one.
pub fn handler_with_dynamic(containers: usize, every: Option<usize>) -> Handler {
    use k8s_cri::v1 as cri;
    let version = Bytes::from(
        cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake-cri".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        }
        .encode_to_vec(),
    );
    let mut all = container_list(containers);
    if let Some(every) = every {
        for c in all.containers.iter_mut().step_by(every) {
            c.labels.insert("podgraft.io/dynamic".into(), "true".into());
        }
    }
    let list = Bytes::from(all.encode_to_vec());
    Arc::new(move |req: &Recorded| match req.method.as_str() {
        "/runtime.v1.RuntimeService/Version" => Reply::raw(vec![version.clone()]),
        "/runtime.v1.RuntimeService/ListPodSandbox" => {
            Reply::ok(cri::ListPodSandboxResponse::default())
        }
        "/runtime.v1.RuntimeService/ListContainers" => {
            let selector = req
                .messages
                .first()
                .and_then(|m| cri::ListContainersRequest::decode(m.clone()).ok())
                .and_then(|r| r.filter)
                .map(|f| f.label_selector)
                .unwrap_or_default();
            if selector.is_empty() {
                return Reply::raw(vec![list.clone()]);
            }
            let containers = all
                .containers
                .iter()
                .filter(|c| selector.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
                .cloned()
                .collect();
            Reply::ok(cri::ListContainersResponse { containers })
        }
        other => Reply::error(Code::Unimplemented, &format!("unknown method {other}")),
    })
}

/// A ListContainersResponse shaped like a busy node's: kubelet labels and annotations on each.
pub fn container_list(n: usize) -> k8s_cri::v1::ListContainersResponse {
    use k8s_cri::v1 as cri;
    let containers = (0..n)
        .map(|i| {
            let pod = format!("{:08x}-0000-4000-8000-{:012x}", i / 4, i / 4);
            cri::Container {
                id: format!("{:064x}", i),
                pod_sandbox_id: format!("{:064x}", i / 4 + 1_000_000),
                metadata: Some(cri::ContainerMetadata {
                    name: format!("container-{i}"),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "registry.k8s.io/e2e/busybox:1.36".into(),
                    ..Default::default()
                }),
                image_ref: format!("sha256:{:064x}", 7),
                state: cri::ContainerState::ContainerRunning as i32,
                created_at: 1_700_000_000_000_000_000 + i as i64,
                labels: [
                    ("io.kubernetes.pod.name", format!("pod-{}", i / 4)),
                    ("io.kubernetes.pod.namespace", "default".to_string()),
                    ("io.kubernetes.pod.uid", pod),
                    ("io.kubernetes.container.name", format!("container-{i}")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                annotations: [
                    ("io.kubernetes.container.hash", "3f2c1a9b".to_string()),
                    ("io.kubernetes.container.restartCount", "0".to_string()),
                    (
                        "io.kubernetes.container.terminationMessagePath",
                        "/dev/termination-log".to_string(),
                    ),
                    (
                        "io.kubernetes.container.terminationMessagePolicy",
                        "File".to_string(),
                    ),
                    ("io.kubernetes.pod.terminationGracePeriod", "30".to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                ..Default::default()
            }
        })
        .collect();
    cri::ListContainersResponse { containers }
}

async fn accept_loop(
    listener: UnixListener,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Handler,
    cancelled: Arc<AtomicUsize>,
) {
    // Connections live in the set, so stopping the fake (aborting this task) drops them all, as a
    // backend that dies does.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let recorded = recorded.clone();
        let handler = handler.clone();
        let cancelled = cancelled.clone();
        let service = service_fn(move |req| {
            let unanswered = Unanswered(Some(cancelled.clone()));
            answer(req, recorded.clone(), handler.clone(), unanswered)
        });
        connections.spawn(async move {
            let _ = http2::Builder::new(TokioExecutor::new())
                .auto_date_header(false)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .max_frame_size(1 << 20)
                .max_header_list_size(1 << 20)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Counts a call dropped before its answer was ready: hyper drops the service future when the
/// client resets the stream.
struct Unanswered(Option<Arc<AtomicUsize>>);

impl Unanswered {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    handler: Handler,
    unanswered: Unanswered,
) -> Result<Response<RelayBody>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let mut decoder = MessageDecoder::new(usize::MAX);
    if let Ok(collected) = body.collect().await {
        decoder.push(collected.to_bytes());
    }
    let mut messages = Vec::new();
    while let Ok(Some(m)) = decoder.next_message() {
        messages.push(m);
    }
    let rec = Recorded {
        method: parts.uri.path().to_string(),
        authority: parts.uri.authority().map(|a| a.to_string()),
        metadata: parts.headers,
        messages,
    };
    recorded.lock().unwrap().push(rec.clone());
    let reply = handler(&rec);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    unanswered.answered();
    let status = Status::new(reply.status, reply.message.clone());
    if reply.messages.is_empty() && reply.status != Code::Ok {
        let mut resp: Response<RelayBody> = status.into_http();
        resp.headers_mut().extend(reply.headers);
        return Ok(resp);
    }
    let mut trailers = status_trailers(&status);
    trailers.extend(reply.trailers);
    let delay = reply.delay;
    let frames = reply
        .messages
        .into_iter()
        .map(|m| Frame::data(encode_message(&m)))
        .chain(std::iter::once(Frame::trailers(trailers)));
    let stream = futures_util::stream::iter(frames).then(move |f| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, BodyError>(f)
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp.headers_mut().extend(reply.headers);
    Ok(resp)
}

/// What a raw gRPC call returned.
#[derive(Debug)]
pub struct RawAnswer {
    pub code: Code,
    pub message: String,
    pub headers: HeaderMap,
    pub trailers: HeaderMap,
    pub messages: Vec<Bytes>,
}

/// A gRPC client that sends and receives message bytes as they are, for methods no generated
/// client knows and for checking byte-for-byte transparency.
pub struct RawClient {
    sender: hyper::client::conn::http2::SendRequest<RelayBody>,
}

impl RawClient {
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    pub async fn call(
        &mut self,
        method: &str,
        messages: &[Bytes],
        metadata: HeaderMap,
    ) -> RawAnswer {
        let mut body = bytes::BytesMut::new();
        for m in messages {
            body.extend_from_slice(&encode_message(m));
        }
        let mut req = Request::post(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(crate::server::body::full(body.freeze()))
            .expect("valid request");
        req.headers_mut().extend(metadata);
        let resp = self.sender.send_request(req).await.expect("send request");
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.expect("response body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let mut decoder = MessageDecoder::new(usize::MAX);
        decoder.push(collected.to_bytes());
        let mut messages = Vec::new();
        while let Some(m) = decoder.next_message().expect("well-formed response") {
            messages.push(m);
        }
        let status = Status::from_header_map(&trailers)
            .or_else(|| Status::from_header_map(&parts.headers))
            .unwrap_or_else(|| Status::unknown("no grpc-status"));
        RawAnswer {
            code: status.code(),
            message: status.message().to_string(),
            headers: parts.headers,
            trailers,
            messages,
        }
    }
}

mod mem_cri;
mod raw_h2;
pub use mem_cri::{ListGate, MemCri};
pub use raw_h2::{H2Outcome, IndexingEncoder, RawH2, RawH2Request};
