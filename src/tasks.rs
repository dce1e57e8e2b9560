//! The one call podgraft makes past CRI: killing and deleting a container's task through
//! containerd's own task API (`containerd.services.tasks.v1.Tasks`, namespace `k8s.io`, where
//! the CRI plugin keeps its containers). A StartContainer cancelled half-way (its client killed)
//! can leave containerd 1.6 with a task that CRI's StopContainer skips (the container never ran)
//! and RemoveContainer cannot delete ("cannot delete running task"); recovery clears it here.

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// The containerd namespace of CRI's containers.
const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Clone, PartialEq, prost::Message)]
struct KillRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(string, tag = "2")]
    exec_id: String,
    #[prost(uint32, tag = "3")]
    signal: u32,
    #[prost(bool, tag = "4")]
    all: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DeleteTaskRequest {
    #[prost(string, tag = "1")]
    container_id: String,
}

async fn call<T: prost::Message + Send + Sync + 'static>(
    channel: &Channel,
    method: &'static str,
    message: T,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("containerd: {e}")))?;
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        "containerd-namespace",
        MetadataValue::from_static(CRI_NAMESPACE),
    );
    // Both answers (Empty, DeleteResponse) are read as empty messages: podgraft needs none of it.
    let codec = tonic_prost::ProstCodec::<T, ()>::default();
    grpc.unary(req, http::uri::PathAndQuery::from_static(method), codec)
        .await
        .map(|_| ())
}

/// SIGKILLs every process of the container's task, then deletes the task.
pub async fn kill_and_delete(channel: &Channel, container_id: &str) -> Result<(), tonic::Status> {
    let kill = KillRequest {
        container_id: container_id.to_string(),
        exec_id: String::new(),
        signal: libc::SIGKILL as u32,
        all: true,
    };
    match call(channel, "/containerd.services.tasks.v1.Tasks/Kill", kill).await {
        // A task already dead (or none at all) is what the kill is for.
        Err(s)
            if !matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            return Err(s);
        }
        _ => {}
    }
    let delete = DeleteTaskRequest {
        container_id: container_id.to_string(),
    };
    match call(
        channel,
        "/containerd.services.tasks.v1.Tasks/Delete",
        delete,
    )
    .await
    {
        Err(s) if s.code() != tonic::Code::NotFound => Err(s),
        _ => Ok(()),
    }
}
