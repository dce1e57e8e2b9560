//! HPACK (RFC 7541) at the level of representations: the pass reads a block field by field and
//! copies most representations as their octets, so it decodes a Huffman-coded string only where it
//! must know the text (a field it inserts into its table, `:authority`, `te`). The tables come from
//! `httlib-hpack`, Huffman decoding from `httlib-huffman` (table-driven, no allocation per symbol).

use std::borrow::Cow;

/// Why a header block does not decode: a compression error, fatal for the connection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum HpackError {
    #[error("header block ends inside a representation")]
    Truncated,
    #[error("integer too large")]
    Overflow,
    #[error("index {0} is in no table")]
    Index(usize),
    #[error("invalid Huffman code")]
    Huffman,
    #[error("dynamic table size update after a field, or above the advertised size")]
    SizeUpdate,
}

/// Decodes a prefix integer (RFC 7541 §5.1) at `*pos`, whose first octet keeps it in its low
/// `prefix` bits, and moves `*pos` past it.
pub(super) fn integer(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1usize << prefix) - 1;
    let mut value = *buf.get(*pos).ok_or(HpackError::Truncated)? as usize & mask;
    *pos += 1;
    if value < mask {
        return Ok(value);
    }
    // Four continuation octets carry 28 bits: more than any size or index can need.
    for shift in (0..28).step_by(7) {
        let octet = *buf.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += ((octet & 0x7f) as usize) << shift;
        if octet & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::Overflow)
}

/// A string literal as it lies in the block.
#[derive(Debug, Clone, Copy)]
pub(super) struct Str<'a> {
    /// The whole representation: Huffman flag, length and octets, to be copied as it is.
    pub(super) raw: &'a [u8],
    pub(super) octets: &'a [u8],
    pub(super) huffman: bool,
}

impl<'a> Str<'a> {
    /// Reads the string literal at `*pos` (RFC 7541 §5.2).
    pub(super) fn read(buf: &'a [u8], pos: &mut usize) -> Result<Self, HpackError> {
        let start = *pos;
        let huffman = buf.get(start).is_some_and(|b| b & 0x80 != 0);
        let len = integer(buf, pos, 7)?;
        let octets = buf.get(*pos..*pos + len).ok_or(HpackError::Truncated)?;
        *pos += len;
        Ok(Self {
            raw: &buf[start..*pos],
            octets,
            huffman,
        })
    }

    /// The text, Huffman-decoded if need be.
    pub(super) fn text(&self) -> Result<Cow<'a, [u8]>, HpackError> {
        if !self.huffman {
            return Ok(Cow::Borrowed(self.octets));
        }
        let mut out = Vec::with_capacity(self.octets.len() * 8 / 5);
        httlib_huffman::decode(
            self.octets,
            &mut out,
            httlib_huffman::DecoderSpeed::FiveBits,
        )
        .map_err(|_| HpackError::Huffman)?;
        Ok(Cow::Owned(out))
    }

    /// The fewest octets the text can have: exact unless Huffman-coded, whose longest code is 30
    /// bits.
    pub(super) fn min_len(&self) -> usize {
        if self.huffman {
            self.octets.len() * 8 / 30
        } else {
            self.octets.len()
        }
    }
}

/// Appends a prefix integer (RFC 7541 §5.1) in the low `prefix` bits of an octet whose high bits
/// are `flags`.
pub(super) fn encode_integer(out: &mut Vec<u8>, mut value: usize, prefix: u8, flags: u8) {
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

/// Appends a plain (not Huffman-coded) string literal.
pub(super) fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// Appends a field as a literal that leaves every table alone (§6.2.2, "without indexing"),
/// naming the pseudo-headers by their static-table index (Appendix A) and writing the rest as
/// plain octets: Huffman coding would cost CPU to save bytes on a local socket.
pub(super) fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_and_are_bounded() {
        for (value, prefix) in [(10, 5), (1337, 5), (31, 5), (127, 7), (0, 4), (1 << 20, 7)] {
            let mut out = Vec::new();
            encode_integer(&mut out, value, prefix, 0);
            let mut pos = 0;
            assert_eq!(integer(&out, &mut pos, prefix), Ok(value));
            assert_eq!(pos, out.len());
        }
        let mut out = Vec::new();
        encode_integer(&mut out, 1337, 5, 0);
        assert_eq!(out, [31, 154, 10]); // RFC 7541 C.1.2
        assert_eq!(
            integer(&[31, 0xff, 0xff, 0xff, 0xff, 1], &mut 0, 5),
            Err(HpackError::Overflow)
        );
        assert_eq!(integer(&[31, 0xff], &mut 0, 5), Err(HpackError::Truncated));
    }

    #[test]
    fn strings_plain_and_huffman() {
        // RFC 7541 C.4.1: "www.example.com" Huffman-coded.
        let huffman = [
            0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut pos = 0;
        let s = Str::read(&huffman, &mut pos).unwrap();
        assert_eq!(pos, huffman.len());
        assert_eq!(s.raw, &huffman[..]);
        assert_eq!(&*s.text().unwrap(), b"www.example.com");
        assert!(s.min_len() <= 15);
        let mut plain = Vec::new();
        encode_string(&mut plain, b"localhost");
        let s = Str::read(&plain, &mut 0).unwrap();
        assert_eq!((&*s.text().unwrap(), s.min_len()), (&b"localhost"[..], 9));
        assert_eq!(
            Str::read(&[0x85, 0xff], &mut 0).unwrap_err(),
            HpackError::Truncated
        );
        // An EOS code inside the string.
        let bad = Str::read(&[0x84, 0xff, 0xff, 0xff, 0xff], &mut 0).unwrap();
        assert_eq!(bad.text().unwrap_err(), HpackError::Huffman);
    }
}
