//! Protobuf wire-format helpers for interceptors.
//!
//! Interceptors must change as little of a message as possible: a field this build has never heard of has
//! to reach the other side byte for byte. So instead of decoding into generated types and re-encoding,
//! these helpers walk the wire format, read only the fields asked for, and rebuild a message by copying
//! every untouched byte range as it was.

use bytes::{BufMut, Bytes, BytesMut};

/// A malformed protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf message at byte {offset}: {reason}")]
pub struct WireError {
    pub offset: usize,
    pub reason: &'static str,
}

/// The value of one field occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// One field occurrence: its number, its value and the byte range (tag included) it occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub start: usize,
    pub end: usize,
}

impl<'a> Field<'a> {
    /// The payload of a length-delimited field (string, bytes, sub-message), if it is one.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Iterates over the top-level fields of one message, in wire order.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Starts iterating the fields of `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Decodes the varint at the start of `buf`: its value and its length in bytes, or `None` if `buf`
/// ends inside it (more may yet arrive, for a caller that reads a stream).
#[inline]
pub(crate) fn decode_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(WireError {
        offset: 10,
        reason: "varint longer than 10 bytes",
    })
}

/// Reads the varint at `pos` of a whole message and moves `pos` past it.
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let at = *pos;
    match decode_varint(buf.get(at..).unwrap_or_default()) {
        Ok(Some((value, len))) => {
            *pos += len;
            Ok(value)
        }
        Ok(None) => Err(WireError {
            offset: buf.len().max(at),
            reason: "truncated varint",
        }),
        Err(e) => Err(WireError {
            offset: at + e.offset,
            reason: e.reason,
        }),
    }
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], WireError> {
    let end = pos.checked_add(len).filter(|&e| e <= buf.len());
    let Some(end) = end else {
        return Err(WireError {
            offset: *pos,
            reason: "field runs past the end of the message",
        });
    };
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = u32::try_from(key >> 3).unwrap_or(0);
        if number == 0 {
            return Err(WireError {
                offset: start,
                reason: "field number 0",
            });
        }
        let value = match key & 7 {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let b = take(self.buf, &mut self.pos, 8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| WireError {
                    offset: start,
                    reason: "length overflows",
                })?;
                Value::Bytes(take(self.buf, &mut self.pos, len)?)
            }
            5 => {
                let b = take(self.buf, &mut self.pos, 4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            _ => {
                return Err(WireError {
                    offset: start,
                    reason: "unsupported wire type (groups are not used by CRI)",
                });
            }
        };
        Ok(Field {
            number,
            value,
            start,
            end: self.pos,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        self.failed = item.is_err();
        Some(item)
    }
}

/// The last occurrence of a length-delimited field (proto3 semantics for singular fields).
pub fn get_bytes(msg: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    for field in fields(msg) {
        let field = field?;
        if field.number == number {
            found = field.bytes();
        }
    }
    Ok(found)
}

/// A string field, lossily decoded (CRI strings are UTF-8; a bad byte must not abort a relay).
pub fn get_string(msg: &[u8], number: u32) -> Result<Option<String>, WireError> {
    Ok(get_bytes(msg, number)?.map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// Looks up `key` in a `map<string, string>` field such as `labels` or `annotations`.
pub fn map_get<'a>(msg: &'a [u8], number: u32, key: &str) -> Result<Option<&'a [u8]>, WireError> {
    let mut found = None;
    for field in fields(msg) {
        let field = field?;
        if field.number != number {
            continue;
        }
        let Some(entry) = field.bytes() else { continue };
        // A map entry is a message with key = 1 and value = 2; both default to empty.
        if get_bytes(entry, 1)?.unwrap_or_default() == key.as_bytes() {
            found = Some(get_bytes(entry, 2)?.unwrap_or_default());
        }
    }
    Ok(found)
}

/// Keeps only the occurrences of repeated field `number` for which `keep` returns true; every other
/// byte of `msg` is copied unchanged and in order. Returns `msg` itself (no copy) when nothing is dropped.
pub fn retain_repeated(
    msg: &Bytes,
    number: u32,
    mut keep: impl FnMut(&[u8]) -> Result<bool, WireError>,
) -> Result<Bytes, WireError> {
    let mut dropped: Vec<(usize, usize)> = Vec::new();
    for field in fields(msg) {
        let field = field?;
        if field.number == number {
            if let Some(payload) = field.bytes() {
                if !keep(payload)? {
                    dropped.push((field.start, field.end));
                }
            }
        }
    }
    if dropped.is_empty() {
        return Ok(msg.clone());
    }
    let removed: usize = dropped.iter().map(|(s, e)| e - s).sum();
    let mut out = BytesMut::with_capacity(msg.len() - removed);
    let mut pos = 0;
    for (start, end) in dropped {
        out.extend_from_slice(&msg[pos..start]);
        pos = end;
    }
    out.extend_from_slice(&msg[pos..]);
    Ok(out.freeze())
}

/// Rewrites every occurrence of the sub-message field `number` with `rewrite`, re-encoding only that
/// field's length prefix; all other bytes are copied unchanged. Returns `msg` itself when `rewrite`
/// changes nothing.
pub fn rewrite_submessage(
    msg: &Bytes,
    number: u32,
    mut rewrite: impl FnMut(&Bytes) -> Result<Bytes, WireError>,
) -> Result<Bytes, WireError> {
    let mut edits: Vec<(usize, usize, Bytes)> = Vec::new();
    for field in fields(msg) {
        let field = field?;
        if field.number != number {
            continue;
        }
        let Some(payload) = field.bytes() else {
            continue;
        };
        let inner = msg.slice_ref(payload);
        let new = rewrite(&inner)?;
        if new != inner {
            edits.push((field.start, field.end, new));
        }
    }
    if edits.is_empty() {
        return Ok(msg.clone());
    }
    let mut out = BytesMut::with_capacity(msg.len());
    let mut pos = 0;
    for (start, end, payload) in edits {
        out.extend_from_slice(&msg[pos..start]);
        put_key(&mut out, number, 2);
        put_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(&payload);
        pos = end;
    }
    out.extend_from_slice(&msg[pos..]);
    Ok(out.freeze())
}

fn put_key(out: &mut BytesMut, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Item {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(map = "string, string", tag = "8")]
        labels: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct List {
        #[prost(message, repeated, tag = "1")]
        items: Vec<Item>,
    }

    fn item(id: &str, dynamic: bool) -> Item {
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.pod.uid".to_string(), "u1".to_string());
        if dynamic {
            labels.insert("podgraft.io/dynamic".to_string(), "true".to_string());
        }
        Item {
            id: id.into(),
            labels,
        }
    }

    /// Appends a field with a number no schema defines, as a newer CRI version might send.
    fn with_unknown_field(mut buf: Vec<u8>) -> Vec<u8> {
        buf.extend_from_slice(&[0xfa, 0x3e, 3, b'n', b'e', b'w']); // field 1000, bytes "new"
        buf
    }

    #[test]
    fn retain_drops_only_matching_entries_and_keeps_unknown_bytes() {
        let list = List {
            items: vec![item("a", false), item("b", true), item("c", false)],
        };
        let raw = Bytes::from(with_unknown_field(list.encode_to_vec()));
        let out = retain_repeated(&raw, 1, |entry| {
            Ok(map_get(entry, 8, "podgraft.io/dynamic")?.is_none())
        })
        .unwrap();
        let expected = with_unknown_field(
            List {
                items: vec![item("a", false), item("c", false)],
            }
            .encode_to_vec(),
        );
        // Map entry order is not stable across encodes, so compare decoded items, then the tail bytes.
        assert_eq!(
            List::decode(&out[..]).unwrap(),
            List::decode(&expected[..]).unwrap()
        );
        assert!(out.ends_with(&[0xfa, 0x3e, 3, b'n', b'e', b'w']));
        assert_eq!(out.len(), raw.len() - item("b", true).encoded_len() - 2);
    }

    #[test]
    fn retain_without_drops_is_zero_copy() {
        let raw = Bytes::from(
            List {
                items: vec![item("a", false)],
            }
            .encode_to_vec(),
        );
        let out = retain_repeated(&raw, 1, |_| Ok(true)).unwrap();
        assert_eq!(out.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn rewrite_submessage_fixes_the_length_prefix() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Outer {
            #[prost(message, optional, tag = "3")]
            list: Option<List>,
            #[prost(int64, tag = "4")]
            ts: i64,
        }
        let outer = Outer {
            list: Some(List {
                items: (0..20)
                    .map(|i| item(&format!("c{i}"), i % 2 == 0))
                    .collect(),
            }),
            ts: 42,
        };
        let raw = Bytes::from(outer.encode_to_vec());
        let out = rewrite_submessage(&raw, 3, |inner| {
            retain_repeated(inner, 1, |e| {
                Ok(map_get(e, 8, "podgraft.io/dynamic")?.is_none())
            })
        })
        .unwrap();
        let decoded = Outer::decode(&out[..]).unwrap();
        assert_eq!(decoded.ts, 42);
        let ids: Vec<_> = decoded
            .list
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(
            ids,
            (0..20)
                .filter(|i| i % 2 == 1)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn getters_read_strings_and_maps() {
        let raw = item("abc", true).encode_to_vec();
        assert_eq!(get_string(&raw, 1).unwrap().as_deref(), Some("abc"));
        assert_eq!(
            map_get(&raw, 8, "podgraft.io/dynamic").unwrap(),
            Some(&b"true"[..])
        );
        assert_eq!(map_get(&raw, 8, "missing").unwrap(), None);
        assert_eq!(get_bytes(&raw, 5).unwrap(), None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[0x0a, 0x05, b'a'][..],
            &[0x08][..],
            &[0x00, 0x01][..],
            &[0x0b][..],
        ] {
            assert!(fields(bad).any(|f| f.is_err()), "{bad:?} should fail");
            assert!(retain_repeated(&Bytes::copy_from_slice(bad), 1, |_| Ok(true)).is_err());
        }
        let too_long = [0xffu8; 11];
        assert!(fields(&too_long).any(|f| f.is_err()));
    }

    #[test]
    fn varints_round_trip_and_report_truncation() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            let mut prost_encoded = Vec::new();
            prost::encoding::encode_varint(v, &mut prost_encoded);
            assert_eq!(&out[..], &prost_encoded[..], "{v}");
            assert_eq!(decode_varint(&out), Ok(Some((v, out.len()))), "{v}");
            // Trailing bytes are not part of it; a cut varint is incomplete, not an error.
            let mut longer = out.to_vec();
            longer.push(0x7f);
            assert_eq!(decode_varint(&longer), Ok(Some((v, out.len()))), "{v}");
            assert_eq!(decode_varint(&out[..out.len() - 1]), Ok(None), "{v}");
        }
        assert!(decode_varint(&[0xff; 11]).is_err());
        let mut pos = 1;
        let err = read_varint(&[0x08, 0x80], &mut pos).unwrap_err();
        assert_eq!((err.offset, err.reason), (2, "truncated varint"));
    }
}
