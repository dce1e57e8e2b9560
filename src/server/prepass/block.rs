//! Header blocks of one client connection: decoded with the connection's HPACK state, judged, and
//! re-encoded without compression state where h2 would refuse what containerd accepts.
//!
//! Every block is decoded, because the client's encoder keeps a dynamic table across blocks and
//! only a decoder that saw every block can tell what a later one says. A block that needs no change
//! leaves as the client encoded it, so h2's decoder keeps mirroring the client's table. The first
//! block that needs a change is re-encoded instead, and from then on every block is: h2 has not seen
//! what the client inserted into its table in that block, so the client's later references would
//! name the wrong entries (or none) in h2. Re-encoded blocks therefore start by shrinking h2's
//! table to nothing and only ever use literals and static-table indexes.

use std::borrow::Cow;

use loona_hpack::Decoder;

/// The dynamic table size podgraft's server advertises (SETTINGS_HEADER_TABLE_SIZE, also the
/// protocol default): the most a client's encoder may use, so the most this decoder accepts.
pub(crate) const HEADER_TABLE_SIZE: usize = 4096;

/// What a client sent as `:authority` when it is not a URI authority (a Unix socket path, raw or
/// percent-encoded, or empty) is replaced by this, as grpc-go's clients (the kubelet, crictl)
/// send over Unix sockets.
const NORMALIZED_AUTHORITY: &[u8] = b"localhost";

/// The outcome of one header block.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Pass the block as the client encoded it.
    AsSent,
    /// Pass [`HeaderBlocks::rewritten`] instead.
    Rewritten,
    /// The block does not decode (a compression error, fatal for the connection). The client's
    /// bytes are still consistent with h2's table if `in_sync`.
    Broken { in_sync: bool },
}

pub(super) struct HeaderBlocks {
    decoder: Decoder<'static>,
    /// Set once a block was re-encoded: h2's table no longer mirrors the client's.
    rewriting: bool,
    /// The re-encoded block, behind one byte that shrinks h2's table to zero (needed only in the
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

impl HeaderBlocks {
    pub(super) fn new(max_list: usize) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            decoder,
            rewriting: false,
            out: Vec::new(),
            max_list,
            last_valid_authority: Vec::new(),
            logged: false,
        }
    }

    /// Decodes one complete header block (the fragments of a HEADERS frame and its CONTINUATIONs,
    /// joined) and decides how it goes on to h2.
    pub(super) fn judge(&mut self, block: &[u8]) -> Verdict {
        let Self {
            decoder,
            out,
            max_list,
            last_valid_authority,
            logged,
            ..
        } = self;
        out.clear();
        out.push(SIZE_UPDATE_TO_ZERO);
        let mut changed = false;
        let mut list_size = 0usize;
        let result = decoder.decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
            // A list over h2's limit is refused by h2 whatever its tail says: stop copying once
            // the copy is over the limit too, so that a block that inflates (many references to a
            // large table entry) cannot make podgraft buffer more than about the limit.
            if list_size >= *max_list {
                return;
            }
            list_size += name.len() + value.len() + 32;
            let value = match &name[..] {
                b":authority" if needs_normalizing(&value, last_valid_authority) => {
                    if !std::mem::replace(logged, true) {
                        tracing::debug!(
                            authority = %String::from_utf8_lossy(&value),
                            "client's :authority is not a URI authority; relayed as localhost"
                        );
                    }
                    changed = true;
                    NORMALIZED_AUTHORITY
                }
                b"te" if &value[..] != b"trailers" && value.eq_ignore_ascii_case(b"trailers") => {
                    // The header's one legal value in HTTP/2, in other letter case.
                    changed = true;
                    b"trailers"
                }
                _ => &value[..],
            };
            encode_field(out, &name, value);
        });
        if result.is_err() {
            return Verdict::Broken {
                in_sync: !self.rewriting,
            };
        }
        if changed || self.rewriting {
            Verdict::Rewritten
        } else {
            Verdict::AsSent
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
}

/// HPACK "dynamic table size update" to 0 (RFC 7541 §6.3): `001` + 5-bit prefix integer 0.
const SIZE_UPDATE_TO_ZERO: u8 = 0x20;

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

/// Appends one field as a literal that leaves every table alone (RFC 7541 §6.2.2, "without
/// indexing"), naming the pseudo-headers by their static-table index (Appendix A) and writing the
/// rest as plain octets: no Huffman coding, which would cost CPU to save bytes on a local socket.
fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let static_name = match name {
        b":authority" => 1,
        b":method" if value == b"POST" => {
            out.push(0x80 | 3);
            return;
        }
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        _ => 0,
    };
    encode_integer(out, static_name, 4, 0x00);
    if static_name == 0 {
        encode_string(out, name);
    }
    encode_string(out, value);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// An HPACK prefix integer (RFC 7541 §5.1) in the low `prefix` bits of the first octet, whose high
