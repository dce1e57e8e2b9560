//! Glue between `h2` streams and `http_body` bodies, for both the client side and the backend.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use h2::{RecvStream, SendStream};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::body::RelayBody;

/// A response body read from the backend; hands flow-control capacity back as data is taken, so the
/// backend may keep sending.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
}

impl H2Body {
    pub fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            data_done: false,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.data_done = true,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Forwards a request body on `stream`. Frames that are ready now are queued at once, so that they
/// leave in the same write as the headers; the rest is piped by a task that waits for the
/// backend's flow-control window, so a fast client cannot make podgraft buffer without bound.
pub fn send_body(mut body: RelayBody, mut stream: SendStream<Bytes>) {
    loop {
        let Some(next) = body.frame().now_or_never() else {
            tokio::spawn(pump(body, stream));
            return;
        };
        if !forward(next, &body, &mut stream) {
            return;
        }
    }
}

/// Sends one frame; false once the stream is finished (ended, reset or failed).
fn forward(
    next: Option<Result<Frame<Bytes>, super::body::BodyError>>,
    body: &RelayBody,
    stream: &mut SendStream<Bytes>,
) -> bool {
    match next {
        None => {
            let _ = stream.send_data(Bytes::new(), true);
            false
        }
        Some(Err(_)) => {
            // The client's stream broke or was cut off (oversize): abandon the backend's.
            stream.send_reset(h2::Reason::CANCEL);
            false
        }
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                stream.send_data(data, end).is_ok() && !end
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                }
                false
            }
        },
    }
}

/// Forwards `body` on `stream` frame by frame, never taking more from the body than the peer's
/// flow-control window lets out.
pub async fn pump(mut body: RelayBody, mut stream: SendStream<Bytes>) {
    loop {
        // Wait for room in the peer's window before taking more from the body.
        stream.reserve_capacity(1);
        if stream.capacity() == 0 {
            match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                _ => return,
            }
        }
        let next = tokio::select! {
            next = body.frame() => next,
            // The backend reset the stream (or the call is over): stop reading the client.
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        if !forward(next, &body, &mut stream) {
            return;
        }
    }
}
