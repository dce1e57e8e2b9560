//! The pre-pass on byte streams: what h2 would read for what a client sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;
use crate::testing::IndexingEncoder;

const MAX_FRAME: u32 = 1 << 20;
const MAX_LIST: u32 = 1 << 20;

/// Hands out `data` at most `chunk` bytes per read, as a socket might.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(out.remaining())
            .min(self.data.len() - self.pos);
        let pos = self.pos;
        out.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// What h2 reads through the pass when the client sends `input` in reads of `chunk` bytes, read
/// by h2 in reads of `read` bytes.
async fn through(input: &[u8], chunk: usize, read: usize) -> Vec<u8> {
    let io = Chunked {
        data: input.to_vec(),
        pos: 0,
        chunk,
    };
    let mut pass = PrePass::new(io, MAX_FRAME, MAX_LIST);
    let mut out = Vec::new();
    let mut buf = vec![0; read];
    loop {
        let n = pass.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// `through` for several read patterns, which must all give the same bytes.
async fn through_all(input: &[u8]) -> Vec<u8> {
    let whole = through(input, usize::MAX, 1 << 20).await;
    for (chunk, read) in [(1, 7), (5, 64 << 10), (100, 3), (4096, 16 << 10)] {
        assert_eq!(
            through(input, chunk, read).await,
            whole,
            "chunk {chunk}, read {read}"
        );
    }
    whole
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn fields(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
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

/// A client: the preface, SETTINGS, and per call a header block in frames of `fragment` bytes and
/// a DATA frame.
struct Client {
    out: Vec<u8>,
    enc: IndexingEncoder,
    stream: u32,
}

impl Client {
    fn new() -> Self {
        let mut out = PREFACE.to_vec();
        frame(&mut out, 0x4, 0, 0, &[0, 2, 0, 0, 0, 0]);
        Self {
            out,
            enc: IndexingEncoder::default(),
            stream: 1,
        }
    }

    fn call(&mut self, fields: &[(Vec<u8>, Vec<u8>)], fragment: usize) -> &mut Self {
        let block = self.enc.encode(fields);
        let chunks: Vec<&[u8]> = block.chunks(fragment).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let flags = if i + 1 == chunks.len() {
                END_HEADERS
            } else {
                0
            };
            frame(&mut self.out, kind, flags, self.stream, chunk);
        }
        frame(
            &mut self.out,
            0x0,
            END_STREAM,
            self.stream,
            &[0, 0, 0, 0, 0],
        );
        frame(&mut self.out, 0x8, 0, 0, &[0, 0, 0, 5]);
        self.stream += 2;
        self
    }
}

/// The frames of a byte stream after the preface: kind, flags, stream, payload.
fn parse(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    bytes = bytes.strip_prefix(PREFACE).expect("preface");
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
        frames.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    frames
}

/// Decodes every header block as h2 would (one decoder for the connection); the other frames
/// as they are.
fn blocks(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut dec = httlib_hpack::Decoder::default();
    let mut out = Vec::new();
    let mut block = Vec::new();
    for (kind, flags, _, payload) in parse(bytes) {
        if kind == HEADERS || kind == CONTINUATION {
            let (range, _) = if kind == HEADERS {
                fragment_of(&payload, flags).unwrap()
            } else {
                (0..payload.len(), None)
            };
            block.extend_from_slice(&payload[range]);
            if flags & END_HEADERS != 0 {
                let mut fields = Vec::new();
                dec.decode(&mut block.clone(), &mut fields).unwrap();
                out.push(fields.into_iter().map(|(n, v, _)| (n, v)).collect());
                block.clear();
            }
        }
    }
    out
}

#[tokio::test]
async fn valid_connections_pass_byte_for_byte() {
    let mut client = Client::new();
    client
        .call(&fields(b"localhost"), 1 << 20)
        .call(&fields(b"localhost"), 1 << 20)
        // Split into as many CONTINUATIONs as h2 takes: still as sent.
        .call(&fields(b"localhost:1234"), 20);
    let input = client.out.clone();
    assert_eq!(through_all(&input).await, input);
}

#[tokio::test]
async fn authorities_h2_refuses_become_localhost_and_the_rest_stays() {
    let mut client = Client::new();
    client
        .call(&fields(b"localhost"), 1 << 20)
        .call(&fields(b"tmp%2Fpg%2Fpodgraft.sock"), 1 << 20)
        .call(&fields(b"/tmp/pg/podgraft.sock"), 1 << 20)
        .call(&fields(b"localhost"), 1 << 20)
        .call(&fields(b""), 1 << 20);
    let input = client.out.clone();
    let output = through_all(&input).await;
    assert_eq!(blocks(&output), vec![fields(b"localhost"); 5]);
    // Every other frame is unchanged and in its place.
    let others = |b: &[u8]| {
        parse(b)
            .into_iter()
            .filter(|f| f.0 != HEADERS)
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&output), others(&input));
    // The first block went as sent; the later ones had to be re-encoded.
    let first_len = |b: &[u8]| parse(b)[1].3.clone();
    assert_eq!(first_len(&output), first_len(&input));
}

#[tokio::test]
async fn blocks_in_many_continuations_are_joined() {
    let mut big = fields(b"localhost");
    for i in 0..64 {
        big.push((
            format!("x-meta-{i}").into_bytes(),
            vec![b'a' + (i % 26); 16000],
        ));
    }
    let mut client = Client::new();
    client.call(&big, 16 << 10);
    let input = client.out.clone();
    let frames_in = parse(&input).iter().filter(|f| f.0 == CONTINUATION).count();
    assert!(frames_in > 60, "{frames_in}");
    let output = through_all(&input).await;
    let frames = parse(&output);
    assert_eq!(frames.iter().filter(|f| f.0 == CONTINUATION).count(), 0);
    assert_eq!(blocks(&output), vec![big.clone()]);

    // Over h2's largest frame, the joined block is cut at that size.
    let block = Block {
        stream: 3,
        end_stream: true,
        priority: Some([0, 0, 0, 1, 16]),
        len: 0,
        continuations: 0,
        fragment: Vec::new(),
    };
    let joined = super::frames(&block, &vec![7; 40 << 10], 16 << 10);
    let mut with_preface = PREFACE.to_vec();
    with_preface.extend_from_slice(&joined);
    let parsed = parse(&with_preface);
    let shape: Vec<(u8, u8, usize)> = parsed.iter().map(|f| (f.0, f.1, f.3.len())).collect();
    assert_eq!(
        shape,
        [
            (HEADERS, END_STREAM | PRIORITY, 16 << 10),
            (CONTINUATION, 0, 16 << 10),
            (CONTINUATION, END_HEADERS, (40 << 10) - (32 << 10) + 5),
        ]
    );
}

#[tokio::test]
async fn padding_is_dropped_and_priority_kept_when_rewritten() {
    let block = IndexingEncoder::default().encode(&fields(b"/run/x.sock"));
    let mut payload = vec![3]; // pad length
    payload.extend_from_slice(&[0x80, 0, 0, 1, 200]); // exclusive, depends on 1, weight
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = PREFACE.to_vec();
    frame(
        &mut input,
        HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIORITY,
        3,
        &payload,
    );
    let output = through_all(&input).await;
    let frames = parse(&output);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, END_HEADERS | END_STREAM | PRIORITY);
    assert_eq!(frames[0].3[..5], [0x80, 0, 0, 1, 200]);
    assert_eq!(blocks(&output), vec![fields(b"localhost")]);
}

#[tokio::test]
async fn what_is_malformed_for_http2_reaches_h2_as_sent() {
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // Not HTTP/2 at all.
    cases.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    // A CONTINUATION without HEADERS, then a valid call with a bad authority.
    let mut c = Client::new();
    frame(&mut c.out, CONTINUATION, END_HEADERS, 1, &[0x82]);
    c.call(&fields(b"/run/x.sock"), 100);
    cases.push(c.out);
    // A frame inside a header block.
    let mut c = Client::new();
    frame(&mut c.out, HEADERS, 0, 1, &[0x83]);
    frame(&mut c.out, 0x8, 0, 0, &[0, 0, 0, 1]);
    c.call(&fields(b"/run/x.sock"), 100);
    cases.push(c.out);
    // A frame over the advertised size.
    let mut c = Client::new();
    frame(&mut c.out, 0x0, 0, 1, &vec![0; MAX_FRAME as usize + 1]);
    cases.push(c.out);
    // Padding longer than the frame.
    let mut c = Client::new();
    frame(&mut c.out, HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]);
    c.call(&fields(b"/run/x.sock"), 100);
    cases.push(c.out);
    // A block that does not decode (index 70 is in no table yet).
    let mut c = Client::new();
    frame(&mut c.out, HEADERS, END_HEADERS, 1, &[0x80 | 70]);
    c.call(&fields(b"/run/x.sock"), 100);
    cases.push(c.out);
    // Control characters in :authority.
    let mut c = Client::new();
    c.call(&fields(b"local\rhost"), 100);
    cases.push(c.out);
    // A truncated frame at the end.
    let mut c = Client::new();
    c.call(&fields(b"/run/x.sock"), 1 << 20);
    c.out
        .extend_from_slice(&[0, 0, 9, HEADERS, END_HEADERS, 0, 0, 0, 5, 0x82]);
    cases.push(c.out);
    for (i, input) in cases.iter().enumerate() {
        let output = through_all(input).await;
        if i == 7 {
            // The complete call is rewritten; the truncated frame follows as it came.
            assert!(output.ends_with(&input[input.len() - 10..]));
            continue;
        }
        assert_eq!(&output, input, "case {i}");
    }
}

