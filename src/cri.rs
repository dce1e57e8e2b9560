//! The CRI calls podgraft itself makes to containerd, behind a small trait so that the domain logic
//! can run against an in-memory fake in unit tests ([`crate::testing::MemCri`]).
//!
//! podgraft's own calls go straight to containerd's socket, not through its relay: they must not be
//! filtered like the kubelet's view.

use std::path::Path;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::BoxFuture;
use crate::client::lazy_uds_channel;

/// A failed CRI call: containerd's gRPC status code (as its number) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct CriError {
    pub op: &'static str,
    /// The gRPC status code number (5 = NOT_FOUND, 14 = UNAVAILABLE, ...).
    pub code: i32,
    pub message: String,
}

impl CriError {
    pub const NOT_FOUND: i32 = 5;

    pub fn is_not_found(&self) -> bool {
        self.code == Self::NOT_FOUND
    }
}

pub type CriResult<T> = Result<T, CriError>;

/// The subset of CRI that podgraft drives. Every method is one CRI call.
pub trait Cri: Send + Sync + 'static {
    fn list_pod_sandbox(
        &self,
        filter: cri::PodSandboxFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::PodSandbox>>>;
    fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::PodSandboxStatusResponse>>;
    fn list_containers(
        &self,
        filter: cri::ContainerFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::Container>>>;
    fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::ContainerStatusResponse>>;
    fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> BoxFuture<'_, CriResult<String>>;
    fn start_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>>;
    fn stop_container(&self, id: &str, timeout_seconds: i64) -> BoxFuture<'_, CriResult<()>>;
    fn remove_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>>;
    fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> BoxFuture<'_, CriResult<cri::ExecSyncResponse>>;
    fn image_status(&self, image: &str) -> BoxFuture<'_, CriResult<Option<cri::Image>>>;
    fn pull_image(&self, req: cri::PullImageRequest) -> BoxFuture<'_, CriResult<String>>;

    /// Not CRI: kills and deletes the container's task through containerd's task API, for a task
    /// a cancelled StartContainer left that RemoveContainer cannot delete (`crate::tasks`).
    fn kill_task(&self, _id: &str) -> BoxFuture<'_, CriResult<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// [`Cri`] over a tonic channel to containerd's socket.
#[derive(Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    /// The runtime socket's channel, for containerd's task API.
    channel: Channel,
}

impl CriClient {
    /// A lazily connecting client: containerd may be down when podgraft starts.
    pub fn new(runtime: &Path, image: &Path) -> Self {
        let channel = lazy_uds_channel(runtime);
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            channel,
            image: ImageServiceClient::new(lazy_uds_channel(image))
                .max_decoding_message_size(64 << 20),
        }
    }
}

fn err(op: &'static str) -> impl Fn(tonic::Status) -> CriError {
    move |s| CriError {
        op,
        code: s.code() as i32,
        message: s.message().to_string(),
    }
}

impl Cri for CriClient {
    fn list_pod_sandbox(
        &self,
        filter: cri::PodSandboxFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::PodSandbox>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            let req = cri::ListPodSandboxRequest {
                filter: Some(filter),
            };
            Ok(c.list_pod_sandbox(req)
                .await
                .map_err(err("ListPodSandbox"))?
                .into_inner()
                .items)
        })
    }

    fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::PodSandboxStatusResponse>> {
        let mut c = self.runtime.clone();
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        };
        Box::pin(async move {
            Ok(c.pod_sandbox_status(req)
                .await
                .map_err(err("PodSandboxStatus"))?
                .into_inner())
        })
    }

    fn list_containers(
        &self,
        filter: cri::ContainerFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::Container>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            let req = cri::ListContainersRequest {
                filter: Some(filter),
            };
            Ok(c.list_containers(req)
                .await
                .map_err(err("ListContainers"))?
                .into_inner()
                .containers)
        })
    }

    fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::ContainerStatusResponse>> {
        let mut c = self.runtime.clone();
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        };
        Box::pin(async move {
            Ok(c.container_status(req)
                .await
                .map_err(err("ContainerStatus"))?
                .into_inner())
        })
    }

    fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> BoxFuture<'_, CriResult<String>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            Ok(c.create_container(req)
                .await
                .map_err(err("CreateContainer"))?
                .into_inner()
                .container_id)
        })
    }

    fn start_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>> {
        let mut c = self.runtime.clone();
        let req = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        Box::pin(async move {
            c.start_container(req)
                .await
                .map_err(err("StartContainer"))?;
            Ok(())
        })
    }

    fn stop_container(&self, id: &str, timeout_seconds: i64) -> BoxFuture<'_, CriResult<()>> {
        let mut c = self.runtime.clone();
        let req = cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout_seconds,
        };
        Box::pin(async move {
            c.stop_container(req).await.map_err(err("StopContainer"))?;
            Ok(())
        })
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>> {
        let mut c = self.runtime.clone();
        let req = cri::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        Box::pin(async move {
            c.remove_container(req)
                .await
                .map_err(err("RemoveContainer"))?;
            Ok(())
        })
    }

    fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> BoxFuture<'_, CriResult<cri::ExecSyncResponse>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            Ok(c.exec_sync(req)
                .await
                .map_err(err("ExecSync"))?
                .into_inner())
        })
    }

    fn image_status(&self, image: &str) -> BoxFuture<'_, CriResult<Option<cri::Image>>> {
        let mut c = self.image.clone();
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        };
        Box::pin(async move {
            Ok(c.image_status(req)
                .await
                .map_err(err("ImageStatus"))?
                .into_inner()
                .image)
        })
    }

    fn kill_task(&self, id: &str) -> BoxFuture<'_, CriResult<()>> {
        let (channel, id) = (self.channel.clone(), id.to_string());
        Box::pin(async move {
            crate::tasks::kill_and_delete(&channel, &id)
                .await
                .map_err(err("Tasks.Kill/Delete"))
        })
    }

    fn pull_image(&self, req: cri::PullImageRequest) -> BoxFuture<'_, CriResult<String>> {
        let mut c = self.image.clone();
        Box::pin(async move {
            Ok(c.pull_image(req)
                .await
                .map_err(err("PullImage"))?
                .into_inner()
                .image_ref)
        })
    }
}
