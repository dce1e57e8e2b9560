//! gRPC probes: grpc.health.v1.Health/Check; SERVING is success, anything else (another status,
//! an error, no connection, the timeout) is failure, as the kubelet's gRPC prober decides.

use std::time::Duration;

use tonic::transport::Endpoint;

use super::worker::Outcome;
use crate::grpc_health::HealthCheckRequest;
use crate::grpc_health::health_check_response::ServingStatus;
use crate::grpc_health::health_client::HealthClient;

pub async fn run(host: &str, port: u16, service: &str, timeout: Duration) -> (Outcome, String) {
    let url = format!("http://{}", super::target::authority(host, port));
    let endpoint = match Endpoint::from_shared(url.clone()) {
        Ok(e) => e
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(super::http::USER_AGENT)
            .expect("a constant user agent is a valid header"),
        Err(e) => return (Outcome::Unknown, format!("{url}: {e}")),
    };
    let check = async {
        let (host, port) = (host.to_string(), port);
        // Dialled here rather than by tonic: the connection closes with a RST (`close_abortively`).
        let dial = tower::service_fn(move |_: http::Uri| {
            let host = host.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                super::close_abortively(&tcp);
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
            }
        });
        let channel = endpoint.connect_with_connector(dial).await.map_err(|e| {
            format!(
                "failed to connect service {url:?} within {}s: {e}",
                timeout.as_secs()
            )
        })?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|s| format!("health rpc failed: {:?}: {}", s.code(), s.message()))?;
        Ok::<_, String>(response.into_inner().status)
    };
    match tokio::time::timeout(timeout, check).await {
        Err(_) => (
            Outcome::Failure,
            format!("timeout: health rpc did not complete within {timeout:?}"),
        ),
        Ok(Err(message)) => (Outcome::Failure, message),
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => {
            (Outcome::Success, String::new())
        }
        Ok(Ok(status)) => (
            Outcome::Failure,
            format!(
                "service unhealthy (responded with {:?})",
                ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown)
            ),
        ),
    }
}
