//! TCP probes: a connection within the timeout is success.

use std::time::Duration;

use super::worker::Outcome;

pub async fn run(host: &str, port: u16, timeout: Duration) -> (Outcome, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            super::close_abortively(&stream);
            (Outcome::Success, String::new())
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_connection_is_success_and_ends_with_a_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (outcome, message) = run("127.0.0.1", port, Duration::from_secs(2)).await;
        assert_eq!((outcome, message.as_str()), (Outcome::Success, ""));
        let (mut s, _) = listener.accept().await.unwrap();
        let err = s.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        drop(listener);
        let (outcome, message) = run("127.0.0.1", port, Duration::from_secs(2)).await;
        assert_eq!(outcome, Outcome::Failure);
        assert!(
            message.starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
            "{message}"
        );
    }
}
