//! Hiding entries of a large listing without buffering it.
//!
//! A gRPC message is prefixed with its length, so dropping an entry from a listing means holding
//! the whole message until the new length is known. Instead, a [`FieldMask`] overwrites each hidden
//! entry of a top-level repeated field with padding of exactly the same size: fields with a number
//! no CRI message uses, which every protobuf decoder skips. The length prefix stays valid, so the
//! message streams through as it arrives, and every byte outside the hidden entries is unchanged.
//! Only the entry being looked at is held in memory.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::body::BodyError;
use super::grpc::PREFIX_LEN;
use crate::wire::WireError;

/// Field number of the padding: the largest protobuf allows, so that no message will ever define it.
const PAD_FIELD: u64 = (1 << 29) - 1;
const PAD_TAG: u64 = (PAD_FIELD << 3) | 2;
const PAD_TAG_LEN: usize = 5;

/// Which entries to hide: those of top-level field `field` that `visible` rejects.
#[derive(Clone, Copy)]
pub struct FieldMask {
    pub field: u32,
    pub visible: fn(&[u8]) -> Result<bool, WireError>,
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Appends padding fields that take exactly `len` bytes (`len` ≥ 6).
pub fn put_padding(out: &mut BytesMut, mut len: usize) {
    debug_assert!(len > PAD_TAG_LEN, "padding needs at least 6 bytes");
    while len > 0 {
        // One field is tag (5) + length (1 or 2 bytes) + payload; leave at least 6 for the next.
        let mut take = if len <= PAD_TAG_LEN + 1 + 127 {
            len
        } else {
            (len - 6).min(PAD_TAG_LEN + 2 + 16383)
        };
        if take == PAD_TAG_LEN + 1 + 128 {
            // 134 bytes fit neither a 1-byte nor a 2-byte length: use 133 and pad the rest after.
            take -= 1;
        }
        let payload = if take <= PAD_TAG_LEN + 1 + 127 {
            take - PAD_TAG_LEN - 1
        } else {
            take - PAD_TAG_LEN - 2
        };
        put_varint(out, PAD_TAG);
        put_varint(out, payload as u64);
        out.put_bytes(0, payload);
        len -= take;
    }
}

/// Where the scanner is inside the stream.
enum State {
    /// Reading the 5-byte gRPC prefix of the next message.
    Prefix,
    /// At the start of (or inside the header of) a top-level field.
    Header,
    /// Copying the rest of a field that is not masked.
    Copy { left: usize },
    /// Collecting a whole entry of the masked field.
    Entry { total: usize, header: usize },
}

/// The scanner: consumes the body's bytes and produces the same bytes with hidden entries padded.
pub struct Masker {
    mask: FieldMask,
    state: State,
    /// The prefix, header or entry being collected.
    held: BytesMut,
    /// Bytes of the current message not yet consumed.
    msg_left: usize,
}

/// A field header: tag, and for length-delimited fields the length. `None` while incomplete;
/// otherwise (field number, length-delimited?, header length, whole field length).
fn parse_header(buf: &[u8]) -> Result<Option<(u32, bool, usize, usize)>, WireError> {
    let mut pos = 0;
    let varint = |pos: &mut usize| -> Result<Option<u64>, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = buf.get(*pos) else {
                return Ok(None);
            };
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        Err(WireError {
            offset: *pos,
            reason: "varint longer than 10 bytes",
        })
    };
    let Some(key) = varint(&mut pos)? else {
        return Ok(None);
    };
    let field = (key >> 3) as u32;
    let total = match key & 7 {
        0 => match varint(&mut pos)? {
            Some(_) => pos,
            None => return Ok(None),
        },
        1 => pos + 8,
        5 => pos + 4,
        2 => match varint(&mut pos)? {
            Some(len) => pos + len as usize,
            None => return Ok(None),
        },
        _ => {
            return Err(WireError {
                offset: 0,
                reason: "unsupported wire type",
            });
        }
    };
    // `pos` is the header length; `total` the whole field's.
    Ok(Some((field, key & 7 == 2, pos, total)))
}

