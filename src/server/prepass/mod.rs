//! podgraft's own pass over what a client sends, in front of h2's server: it makes h2 take every
//! request containerd takes.
//!
//! h2's server refuses two things that containerd's Go server accepts and that real gRPC clients
//! send, and has no switch for either:
//! - an `:authority` that is not a URI authority: grpc C-core (Python's grpcio) sends the
//!   percent-encoded Unix socket path, grpc-java the raw path, others send none or an empty one.
//!   h2 resets such a stream (PROTOCOL_ERROR).
//! - a header block in more than five CONTINUATION frames (ENHANCE_YOUR_CALM), although clients
//!   that cut blocks into 16 KiB frames need 64 of them for the 1 MiB podgraft allows.
//!
//! So each accepted connection's bytes pass through [`PrePass`] before h2 reads them. It reads the
//! client preface and the frames; every frame but HEADERS and CONTINUATION passes byte for byte
//! (and the rest of a large one goes straight into h2's buffer). Each header block is read with
//! the connection's HPACK state ([`block`], [`hpack`]); a block h2 takes leaves as the client
//! encoded it, one
//! whose `:authority` h2 would refuse is re-encoded with `:authority: localhost`, and a block
//! split into more frames than h2 allows is joined into frames of the largest size h2 accepts.
//! Whatever is malformed for HTTP/2 itself passes as it is, so that h2 gives the protocol's answer.
//! What podgraft writes back to the client does not pass through here at all.

mod block;
mod hpack;
mod io;

use bytes::BytesMut;

pub(crate) use block::HEADER_TABLE_SIZE;
use block::{HeaderBlocks, Verdict};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// CONTINUATION frames a block may have and still pass as it is: h2 takes at least five.
const PASSED_CONTINUATIONS: usize = 4;
/// Reads from the client are at least this large.
const READ_SIZE: usize = 16 << 10;
/// Buffers grown past this by a large header block are given back once it has passed: a
/// connection lives long, and its next blocks are small.
const KEEP_CAPACITY: usize = 256 << 10;

/// A client connection whose reads go through the pass; writes go straight to the socket.
pub(crate) struct PrePass<S> {
    io: S,
    buf: BytesMut,
    /// Bytes at the front of `buf` that are judged and go to h2 as they are.
    ready: usize,
    /// Bytes of the current frame that pass without a look and have not yet arrived;
    /// `usize::MAX` once the pass has stepped aside for the rest of the connection.
    raw: usize,
    preface_seen: bool,
    /// A header block still waiting for END_HEADERS; its frames follow `ready` in `buf`.
    block: Option<Block>,
    blocks: HeaderBlocks,
    max_frame: usize,
    /// Largest header block buffered, a bound on memory: four times the header list limit, the
    /// decoded size past which h2 ends the connection (ENHANCE_YOUR_CALM) anyway. A larger block
    /// goes on as it is for h2 to refuse.
    max_block: usize,
    eof: bool,
    /// A block could not be decoded after h2's table stopped mirroring the client's: h2 has been
    /// handed a block that makes it end the connection, and nothing more goes to it.
    poisoned: bool,
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    /// Bytes of its frames in `buf`.
    len: usize,
    continuations: usize,
    /// The fragments joined.
    fragment: Vec<u8>,
}

