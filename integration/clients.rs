//! Real gRPC client stacks through podgraft and straight to the test containerd, answers compared:
//! whatever containerd serves, podgraft must serve too (issue 11).
//!
//! - grpcio from PyPI (grpc C-core, as Python, Ruby, PHP and C# clients use it): default channel
//!   options on a `unix:` target, so `:authority` is the percent-encoded socket path.
//! - tonic (`:authority: localhost`).
//! - grpc-go is `ctr` in `grpc_go.rs`.
//! - A raw HTTP/2 client replaying the header shapes of stacks that cannot be installed from a
//!   package registry here (grpc-java, grpc-swift), and what no library sends on its own: absent
//!   and empty authorities, and header blocks in many CONTINUATION frames.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1 as cri;
use podgraft::testing::{H2Outcome, RawH2, RawH2Request};

use crate::harness::{MANIFEST_DIR, Node};

/// The venv hack/python-deps.sh makes (hack/test.sh runs it).
fn python() -> Option<PathBuf> {
    let python = Path::new(MANIFEST_DIR).join("target/pyenv/bin/python");
    if python.is_file() {
        return Some(python);
    }
    let why = "grpcio venv missing (run hack/python-deps.sh)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("\n*** SKIPPED: grpcio client test: {why} ***\n");
    None
}

