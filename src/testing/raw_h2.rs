//! A hand-made HTTP/2 client for tests: it sends header blocks exactly as told (any pseudo-header
//! and value, in any order, cut into frames of any size), to replay what other gRPC stacks send
//! and what no library client would, and reports the server's answer frame by frame.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// One request: its header fields in order (pseudo-headers included) and at most one gRPC message.
#[derive(Debug, Clone)]
pub struct RawH2Request {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// One gRPC message, without its prefix; `None` ends the stream with the headers.
    pub message: Option<Vec<u8>>,
    /// Largest header block fragment per frame: more make HEADERS + CONTINUATION frames.
    pub fragment_size: usize,
    /// Sent instead of the encoded `fields`, for blocks no encoder makes.
    pub raw_block: Option<Vec<u8>>,
}

impl RawH2Request {
    /// A gRPC call shaped like most stacks send one: `:method`, `:scheme`, `:path`, `:authority`
    /// if given, then `content-type` and `te`.
    pub fn grpc(method: &str, authority: Option<&[u8]>, message: &[u8]) -> Self {
        let mut fields = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), method.as_bytes().to_vec()),
        ];
        if let Some(authority) = authority {
            fields.push((b":authority".to_vec(), authority.to_vec()));
        }
        fields.push((b"content-type".to_vec(), b"application/grpc".to_vec()));
        fields.push((b"te".to_vec(), b"trailers".to_vec()));
        Self {
            fields,
            message: Some(message.to_vec()),
            fragment_size: 16 << 10,
            raw_block: None,
        }
    }

    /// Appends a header field.
    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.fields
            .push((name.as_bytes().to_vec(), value.as_ref().to_vec()));
        self
    }
}

/// How the server answered one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Outcome {
    /// Header blocks (response headers, then trailers; one block for a trailers-only answer),
    /// decoded, and the DATA payload as received.
    Answer {
        blocks: Vec<Vec<(String, Vec<u8>)>>,
        data: Vec<u8>,
    },
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// The connection ended.
    Closed,
}

