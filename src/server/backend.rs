//! One multiplexed HTTP/2 connection to a CRI backend (containerd), kept up by a background task.
//!
//! podgraft must keep serving while containerd is down or restarting: calls then fail fast with
//! UNAVAILABLE, and the task reconnects with bounded exponential backoff. A call that finds the
//! connection down wakes the task and waits briefly for one fresh attempt, so the first call after
//! containerd returns succeeds instead of waiting out a backoff interval.
//!
//! The client is `h2` itself rather than hyper's wrapper: hyper waits for flow-control capacity
//! before sending any request data, which puts HEADERS and DATA into two writes (and two wake-ups of
//! containerd) per call. Here a request's ready frames are queued with its headers and leave in one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Response};
use tokio::net::UnixStream;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tonic::Status;

use super::body::RelayBody;
use super::h2body::{H2Body, send_body};

/// Tunables of the backend connection.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// Longest wait for one connection attempt.
    pub connect_timeout: Duration,
    /// First and last reconnect backoff intervals.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// HTTP/2 flow-control windows; large windows let big responses (ListContainers) flow without
    /// waiting for WINDOW_UPDATE round trips.
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            max_frame_size: 1 << 20,
        }
    }
}

#[derive(Clone)]
enum State {
    Up(SendRequest<Bytes>),
    Down(Arc<str>),
}

/// A CRI backend reached over a Unix socket.
pub struct Backend {
    path: PathBuf,
    state: watch::Receiver<State>,
    wake: Arc<Notify>,
    task: AbortHandle,
    connect_timeout: Duration,
}

impl Backend {
    /// Starts the connection task on the current runtime.
    pub fn start(path: PathBuf, settings: BackendSettings) -> Self {
        let (tx, rx) = watch::channel(State::Down("not connected yet".into()));
        let wake = Arc::new(Notify::new());
        let connect_timeout = settings.connect_timeout;
        let task = tokio::spawn(run(path.clone(), settings, tx, wake.clone())).abort_handle();
        Self {
            path,
            state: rx,
            wake,
            task,
            connect_timeout,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one call and waits for the response headers. The request body is forwarded as it
    /// comes; failures are UNAVAILABLE naming the socket (the caller may refine them).
    pub async fn send(&self, req: Request<RelayBody>) -> Result<Response<H2Body>, Status> {
        let sender = self.sender().await?;
        let mut sender = sender.ready().await.map_err(|e| self.unavailable(&e))?;
        let (parts, body) = req.into_parts();
        let end_of_stream = http_body::Body::is_end_stream(&body);
        let (response, stream) = sender
            .send_request(Request::from_parts(parts, ()), end_of_stream)
            .map_err(|e| self.unavailable(&e))?;
        if !end_of_stream {
            send_body(body, stream);
        }
        let response = response.await.map_err(|e| self.unavailable(&e))?;
        Ok(response.map(H2Body::new))
    }

    fn unavailable(&self, err: &dyn std::fmt::Display) -> Status {
        Status::unavailable(format!(
            "podgraft: CRI backend unix://{} failed the call: {err}",
            self.path.display()
        ))
    }

    /// A handle to send one request on, or UNAVAILABLE naming the socket and the last error.
    async fn sender(&self) -> Result<SendRequest<Bytes>, Status> {
        let mut rx = self.state.clone();
        let mut waited = false;
        loop {
            let last_error = match &*rx.borrow_and_update() {
                State::Up(sender) => return Ok(sender.clone()),
                State::Down(err) => err.clone(),
            };
            if waited {
                return Err(Status::unavailable(format!(
                    "podgraft: CRI backend unix://{} is unavailable: {last_error}",
                    self.path.display()
                )));
            }
            self.wake.notify_one();
            let _ = tokio::time::timeout(self.connect_timeout, rx.changed()).await;
            waited = true;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Connection = h2::client::Connection<UnixStream, Bytes>;

async fn connect(
    path: &Path,
    settings: &BackendSettings,
) -> Result<(SendRequest<Bytes>, Connection), String> {
    let stream = tokio::time::timeout(settings.connect_timeout, UnixStream::connect(path))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let handshake = h2::client::Builder::new()
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .enable_push(false)
        .handshake(stream);
    tokio::time::timeout(settings.connect_timeout, handshake)
        .await
        .map_err(|_| "HTTP/2 handshake timed out".to_string())?
        .map_err(|e| format!("HTTP/2 handshake failed: {e}"))
}

/// Drives the connection and pings the backend while it is idle, so that a hung (not crashed)
/// containerd is noticed too. Returns why the connection ended.
async fn drive(mut conn: Connection) -> String {
    let mut ping = conn.ping_pong().expect("ping_pong is taken once");
    let pinger = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            match tokio::time::timeout(Duration::from_secs(10), ping.ping(h2::Ping::opaque())).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("keepalive ping failed: {e}"),
                Err(_) => return "keepalive ping timed out after 10s".to_string(),
            }
        }
    };
    tokio::select! {
        result = conn => match result {
            Ok(()) => "backend closed the connection".to_string(),
            Err(e) => format!("connection lost: {e}"),
        },
        reason = pinger => reason,
    }
}

async fn run(
    path: PathBuf,
    settings: BackendSettings,
    tx: watch::Sender<State>,
    wake: Arc<Notify>,
) {
    let mut backoff = settings.min_backoff;
    let mut failures = 0u32;
    let mut last_attempt: Option<Instant> = None;
    loop {
        // Waking on demand must not turn a flood of calls into a flood of connection attempts.
        if let Some(at) = last_attempt {
            let floor = settings.min_backoff / 2;
            if at.elapsed() < floor {
                tokio::time::sleep(floor - at.elapsed()).await;
            }
        }
        last_attempt = Some(Instant::now());
        match connect(&path, &settings).await {
            Ok((sender, conn)) => {
                tracing::info!(backend = %path.display(), "connected to CRI backend");
                tx.send_replace(State::Up(sender));
                backoff = settings.min_backoff;
                failures = 0;
                let reason = drive(conn).await;
                tracing::warn!(backend = %path.display(), %reason, "CRI backend connection ended; reconnecting");
                tx.send_replace(State::Down(reason.into()));
            }
            Err(err) => {
                failures += 1;
                // One warning per outage; the retries are debug noise.
                if failures == 1 {
                    tracing::warn!(backend = %path.display(), %err, "CRI backend unreachable; retrying with backoff");
                } else {
                    tracing::debug!(backend = %path.display(), %err, failures, "CRI backend still unreachable");
                }
                tx.send_replace(State::Down(err.into()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = wake.notified() => {}
                }
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
    }
}
