//! HTTP(S) GET probes, as the kubelet's prober makes them: status 200–399 is success; redirects
//! to the same host are followed (at most 10), a redirect to another host is not followed and
//! counts as success (with a warning); HTTPS certificates are not verified; one connection per
//! probe (`Connection: close`, closed with a RST once the answer is read); at most 10 KiB of the
//! body is read.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::target::authority;
use super::worker::Outcome;
use crate::dynamic::model::spec::{EnvVar, Scheme};

/// The kubelet sends `kube-probe/<major>.<minor>`; podgraft stands in for it, with the
/// Kubernetes minor release whose kubelet it follows.
pub const USER_AGENT: &str = "kube-probe/1.36";
const MAX_REDIRECTS: usize = 10;
const MAX_BODY: usize = 10 << 10;

/// One HTTP probe, with its port resolved and its host chosen.
#[derive(Debug, Clone)]
pub struct HttpGet {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<EnvVar>,
}

pub async fn run(probe: &HttpGet, timeout: Duration) -> (Outcome, String) {
    match tokio::time::timeout(timeout, follow(probe)).await {
        Err(_) => (
            Outcome::Failure,
            format!("HTTP probe timed out after {timeout:?}"),
        ),
        Ok(Err(message)) => (Outcome::Failure, message),
        Ok(Ok((status, warning))) if (200..400).contains(&status.as_u16()) => {
            (Outcome::Success, warning.unwrap_or_default())
        }
        Ok(Ok((status, _))) => (
            Outcome::Failure,
            format!("HTTP probe failed with statuscode: {}", status.as_u16()),
        ),
    }
}

/// A URL being requested.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

/// GETs the probe's URL, following same-host redirects; the final status and any warning.
async fn follow(probe: &HttpGet) -> Result<(StatusCode, Option<String>), String> {
    let path = if probe.path.starts_with('/') {
        probe.path.clone()
    } else {
        format!("/{}", probe.path)
    };
    let first = Url {
        https: probe.scheme == Scheme::Https,
        host: probe.host.clone(),
        port: probe.port,
        path,
    };
    let mut url = first.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (status, location) = get(&url, &probe.headers).await?;
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            return Ok((status, None));
        };
        let next = resolve(&url, &location)
            .ok_or_else(|| format!("bad redirect location {location:?}"))?;
        if next.host != first.host {
            return Ok((
                status,
                Some(format!(
                    "probe terminated redirects, response: {} to {location}",
                    status.as_u16()
                )),
            ));
        }
        url = next;
    }
    Err(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// The URL `location` points to, seen from `base`.
fn resolve(base: &Url, location: &str) -> Option<Url> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(Url {
            path: location.to_string(),
            ..base.clone()
        });
    }
    let absolute = if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", if base.https { "https" } else { "http" })
    } else if location.contains("://") {
        location.to_string()
    } else {
        // Relative to the current path's directory.
        let path = base.path.split('?').next().unwrap_or("/");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        return Some(Url {
            path: format!("{dir}{location}"),
            ..base.clone()
        });
    };
    let uri: Uri = absolute.parse().ok()?;
    let https = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(Url {
        https,
        host: host.to_string(),
        port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        path: uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
    })
}

/// One GET on a fresh connection: its status and Location header.
async fn get(url: &Url, headers: &[EnvVar]) -> Result<(StatusCode, Option<String>), String> {
    let addr = authority(&url.host, url.port);
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    super::close_abortively(&tcp);
    let request = request(url, headers)?;
    if url.https {
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("{addr}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}

fn request(url: &Url, headers: &[EnvVar]) -> Result<Request<Empty<Bytes>>, String> {
    let mut req = Request::get(url.path.as_str())
        .body(Empty::new())
        .map_err(|e| format!("path {:?}: {e}", url.path))?;
    let h = req.headers_mut();
    let default_port = if url.https { 443 } else { 80 };
    let host = if url.port == default_port {
        authority(&url.host, url.port)
            .rsplit_once(':')
            .map_or(url.host.clone(), |(h, _)| h.to_string())
    } else {
        authority(&url.host, url.port)
    };
    let value = |v: &str| HeaderValue::from_str(v).map_err(|e| format!("header value: {e}"));
    h.insert(http::header::HOST, value(&host)?);
    h.insert(http::header::USER_AGENT, value(USER_AGENT)?);
    h.insert(http::header::ACCEPT, value("*/*")?);
    h.insert(http::header::CONNECTION, value("close")?);
    // The probe's headers win, Host and User-Agent included; repeated names are all sent.
    let mut replaced = std::collections::HashSet::new();
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|e| format!("header {:?}: {e}", header.name))?;
        if replaced.insert(name.clone()) {
            h.remove(&name);
        }
        h.append(name, value(&header.value)?);
    }
    Ok(req)
}

async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<String>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven beside the request, and dropped with it.
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Read (a bounded part of) the body, as the kubelet does; a longer body is no failure.
        let _ = Limited::new(response.into_body(), MAX_BODY).collect().await;
        Ok((status, location))
    };
    tokio::pin!(conn);
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        done = &mut conn => match done {
            Err(e) => Err(e.to_string()),
            // The connection ended cleanly: the response, if any, is complete.
            Ok(()) => exchange.await,
        },
    }
}

/// TLS without certificate verification, as the kubelet's HTTPS probes (InsecureSkipVerify).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    // Signatures are still checked: the handshake must be sound even if the peer is unverified.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