impl H2Outcome {
    /// The value of `name` in the last header block that has it.
    pub fn field(&self, name: &str) -> Option<String> {
        let H2Outcome::Answer { blocks, .. } = self else {
            return None;
        };
        blocks.iter().rev().find_map(|b| {
            b.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
    }
}

/// One HTTP/2 connection; calls run one at a time.
pub struct RawH2 {
    io: UnixStream,
    encoder: IndexingEncoder,
    decoder: httlib_hpack::Decoder<'static>,
    next_stream: u32,
    buf: BytesMut,
}

impl RawH2 {
    /// Connects and sends the preface, SETTINGS (no push, the largest windows) and a connection
    /// WINDOW_UPDATE, so that no answer waits for flow control.
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let mut io = UnixStream::connect(path).await?;
        let mut out = PREFACE.to_vec();
        let mut settings = Vec::new();
        settings.extend_from_slice(&[0, 2, 0, 0, 0, 0]); // ENABLE_PUSH 0
        settings.extend_from_slice(&[0, 4, 0x7f, 0xff, 0xff, 0xff]); // INITIAL_WINDOW_SIZE max
        frame(&mut out, SETTINGS, 0, 0, &settings);
        frame(&mut out, WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes());
        io.write_all(&out).await?;
        Ok(Self {
            io,
            encoder: IndexingEncoder::default(),
            decoder: httlib_hpack::Decoder::default(),
            next_stream: 1,
            buf: BytesMut::new(),
        })
    }

    /// Sends one request and reads until its stream ends, is reset, or the connection ends.
    pub async fn call(&mut self, req: &RawH2Request) -> io::Result<H2Outcome> {
        let id = self.next_stream;
        self.next_stream += 2;
        let block = match &req.raw_block {
            Some(raw) => raw.clone(),
            None => self.encoder.encode(&req.fields),
        };
        let mut out = Vec::new();
        let mut chunks = block.chunks(req.fragment_size.max(1)).peekable();
        let mut kind = HEADERS;
        let mut flags = if req.message.is_none() { END_STREAM } else { 0 };
        if block.is_empty() {
            frame(&mut out, HEADERS, flags | END_HEADERS, id, &[]);
        }
        while let Some(chunk) = chunks.next() {
            if chunks.peek().is_none() {
                flags |= END_HEADERS;
            }
            frame(&mut out, kind, flags, id, chunk);
            kind = CONTINUATION;
            flags = 0;
        }
        if let Some(message) = &req.message {
            let mut payload = vec![0];
            payload.extend_from_slice(&(message.len() as u32).to_be_bytes());
            payload.extend_from_slice(message);
            frame(&mut out, DATA, END_STREAM, id, &payload);
        }
        self.write(&out).await?;

        let mut blocks = Vec::new();
        let mut data = Vec::new();
        let mut block = Vec::new();
        let mut ending = false;
        loop {
            let Some((kind, flags, stream, payload)) = self.read_frame().await? else {
                return Ok(H2Outcome::Closed);
            };
            match kind {
                SETTINGS if flags & ACK == 0 => self.send(SETTINGS, ACK, 0, &[]).await?,
                PING if flags & ACK == 0 => self.send(PING, ACK, 0, &payload).await?,
                GOAWAY => {
                    let code = payload
                        .get(4..8)
                        .map_or(0, |c| u32::from_be_bytes(c.try_into().expect("four bytes")));
                    return Ok(H2Outcome::GoAway(code));
                }
                RST_STREAM if stream == id => {
                    let code = u32::from_be_bytes(payload[..4].try_into().expect("four bytes"));
                    return Ok(H2Outcome::Reset(code));
                }
                HEADERS | CONTINUATION => {
                    // END_STREAM on HEADERS ends the stream once the block is complete.
                    ending |= kind == HEADERS && stream == id && flags & END_STREAM != 0;
                    let mut fragment = &payload[..];
                    if kind == HEADERS {
                        if flags & PADDED != 0 {
                            let pad = fragment[0] as usize;
                            fragment = &fragment[1..fragment.len() - pad];
                        }
                        if flags & PRIORITY != 0 {
                            fragment = &fragment[5..];
                        }
                    }
                    block.extend_from_slice(fragment);
                    if flags & END_HEADERS != 0 {
                        let mut fields = Vec::new();
                        self.decoder
                            .decode(&mut block, &mut fields)
                            .map_err(|e| io::Error::other(format!("HPACK: {e:?}")))?;
                        block.clear();
                        if stream == id {
                            blocks.push(
                                fields
                                    .into_iter()
                                    .map(|(n, v, _)| (String::from_utf8_lossy(&n).into_owned(), v))
                                    .collect(),
                            );
                            if ending {
                                return Ok(H2Outcome::Answer { blocks, data });
                            }
                        }
                    }
                }
                DATA if stream == id => {
                    data.extend_from_slice(&payload);
                    if flags & END_STREAM != 0 {
                        return Ok(H2Outcome::Answer { blocks, data });
                    }
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::new();
        frame(&mut out, kind, flags, stream, payload);
        self.write(&out).await
    }

    /// Writes, ignoring a server that has closed: it may refuse a request before reading all of
    /// it, and its answer (GOAWAY) is still there to read.
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.io.write_all(bytes).await {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// The next frame: kind, flags, stream and payload; `None` at the end of the connection.
    async fn read_frame(&mut self) -> io::Result<Option<(u8, u8, u32, Vec<u8>)>> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let (kind, flags) = (self.buf[3], self.buf[4]);
                    let stream =
                        u32::from_be_bytes(self.buf[5..9].try_into().expect("four")) & 0x7fff_ffff;
                    self.buf.advance(9);
                    let payload = self.buf.split_to(len).to_vec();
                    return Ok(Some((kind, flags, stream, payload)));
                }
            }
            self.buf.reserve(64 << 10);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                // Everything the server sent was read; it closed with our request unread.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// An HPACK encoder that indexes every field, as grpc C-core does: a field is sent the first time
/// as a literal with incremental indexing, and later as an index into the dynamic table, so that
/// a later block can name its `:authority` by nothing but an index.
#[derive(Default)]
pub struct IndexingEncoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
}

impl IndexingEncoder {
    /// The default SETTINGS_HEADER_TABLE_SIZE.
    const MAX_SIZE: usize = 4096;

    pub fn encode(&mut self, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            if let Some(at) = self
                .table
                .iter()
                .position(|e| &e.0 == name && &e.1 == value)
            {
                // Dynamic entries follow the 61 of the static table.
                encode_integer(&mut out, 62 + at, 7, 0x80);
                continue;
            }
            out.push(0x40);
            for s in [name, value] {
                encode_integer(&mut out, s.len(), 7, 0);
                out.extend_from_slice(s);
            }
            let size = name.len() + value.len() + 32;
            while !self.table.is_empty() && self.size + size > Self::MAX_SIZE {
                let (n, v) = self.table.pop_back().expect("not empty");
                self.size -= n.len() + v.len() + 32;
            }
            // An entry larger than the table empties it and is not kept (RFC 7541 §4.4).
            if size <= Self::MAX_SIZE {
                self.table.push_front((name.clone(), value.clone()));
                self.size += size;
            }
        }
        out
    }
}

/// An HPACK prefix integer (RFC 7541 §5.1).
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

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}
