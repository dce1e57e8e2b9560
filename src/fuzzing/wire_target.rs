//! The `wire` target, and the chunkings every stream target uses.

use super::*;

/// Chunk sizes for a byte stream, as a socket might deliver it: the low 3 bits of `seed` pick
/// the largest size, the rest seed a xorshift.
pub(super) struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    pub(super) fn new(seed: u8) -> Self {
        Chunks {
            state: (u32::from(seed >> 3) + 1).wrapping_mul(0x9e37_79b9),
            max: [1, 2, 3, 5, 8, 64, 512, 1 << 16][usize::from(seed & 7)],
        }
    }

    fn next(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + x as usize % self.max
    }

    /// `data` cut into chunks.
    pub(super) fn split(mut self, data: &Bytes) -> Vec<Bytes> {
        let mut rest = data.clone();
        let mut out = Vec::new();
        while !rest.is_empty() {
            let n = self.next().min(rest.len());
            out.push(rest.split_to(n));
        }
        out
    }
}

/// `wire`: the first byte picks the field number (1–16) the helpers look for; the rest is the
/// message.
pub fn wire(data: &[u8]) {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let number = u32::from(selector & 0x0f) + 1;
    let bytes = Bytes::copy_from_slice(msg);

    // Fields tile the message in order; all of it when every field parses.
    let mut pos = 0;
    let mut well_formed = true;
    for field in wire::fields(msg) {
        match field {
            Ok(f) => {
                assert_eq!(f.start, pos, "fields are contiguous");
                assert!(f.start < f.end && f.end <= msg.len());
                if let Some(payload) = f.bytes() {
                    let offset = payload.as_ptr() as usize - msg.as_ptr() as usize;
                    assert!(offset > f.start && offset + payload.len() == f.end);
                }
                pos = f.end;
            }
            Err(e) => {
                assert!(e.offset <= msg.len().max(pos) + 10, "{e}");
                well_formed = false;
            }
        }
    }
    if well_formed {
        assert_eq!(pos, msg.len(), "fields cover the message");
    }

    let found = wire::get_bytes(msg, number);
    assert_eq!(found.is_ok(), well_formed);
    let _ = wire::get_string(msg, number);
    let _ = wire::map_get(msg, number, DYNAMIC_LABEL);
    let _ = wire::map_get(msg, number, "");

    // Keeping everything, or rewriting nothing, gives back the message itself.
    match wire::retain_repeated(&bytes, number, |_| Ok(true)) {
        Ok(out) => {
            assert!(well_formed);
            assert_eq!(out, bytes);
        }
        Err(_) => assert!(!well_formed),
    }
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| Ok(inner.clone())) {
        assert_eq!(out, bytes);
    }
    // Dropping every entry leaves a well-formed message without them.
    if let Ok(out) = wire::retain_repeated(&bytes, number, |_| Ok(false)) {
        for field in wire::fields(&out) {
            let field = field.expect("what is left of a well-formed message parses");
            assert!(field.number != number || field.bytes().is_none());
        }
    }
    // The predicate the relay hides with, one level down, errors passed on.
    let _ = wire::retain_repeated(&bytes, number, |entry| {
        Ok(wire::map_get(entry, 8, DYNAMIC_LABEL)?.is_none())
    });
    // A rewrite that changes the length of each sub-message gets its length prefix right.
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| {
        let mut grown = inner.to_vec();
        grown.extend_from_slice(&[0x08, 0x01]);
        Ok(Bytes::from(grown))
    }) {
        for field in wire::fields(&out) {
            field.expect("a rewritten message parses");
        }
    }
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| {
        wire::retain_repeated(inner, 1, |e| Ok(wire::get_bytes(e, 1)?.is_none()))
    }) {
        for field in wire::fields(&out) {
            field.expect("a rewritten message parses");
        }
    }

    // Varints: what decodes re-encodes to the same value in at most as many bytes.
    if let Ok(Some((value, len))) = wire::decode_varint(msg) {
        assert!((1..=10).contains(&len));
        let mut out = bytes::BytesMut::new();
        wire::put_varint(&mut out, value);
        assert!(out.len() <= len);
        assert_eq!(wire::decode_varint(&out), Ok(Some((value, out.len()))));
    }
    let mut word = [0u8; 8];
    let n = msg.len().min(8);
    word[..n].copy_from_slice(&msg[..n]);
    let value = u64::from_le_bytes(word);
    let mut out = bytes::BytesMut::new();
    wire::put_varint(&mut out, value);
    assert_eq!(wire::decode_varint(&out), Ok(Some((value, out.len()))));
    assert_eq!(wire::decode_varint(&out[..out.len() - 1]), Ok(None));
}
