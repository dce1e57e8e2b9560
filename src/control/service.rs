//! The `podgraft.v1alpha1.Control` service: per call, who is calling (peer credentials), whether
//! the policy lets them do this verb in this pod's namespace, the conversion of the request, one
//! delegation to the manager, and the audit record.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::audit::{self, AuditLog, Record};
use super::auth::{self, Caller, Policy, Scope, Verb};
use super::convert::{self, container, container_specs, pod_filter, pod_selector};
use super::trace::{self, traced};
use crate::api::{self, control_server::Control};
use crate::dynamic::lifecycle::stored_spec::SpecCodec;
use crate::dynamic::model::PodSelector;
use crate::dynamic::{Manager, model};

#[derive(Clone)]
pub struct ControlService {
    manager: Arc<Manager>,
    policy: Policy,
    audit: Arc<AuditLog>,
    /// For GetStatus (and the failures it reports); without it GetStatus is UNIMPLEMENTED.
    status: Option<Arc<super::StatusInfo>>,
}

/// One call on its way to the audit trail.
struct Audited {
    call: &'static str,
    caller: Option<Caller>,
    pod: String,
    containers: Vec<String>,
    spec_digests: Vec<String>,
    started: Instant,
}

impl ControlService {
    pub fn new(manager: Arc<Manager>, policy: Policy, audit: Arc<AuditLog>) -> Self {
        Self {
            manager,
            policy,
            audit,
            status: None,
        }
    }

    /// Serves GetStatus with `info`, which also remembers the failed calls.
    pub fn with_status(mut self, info: Arc<super::StatusInfo>) -> Self {
        self.status = Some(info);
        self
    }

    /// Where the caller may do `verb`; for a call on one pod, refuses unless that pod's namespace
    /// is in scope. A caller without peer credentials may do nothing.
    async fn authorize(
        &self,
        caller: Option<&Caller>,
        verb: Verb,
        pod: Option<&PodSelector>,
    ) -> Result<Scope, Status> {
        let Some(caller) = caller else {
            return Err(Status::permission_denied(
                "the control API needs the caller's peer credentials (a Unix socket connection)",
            ));
        };
        let scope = self.policy.scope(caller, verb);
        let denied = |where_: String| {
            crate::metrics::authorization_denied(verb.name());
            Status::permission_denied(format!(
                "{caller} may not {} {where_}: no [[access]] rule grants it",
                verb.name()
            ))
        };
        match (&scope, pod) {
            (Scope::Nowhere, _) => Err(denied("anywhere".into())),
            (Scope::Everywhere, _) | (Scope::Namespaces(_), None) => Ok(scope),
            // A pod named by namespace/name in scope may be looked up and missing; a pod named
            // by UID or sandbox ID is refused the same way whether it is out of scope or does
            // not exist, so a caller cannot probe which pods exist outside its namespaces.
            (Scope::Namespaces(_), Some(PodSelector::Name { namespace, .. }))
                if !scope.allows(namespace) =>
            {
                Err(denied(format!("in namespace {namespace:?}")))
            }
            (Scope::Namespaces(_), Some(pod @ PodSelector::Name { .. })) => {
                self.manager.pod_namespace(pod).await?;
                Ok(scope)
            }
            (Scope::Namespaces(_), Some(pod)) => match self.manager.pod_namespace(pod).await {
                Ok(namespace) if scope.allows(&namespace) => Ok(scope),
                Ok(_) | Err(crate::dynamic::Error::NotFound(_)) => Err(denied(format!("on {pod}"))),
                Err(e) => Err(e.into()),
            },
        }
    }

    fn record(&self, a: Audited, status: Option<&Status>, denied: bool) {
        if let (Some(info), Some(s)) = (&self.status, status) {
            info.failed(a.call, s);
        }
        let (decision, code, reason) = match status {
            None => ("allowed", Code::Ok, String::new()),
            Some(s) => (
                if denied { "denied" } else { "failed" },
                s.code(),
                s.message().to_string(),
            ),
        };
        self.audit.record(&Record {
            time_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            call: a.call,
            caller: a.caller.as_ref(),
            pod: a.pod,
            containers: a.containers,
            spec_digests: a.spec_digests,
            decision,
            code: format!("{code:?}"),
            reason,
            duration_ms: audit::millis(a.started.elapsed()),
        });
    }

