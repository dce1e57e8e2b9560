//! gRPC-over-HTTP/2 framing: the 5-byte length prefix, trailers-only status answers, and a cheap
//! scanner that enforces the message size limit on bodies relayed without decoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use tonic::{Code, Status};

/// Length of the gRPC message prefix: 1 byte compressed flag + 4 bytes big-endian length.
pub const PREFIX_LEN: usize = 5;

/// Frames one uncompressed message.
pub fn encode_message(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + msg.len());
    out.put_u8(0);
    out.put_u32(msg.len() as u32);
    out.extend_from_slice(msg);
    out.freeze()
}

/// The gRPC status carried by a header map (trailers, or headers of a trailers-only answer).
pub fn status_code(headers: &HeaderMap) -> Option<Code> {
    let raw = headers.get("grpc-status")?.to_str().ok()?;
    raw.parse::<i32>().ok().map(Code::from_i32)
}

/// A trailers-only gRPC answer carrying `status`, as a server that fails before any message sends it.
pub fn status_response<B: Default>(status: Status) -> http::Response<B> {
    status.into_http()
}

/// Trailers carrying `status`, for a stream whose headers have already been sent.
pub fn status_trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    // add_header only fails on a message that cannot be percent-encoded into a header value.
    if status.add_header(&mut map).is_err() {
        let fallback = Status::new(status.code(), "podgraft: status message not encodable");
        let _ = fallback.add_header(&mut map);
    }
    map
}

/// Splits a buffer into complete gRPC messages, enforcing a size limit and refusing compression
/// (podgraft only inspects identity-encoded messages; the kubelet never compresses).
#[derive(Debug, Default)]
pub struct MessageDecoder {
    buf: BytesMut,
    limit: usize,
}

impl MessageDecoder {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            limit,
        }
    }

    pub fn push(&mut self, data: Bytes) {
        self.buf.extend_from_slice(&data);
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let compressed = self.buf[0];
        let len = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
        if compressed != 0 {
            return Err(Status::unimplemented(
                "podgraft: compressed messages are not supported on intercepted CRI methods",
            ));
        }
        if len > self.limit {
            return Err(too_large(len, self.limit));
        }
        if self.buf.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// True when bytes of an unfinished message remain.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

pub fn too_large(len: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "podgraft: gRPC message of {len} bytes exceeds the limit of {limit} bytes (max_message_bytes)"
    ))
}

/// Follows message boundaries in a byte stream without buffering it, to reject oversized messages.
/// Costs a few comparisons per data chunk.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    limit: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_filled: usize,
    payload_left: usize,
}

impl FrameScanner {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            payload_left: 0,
        }
    }

    /// Scans one chunk; returns the length of the first message that exceeds the limit.
    pub fn scan(&mut self, mut chunk: &[u8]) -> Result<(), usize> {
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(chunk.len());
                self.payload_left -= n;
                chunk = &chunk[n..];
                continue;
            }
            let n = (PREFIX_LEN - self.prefix_filled).min(chunk.len());
            self.prefix[self.prefix_filled..self.prefix_filled + n].copy_from_slice(&chunk[..n]);
            self.prefix_filled += n;
            chunk = &chunk[n..];
            if self.prefix_filled == PREFIX_LEN {
                let len =
                    u32::from_be_bytes(self.prefix[1..].try_into().expect("4 bytes")) as usize;
                if len > self.limit {
                    return Err(len);
                }
                self.payload_left = len;
                self.prefix_filled = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_splits_messages_across_chunks() {
        let mut d = MessageDecoder::new(100);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&encode_message(b"hello"));
        wire.extend_from_slice(&encode_message(b""));
        wire.extend_from_slice(&encode_message(b"world!"));
        let wire = wire.freeze();
        d.push(wire.slice(..3));
        assert_eq!(d.next_message().unwrap(), None);
        d.push(wire.slice(3..17));
        assert_eq!(d.next_message().unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(d.next_message().unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(d.next_message().unwrap(), None);
        assert!(d.has_partial());
        d.push(wire.slice(17..));
        assert_eq!(d.next_message().unwrap().as_deref(), Some(&b"world!"[..]));
        assert!(!d.has_partial());
    }

    #[test]
    fn decoder_refuses_oversize_and_compressed() {
        let mut d = MessageDecoder::new(4);
        d.push(encode_message(b"12345"));
        assert_eq!(
            d.next_message().unwrap_err().code(),
            Code::ResourceExhausted
        );
        let mut d = MessageDecoder::new(100);
        d.push(Bytes::from_static(&[1, 0, 0, 0, 1, 9]));
        assert_eq!(d.next_message().unwrap_err().code(), Code::Unimplemented);
    }

    #[test]
    fn scanner_tracks_boundaries_byte_by_byte() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode_message(&[7; 10]));
        wire.extend_from_slice(&encode_message(&[7; 3]));
        let mut s = FrameScanner::new(10);
        for b in &wire {
            s.scan(std::slice::from_ref(b)).unwrap();
        }
        let mut s = FrameScanner::new(10);
        s.scan(&wire).unwrap();
        s.scan(&encode_message(&[0; 11])[..2]).unwrap();
        assert_eq!(s.scan(&encode_message(&[0; 11])[2..]), Err(11));
    }

    #[test]
    fn status_round_trips_through_trailers() {
        let t = status_trailers(&Status::not_found("no such container: ü"));
        assert_eq!(status_code(&t), Some(Code::NotFound));
        assert_eq!(
            Status::from_header_map(&t).unwrap().message(),
            "no such container: ü"
        );
    }
}
