//! The control API edge: translates `podgraft.v1alpha1.Control` calls into the domain's types
//! ([`convert`]), delegates to [`Manager`], and maps domain errors to gRPC statuses in one place.
//! No logic of its own lives here.

pub mod convert;

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::{self, control_server::Control};
use crate::dynamic::{Error, Manager, model};
use convert::{container, container_specs, pod_filter, pod_selector};

/// The one mapping from domain errors to gRPC statuses.
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::AlreadyExists(_) => Status::already_exists(e.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            Error::ResourceExhausted(_) => Status::resource_exhausted(e.to_string()),
            Error::Unavailable(_) => Status::unavailable(e.to_string()),
            Error::Internal(_) => Status::internal(e.to_string()),
            Error::Runtime { source, .. } => {
                // containerd's verdict on the step, with podgraft's context in the message.
                let code = tonic::Code::from_i32(source.code);
                let code = if code == tonic::Code::Ok {
                    tonic::Code::Internal
                } else {
                    code
                };
                Status::new(code, e.to_string())
            }
        }
    }
}

pub struct ControlService {
    manager: Arc<Manager>,
}

impl ControlService {
    pub fn new(manager: Arc<Manager>) -> Self {
        Self { manager }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn add_containers(
        &self,
        req: Request<api::AddContainersRequest>,
    ) -> Result<Response<api::AddContainersResponse>, Status> {
        let req = req.into_inner();
        let pod = pod_selector(req.pod.as_ref())?;
        let specs = container_specs(&req.containers)?;
        let added = self.manager.add(&pod, specs).await?;
        Ok(Response::new(api::AddContainersResponse {
            containers: added.into_iter().map(container).collect(),
        }))
    }

    async fn remove_containers(
        &self,
        req: Request<api::RemoveContainersRequest>,
    ) -> Result<Response<api::RemoveContainersResponse>, Status> {
        let req = req.into_inner();
        let pod = pod_selector(req.pod.as_ref())?;
        let removed = self
            .manager
            .remove(&pod, &req.names, req.grace_period_seconds)
            .await?;
        Ok(Response::new(api::RemoveContainersResponse { removed }))
    }

    async fn list_containers(
        &self,
        req: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let pod = pod_filter(req.get_ref().pod.as_ref())?;
        let listed = self.manager.list(pod.as_ref()).await?;
        Ok(Response::new(api::ListContainersResponse {
            containers: listed.into_iter().map(container).collect(),
        }))
    }

    async fn get_container(
        &self,
        req: Request<api::GetContainerRequest>,
    ) -> Result<Response<api::DynamicContainer>, Status> {
        let req = req.into_inner();
        let pod = pod_selector(req.pod.as_ref())?;
        Ok(Response::new(container(
            self.manager.get(&pod, &req.name).await?,
        )))
    }

    async fn exec(
        &self,
        req: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        let req = req.into_inner();
        let pod = pod_selector(req.pod.as_ref())?;
        let out = self
            .manager
            .exec(&pod, &req.name, req.command, req.timeout_seconds)
            .await?;
        Ok(Response::new(api::ExecResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<api::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let filter = pod_filter(req.pod.as_ref())?;
        let sub = self.manager.events().subscribe(req.since_sequence);
        let matches = move |ev: &model::Event| match (&filter, &ev.pod) {
            (None, _) => true,
            (Some(want), Some(got)) => want.matches(got),
            (Some(_), None) => false,
        };
        let resync = sub.gap.then(|| api::Event {
            r#type: api::event::Type::Resync as i32,
            message: format!(
                "events after {} are no longer kept: list again",
                req.since_sequence
            ),
            ..Default::default()
        });
        let backlog: Vec<_> = resync
            .into_iter()
            .chain(
                sub.backlog
                    .into_iter()
                    .filter(|e| matches(e))
                    .map(convert::event),
            )
            .collect();
        let live = tokio_stream::wrappers::BroadcastStream::new(sub.live);
        let stream = async_stream(backlog, live, matches);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The backlog, then live events; a watcher too slow for the live buffer gets RESYNC and the
/// stream goes on.
fn async_stream(
    backlog: Vec<api::Event>,
    live: tokio_stream::wrappers::BroadcastStream<model::Event>,
    matches: impl Fn(&model::Event) -> bool + Send + 'static,
) -> impl Stream<Item = Result<api::Event, Status>> + Send {
    use tokio_stream::StreamExt;
    let live = live.filter_map(move |item| match item {
        Ok(ev) if matches(&ev) => Some(Ok(convert::event(ev))),
        Ok(_) => None,
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(api::Event {
                r#type: api::event::Type::Resync as i32,
                message: format!("{n} events were missed by this slow watcher: list again"),
                ..Default::default()
            }))
        }
    });
    tokio_stream::iter(backlog.into_iter().map(Ok)).chain(live)
}
