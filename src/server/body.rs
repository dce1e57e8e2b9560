//! Body wrappers for relayed calls: bytes flow through untouched while a [`FrameScanner`] enforces the
//! message size limit and the call's outcome (its `grpc-status`) is reported to the observers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tonic::{Code, Status};

use super::grpc::{FrameScanner, status_code, status_trailers, too_large};
use super::intercept::{CallObserver, CallRecord};

/// Error type of every body podgraft relays.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type used in both directions.
pub type RelayBody = UnsyncBoxBody<Bytes, BodyError>;

pub fn full(data: Bytes) -> RelayBody {
    http_body_util::Full::new(data)
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// Reports one call's outcome to its span and the observers exactly once.
pub struct CallEnd {
    method: PathAndQuery,
    started: Instant,
    observers: Arc<[Arc<dyn CallObserver>]>,
    span: tracing::Span,
    response_bytes: u64,
}

impl CallEnd {
    pub fn new(
        method: PathAndQuery,
        observers: Arc<[Arc<dyn CallObserver>]>,
        span: tracing::Span,
    ) -> Self {
        Self {
            method,
            started: Instant::now(),
            observers,
            span,
            response_bytes: 0,
        }
    }

    pub fn finish(self, code: Code) {
        let record = CallRecord {
            method: self.method.path(),
            code,
            elapsed: self.started.elapsed(),
            response_bytes: self.response_bytes,
        };
        super::span::finish(&self.span, code, record.elapsed, record.response_bytes);
        for observer in self.observers.iter() {
            observer.call_finished(&record);
        }
    }
}

/// A relayed response body: passes frames through, stops an oversized message with a
/// RESOURCE_EXHAUSTED trailer, turns a broken backend stream into UNAVAILABLE, and reports the outcome.
pub struct ResponseWatch<B> {
    inner: B,
    scanner: FrameScanner,
    limit: usize,
    end: Option<CallEnd>,
    /// The status of a trailers-only answer, which has no trailers frame.
    header_code: Option<Code>,
    done: bool,
}

impl<B> ResponseWatch<B> {
    pub fn new(inner: B, limit: usize, end: Option<CallEnd>, header_code: Option<Code>) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(limit),
            limit,
            end,
            header_code,
            done: false,
        }
    }

    fn finish(&mut self, code: Code) {
        if let Some(end) = self.end.take() {
            end.finish(code);
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.finish(status.code());
        Poll::Ready(Some(Ok(Frame::trailers(status_trailers(&status)))))
    }
}

impl<B> Body for ResponseWatch<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(len) = self.scanner.scan(data) {
                        let status = too_large(len, self.limit);
                        return self.fail(status);
                    }
                    if let Some(end) = self.end.as_mut() {
                        end.response_bytes += data.len() as u64;
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or(Code::Unknown);
                    self.done = true;
                    self.finish(code);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => {
                let status =
                    Status::unavailable(format!("podgraft: CRI backend stream broke: {err}"));
                self.fail(status)
            }
            None => {
                self.done = true;
                let code = self.header_code.unwrap_or(Code::Unknown);
                self.finish(code);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ResponseWatch<B> {
    fn drop(&mut self) {
        // A trailers-only answer may be dropped unpolled (its end is known from the headers);
        // any other body dropped before its end means the client went away or cancelled.
        let code = self.header_code.unwrap_or(Code::Cancelled);
        self.finish(code);
    }
}

/// Set by a [`RequestWatch`] when it cut a request off for exceeding the size limit, so the relay can
/// answer RESOURCE_EXHAUSTED instead of the backend's reset.
#[derive(Debug, Default, Clone)]
pub struct Oversize(Arc<(AtomicBool, std::sync::OnceLock<usize>)>);

impl Oversize {
    pub fn get(&self) -> Option<usize> {
        if self.0.0.load(Ordering::Acquire) {
            self.0.1.get().copied()
        } else {
            None
        }
    }

    fn set(&self, len: usize) {
        let _ = self.0.1.set(len);
        self.0.0.store(true, Ordering::Release);
    }
}

/// A relayed request body: bytes pass through untouched; an oversized message aborts the stream.
pub struct RequestWatch<B> {
    inner: B,
    scanner: FrameScanner,
    oversize: Oversize,
    /// A frame read ahead by [`RequestWatch::prefetch`].
    first: Option<Result<Frame<Bytes>, BodyError>>,
}

impl<B> RequestWatch<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    pub fn new(inner: B, limit: usize, oversize: Oversize) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(limit),
            oversize,
            first: None,
        }
    }

    /// Waits for the request's first frame. The server hands the call over as soon as the HEADERS
    /// frame is parsed, often before the DATA frame that came in the same packet; forwarding right
    /// then would send HEADERS and DATA in two writes and wake the backend twice. With the first
    /// frame in hand, the backend gets both in one write. Every CRI method sends its one request
    /// message right after the headers, so this waits for nothing a client withholds.
    pub async fn prefetch(&mut self) {
        if self.first.is_none() && !self.inner.is_end_stream() {
            self.first = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await;
        }
    }

    /// The data of the frame [`RequestWatch::prefetch`] read, until it is passed on.
    pub fn first_data(&self) -> Option<&Bytes> {
        self.first.as_ref()?.as_ref().ok()?.data_ref()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request message of {0} bytes exceeds the size limit")]
struct RequestTooLarge(usize);

impl<B> Body for RequestWatch<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(frame) = frame else {
            return Poll::Ready(None);
        };
        let frame = frame.map_err(Into::into)?;
        if let Some(data) = frame.data_ref() {
            if let Err(len) = self.scanner.scan(data) {
                self.oversize.set(len);
                return Poll::Ready(Some(Err(Box::new(RequestTooLarge(len)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.first {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}
