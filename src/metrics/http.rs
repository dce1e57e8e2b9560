//! The metrics listener: a minimal HTTP/1.1 server (GET only, one request per connection) for
//! `/metrics`, `/healthz` and `/readyz`. Scrapers and kubelet-style probes need nothing more, and
//! it keeps an HTTP stack out of the binary.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dynamic::Manager;

/// What the health endpoints check.
#[derive(Debug, Clone)]
pub struct Health {
    /// The sockets podgraft serves (CRI and control): /healthz wants both present.
    pub sockets: Vec<PathBuf>,
    /// containerd's socket: /readyz wants it to accept a connection.
    pub runtime_endpoint: PathBuf,
}

impl Health {
    /// Problems that make podgraft unhealthy: a socket it serves is gone.
    pub fn liveness_problems(&self) -> Vec<String> {
        use std::os::unix::fs::FileTypeExt;
        self.sockets
            .iter()
            .filter(|p| !std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
            .map(|p| format!("socket {} is not served", p.display()))
            .collect()
    }

    /// Whether containerd accepts a connection on its socket (within a second).
    pub async fn containerd_reachable(&self) -> bool {
        let connect = tokio::net::UnixStream::connect(&self.runtime_endpoint);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), connect).await,
            Ok(Ok(_))
        )
    }

    /// Problems that make podgraft not ready: liveness problems, containerd unreachable, state
    /// not loaded.
    pub async fn readiness_problems(&self, manager: &Manager) -> Vec<String> {
        let mut problems = self.liveness_problems();
        if !self.containerd_reachable().await {
            problems.push(format!(
                "containerd is unreachable at {}",
                self.runtime_endpoint.display()
            ));
        }
        if !manager.is_loaded() {
            problems.push("dynamic container state is not loaded yet".into());
        }
        problems
    }
}

/// Starts the listener on the current (the dynamic plane's) runtime. A port that cannot be bound
/// is logged, not fatal: the kubelet's CRI path matters more than podgraft's metrics.
pub fn spawn(
    addr: SocketAddr,
    manager: Arc<Manager>,
    health: Health,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    match bind(addr) {
        Ok(listener) => {
            let local = listener.local_addr().map_or(addr, |a| a);
            tracing::info!(metrics = %format!("http://{local}/metrics"), "metrics and health endpoints (/healthz, /readyz)");
            tokio::spawn(serve(listener, manager, health, stop));
        }
        Err(e) => {
            tracing::error!(%addr, error = %e, "metrics_listen: cannot bind; serving without metrics")
        }
    }
}

/// Binds the listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Serves until `stop` resolves. Runs on the dynamic plane's runtime.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Arc<Manager>,
    health: Health,
    stop: impl Future<Output = ()>,
) {
    let health = Arc::new(health);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (manager, health) = (manager.clone(), health.clone());
        tokio::spawn(async move {
            let handled =
                tokio::time::timeout(Duration::from_secs(10), handle(stream, &manager, &health));
            if let Ok(Err(e)) = handled.await {
                tracing::debug!(error = %e, "metrics listener: request failed");
            }
        });
    }
}

const MAX_REQUEST_HEAD: usize = 8 << 10;

async fn handle(mut stream: TcpStream, manager: &Manager, health: &Health) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                "request head too large\n",
                false,
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            405,
            "text/plain",
            "only GET and HEAD\n",
            head_only,
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = super::render(Some(manager));
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            respond(&mut stream, 200, kind, &body, head_only).await
        }
        "/healthz" | "/livez" => {
            let problems = health.liveness_problems();
            verdict(&mut stream, problems, head_only).await
        }
        "/readyz" => {
            let problems = health.readiness_problems(manager).await;
            verdict(&mut stream, problems, head_only).await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "try /metrics, /healthz or /readyz\n",
                head_only,
            )
            .await
        }
    }
}

async fn verdict(
    stream: &mut TcpStream,
    problems: Vec<String>,
    head_only: bool,
) -> std::io::Result<()> {
    if problems.is_empty() {
        respond(stream, 200, "text/plain", "ok\n", head_only).await
    } else {
        let body = problems.join("\n") + "\n";
        respond(stream, 503, "text/plain", &body, head_only).await
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}
