//! The kubelet-facing edge: an HTTP/2 server on a Unix socket relaying CRI to the backend.

pub(crate) mod backend;
pub(crate) mod body;
pub(crate) mod grpc;
mod h2body;
pub(crate) mod hide;
pub(crate) mod intercept;
pub(crate) mod listener;
pub(crate) mod mask;
pub(crate) mod metrics;
mod prepass;
mod relay;
mod span;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Request, Response};
use http_body::Body;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use relay::Relay;

/// HTTP/2 settings of the kubelet-facing server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    /// How long in-flight calls may run on after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            stream_window: 4 << 20,
            connection_window: 16 << 20,
            max_frame_size: 1 << 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Concurrent calls one client connection may have open (the kubelet needs a handful).
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Largest header block (metadata) a client may send: far above what CRI clients send, and
/// bounded, since every open stream may hold one.
const MAX_HEADER_LIST_SIZE: u32 = 1 << 20;

/// Accepts connections until `shutdown` resolves, then stops accepting, asks every connection to
/// finish (HTTP/2 GOAWAY) and waits for in-flight calls up to the drain timeout.
///
/// The server is `h2` itself, like the backend client: a relay needs no more than streams of
/// frames, and every layer between them costs CPU on each call.
pub async fn serve(
    listener: &UnixListener,
    relay: Arc<Relay>,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        // The pre-pass decodes what clients encode against this table size: say it explicitly.
        .header_table_size(prepass::HEADER_TABLE_SIZE as u32);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // h2 reads what the client sends through podgraft's pre-pass (see `prepass`).
                    let stream = prepass::PrePass::new(stream, settings.max_frame_size, MAX_HEADER_LIST_SIZE);
                    let conn = serve_connection(stream, builder.clone(), relay.clone(), stop_rx.clone());
                    connections.spawn(conn);
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning; the listener stays usable.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow with every client ever seen.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: draining in-flight calls");
    let _ = stop_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => tracing::info!("all calls drained"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(timeout = ?settings.drain_timeout, "drain timeout expired; closing remaining calls");
        }
    }
}

/// Drives one client connection and the calls on it, which run concurrently inside this task while
/// the loop keeps the connection's I/O going. On shutdown it sends GOAWAY and runs until the open
/// calls are done (or the drain timeout drops it).
async fn serve_connection(
    stream: prepass::PrePass<UnixStream>,
    builder: h2::server::Builder,
    relay: Arc<Relay>,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = builder.handshake::<_, Bytes>(stream);
    let mut conn = tokio::select! {
        conn = handshake => match conn {
            Ok(conn) => conn,
            Err(err) => {
                tracing::debug!(%err, "client connection failed its HTTP/2 handshake");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let mut stopping = false;
    // Calls run inside this task rather than as tasks of their own: no spawn per call, and the
    // answers of calls that finish together leave in one write.
    let mut calls = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = calls.next(), if !calls.is_empty() => {}
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => calls.push(serve_call(relay.clone(), req, respond)),
                Some(Err(err)) => {
                    tracing::debug!(%err, "client connection ended with an error");
                    return;
                }
                // Closed (GOAWAY exchanged, no open streams): the calls are over too.
                None => return,
            },
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
            }
        }
    }
}

/// Relays one call inside its span (see [`span`]), so that everything the call logs carries it:
/// the interceptors' pod hooks, and the call's own line when it ends.
fn serve_call(
    relay: Arc<Relay>,
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> impl Future<Output = ()> {
    let span = span::call(req.uri().path());
    relay_call(relay, req, respond, span.clone()).instrument(span)
}

/// Relays one call and sends its answer: headers, then the body's frames as the relay yields them.
async fn relay_call(
    relay: Arc<Relay>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    span: tracing::Span,
) {
    // A client that cancels (a deadline, a reset) drops the call, and with it the backend's stream,
    // which h2 then resets too: containerd stops working on it.
    let resp = tokio::select! {
        resp = relay.handle(req.map(h2body::H2Body::new), span) => match resp {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let (parts, body) = resp.into_parts();
    let end_of_stream = body.is_end_stream();
    match respond.send_response(Response::from_parts(parts, ()), end_of_stream) {
        Ok(stream) if !end_of_stream => h2body::pump(body, stream).await,
        Ok(_) => {}
        Err(err) => tracing::debug!(%err, "client went away before the answer"),
    }
}

#[cfg(test)]
mod tests;
