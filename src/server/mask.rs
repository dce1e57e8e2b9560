//! Hiding entries of a large listing without buffering it.
//!
//! A gRPC message is prefixed with its length, so dropping an entry from a listing means holding
//! the whole message until the new length is known. Instead, a [`FieldMask`] overwrites each hidden
//! entry of a top-level repeated field with padding of exactly the same size: fields with a number
//! no CRI message uses, which every protobuf decoder skips. The length prefix stays valid, so the
//! message streams through as it arrives, and every byte outside the hidden entries is unchanged.
//! Only the entry being looked at is held in memory.

use bytes::{BufMut, Bytes, BytesMut};

use super::grpc::PREFIX_LEN;
use crate::wire::{WireError, decode_varint, put_varint};

#[path = "mask_body.rs"]
mod body;
pub use body::MaskedBody;

/// Field number of the padding: the largest protobuf allows, so that no message will ever define it.
pub(crate) const PAD_FIELD: u64 = (1 << 29) - 1;
const PAD_TAG: u64 = (PAD_FIELD << 3) | 2;
const PAD_TAG_LEN: usize = 5;

/// Which entries to hide: those of top-level field `field` that `visible` rejects.
#[derive(Clone, Copy)]
pub struct FieldMask {
    pub field: u32,
    pub visible: fn(&[u8]) -> Result<bool, WireError>,
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
    /// Before (or inside) the 5-byte gRPC prefix of the next message.
    Prefix,
    /// At the start of (or inside the header of) a top-level field.
    Header,
    /// Passing the rest of a field that is not masked.
    Copy { left: usize },
    /// Collecting an entry of the masked field that began in an earlier chunk.
    Entry { total: usize, header: usize },
}

/// The scanner: consumes the body's bytes and produces the same bytes with hidden entries padded.
///
/// Output is a list of slices of the input wherever nothing changes (no copy), with a fresh
/// buffer only for padding and for the few units (prefix, field header, entry) that straddle two
/// chunks: a listing of a thousand entries passes through with a handful of allocations.
pub struct Masker {
    mask: FieldMask,
    state: State,
    /// The unit that straddles chunks, collected until whole.
    held: BytesMut,
    /// Bytes of the current message not yet consumed.
    msg_left: usize,
}

fn malformed(reason: &'static str) -> WireError {
    WireError { offset: 0, reason }
}

/// A field header: tag, and for length-delimited fields the length. `None` while incomplete;
/// otherwise (field number, length-delimited?, header length, whole field length).
fn parse_header(buf: &[u8]) -> Result<Option<(u32, bool, usize, usize)>, WireError> {
    let mut pos = 0;
    let varint = |pos: &mut usize| -> Result<Option<u64>, WireError> {
        let Some((v, len)) = decode_varint(&buf[*pos..])? else {
            return Ok(None);
        };
        *pos += len;
        Ok(Some(v))
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
            Some(len) => pos.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)),
            None => return Ok(None),
        },
        _ => return Err(malformed("unsupported wire type")),
    };
    // `pos` is the header length; `total` the whole field's.
    Ok(Some((field, key & 7 == 2, pos, total)))
}

/// The chunk being scanned: `pos` is the next byte to look at, `run` where the stretch of bytes
/// still to be passed on unchanged began.
struct Cursor {
    data: Bytes,
    pos: usize,
    run: usize,
}

