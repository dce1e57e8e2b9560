//! A Go gRPC client through podgraft. The kubelet's CRI client is grpc-go; so is `ctr`, containerd's
//! own CLI, which calls containerd's native API (services podgraft has no types for) on the same
//! socket. Unary, client-streaming and long-lived server-streaming calls must all pass unchanged.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::Node;

/// Runs `ctr` against `socket` in containerd's `k8s.io` namespace; returns success and stdout.
fn ctr(socket: &Path, args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new("ctr")
        .args(["--connect-timeout", "5s", "--timeout", "60s", "--address"])
        .arg(socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("ctr output");
    writer.join().unwrap().expect("write ctr stdin");
    if !out.status.success() {
        eprintln!(
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), out.stdout)
}

/// A child process that is killed and reaped however the test ends, a failed assertion included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// The server half of `ctr version`: containerd's version, revision and instance UUID.
fn server_part(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let at = text.find("Server:").expect("ctr version prints the server");
    text[at..].to_string()
}

#[test]
fn containerd_native_api_from_a_go_client_passes_through() {
    let Some(node) = Node::start() else {
        return;
    };
    let (via, direct) = (node.podgraft.as_path(), node.containerd.as_path());

    // Unary calls of a service podgraft has never heard of.
    let (ok, through) = ctr(via, &["version"], b"");
    assert!(ok, "ctr version through podgraft");
    let (_, straight) = ctr(direct, &["version"], b"");
    assert_eq!(server_part(&through), server_part(&straight));

    // Client streaming: 5 MB of content written through podgraft (content.Write), read back both
    // ways (content.Read, server streaming), byte for byte.
    let blob: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = sha256(&blob);
    let size = blob.len().to_string();
    let (ok, _) = ctr(
        via,
        &[
            "content",
            "ingest",
            "--expected-size",
            &size,
            "--expected-digest",
            &digest,
            "podgraft-it-ingest",
        ],
        &blob,
    );
    assert!(ok, "ingest through podgraft");
    let (ok, stored) = ctr(direct, &["content", "get", &digest], b"");
    assert!(ok && stored == blob, "containerd stored other bytes");
    let (ok, read_back) = ctr(via, &["content", "get", &digest], b"");
    assert!(
        ok && read_back == blob,
        "read through podgraft changed bytes"
    );
    let (ok, _) = ctr(direct, &["content", "rm", &digest], b"");
    assert!(ok, "content cleanup");

    // A long-lived server stream: containerd's event subscription through podgraft sees a
    // namespace created directly at containerd afterwards.
    let mut events = KillOnDrop(
        Command::new("ctr")
            .arg("--address")
            .arg(via)
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctr events"),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = events.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The subscription is live once containerd has it; until an event shows up, keep creating
    // namespaces directly (a create before the subscription is simply not seen).
    let namespace = |verb: &str, name: &str| {
        let status = Command::new("ctr")
            .arg("--address")
            .arg(direct)
            .args(["namespaces", verb, name])
            .status()
            .unwrap();
        assert!(status.success(), "ctr namespaces {verb} {name}");
    };
    let mut created = Vec::new();
    let seen = 'wait: {
        for attempt in 0..20 {
            let name = format!("podgraft-it-events-{attempt}");
            namespace("create", &name);
            created.push(name);
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                if line.contains("/namespaces/create") && line.contains("podgraft-it-events-") {
                    break 'wait Some(line);
                }
            }
        }
        None
    };
    for name in &created {
        namespace("remove", name);
    }
    let seen = seen.expect("no namespace event came through podgraft in 10 s");
    assert!(
        created.iter().any(|name| seen.contains(name.as_str())),
        "{seen}"
    );
}