    /// Runs an audited call: authorization, then `run`; records the outcome.
    async fn audited<T>(
        &self,
        a: Audited,
        verb: Verb,
        pod: Option<&PodSelector>,
        run: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        if let Err(denial) = self.authorize(a.caller.as_ref(), verb, pod).await {
            self.record(a, Some(&denial), true);
            return Err(denial);
        }
        let result = run.await;
        self.record(a, result.as_ref().err(), false);
        result
    }

    /// Authorizes a read; denials are audited, allowed reads are not.
    async fn read(
        &self,
        call: &'static str,
        caller: Option<Caller>,
        pod: Option<&PodSelector>,
    ) -> Result<Scope, Status> {
        let started = Instant::now();
        self.authorize(caller.as_ref(), Verb::Read, pod)
            .await
            .inspect_err(|denial| {
                let a = Audited {
                    call,
                    caller,
                    pod: pod.map(|p| p.to_string()).unwrap_or_default(),
                    containers: vec![],
                    spec_digests: vec![],
                    started,
                };
                self.record(a, Some(denial), true);
            })
    }
}

fn audited(call: &'static str, caller: Option<Caller>, pod: &PodSelector) -> Audited {
    Audited {
        call,
        caller,
        pod: pod.to_string(),
        containers: vec![],
        spec_digests: vec![],
        started: Instant::now(),
    }
}

