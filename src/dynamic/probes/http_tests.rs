//! HTTP probes against canned local servers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Serves every connection with `respond(request head)`; returns the port.
async fn serve(respond: fn(&str, u16) -> String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = String::new();
                while !head.contains("\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let _ = s.write_all(respond(&head, port).as_bytes()).await;
            });
        }
    });
    port
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn probe(port: u16, path: &str) -> HttpGet {
    HttpGet {
        scheme: Scheme::Http,
        host: "127.0.0.1".into(),
        port,
        path: path.into(),
        headers: vec![],
    }
}

const T: Duration = Duration::from_secs(2);

#[tokio::test]
async fn status_decides_and_the_request_is_the_kubelets() {
    let port = serve(|head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let ok = head.contains("user-agent: kube-probe/")
            && head.contains("accept: */*")
            && head.contains("x-probe: yes");
        match path {
            "/healthz" if ok => reply("200 OK", "", "ok"),
            "/big" => reply("200 OK", "", &"x".repeat(100_000)),
            "/healthz" => reply("400 Bad Request", "", &format!("{head:?}")),
            _ => reply("404 Not Found", "", ""),
        }
    })
    .await;
    let mut p = probe(port, "healthz");
    p.headers.push(EnvVar {
        name: "X-Probe".into(),
        value: "yes".into(),
    });
    assert_eq!(run(&p, T).await, (Outcome::Success, String::new()));
    p.path = "/big".into();
    assert_eq!(run(&p, T).await.0, Outcome::Success, "a long body is fine");
    let (outcome, message) = run(&probe(port, "/gone"), T).await;
    assert_eq!(outcome, Outcome::Failure);
    assert!(message.contains("404"), "{message}");
}

#[tokio::test]
async fn same_host_redirects_are_followed_others_are_not() {
    let port = serve(|head, port| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        match path {
            "/a" => reply("302 Found", "location: /b\r\n", ""),
            "/b" => reply(
                "301 Moved",
                &format!("location: http://127.0.0.1:{port}/c\r\n"),
                "",
            ),
            "/c" => reply("500 Oops", "", ""),
            "/away" => reply("302 Found", "location: http://192.0.2.1:1/x\r\n", ""),
            "/loop" => reply("302 Found", "location: /loop\r\n", ""),
            _ => reply("404 Not Found", "", ""),
        }
    })
    .await;
    // /a → /b → /c answers 500: the redirects were followed.
    let (outcome, message) = run(&probe(port, "/a"), T).await;
    assert_eq!(outcome, Outcome::Failure);
    assert!(message.contains("500"), "{message}");
    // Another host is never contacted: the redirect itself is success with a warning.
    let (outcome, message) = run(&probe(port, "/away"), T).await;
    assert_eq!(outcome, Outcome::Success);
    assert!(message.contains("redirect"), "{message}");
    let (outcome, message) = run(&probe(port, "/loop"), T).await;
    assert_eq!(outcome, Outcome::Failure);
    assert!(message.contains("10 redirects"), "{message}");
}

#[tokio::test]
async fn silence_and_refusal_are_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts (through the backlog) but never answers.
    let (outcome, message) = run(&probe(port, "/"), Duration::from_millis(300)).await;
    assert_eq!(outcome, Outcome::Failure);
    assert!(message.contains("timed out"), "{message}");
    drop(listener);
    let (outcome, _) = run(&probe(port, "/"), T).await;
    assert_eq!(outcome, Outcome::Failure);
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let cert = rcgen::generate_simple_self_signed(vec!["nowhere.invalid".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(s).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tls.read(&mut buf).await.unwrap();
        tls.write_all(reply("204 No Content", "", "").as_bytes())
            .await
            .unwrap();
        let _ = tls.shutdown().await;
    });
    let mut p = probe(port, "/");
    p.scheme = Scheme::Https;
    assert_eq!(run(&p, T).await, (Outcome::Success, String::new()));
}

#[test]
fn locations_resolve_against_the_current_url() {
    let base = Url {
        https: false,
        host: "10.0.0.1".into(),
        port: 8080,
        path: "/a/b?x=1".into(),
    };
    assert_eq!(resolve(&base, "/c").unwrap().path, "/c");
    assert_eq!(resolve(&base, "c").unwrap().path, "/a/c");
    let abs = resolve(&base, "https://10.0.0.1/z?q").unwrap();
    assert_eq!(
        (abs.https, abs.port, abs.path.as_str()),
        (true, 443, "/z?q")
    );
    assert_eq!(resolve(&base, "//other:81/").unwrap().host, "other");
    assert!(resolve(&base, "ftp://x/").is_none());
}

/// Whether the loopback connection from port `local` to port `remote` is in TIME_WAIT on the
/// `local` side (/proc/net/tcp).
fn in_time_wait(local: u16, remote: u16) -> bool {
    let (local, remote) = (
        format!("0100007F:{local:04X}"),
        format!("0100007F:{remote:04X}"),
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str())
                && f.get(2) == Some(&remote.as_str())
                && f.get(3) == Some(&"06")
        })
}

#[tokio::test]
async fn the_connection_ends_with_a_reset_leaving_no_time_wait() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, peer) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        // The whole answer, with the connection left open: the probe ends it, then the server.
        s.write_all(reply("200 OK", "", "ok").as_bytes())
            .await
            .unwrap();
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        peer.port()
    });
    assert_eq!(run(&probe(port, "/"), T).await.0, Outcome::Success);
    let client_port = server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !in_time_wait(client_port, port),
        "the probe's end of the connection must not linger in TIME_WAIT"
    );
}
