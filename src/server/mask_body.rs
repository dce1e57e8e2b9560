//! The response body that streams a listing through a [`Masker`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::{FieldMask, Masker};
use crate::server::body::BodyError;
use crate::wire::WireError;

/// A response body passed through a [`Masker`].
pub struct MaskedBody<B> {
    inner: B,
    masker: Masker,
    /// Output of the last chunk not yet handed on, in order.
    ready: VecDeque<Bytes>,
    scratch: Vec<Bytes>,
}

impl<B> MaskedBody<B> {
    pub fn new(inner: B, mask: FieldMask) -> Self {
        Self {
            inner,
            masker: Masker::new(mask),
            ready: Default::default(),
            scratch: Vec::new(),
        }
    }
}

/// Parts at least this long are sent as they are; shorter neighbours are copied together up to
/// twice this. Every frame handed on becomes an HTTP/2 DATA frame and a write of its own, so a
/// listing cut into hundreds of small parts by its hidden entries would cost hundreds of system
/// calls; copying the small parts costs far less. Buffers stay below malloc's mmap threshold.
const COALESCE: usize = 32 << 10;

fn coalesce(parts: impl Iterator<Item = Bytes>, ready: &mut VecDeque<Bytes>) {
    let mut buf = BytesMut::new();
    for part in parts {
        if part.len() >= COALESCE {
            if !buf.is_empty() {
                ready.push_back(buf.split().freeze());
            }
            ready.push_back(part);
            continue;
        }
        if buf.len() + part.len() > 2 * COALESCE {
            ready.push_back(buf.split().freeze());
        }
        if buf.is_empty() {
            buf.reserve(2 * COALESCE);
        }
        buf.extend_from_slice(&part);
    }
    if !buf.is_empty() {
        ready.push_back(buf.freeze());
    }
}

#[derive(Debug, thiserror::Error)]
#[error("podgraft: malformed message from the CRI backend: {0}")]
struct Malformed(WireError);

impl<B> Body for MaskedBody<B>
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
        let this = &mut *self;
        loop {
            if let Some(data) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Err(e) = this.masker.push(data, &mut this.scratch) {
                        return Poll::Ready(Some(Err(Box::new(Malformed(e)))));
                    }
                    coalesce(this.scratch.drain(..), &mut this.ready);
                }
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_parts_pass_as_they_are_and_small_ones_are_joined() {
        let big = Bytes::from(vec![1u8; COALESCE]);
        let small = |b: u8| Bytes::from(vec![b; 100]);
        let mut ready = VecDeque::new();
        coalesce(
            [small(2), small(3), big.clone(), small(4)].into_iter(),
            &mut ready,
        );
        let ready: Vec<Bytes> = ready.into();
        assert_eq!(ready.len(), 3);
        assert_eq!(ready[0], [small(2), small(3)].concat());
        assert_eq!(ready[1].as_ptr(), big.as_ptr(), "no copy of a large part");
        assert_eq!(ready[2], small(4));
        // Many small parts: frames of at most twice the threshold, bytes in order.
        let mut ready = VecDeque::new();
        let parts: Vec<Bytes> = (0..1000).map(|i| small(i as u8)).collect();
        coalesce(parts.clone().into_iter(), &mut ready);
        assert!(ready.iter().all(|f| f.len() <= 2 * COALESCE));
        assert_eq!(
            ready
                .iter()
                .map(|f| f.to_vec())
                .collect::<Vec<_>>()
                .concat(),
            parts.concat()
        );
        assert_eq!(ready.len(), (1000 * 100_usize).div_ceil(2 * COALESCE));
    }
}