impl<S> PrePass<S> {
    /// `max_frame` and `max_header_list` are the SETTINGS h2's server advertises.
    pub(crate) fn new(io: S, max_frame: u32, max_header_list: u32) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            ready: 0,
            raw: 0,
            preface_seen: false,
            block: None,
            blocks: HeaderBlocks::new(max_header_list as usize),
            max_frame: max_frame as usize,
            max_block: 4 * max_header_list as usize,
            eof: false,
            poisoned: false,
        }
    }

    /// Judges the buffered input frame by frame, as far as it is complete.
    fn judge(&mut self) {
        loop {
            if self.poisoned {
                self.buf.truncate(self.ready);
                return;
            }
            if self.raw > 0 {
                let n = (self.buf.len() - self.ready).min(self.raw);
                self.ready += n;
                if self.raw != usize::MAX {
                    self.raw -= n;
                }
                if self.raw > 0 {
                    return;
                }
            }
            let start = self.ready + self.block.as_ref().map_or(0, |b| b.len);
            let pending = &self.buf[start..];
            if !self.preface_seen {
                if pending.len() < PREFACE.len() {
                    if !PREFACE.starts_with(pending) {
                        self.step_aside();
                    }
                    return;
                }
                if pending.starts_with(PREFACE) {
                    self.preface_seen = true;
                    self.ready += PREFACE.len();
                } else {
                    self.step_aside();
                }
                continue;
            }
            if pending.len() < FRAME_HEAD {
                return;
            }
            let len = u32::from_be_bytes([0, pending[0], pending[1], pending[2]]) as usize;
            let (kind, flags) = (pending[3], pending[4]);
            let stream =
                u32::from_be_bytes([pending[5], pending[6], pending[7], pending[8]]) & 0x7fff_ffff;
            if len > self.max_frame {
                // h2 answers FRAME_SIZE_ERROR.
                self.step_aside();
                continue;
            }
            let have = pending.len();
            let whole = have >= FRAME_HEAD + len;
            match (kind, self.block.as_ref().map(|b| b.stream)) {
                (HEADERS, None) if whole => self.headers(len, flags, stream),
                (CONTINUATION, Some(open)) if open == stream && whole => {
                    self.continuation(start, len, flags)
                }
                (HEADERS, None) | (CONTINUATION, Some(_)) if !whole => {
                    self.buf.reserve(FRAME_HEAD + len - have);
                    return;
                }
                // Any other frame inside a block, or a CONTINUATION outside one: h2 ends the
                // connection (PROTOCOL_ERROR).
                (_, Some(_)) | (CONTINUATION, None) => self.step_aside(),
                (_, None) => self.raw = FRAME_HEAD + len,
            }
        }
    }

    /// A complete HEADERS frame at `ready`.
    fn headers(&mut self, len: usize, flags: u8, stream: u32) {
        let payload = self.ready + FRAME_HEAD..self.ready + FRAME_HEAD + len;
        let Some((fragment, priority)) = fragment_of(&self.buf[payload.clone()], flags) else {
            // Padding longer than the frame: h2 answers PROTOCOL_ERROR.
            return self.step_aside();
        };
        let fragment = payload.start + fragment.start..payload.start + fragment.end;
        let block = Block {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            len: FRAME_HEAD + len,
            continuations: 0,
            fragment: Vec::new(),
        };
        if flags & END_HEADERS != 0 {
            // The common case: one frame, judged where it lies.
            let verdict = self.blocks.judge(&self.buf[fragment]);
            self.finish(block, verdict, None);
        } else {
            let mut block = block;
            block.fragment.extend_from_slice(&self.buf[fragment]);
            self.block = Some(block);
        }
    }

    /// A complete CONTINUATION frame of the pending block at `start`.
    fn continuation(&mut self, start: usize, len: usize, flags: u8) {
        let mut block = self.block.take().expect("a pending block");
        block.len += FRAME_HEAD + len;
        block.continuations += 1;
        block
            .fragment
            .extend_from_slice(&self.buf[start + FRAME_HEAD..start + FRAME_HEAD + len]);
        if block.fragment.len() > self.max_block {
            self.block = Some(block);
            return self.step_aside();
        }
        if flags & END_HEADERS != 0 {
            let verdict = self.blocks.judge(&block.fragment);
            let fragment = std::mem::take(&mut block.fragment);
            self.finish(block, verdict, Some(&fragment));
        } else {
            self.block = Some(block);
        }
    }

    /// Hands a judged block to h2: as the client framed it, joined, re-encoded, or not at all.
    fn finish(&mut self, block: Block, verdict: Verdict, joined: Option<&[u8]>) {
        let frames = match verdict {
            Verdict::AsSent if block.continuations <= PASSED_CONTINUATIONS => {
                self.ready += block.len;
                return;
            }
            Verdict::AsSent => frames(&block, joined.unwrap_or_default(), self.max_frame),
            Verdict::Rewritten => frames(&block, self.blocks.take_rewritten(), self.max_frame),
            Verdict::Broken { in_sync: true } => {
                // h2 decodes the same bytes and answers COMPRESSION_ERROR itself.
                self.ready += block.len;
                self.raw = usize::MAX;
                return;
            }
            Verdict::Broken { in_sync: false } => return self.poison(block.stream, block.len),
        };
        self.replace(block.len, &frames);
    }

    /// Replaces the `len` bytes at `ready` with `with`, which are then ready.
    fn replace(&mut self, len: usize, with: &[u8]) {
        let tail = self.buf.split_off(self.ready + len);
        self.buf.truncate(self.ready);
        self.buf.extend_from_slice(with);
        self.buf.unsplit(tail);
        self.ready += with.len();
    }

    /// Lets everything from here on pass as it is: the client broke the framing, and h2 answers
    /// that as the protocol says. Once h2's table no longer mirrors the client's, a pending block
    /// must not reach h2 as it is (h2 could read other fields than the client sent), so h2 gets a
    /// block it cannot decode instead.
    fn step_aside(&mut self) {
        match self.block.take() {
            Some(block) if self.blocks.rewriting() => self.poison(block.stream, block.len),
            _ => {
                self.ready = self.buf.len();
                self.raw = usize::MAX;
            }
        }
    }

    /// Replaces the pending block with one whose only field is an index no table has, which h2
    /// answers by ending the connection, and drops all input after it.
    fn poison(&mut self, stream: u32, len: usize) {
        let poisoned = Block {
            stream,
            end_stream: false,
            priority: None,
            len,
            continuations: 0,
            fragment: Vec::new(),
        };
        self.replace(len, &frames(&poisoned, &[0x80], self.max_frame));
        self.buf.truncate(self.ready);
        self.poisoned = true;
    }
}

/// The header block fragment of a HEADERS payload (without padding and priority), and the
/// priority fields if any; `None` if the padding does not fit.
fn fragment_of(payload: &[u8], flags: u8) -> Option<(std::ops::Range<usize>, Option<[u8; 5]>)> {
    let mut start = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *payload.first()? as usize;
        start = 1;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(payload.get(start..start + 5)?.try_into().ok()?);
        start += 5;
    }
    let end = payload.len().checked_sub(pad).filter(|&end| end >= start)?;
    Some((start..end, priority))
}

/// A header block as a HEADERS frame and as many CONTINUATION frames as `max_frame` needs.
fn frames(block: &Block, fragment: &[u8], max_frame: usize) -> Vec<u8> {
    let prio = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    let mut out = Vec::with_capacity(fragment.len() + prio.len() + 2 * FRAME_HEAD);
    let first = fragment.len().min(max_frame - prio.len());
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    let (mut chunk, mut rest) = fragment.split_at(first);
    let mut kind = HEADERS;
    loop {
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let len = chunk.len() + if kind == HEADERS { prio.len() } else { 0 };
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&block.stream.to_be_bytes());
        if kind == HEADERS {
            out.extend_from_slice(prio);
        }
        out.extend_from_slice(chunk);
        if rest.is_empty() {
            return out;
        }
        (chunk, rest) = rest.split_at(rest.len().min(max_frame));
        kind = CONTINUATION;
        flags = 0;
    }
}

#[cfg(test)]
mod h2_tests;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod tests;
