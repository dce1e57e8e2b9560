//! The whole server with its pre-pass, fed by a hand-made HTTP/2 client: what gRPC stacks send
//! reaches the backend, and what h2 alone refuses is shown to be refused without the pass.

use std::time::Duration;

use prost::Message;

use crate::server::tests::Fixture;
use crate::testing::{FakeCri, H2Outcome, RawH2, RawH2Request};

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const PROTOCOL_ERROR: u32 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The authorities gRPC stacks send over Unix sockets, and what the backend gets for each.
const AUTHORITIES: [(Option<&[u8]>, &str); 8] = [
    (Some(b"localhost"), "localhost"),                // grpc-go, tonic
    (Some(b"tmp%2Fpg%2Fpodgraft.sock"), "localhost"), // grpc C-core, grpc-swift
    (Some(b"/tmp/pg/podgraft.sock"), "localhost"),    // grpc-java
    (Some(b"unix:/tmp/pg/podgraft.sock"), "localhost"),
    (Some(b""), "localhost"),
    (Some(b"a b{c}"), "localhost"),
    (Some(b"node-1:10250"), "node-1:10250"), // valid ones reach the backend as sent
    (None, "localhost"),                     // h2's client needs one: the relay says localhost
];

async fn call(path: &std::path::Path, req: &RawH2Request) -> H2Outcome {
    let mut client = RawH2::connect(path).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.call(req))
        .await
        .expect("answer in time")
        .unwrap()
}

fn version_answer() -> Vec<u8> {
    let version = k8s_cri::v1::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "fake-cri".into(),
        runtime_version: "1.0".into(),
        runtime_api_version: "v1".into(),
    }
    .encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(version.len() as u32).to_be_bytes());
    framed.extend_from_slice(&version);
    framed
}

#[tokio::test]
async fn every_authority_a_grpc_stack_sends_is_relayed() {
    let fx = Fixture::start(|_| {});
    let fake = FakeCri::start(&fx.backend).unwrap();
    // One connection for all, so that later blocks refer to the client's table.
    let mut client = RawH2::connect(&fx.socket).await.unwrap();
    for round in 0..2 {
        for (authority, _) in AUTHORITIES {
            let out = client
                .call(&RawH2Request::grpc(VERSION, authority, b""))
                .await
                .unwrap();
            assert_eq!(
                out.field("grpc-status").as_deref(),
                Some("0"),
                "{authority:?}: {out:?}"
            );
            let H2Outcome::Answer { data, .. } = &out else {
                unreachable!()
            };
            assert_eq!(data, &version_answer(), "round {round}, {authority:?}");
        }
    }
    let seen: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|r| r.authority.unwrap_or_default())
        .collect();
    let want: Vec<&str> = AUTHORITIES.iter().map(|(_, want)| *want).collect();
    assert_eq!(seen, [want.clone(), want].concat());
}

#[tokio::test]
async fn header_blocks_in_many_continuation_frames_are_relayed() {
    let fx = Fixture::start(|_| {});
    let fake = FakeCri::start(&fx.backend).unwrap();
    // 900 KiB of metadata in 16 KiB frames (57 of them): under the 1 MiB header limit.
    let mut req = RawH2Request::grpc(VERSION, Some(b"tmp%2Fpg.sock"), b"");
    for i in 0..9 {
        req = req.field(&format!("x-meta-{i}"), vec![b'a' + i as u8; 100 << 10]);
    }
    let out = call(&fx.socket, &req).await;
    assert_eq!(out.field("grpc-status").as_deref(), Some("0"), "{out:?}");
    let seen = &fake.requests()[0];
    for i in 0..9 {
        let value = seen.metadata[format!("x-meta-{i}")].as_bytes();
        assert_eq!(value, vec![b'a' + i as u8; 100 << 10].as_slice());
    }

    // The same block with a valid authority passes as sent but joined.
    let mut req = req.clone();
    req.fields[3].1 = b"localhost".to_vec();
    let out = call(&fx.socket, &req).await;
    assert_eq!(out.field("grpc-status").as_deref(), Some("0"), "{out:?}");
}

#[tokio::test]
async fn h2_alone_refuses_what_the_pass_lets_through() {
    // The fake backend is hyper on h2 without the pass: the reason the pass exists.
    let dir = tempfile::tempdir().unwrap();
    let _fake = FakeCri::start(&dir.path().join("fake.sock")).unwrap();
    let path = dir.path().join("fake.sock");
    let req = RawH2Request::grpc(VERSION, Some(b"tmp%2Fpg%2Fpodgraft.sock"), b"");
    assert_eq!(call(&path, &req).await, H2Outcome::Reset(PROTOCOL_ERROR));
    let mut req = RawH2Request::grpc(VERSION, Some(b"localhost"), b"");
    req = req.field("x-meta", vec![b'a'; 200 << 10]);
    req.fragment_size = 16 << 10;
    assert_eq!(
        call(&path, &req).await,
        H2Outcome::GoAway(ENHANCE_YOUR_CALM)
    );
}

#[tokio::test]
async fn requests_malformed_for_http2_get_h2s_answer() {
    let fx = Fixture::start(|_| {});
    let _fake = FakeCri::start(&fx.backend).unwrap();
    let base = || RawH2Request::grpc(VERSION, Some(b"/run/x.sock"), b"");
    let mut no_path = base();
    no_path.fields.remove(2);
    let mut pseudo_after_field = base();
    let authority = pseudo_after_field.fields.remove(3);
    pseudo_after_field.fields.push(authority);
    let cases = [
        ("te: gzip", base().field("te", "gzip")),
        ("connection header", base().field("connection", "close")),
        ("no :path", no_path),
        ("pseudo-header after a field", pseudo_after_field),
        ("control character in :authority", {
            let mut r = base();
            r.fields[3].1 = b"local\x01host".to_vec();
            r
        }),
    ];
    for (what, req) in cases {
        assert_eq!(
            call(&fx.socket, &req).await,
            H2Outcome::Reset(PROTOCOL_ERROR),
            "{what}"
        );
    }
    // A header list over the limit is refused whether its block was re-encoded or not.
    let big = |authority: &[u8]| {
        let mut r = RawH2Request::grpc(VERSION, Some(authority), b"");
        for i in 0..12 {
            r = r.field(&format!("x-meta-{i}"), vec![b'a'; 100 << 10]);
        }
        r
    };
    let as_sent = call(&fx.socket, &big(b"localhost")).await;
    // (h2 answers 431 and resets the stream: no gRPC status.)
    assert_eq!(as_sent.field("grpc-status"), None, "{as_sent:?}");
    assert_eq!(
        as_sent.field(":status").as_deref(),
        Some("431"),
        "{as_sent:?}"
    );
    assert_eq!(call(&fx.socket, &big(b"/run/x.sock")).await, as_sent);
}
