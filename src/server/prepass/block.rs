//! Header blocks of one client connection: read with the connection's HPACK state, judged, and
//! re-encoded without compression state where h2 would refuse what containerd accepts.
//!
//! Every block is read, because the client's encoder keeps a dynamic table across blocks and only
//! a decoder that saw every block can tell what a later one says. A block that needs no change
//! leaves as the client encoded it, so h2's decoder keeps mirroring the client's table. The first
//! block that needs a change is re-encoded instead, and from then on every block is: h2 has not
//! seen what the client inserted into its table in that block, so the client's later references
//! would name the wrong entries (or none) in h2. Re-encoded blocks therefore start by shrinking
//! h2's table to nothing and use static-table indexes and literals only: a literal is copied as
//! the client encoded it (Huffman-coded or not), a reference into the dynamic table is written out
//! as a plain literal.

use std::borrow::Cow;

use httlib_hpack::table::Table;

use super::hpack::{HpackError, Str, encode_field, encode_integer, encode_string, integer};

/// The dynamic table size podgraft's server advertises (SETTINGS_HEADER_TABLE_SIZE, also the
/// protocol default): the most a client's encoder may use, so the most this decoder accepts.
pub(crate) const HEADER_TABLE_SIZE: usize = 4096;

/// What a client sent as `:authority` when it is not a URI authority (a Unix socket path, raw or
/// percent-encoded, or empty) is replaced by this, as grpc-go's clients (the kubelet, crictl)
/// send over Unix sockets.
const NORMALIZED_AUTHORITY: &[u8] = b"localhost";

/// Entries of the static table (RFC 7541 Appendix A); higher indexes are the dynamic table's.
const STATIC_ENTRIES: usize = 61;

/// HPACK "dynamic table size update" to 0 (RFC 7541 §6.3): `001` + 5-bit prefix integer 0.
const SIZE_UPDATE_TO_ZERO: u8 = 0x20;

/// The outcome of one header block.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Pass the block as the client encoded it.
    AsSent,
    /// Pass [`HeaderBlocks::take_rewritten`] instead.
    Rewritten,
    /// The block does not decode (a compression error, fatal for the connection). The client's
    /// bytes are still consistent with h2's table if `in_sync`.
    Broken { in_sync: bool },
}

pub(super) struct HeaderBlocks {
    table: Table<'static>,
    /// Set once a block was re-encoded: h2's table no longer mirrors the client's.
    rewriting: bool,
    /// The re-encoded block, behind one octet that shrinks h2's table to zero (needed only in the
    /// first re-encoded block).
    out: Vec<u8>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE as h2 enforces it.
    max_list: usize,
    /// The last `:authority` found valid: clients send the same one on every call, and parsing it
    /// again would cost an allocation per call.
    last_valid_authority: Vec<u8>,
    /// Whether a normalized `:authority` was logged (once per connection).
    logged: bool,
}

/// One field as read: its name and what is known of its value.
struct Field<'a> {
    name: &'a [u8],
    value: Value<'a>,
}