impl Cursor {
    fn rest(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Passes on the unchanged stretch up to `pos`, as a slice of the input.
    fn flush(&mut self, out: &mut Vec<Bytes>) {
        if self.pos > self.run {
            out.push(self.data.slice(self.run..self.pos));
        }
        self.run = self.pos;
    }

    /// Takes up to `n` bytes out of the unchanged stretch (they are passed on some other way).
    fn take(&mut self, n: usize, out: &mut Vec<Bytes>) -> &[u8] {
        self.flush(out);
        let n = n.min(self.data.len() - self.pos);
        self.pos += n;
        self.run = self.pos;
        &self.data[self.pos - n..self.pos]
    }
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

    /// Scans one chunk and appends the bytes to send on to `out`.
    pub fn push(&mut self, data: Bytes, out: &mut Vec<Bytes>) -> Result<(), WireError> {
        let mut c = Cursor {
            data,
            pos: 0,
            run: 0,
        };
        while c.pos < c.data.len() {
            match self.state {
                State::Prefix => self.prefix(&mut c, out)?,
                State::Header => self.header(&mut c, out)?,
                State::Copy { left } => {
                    let n = left.min(c.rest().len());
                    c.pos += n;
                    self.msg_left -= n;
                    self.state = State::Copy { left: left - n };
                    self.after_field();
                }
                State::Entry { total, header } => {
                    let n = total - self.held.len();
                    let taken = c.take(n, out);
                    self.msg_left -= taken.len();
                    self.held.extend_from_slice(taken);
                    if self.held.len() == total {
                        let entry = self.held.split().freeze();
                        self.finish_entry(entry, header, out)?;
                    }
                }
            }
        }
        c.flush(out);
        Ok(())
    }

    fn prefix(&mut self, c: &mut Cursor, out: &mut Vec<Bytes>) -> Result<(), WireError> {
        let prefix: [u8; PREFIX_LEN] = if self.held.is_empty() && c.rest().len() >= PREFIX_LEN {
            let p = c.rest()[..PREFIX_LEN].try_into().expect("5 bytes");
            c.pos += PREFIX_LEN;
            p
        } else {
            let taken = c.take(PREFIX_LEN - self.held.len(), out);
            self.held.extend_from_slice(taken);
            if self.held.len() < PREFIX_LEN {
                return Ok(());
            }
            let held = self.held.split().freeze();
            let p = held[..].try_into().expect("5 bytes");
            out.push(held);
            p
        };
        if prefix[0] != 0 {
            return Err(malformed("compressed gRPC message"));
        }
        self.msg_left = u32::from_be_bytes(prefix[1..].try_into().expect("4 bytes")) as usize;
        self.state = if self.msg_left == 0 {
            State::Prefix
        } else {
            State::Header
        };
        Ok(())
    }

    fn header(&mut self, c: &mut Cursor, out: &mut Vec<Bytes>) -> Result<(), WireError> {
        if self.held.is_empty() {
            // The common case: the header is in this chunk, and often the whole field too.
            let visible_len = c.rest().len().min(self.msg_left);
            match parse_header(&c.rest()[..visible_len])? {
                Some((field, delimited, header, total)) => {
                    if total > self.msg_left {
                        return Err(malformed("field runs past the end of the message"));
                    }
                    if !(field == self.mask.field && delimited && total > header) {
                        self.state = State::Copy { left: total };
                        return Ok(());
                    }
                    if total <= c.rest().len() {
                        let entry = c.data.slice(c.pos..c.pos + total);
                        if (self.mask.visible)(&entry[header..])? {
                            c.pos += total;
                        } else {
                            c.take(total, out);
                            pad(total, out)?;
                        }
                        self.msg_left -= total;
                        self.state = State::Header;
                        self.after_field();
                        return Ok(());
                    }
                    // The entry continues in the next chunk: collect it.
                    let taken = c.take(total, out);
                    self.msg_left -= taken.len();
                    self.held.extend_from_slice(taken);
                    self.state = State::Entry { total, header };
                    return Ok(());
                }
                None if visible_len == self.msg_left => {
                    return Err(malformed("message ends inside a field header"));
                }
                None => {}
            }
        }
        // A header that straddles chunks: one byte at a time, never past the header itself.
        let taken = c.take(1, out);
        self.msg_left -= taken.len();
        self.held.extend_from_slice(taken);
        let Some((field, delimited, header, total)) = parse_header(&self.held)? else {
            if self.msg_left == 0 {
                return Err(malformed("message ends inside a field header"));
            }
            return Ok(());
        };
        if total - self.held.len() > self.msg_left {
            return Err(malformed("field runs past the end of the message"));
        }
        if field == self.mask.field && delimited && total > header {
            self.state = State::Entry { total, header };
        } else {
            let left = total - self.held.len();
            out.push(self.held.split().freeze());
            self.state = State::Copy { left };
            self.after_field();
        }
        Ok(())
    }

    /// A whole entry collected across chunks: passed on as it is, or as padding.
    fn finish_entry(
        &mut self,
        entry: Bytes,
        header: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<(), WireError> {
        if (self.mask.visible)(&entry[header..])? {
            out.push(entry);
        } else {
            pad(entry.len(), out)?;
        }
        self.state = State::Header;
        self.after_field();
        Ok(())
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

/// Padding in place of a hidden entry of `len` bytes.
fn pad(len: usize, out: &mut Vec<Bytes>) -> Result<(), WireError> {
    if len <= PAD_TAG_LEN {
        // Cannot happen for an entry that carries the label; refuse rather than let it through.
        return Err(malformed("hidden entry too small to pad"));
    }
    let mut buf = BytesMut::with_capacity(len);
    put_padding(&mut buf, len);
    out.push(buf.freeze());
    Ok(())
}

#[cfg(test)]
#[path = "mask_tests.rs"]
mod tests;
