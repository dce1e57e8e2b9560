//! TCP probes: a connection within the timeout is success.

use std::time::Duration;

use super::worker::Outcome;

pub async fn run(host: &str, port: u16, timeout: Duration) -> (Outcome, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => (Outcome::Success, String::new()),
        Ok(Err(e)) => (
            Outcome::Failure,
            format!("dial tcp {}: {e}", super::target::authority(host, port)),
        ),
        Err(_) => (
            Outcome::Failure,
            format!(
                "dial tcp {}: timeout after {timeout:?}",
                super::target::authority(host, port)
            ),
        ),
    }
}