fn grpcio_calls(python: &Path, socket: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(python)
        .arg(Path::new(MANIFEST_DIR).join("integration/grpcio_cri.py"))
        .arg(socket)
        .output()
        .expect("run grpcio_cri.py");
    assert!(
        out.status.success(),
        "grpcio_cri.py {} failed: {}",
        socket.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn grpcio_c_core_client_gets_containerds_answers() {
    let Some(python) = python() else { return };
    let Some(node) = Node::start() else { return };
    let direct = grpcio_calls(&python, &node.containerd);
    let via = grpcio_calls(&python, &node.podgraft);
    assert_eq!(via.len(), 10);
    for (via, direct) in via.iter().zip(&direct) {
        assert_eq!(via, direct, "{}", via["call"]);
    }
    let code = |name: &str| {
        via.iter()
            .find(|c| c["call"] == name)
            .map(|c| c["code"].as_str().unwrap().to_string())
    };
    assert_eq!(code("Version").as_deref(), Some("OK"));
    assert_eq!(code("Version with large metadata").as_deref(), Some("OK"));
    assert_eq!(code("ListImages").as_deref(), Some("OK"));
    assert_eq!(
        code("PodSandboxStatus of an unknown pod").as_deref(),
        Some("NOT_FOUND")
    );
    // C-core's `:authority` was one h2 refuses, and podgraft said what it did with it.
    let log = node.podgraft_log();
    assert!(
        log.contains("not a URI authority") && log.contains("podgraft.sock"),
        "{log}"
    );
}

#[tokio::test]
async fn tonic_client_gets_containerds_answers() {
    let Some(node) = Node::start() else { return };
    let (mut pg, mut ctd) = (node.runtime(true).await, node.runtime(false).await);
    let req = cri::VersionRequest {
        version: "v1".into(),
    };
    let via = pg.version(req.clone()).await.unwrap().into_inner();
    assert_eq!(via, ctd.version(req).await.unwrap().into_inner());
    let req = cri::PodSandboxStatusRequest {
        pod_sandbox_id: "no-such-sandbox".into(),
        verbose: false,
    };
    let via = pg.pod_sandbox_status(req.clone()).await.unwrap_err();
    let direct = ctd.pod_sandbox_status(req).await.unwrap_err();
    assert_eq!(
        (via.code(), via.message()),
        (direct.code(), direct.message())
    );
    let (mut pg, mut ctd) = (node.images(true).await, node.images(false).await);
    let req = cri::ListImagesRequest { filter: None };
    // containerd lists images in no fixed order.
    let sorted = |mut r: cri::ListImagesResponse| {
        r.images.sort_by(|a, b| a.id.cmp(&b.id));
        r
    };
    let via = sorted(pg.list_images(req.clone()).await.unwrap().into_inner());
    assert_eq!(
        via,
        sorted(ctd.list_images(req).await.unwrap().into_inner())
    );
    assert!(!via.images.is_empty());
}

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const VERSION_V1: &[u8] = b"\x0a\x02v1";

/// The header fields of one gRPC stack's unary call, in its order.
fn shape(fields: &[(&str, &[u8])], fragment_size: usize) -> RawH2Request {
    RawH2Request {
        fields: fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect(),
        message: Some(VERSION_V1.to_vec()),
        fragment_size,
        raw_block: None,
    }
}

/// Header shapes of real stacks over a Unix socket (`/tmp/pg/podgraft.sock` as the target).
fn shapes() -> Vec<(&'static str, RawH2Request)> {
    let path = VERSION.as_bytes();
    let big = "b".repeat(100 << 10);
    let mut split = shape(
        &[
            (":method", b"POST"),
            (":scheme", b"http"),
            (":path", path),
            (":authority", b"tmp%2Fpg%2Fpodgraft.sock"),
            ("content-type", b"application/grpc"),
            ("te", b"trailers"),
        ],
        16 << 10,
    );
    for i in 0..6 {
        split = split.field(&format!("x-large-{i}"), &big);
    }
    vec![
        (
            "grpc C-core (grpcio)",
            shape(
                &[
                    (":scheme", b"http"),
                    (":method", b"POST"),
                    (":path", path),
                    (":authority", b"tmp%2Fpg%2Fpodgraft.sock"),
                    ("te", b"trailers"),
                    ("content-type", b"application/grpc"),
                    (
                        "user-agent",
                        b"grpc-python/1.85.1 grpc-c/51.0.0 (linux; chttp2)",
                    ),
                    ("grpc-accept-encoding", b"identity, deflate, gzip"),
                    ("grpc-timeout", b"29999960u"),
                ],
                16 << 10,
            ),
        ),
        (
            "grpc-java (netty)",
            shape(
                &[
                    (":authority", b"/tmp/pg/podgraft.sock"),
                    (":path", path),
                    (":method", b"POST"),
                    (":scheme", b"http"),
                    ("content-type", b"application/grpc"),
                    ("te", b"trailers"),
                    ("user-agent", b"grpc-java-netty/1.75.0"),
                    ("grpc-accept-encoding", b"gzip"),
                    ("grpc-timeout", b"29999871u"),
                ],
                16 << 10,
            ),
        ),
        (
            "grpc-swift (nio)",
            shape(
                &[
                    (":method", b"POST"),
                    (":path", path),
                    (":scheme", b"http"),
                    (":authority", b"%2Ftmp%2Fpg%2Fpodgraft.sock"),
                    ("content-type", b"application/grpc"),
                    ("te", b"trailers"),
                    ("user-agent", b"grpc-swift-nio/1.26.0"),
                ],
                16 << 10,
            ),
        ),
        (
            "no :authority",
            shape(
                &[
                    (":method", b"POST"),
                    (":scheme", b"http"),
                    (":path", path),
                    ("content-type", b"application/grpc"),
                ],
                16 << 10,
            ),
        ),
        (
            "empty :authority, no te",
            shape(
                &[
                    (":method", b"POST"),
                    (":scheme", b"http"),
                    (":path", path),
                    (":authority", b""),
                    ("content-type", b"application/grpc"),
                ],
                16 << 10,
            ),
        ),
        (
            "characters a URI authority forbids",
            shape(
                &[
                    (":method", b"POST"),
                    (":scheme", b"http"),
                    (":path", path),
                    (":authority", "sock<\u{e9}t> \"x\"".as_bytes()),
                    ("content-type", b"application/grpc"),
                    ("te", b"trailers"),
                ],
                16 << 10,
            ),
        ),
        (
            "te in another letter case, :scheme https",
            shape(
                &[
                    (":method", b"POST"),
                    (":scheme", b"https"),
                    (":path", path),
                    (":authority", b"localhost"),
                    ("content-type", b"application/grpc+proto"),
                    ("te", b"Trailers"),
                ],
                16 << 10,
            ),
        ),
        ("600 KiB of metadata in 16 KiB frames", split),
    ]
}

/// What is compared: gRPC status, message and the response bytes.
fn summary(out: &H2Outcome) -> (Option<String>, Option<String>, Vec<u8>) {
    let data = match out {
        H2Outcome::Answer { data, .. } => data.clone(),
        other => panic!("no answer: {other:?}"),
    };
    (out.field("grpc-status"), out.field("grpc-message"), data)
}

#[tokio::test]
async fn replayed_header_shapes_get_containerds_answers() {
    let Some(node) = Node::start() else { return };
    // Each shape twice on one connection (the second call refers to the client's HPACK table),
    // and each on a fresh connection too.
    let mut via_conn = RawH2::connect(&node.podgraft).await.unwrap();
    let mut direct_conn = RawH2::connect(&node.containerd).await.unwrap();
    for (what, req) in shapes() {
        for _ in 0..2 {
            let via = call(&mut via_conn, &req).await;
            let direct = call(&mut direct_conn, &req).await;
            assert_eq!(summary(&via), summary(&direct), "{what}");
            assert_eq!(via.field("grpc-status").as_deref(), Some("0"), "{what}");
        }
        let via = call(&mut RawH2::connect(&node.podgraft).await.unwrap(), &req).await;
        let direct = call(&mut RawH2::connect(&node.containerd).await.unwrap(), &req).await;
        assert_eq!(summary(&via), summary(&direct), "{what}, fresh connection");
    }
}

async fn call(conn: &mut RawH2, req: &RawH2Request) -> H2Outcome {
    tokio::time::timeout(Duration::from_secs(20), conn.call(req))
        .await
        .expect("answer in time")
        .unwrap()
}
