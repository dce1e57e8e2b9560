//! h2's own server behind the pass, fed blocks of every HPACK representation an independent
//! encoder makes, cut into frames of random sizes: h2 must read each request as the client meant
//! it, with only `:authority` normalized.

use bytes::Bytes;
use http::Response;
use tokio::io::AsyncWriteExt;

use super::{CONTINUATION, END_HEADERS, END_STREAM, HEADERS, PREFACE, PrePass};

/// What h2 read of one request: authority, path and the `x-*` fields.
type Seen = (Option<String>, String, Vec<(String, String)>);

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A small deterministic generator: the same "random" framing on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

async fn serve(io: tokio::io::DuplexStream, requests: usize) -> Vec<Seen> {
    let pass = PrePass::new(io, 1 << 20, 1 << 20);
    let mut conn = h2::server::Builder::new()
        .max_frame_size(1 << 20)
        .max_header_list_size(1 << 20)
        .handshake::<_, Bytes>(pass)
        .await
        .unwrap();
    let mut seen = Vec::new();
    // h2 stops handing out requests once the client has closed its side, so count instead.
    while seen.len() < requests {
        let next = conn.accept().await.expect("connection open");
        let (req, mut respond) = next.expect("h2 takes every request");
        let mut fields: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        fields.sort();
        seen.push((
            req.uri().authority().map(|a| a.to_string()),
            req.uri().path().to_string(),
            fields,
        ));
        respond.send_response(Response::new(()), true).unwrap();
    }
    seen
}

#[tokio::test]
async fn h2_reads_every_representation_as_the_client_meant_it() {
    use httlib_hpack::Encoder as E;
    let flag_sets = [
        0,
        E::HUFFMAN_VALUE,
        E::HUFFMAN_NAME | E::HUFFMAN_VALUE,
        E::WITH_INDEXING,
        E::WITH_INDEXING | E::HUFFMAN_NAME | E::HUFFMAN_VALUE,
        E::NEVER_INDEXED | E::HUFFMAN_VALUE,
        E::BEST_FORMAT,
        E::BEST_FORMAT | E::WITH_INDEXING | E::HUFFMAN_VALUE,
        E::BEST_FORMAT | E::NEVER_INDEXED,
    ];
    let authorities: [&[u8]; 5] = [
        b"localhost",
        b"node-1:10250",
        b"tmp%2Fpg%2Fpodgraft.sock",
        b"/tmp/pg/podgraft.sock",
        b"",
    ];
    let mut rng = Lcg(11);
    let mut encoder = E::default();
    let mut input = PREFACE.to_vec();
    frame(&mut input, 0x4, 0, 0, &[]);
    let mut want = Vec::new();
    for i in 0..60u32 {
        let authority = authorities[rng.next(authorities.len())];
        let path = format!("/runtime.v1.RuntimeService/M{}", rng.next(4));
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), path.clone().into_bytes()),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
            (b"te".to_vec(), b"trailers".to_vec()),
        ];
        let mut extra = Vec::new();
        for k in 0..rng.next(4) {
            let value = "v".repeat(rng.next(3000)) + &k.to_string();
            extra.push((format!("x-meta-{}", rng.next(6)), value));
        }
        extra.sort();
        extra.dedup_by(|a, b| a.0 == b.0);
        fields.extend(
            extra
                .iter()
                .map(|(n, v)| (n.clone().into(), v.clone().into())),
        );
        let mut block = Vec::new();
        for (n, v) in &fields {
            let flags = flag_sets[rng.next(flag_sets.len())];
            encoder
                .encode((n.clone(), v.clone(), flags), &mut block)
                .unwrap();
        }
        // One frame, a few, or more CONTINUATIONs than h2 takes.
        let fragment = [1 << 20, 200, 40, 7][rng.next(4)];
        let chunks: Vec<&[u8]> = block.chunks(fragment).collect();
        let stream = 1 + 2 * i;
        for (c, chunk) in chunks.iter().enumerate() {
            let kind = if c == 0 { HEADERS } else { CONTINUATION };
            let mut flags = if c == 0 { END_STREAM } else { 0 };
            if c + 1 == chunks.len() {
                flags |= END_HEADERS;
            }
            frame(&mut input, kind, flags, stream, chunk);
        }
        let valid = http::uri::Authority::try_from(authority).is_ok();
        let authority = String::from_utf8(authority.to_vec()).unwrap();
        want.push((
            Some(if valid { authority } else { "localhost".into() }),
            path,
            extra,
        ));
    }

    let (client, server_io) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(serve(server_io, want.len()));
    // Written in pieces of random sizes, as a socket may deliver them; h2's answers are drained.
    let (mut rd, mut wr) = tokio::io::split(client);
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut rd, &mut sink).await;
    });
    let mut at = 0;
    while at < input.len() {
        let n = (1 + rng.next(5000)).min(input.len() - at);
        wr.write_all(&input[at..at + n]).await.unwrap();
        at += n;
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("h2 read every request in time")
        .unwrap();
    for (i, (seen, want)) in seen.iter().zip(&want).enumerate() {
        assert_eq!(seen, want, "request {i}");
    }
    assert_eq!(seen.len(), want.len());
}