impl Masker {
    pub fn new(mask: FieldMask) -> Self {
        Self {
            mask,
            state: State::Prefix,
            held: BytesMut::new(),
            msg_left: 0,
        }
    }

    /// Scans one chunk; returns the bytes to send on.
    pub fn push(&mut self, mut data: Bytes) -> Result<Bytes, WireError> {
        let mut out = BytesMut::with_capacity(data.len());
        while !data.is_empty() {
            match self.state {
                State::Prefix => {
                    let n = (PREFIX_LEN - self.held.len()).min(data.len());
                    self.held.extend_from_slice(&data.split_to(n));
                    if self.held.len() == PREFIX_LEN {
                        if self.held[0] != 0 {
                            return Err(WireError {
                                offset: 0,
                                reason: "compressed gRPC message",
                            });
                        }
                        self.msg_left =
                            u32::from_be_bytes(self.held[1..5].try_into().expect("4 bytes"))
                                as usize;
                        out.extend_from_slice(&self.held.split());
                        self.state = if self.msg_left == 0 {
                            State::Prefix
                        } else {
                            State::Header
                        };
                    }
                }
                State::Header => {
                    // Header bytes one at a time: never read past the field's own header.
                    self.held.extend_from_slice(&data.split_to(1));
                    self.msg_left -= 1;
                    let Some((field, delimited, header, total)) = parse_header(&self.held)? else {
                        if self.msg_left == 0 {
                            return Err(WireError {
                                offset: 0,
                                reason: "message ends inside a field header",
                            });
                        }
                        continue;
                    };
                    if total - self.held.len() > self.msg_left {
                        return Err(WireError {
                            offset: 0,
                            reason: "field runs past the end of the message",
                        });
                    }
                    if field == self.mask.field && delimited && total > header {
                        self.state = State::Entry { total, header };
                    } else {
                        let left = total - self.held.len();
                        out.extend_from_slice(&self.held.split());
                        self.state = State::Copy { left };
                        self.after_field();
                    }
                }
                State::Copy { left } => {
                    let n = left.min(data.len());
                    out.extend_from_slice(&data.split_to(n));
                    self.msg_left -= n;
                    self.state = State::Copy { left: left - n };
                    self.after_field();
                }
                State::Entry { total, header } => {
                    let n = (total - self.held.len()).min(data.len());
                    self.held.extend_from_slice(&data.split_to(n));
                    self.msg_left -= n;
                    if self.held.len() == total {
                        let entry = self.held.split();
                        if (self.mask.visible)(&entry[header..])? {
                            out.extend_from_slice(&entry);
                        } else if total > PAD_TAG_LEN {
                            put_padding(&mut out, total);
                        } else {
                            // Cannot happen for an entry that carries the label; refuse rather
                            // than let it through.
                            return Err(WireError {
                                offset: 0,
                                reason: "hidden entry too small to pad",
                            });
                        }
                        self.state = State::Header;
                        self.after_field();
                    }
                }
            }
        }
        Ok(out.freeze())
    }

    /// After a complete field: the next field, or the next message's prefix.
    fn after_field(&mut self) {
        if let State::Copy { left: 0 } = self.state {
            self.state = State::Header;
        }
        if matches!(self.state, State::Header) && self.msg_left == 0 {
            self.state = State::Prefix;
        }
    }
}

/// A response body passed through a [`Masker`].
pub struct MaskedBody<B> {
    inner: B,
    masker: Masker,
}

impl<B> MaskedBody<B> {
    pub fn new(inner: B, mask: FieldMask) -> Self {
        Self {
            inner,
            masker: Masker::new(mask),
        }
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
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => match self.masker.push(data) {
                Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => Poll::Ready(Some(Err(Box::new(Malformed(e))))),
            },
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "mask_tests.rs"]
mod tests;