#[tokio::test]
async fn an_undecodable_block_after_a_rewrite_ends_the_connection() {
    let mut c = Client::new();
    c.call(&fields(b"/run/x.sock"), 1 << 20);
    let rewritten = through_all(&c.out).await;
    frame(&mut c.out, HEADERS, END_HEADERS, 3, &[0x80 | 70]);
    c.call(&fields(b"localhost"), 1 << 20);
    let output = through_all(&c.out).await;
    // The good call, then a block h2 cannot decode (it answers with GOAWAY), then nothing.
    let mut want = rewritten;
    frame(&mut want, HEADERS, END_HEADERS, 3, &[0x80]);
    assert_eq!(output, want);
}

#[tokio::test]
async fn arbitrary_frames_never_panic_and_keep_their_bytes_until_judged() {
    let mut seed = 3u64;
    let mut next = |below: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % below
    };
    for _ in 0..300 {
        let mut input = PREFACE.to_vec();
        for _ in 0..next(12) {
            let kind = [HEADERS, CONTINUATION, 0x0, 0x8, 0x2][next(5)];
            let flags = [0, END_HEADERS, PADDED, PRIORITY, 0x2d][next(5)];
            let stream = [0, 1, 3][next(3)];
            let payload: Vec<u8> = (0..next(40)).map(|_| next(256) as u8).collect();
            frame(&mut input, kind, flags, stream, &payload);
        }
        if next(4) == 0 {
            input.truncate(input.len() - next(input.len() - PREFACE.len() + 1));
        }
        let chunk = 1 + next(64);
        // Whatever h2 gets, the pass returns at most what came in plus small re-encodings.
        let out = through(&input, chunk, 1 + next(100)).await;
        assert!(out.len() <= input.len() * 4 + 64);
    }
}
