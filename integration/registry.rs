//! A loopback-only, read-only OCI distribution registry serving one image layout, so that PullImage
//! can be exercised for real without any network.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub struct Registry {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the OCI layout at `layout` as repository `repo`, tag = the layout's ref name.
pub async fn serve(layout: &Path, repo: &'static str) -> Registry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layout = layout.to_path_buf();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let layout = layout.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(layout.clone(), repo, req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Registry { addr, task }
}

/// Points containerd (config_path = DIR/certs.d) at the registry over plain HTTP.
pub fn configure_containerd(certs_d: &Path, addr: SocketAddr) {
    let host_dir = certs_d.join(addr.to_string());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!("server = \"http://{addr}\"\n\n[host.\"http://{addr}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    )
    .unwrap();
}

fn blob(layout: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(layout.join("blobs/sha256").join(hex))
}

async fn answer(
    layout: PathBuf,
    repo: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    let not_found = || {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    if path == "/v2/" || path == "/v2" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"{}"))));
    }
    let (kind, name, reference) = if let Some((n, r)) = path.rsplit_once("/manifests/") {
        ("manifest", n, r.to_string())
    } else if let Some((n, r)) = path.rsplit_once("/blobs/") {
        ("blob", n, r.to_string())
    } else {
        return Ok(not_found());
    };
    if name.strip_prefix("/v2/") != Some(repo) {
        return Ok(not_found());
    }
    let digest = if kind == "manifest" && !reference.starts_with("sha256:") {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let m = &index["manifests"][0];
        if m["annotations"]["org.opencontainers.image.ref.name"] != reference.as_str() {
            return Ok(not_found());
        }
        m["digest"].as_str().unwrap().to_string()
    } else {
        reference
    };
    let Some(file) = blob(&layout, &digest) else {
        return Ok(not_found());
    };
    let Ok(data) = std::fs::read(file) else {
        return Ok(not_found());
    };
    let content_type = if kind == "manifest" {
        "application/vnd.oci.image.manifest.v1+json"
    } else {
        "application/octet-stream"
    };
    let len = data.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(data)
    };
    Ok(Response::builder()
        .header("content-type", content_type)
        .header("content-length", len)
        .header("docker-content-digest", digest)
        .body(Full::new(body))
        .unwrap())
}