/// The status code a manager result maps to (metrics).
fn code_of<T>(result: &Result<T, crate::dynamic::Error>) -> Code {
    result
        .as_ref()
        .map_or_else(|e| Status::from(e.clone()).code(), |_| Code::Ok)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

/// Runs a mutating call to its end even if the client goes away (a cancelled call or an expired
/// deadline drops the handler): an add or removal stopped half-way would leave reservations,
/// grown cgroups or containers behind, and its audit record unwritten. The task runs in the
/// call's span (current here: the handler runs in it), so what the add or removal logs carries
/// the call's pod and containers even after the handler is gone.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(tracing::Instrument::in_current_span(work))
        .await
        .map_err(|e| Status::internal(format!("the call's task failed: {e}")))?
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn add_containers(
        &self,
        req: Request<api::AddContainersRequest>,
    ) -> Result<Response<api::AddContainersResponse>, Status> {
        let caller = auth::caller(&req);
        let span = trace::call("AddContainers", caller.as_ref());
        traced(span.clone(), async move {
            let req = req.into_inner();
            trace::containers(&span, req.containers.iter().map(|c| c.name.as_str()));
            let pod = pod_selector(req.pod.as_ref())?;
            trace::pod(&span, &pod);
            let specs = container_specs(&req.containers)?;
            let codec = SpecCodec::default();
            let a = Audited {
                containers: specs.iter().map(|s| s.name.clone()).collect(),
                spec_digests: specs
                    .iter()
                    .map(|s| audit::digest(&codec.encode(s)))
                    .collect(),
                ..audited("AddContainers", caller, &pod)
            };
            let this = self.clone();
            let added = detached(async move {
                this.audited(a, Verb::Mutate, Some(&pod), async {
                    let started = Instant::now();
                    let added = this.manager.add(&pod, specs).await;
                    crate::metrics::add_finished(code_of(&added), started.elapsed());
                    Ok(added?)
                })
                .await
            })
            .await?;
            Ok(Response::new(api::AddContainersResponse {
                containers: added.into_iter().map(container).collect(),
            }))
        })
        .await
    }

    async fn remove_containers(
        &self,
        req: Request<api::RemoveContainersRequest>,
    ) -> Result<Response<api::RemoveContainersResponse>, Status> {
        let caller = auth::caller(&req);
        let span = trace::call("RemoveContainers", caller.as_ref());
        traced(span.clone(), async move {
            let req = req.into_inner();
            trace::containers(&span, req.names.iter().map(String::as_str));
            let pod = pod_selector(req.pod.as_ref())?;
            trace::pod(&span, &pod);
            let a = Audited {
                containers: req.names.clone(),
                ..audited("RemoveContainers", caller, &pod)
            };
            let this = self.clone();
            let removed = detached(async move {
                this.audited(a, Verb::Mutate, Some(&pod), async {
                    let started = Instant::now();
                    let removed = this
                        .manager
                        .remove(&pod, &req.names, req.grace_period_seconds)
                        .await;
                    crate::metrics::remove_finished(code_of(&removed), started.elapsed());
                    Ok(removed?)
                })
                .await
            })
            .await?;
            Ok(Response::new(api::RemoveContainersResponse { removed }))
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let caller = auth::caller(&req);
        let span = trace::call("ListContainers", caller.as_ref());
        traced(span.clone(), async move {
            let pod = pod_filter(req.get_ref().pod.as_ref())?;
            if let Some(pod) = &pod {
                trace::pod(&span, pod);
            }
            let scope = self.read("ListContainers", caller, pod.as_ref()).await?;
            let mut listed = self.manager.list(pod.as_ref()).await?;
            if req.get_ref().include_removed {
                listed.extend(self.manager.list_removed(pod.as_ref()).await?);
            }
            // A node-wide listing shows only the namespaces the caller may read.
            listed.retain(|c| scope.allows(&c.pod.namespace));
            Ok(Response::new(api::ListContainersResponse {
                containers: listed.into_iter().map(container).collect(),
            }))
        })
        .await
    }

    async fn get_container(
        &self,
        req: Request<api::GetContainerRequest>,
    ) -> Result<Response<api::DynamicContainer>, Status> {
        let caller = auth::caller(&req);
        let span = trace::call("GetContainer", caller.as_ref());
        traced(span.clone(), async move {
            let req = req.into_inner();
            trace::containers(&span, [req.name.as_str()]);
            let pod = pod_selector(req.pod.as_ref())?;
            trace::pod(&span, &pod);
            self.read("GetContainer", caller, Some(&pod)).await?;
            Ok(Response::new(container(
                self.manager.get(&pod, &req.name).await?,
            )))
        })
        .await
    }

    async fn exec(
        &self,
        req: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        let caller = auth::caller(&req);
        let span = trace::call("Exec", caller.as_ref());
        traced(span.clone(), async move {
            let req = req.into_inner();
            trace::containers(&span, [req.name.as_str()]);
            let pod = pod_selector(req.pod.as_ref())?;
            trace::pod(&span, &pod);
            let a = Audited {
                containers: vec![req.name.clone()],
                ..audited("Exec", caller, &pod)
            };
            let out = self
                .audited(a, Verb::Exec, Some(&pod), async {
                    Ok(self
                        .manager
                        .exec(&pod, &req.name, req.command, req.timeout_seconds)
                        .await?)
                })
                .await?;
            Ok(Response::new(api::ExecResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            }))
        })
        .await
    }

    async fn get_status(
        &self,
        req: Request<api::GetStatusRequest>,
    ) -> Result<Response<api::NodeStatus>, Status> {
        let caller = auth::caller(&req);
        traced(trace::call("GetStatus", caller.as_ref()), async move {
            self.read("GetStatus", caller, None).await?;
            let Some(info) = &self.status else {
                return Err(Status::unimplemented(
                    "this server does not report its status",
                ));
            };
            Ok(Response::new(info.status(&self.manager).await))
        })
        .await
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<api::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = auth::caller(&req);
        // The span covers setting the stream up, not the stream's life.
        let span = trace::call("WatchEvents", caller.as_ref());
        traced(span.clone(), async move {
            let req = req.into_inner();
            let filter = pod_filter(req.pod.as_ref())?;
            if let Some(pod) = &filter {
                trace::pod(&span, pod);
            }
            let scope = self.read("WatchEvents", caller, filter.as_ref()).await?;
            let sub = self.manager.events().subscribe(req.since_sequence);
            let matches = move |ev: &model::Event| match (&filter, &ev.pod) {
                (_, Some(got)) if !scope.allows(&got.namespace) => false,
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
            let stream: EventStream = Box::pin(async_stream(backlog, live, matches));
            Ok(Response::new(stream))
        })
        .await
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