enum Value<'a> {
    Text(&'a [u8]),
    /// A literal's value as it lies in the block, not decoded unless needed.
    Literal(Str<'a>),
}

impl HeaderBlocks {
    pub(super) fn new(max_list: usize) -> Self {
        Self {
            table: Table::with_dynamic_size(HEADER_TABLE_SIZE as u32),
            rewriting: false,
            out: Vec::new(),
            max_list,
            last_valid_authority: Vec::new(),
            logged: false,
        }
    }

    /// Reads one complete header block (the fragments of a HEADERS frame and its CONTINUATIONs,
    /// joined) and decides how it goes on to h2. The re-encoded block is built while reading,
    /// whatever the verdict: deciding first would take a second pass, which the table (changed by
    /// the first) does not allow.
    pub(super) fn judge(&mut self, block: &[u8]) -> Verdict {
        if self.out.capacity() > super::KEEP_CAPACITY {
            self.out = Vec::new();
        }
        self.out.clear();
        self.out.push(SIZE_UPDATE_TO_ZERO);
        match self.read(block) {
            Ok(changed) if changed || self.rewriting => Verdict::Rewritten,
            Ok(_) => Verdict::AsSent,
            Err(err) => {
                tracing::debug!(%err, "client sent a header block that does not decode");
                Verdict::Broken {
                    in_sync: !self.rewriting,
                }
            }
        }
    }

    /// Whether h2's table has stopped mirroring the client's.
    pub(super) fn rewriting(&self) -> bool {
        self.rewriting
    }

    /// The block to pass after [`Verdict::Rewritten`]; from then on every block is re-encoded.
    pub(super) fn take_rewritten(&mut self) -> &[u8] {
        let first = !std::mem::replace(&mut self.rewriting, true);
        if first { &self.out } else { &self.out[1..] }
    }

    /// Reads the block's representations, re-encoding each into `out`; returns whether a field
    /// had to change.
    fn read(&mut self, block: &[u8]) -> Result<bool, HpackError> {
        let mut pos = 0;
        let mut changed = false;
        // The least the decoded header list can weigh (RFC 7540 §6.5.2: octets + 32 per field).
        let mut list_size = 0;
        let mut fields = 0;
        while pos < block.len() {
            let start = pos;
            let first = block[pos];
            if first & 0xe0 == 0x20 {
                // A size update, allowed only before the first field (RFC 7541 §4.2).
                let size = integer(block, &mut pos, 5)?;
                if fields > 0 || size > HEADER_TABLE_SIZE {
                    return Err(HpackError::SizeUpdate);
                }
                self.table.update_max_dynamic_size(size as u32);
                continue;
            }
            fields += 1;
            // A list over h2's limit is refused by h2 whatever its tail says: stop copying once
            // the copy is over the limit too, so that a block that inflates (many references to a
            // large table entry) cannot make podgraft buffer more than about the limit.
            let copy = list_size < self.max_list;
            if first & 0x80 != 0 {
                let index = integer(block, &mut pos, 7)?;
                let (name, value) = self
                    .table
                    .get(index as u32)
                    .ok_or(HpackError::Index(index))?;
                list_size += 32 + name.len() + value.len();
                let field = Field {
                    name,
                    value: Value::Text(value),
                };
                let out = &mut self.out;
                let normalized =
                    judge_field(&field, &mut self.last_valid_authority, &mut self.logged)?;
                match normalized {
                    Some(value) if copy => {
                        changed = true;
                        encode_field(out, name, value);
                    }
                    Some(_) => changed = true,
                    None if !copy => {}
                    None if index <= STATIC_ENTRIES => out.extend_from_slice(&block[start..pos]),
                    None => {
                        encode_integer(out, 0, 4, 0x00);
                        encode_string(out, name);
                        encode_string(out, value);
                    }
                }
                continue;
            }
            // A literal: with incremental indexing (01), never indexed (0001) or without (0000).
            let (prefix, insert) = if first & 0x40 != 0 {
                (6, true)
            } else {
                (4, false)
            };
            let flags = if first & 0xf0 == 0x10 { 0x10 } else { 0x00 };
            let name_index = integer(block, &mut pos, prefix)?;
            let literal_name = match name_index {
                0 => Some(Str::read(block, &mut pos)?),
                _ => None,
            };
            let value = Str::read(block, &mut pos)?;
            let name: Cow<[u8]> = match (&literal_name, name_index) {
                (Some(name), _) => name.text()?,
                (None, index) => Cow::Borrowed(
                    self.table
                        .get(index as u32)
                        .ok_or(HpackError::Index(index))?
                        .0,
                ),
            };
            list_size += 32 + name.len() + value.min_len();
            let field = Field {
                name: &name,
                value: Value::Literal(value),
            };
            let normalized = judge_field(&field, &mut self.last_valid_authority, &mut self.logged)?;
            let out = &mut self.out;
            if let Some(value) = normalized {
                changed = true;
                if copy {
                    encode_field(out, &name, value);
                }
            } else if copy {
                match (&literal_name, name_index) {
                    (Some(literal), _) => {
                        out.push(flags);
                        out.extend_from_slice(literal.raw);
                    }
                    (None, index) if index <= STATIC_ENTRIES => {
                        encode_integer(out, index, 4, flags)
                    }
                    (None, _) => {
                        out.push(flags);
                        encode_string(out, &name);
                    }
                }
                out.extend_from_slice(value.raw);
            }
            if insert {
                let value = value.text()?.into_owned();
                let name = name.into_owned();
                self.table.insert(name, value);
            }
        }
        Ok(changed)
    }
}

/// The value a field must have instead of its own for h2 to take the request, if any.
fn judge_field(
    field: &Field<'_>,
    last_valid_authority: &mut Vec<u8>,
    logged: &mut bool,
) -> Result<Option<&'static [u8]>, HpackError> {
    let value = || -> Result<Cow<'_, [u8]>, HpackError> {
        match &field.value {
            Value::Text(t) => Ok(Cow::Borrowed(*t)),
            Value::Literal(s) => s.text(),
        }
    };
    match field.name {
        b":authority" => {
            let value = value()?;
            if !needs_normalizing(&value, last_valid_authority) {
                return Ok(None);
            }
            if !std::mem::replace(logged, true) {
                tracing::debug!(
                    authority = %String::from_utf8_lossy(&value),
                    "client's :authority is not a URI authority; relayed as localhost"
                );
            }
            Ok(Some(NORMALIZED_AUTHORITY))
        }
        b"te" => {
            // The header's one legal value in HTTP/2, in another letter case.
            let value = value()?;
            Ok(
                (&value[..] != b"trailers" && value.eq_ignore_ascii_case(b"trailers"))
                    .then_some(&b"trailers"[..]),
            )
        }
        _ => Ok(None),
    }
}

/// Whether h2 would refuse this `:authority` although it is a legal field value. One with control
/// characters is malformed for HTTP/2 itself and is left for h2 to refuse.
fn needs_normalizing(value: &[u8], last_valid: &mut Vec<u8>) -> bool {
    if !value.is_empty() && value == &last_valid[..] {
        return false;
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return false;
    }
    match http::uri::Authority::try_from(value) {
        Ok(_) => {
            last_valid.clear();
            last_valid.extend_from_slice(value);
            false
        }
        Err(_) => true,
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;