/// bits are `flags`.
fn encode_integer(out: &mut Vec<u8>, mut value: usize, prefix: u8, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::IndexingEncoder;

    fn decode(block: &[u8]) -> Vec<(String, String)> {
        let mut d = Decoder::new();
        d.decode(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (
                b":path".to_vec(),
                b"/runtime.v1.RuntimeService/Version".to_vec(),
            ),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
            (b"te".to_vec(), b"trailers".to_vec()),
        ]
    }

    fn encode(enc: &mut IndexingEncoder, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        enc.encode(fields)
    }

    #[test]
    fn valid_blocks_pass_as_sent_and_the_table_is_tracked() {
        let mut blocks = HeaderBlocks::new(1 << 20);
        let mut enc = IndexingEncoder::default();
        let first = encode(&mut enc, &request(b"localhost"));
        assert_eq!(blocks.judge(&first), Verdict::AsSent);
        // The second block is all references into the client's dynamic table.
        let second = encode(&mut enc, &request(b"localhost"));
        assert!(second.len() < 8, "{second:?}");
        assert_eq!(blocks.judge(&second), Verdict::AsSent);
        // An invalid authority that only a table reference names is still found.
        let third = encode(&mut enc, &request(b"run%2Fpodgraft.sock"));
        assert_eq!(blocks.judge(&third), Verdict::Rewritten);
    }

    #[test]
    fn authorities_h2_refuses_are_normalized_once_rewriting_stays() {
        for bad in [
            &b"run%2Fpodgraft%2Fpodgraft.sock"[..],
            b"/run/podgraft/podgraft.sock",
            b"",
            b"a b",
            b"x{y}",
            "h\u{e9}llo".as_bytes(),
        ] {
            let mut blocks = HeaderBlocks::new(1 << 20);
            let mut enc = IndexingEncoder::default();
            let block = encode(&mut enc, &request(bad));
            assert_eq!(blocks.judge(&block), Verdict::Rewritten, "{bad:?}");
            let out = blocks.take_rewritten().to_vec();
            assert_eq!(
                out[0], SIZE_UPDATE_TO_ZERO,
                "first rewrite empties h2's table"
            );
            let want: Vec<(String, String)> = request(b"localhost")
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            assert_eq!(decode(&out), want);
            // Later blocks are re-encoded too, valid or not, without a second size update.
            let next = encode(&mut enc, &request(b"localhost"));
            assert_eq!(blocks.judge(&next), Verdict::Rewritten);
            let out = blocks.take_rewritten().to_vec();
            assert_ne!(out[0], SIZE_UPDATE_TO_ZERO);
            assert_eq!(decode(&out), want);
        }
    }

    #[test]
    fn control_characters_are_left_for_h2_to_refuse() {
        let mut blocks = HeaderBlocks::new(1 << 20);
        let mut enc = IndexingEncoder::default();
        let block = encode(&mut enc, &request(b"local\0host"));
        assert_eq!(blocks.judge(&block), Verdict::AsSent);
    }

    #[test]
    fn te_in_other_case_is_normalized_other_values_are_not() {
        let mut blocks = HeaderBlocks::new(1 << 20);
        let mut enc = IndexingEncoder::default();
        let mut fields = request(b"localhost");
        fields[5].1 = b"gzip".to_vec();
        assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::AsSent);
        fields[5].1 = b"Trailers".to_vec();
        assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::Rewritten);
        let out = decode(blocks.take_rewritten());
        assert_eq!(out[5], ("te".into(), "trailers".into()));
    }

    #[test]
    fn broken_blocks_and_oversized_lists() {
        let mut blocks = HeaderBlocks::new(1 << 20);
        // Index 0 exists in no table.
        assert_eq!(blocks.judge(&[0x80]), Verdict::Broken { in_sync: true });

        // A list far over the limit is copied only until it is over the limit.
        let mut blocks = HeaderBlocks::new(1000);
        let mut fields = request(b"/run/x.sock");
        for i in 0..100 {
            fields.push((format!("x-meta-{i}").into_bytes(), vec![b'v'; 100]));
        }
        let mut enc = IndexingEncoder::default();
        assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::Rewritten);
        let out = decode(blocks.take_rewritten());
        let size: usize = out.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!((1000..1200).contains(&size), "{size}");
        assert_eq!(blocks.judge(&[0x80]), Verdict::Broken { in_sync: false });
    }

    #[test]
    fn integers_use_continuation_octets() {
        let mut out = Vec::new();
        encode_integer(&mut out, 1337, 5, 0);
        assert_eq!(out, [31, 154, 10]); // RFC 7541 C.1.2
        out.clear();
        encode_integer(&mut out, 10, 5, 0);
        assert_eq!(out, [10]);
        out.clear();
        encode_integer(&mut out, 127, 7, 0);
        assert_eq!(out, [127, 0]);
    }
}
