//! Wire types of the control API to the domain's types and back. Parsing lives here: a policy
//! string that is not one of its values, a malformed quantity or profile, a pod named two ways,
//! each becomes INVALID_ARGUMENT naming the field. Rules about what may be added live in
//! `dynamic::admission`.

use base64::Engine;
use prost::Message;

use crate::api;
use crate::dynamic::Error;
use crate::dynamic::model::quantity;
use crate::dynamic::model::spec::{
    Capabilities, ContainerPort, ContainerSpec, EnvVar, ProbeHandler, ProcMount, Profile, Protocol,
    PullPolicy, Quantity, RegistryAuth, ResourceList, Resources, RestartPolicy, Scheme,
    SecurityContext, TerminationMessagePolicy, VolumeMount,
};
use crate::dynamic::model::{self, ContainerState, ContainerView, EventKind, PodId, PodSelector};

type Result<T> = std::result::Result<T, Error>;

/// Parses an enum field; empty means the default.
fn choice<T: Copy + Default>(field: &str, value: &str, allowed: &[(&str, T)]) -> Result<T> {
    if value.is_empty() {
        return Ok(T::default());
    }
    allowed
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            Error::invalid(
                field,
                format!("{value:?} is not one of {}", names.join(", ")),
            )
        })
}

/// The pod a request names: exactly one of namespace+name, uid or sandbox_id.
pub fn pod_selector(pod: Option<&api::PodRef>) -> Result<PodSelector> {
    let Some(pod) = pod else {
        return Err(Error::invalid("pod", "is required"));
    };
    let by_name = !pod.name.is_empty() || !pod.namespace.is_empty();
    let ways = [by_name, !pod.uid.is_empty(), !pod.sandbox_id.is_empty()];
    if ways.iter().filter(|w| **w).count() != 1 {
        return Err(Error::invalid(
            "pod",
            "set exactly one of namespace+name, uid or sandbox_id",
        ));
    }
    if by_name && (pod.name.is_empty() || pod.namespace.is_empty()) {
        return Err(Error::invalid(
            if pod.name.is_empty() {
                "pod.name"
            } else {
                "pod.namespace"
            },
            "is required with the other",
        ));
    }
    Ok(if !pod.sandbox_id.is_empty() {
        PodSelector::Sandbox(pod.sandbox_id.clone())
    } else if !pod.uid.is_empty() {
        PodSelector::Uid(pod.uid.clone())
    } else {
        PodSelector::Name {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        }
    })
}

/// A pod filter (list, watch): unset or empty means every pod.
pub fn pod_filter(pod: Option<&api::PodRef>) -> Result<Option<PodSelector>> {
    match pod {
        Some(p) if *p != api::PodRef::default() => pod_selector(Some(p)).map(Some),
        _ => Ok(None),
    }
}

fn quantity(field: &str, text: &str, parse: fn(&str) -> Option<i64>) -> Result<Option<Quantity>> {
    if text.is_empty() {
        return Ok(None);
    }
    let value =
        parse(text).ok_or_else(|| Error::invalid(field, format!("{text:?} is not a quantity")))?;
    Ok(Some(Quantity {
        text: text.to_string(),
        value,
    }))
}

fn resources(field: &str, r: Option<&api::Resources>) -> Result<Resources> {
    let r = r.cloned().unwrap_or_default();
    let list = |name: &str, l: Option<api::ResourceList>| -> Result<ResourceList> {
        let l = l.unwrap_or_default();
        Ok(ResourceList {
            cpu: quantity(&format!("{field}.{name}.cpu"), &l.cpu, quantity::milli_cpu)?,
            memory: quantity(
                &format!("{field}.{name}.memory"),
                &l.memory,
                quantity::bytes,
            )?,
        })
    };
    Ok(Resources {
        requests: list("requests", r.requests)?,
        limits: list("limits", r.limits)?,
    })
}

fn profile(field: &str, text: &str) -> Result<Option<Profile>> {
    match text {
        "" => Ok(None),
        "RuntimeDefault" => Ok(Some(Profile::RuntimeDefault)),
        "Unconfined" => Ok(Some(Profile::Unconfined)),
        other => match other.strip_prefix("localhost/") {
            Some(path) if !path.is_empty() => Ok(Some(Profile::Localhost(path.to_string()))),
            _ => Err(Error::invalid(
                field,
                format!("{other:?}: use RuntimeDefault, Unconfined or localhost/<profile>"),
            )),
        },
    }
}

fn profile_text(p: &Option<Profile>) -> String {
    match p {
        None => String::new(),
        Some(Profile::RuntimeDefault) => "RuntimeDefault".into(),
        Some(Profile::Unconfined) => "Unconfined".into(),
        Some(Profile::Localhost(path)) => format!("localhost/{path}"),
    }
}

fn security(
    f: &dyn Fn(&str) -> String,
    sc: Option<&api::SecurityContext>,
) -> Result<SecurityContext> {
    let Some(sc) = sc else {
        return Ok(SecurityContext::default());
    };
    let caps = sc.capabilities.clone().unwrap_or_default();
    Ok(SecurityContext {
        capabilities: Capabilities {
            add: caps.add,
            drop: caps.drop,
        },
        privileged: sc.privileged,
        run_as_user: sc.run_as_user,
        run_as_group: sc.run_as_group,
        run_as_non_root: sc.run_as_non_root,
        read_only_root_filesystem: sc.read_only_root_filesystem,
        allow_privilege_escalation: sc.allow_privilege_escalation,
        se_linux_level: sc.se_linux_level.clone(),
        seccomp: profile(&f("securityContext.seccompProfile"), &sc.seccomp_profile)?,
        apparmor: profile(&f("securityContext.appArmorProfile"), &sc.apparmor_profile)?,
        proc_mount: choice(
            &f("securityContext.procMount"),
            &sc.proc_mount,
            &[
                ("Default", ProcMount::Default),
                ("Unmasked", ProcMount::Unmasked),
            ],
        )?,
    })
}

fn probe(field: &str, p: Option<&api::Probe>) -> Result<Option<model::spec::Probe>> {
    use api::probe::Handler;
    let Some(p) = p else {
        return Ok(None);
    };
    let handler = match &p.handler {
        None => {
            return Err(Error::invalid(
                field,
                "needs exactly one of exec, httpGet, tcpSocket",
            ));
        }
        Some(Handler::Exec(e)) => ProbeHandler::Exec {
            command: e.command.clone(),
        },
        Some(Handler::HttpGet(h)) => ProbeHandler::HttpGet {
            path: h.path.clone(),
            port: h.port,
            host: h.host.clone(),
            scheme: choice(
                &format!("{field}.httpGet.scheme"),
                &h.scheme,
                &[("HTTP", Scheme::Http), ("HTTPS", Scheme::Https)],
            )?,
            headers: h
                .http_headers
                .iter()
                .map(|kv| EnvVar {
                    name: kv.name.clone(),
                    value: kv.value.clone(),
                })
                .collect(),
        },
        Some(Handler::TcpSocket(t)) => ProbeHandler::TcpSocket {
            port: t.port,
            host: t.host.clone(),
        },
    };
    Ok(Some(model::spec::Probe {
        handler,
        initial_delay_seconds: p.initial_delay_seconds,
        timeout_seconds: p.timeout_seconds,
        period_seconds: p.period_seconds,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
    }))
}

/// `containers[i]` of a request, parsed.
pub fn container_spec(s: &api::ContainerSpec, i: usize) -> Result<ContainerSpec> {
    let f = |name: &str| format!("containers[{i}].{name}");
    let mut ports = Vec::with_capacity(s.ports.len());
    for (j, p) in s.ports.iter().enumerate() {
        ports.push(ContainerPort {
            name: p.name.clone(),
            container_port: p.container_port,
            protocol: choice(
                &f(&format!("ports[{j}].protocol")),
                &p.protocol,
                &[
                    ("TCP", Protocol::Tcp),
                    ("UDP", Protocol::Udp),
                    ("SCTP", Protocol::Sctp),
                ],
            )?,
            host_port: p.host_port,
        });
    }
    Ok(ContainerSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        pull_policy: choice(
            &f("imagePullPolicy"),
            &s.image_pull_policy,
            &[
                ("Always", PullPolicy::Always),
                ("IfNotPresent", PullPolicy::IfNotPresent),
                ("Never", PullPolicy::Never),
            ],
        )?,
        registry_auth: s.registry_auth.clone().map(|a| RegistryAuth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        }),
        command: s.command.clone(),
        args: s.args.clone(),
        working_dir: s.working_dir.clone(),
        env: s
            .env
            .iter()
            .map(|kv| EnvVar {
                name: kv.name.clone(),
                value: kv.value.clone(),
            })
            .collect(),
        volume_mounts: s
            .volume_mounts
            .iter()
            .map(|v| VolumeMount {
                name: v.name.clone(),
                host_path: v.host_path.clone(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only,
            })
            .collect(),
        ports,
        resources: resources(&f("resources"), s.resources.as_ref())?,
        security: security(&f, s.security_context.as_ref())?,
        tty: s.tty,
        stdin: s.stdin,
        stdin_once: s.stdin_once,
        termination_message_path: s.termination_message_path.clone(),
        termination_message_policy: choice(
            &f("terminationMessagePolicy"),
            &s.termination_message_policy,
            &[
                ("File", TerminationMessagePolicy::File),
                (
                    "FallbackToLogsOnError",
                    TerminationMessagePolicy::FallbackToLogsOnError,
                ),
            ],
        )?,
        restart_policy: choice(
            &f("restartPolicy"),
            &s.restart_policy,
            &[
                ("Always", RestartPolicy::Always),
                ("OnFailure", RestartPolicy::OnFailure),
                ("Never", RestartPolicy::Never),
            ],
        )?,
        liveness_probe: probe(&f("livenessProbe"), s.liveness_probe.as_ref())?,
        readiness_probe: probe(&f("readinessProbe"), s.readiness_probe.as_ref())?,
        startup_probe: probe(&f("startupProbe"), s.startup_probe.as_ref())?,
        labels: s.labels.clone().into_iter().collect(),
        annotations: s.annotations.clone().into_iter().collect(),
    })
}

pub fn container_specs(specs: &[api::ContainerSpec]) -> Result<Vec<ContainerSpec>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| container_spec(s, i))
        .collect()
}

fn resource_list(l: &ResourceList) -> api::ResourceList {
    let text = |q: &Option<Quantity>| q.as_ref().map(|q| q.text.clone()).unwrap_or_default();
    api::ResourceList {
        cpu: text(&l.cpu),
        memory: text(&l.memory),
    }
}

fn api_resources(r: &Resources) -> Option<api::Resources> {
    (!r.is_empty()).then(|| api::Resources {
        requests: Some(resource_list(&r.requests)),
        limits: Some(resource_list(&r.limits)),
    })
}

fn api_probe(p: &Option<model::spec::Probe>) -> Option<api::Probe> {
    use api::probe::Handler;
    let p = p.as_ref()?;
    let handler = match &p.handler {
        ProbeHandler::Exec { command } => Handler::Exec(api::ExecAction {
            command: command.clone(),
        }),
        ProbeHandler::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        } => Handler::HttpGet(api::HttpGetAction {
            path: path.clone(),
            port: *port,
            host: host.clone(),
            scheme: match scheme {
                Scheme::Http => "HTTP".into(),
                Scheme::Https => "HTTPS".into(),
            },
            http_headers: headers
                .iter()
                .map(|h| api::KeyValue {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        }),
        ProbeHandler::TcpSocket { port, host } => Handler::TcpSocket(api::TcpSocketAction {
            port: *port,
            host: host.clone(),
        }),
        // Not in the v1alpha1 wire format yet: reported as TCP on the same port.
        ProbeHandler::Grpc { port, .. } => Handler::TcpSocket(api::TcpSocketAction {
            port: *port,
            host: String::new(),
        }),
    };
    Some(api::Probe {
        handler: Some(handler),
        initial_delay_seconds: p.initial_delay_seconds,
        timeout_seconds: p.timeout_seconds,
        period_seconds: p.period_seconds,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
    })
}

fn debug_name<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

/// A spec as the API shows it (credentials never included).
pub fn api_spec(s: &ContainerSpec) -> api::ContainerSpec {
    let sc = &s.security;
    api::ContainerSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        image_pull_policy: debug_name(s.pull_policy),
        registry_auth: None,
        command: s.command.clone(),
        args: s.args.clone(),
        working_dir: s.working_dir.clone(),
        env: s
            .env
            .iter()
            .map(|e| api::KeyValue {
                name: e.name.clone(),
                value: e.value.clone(),
            })
            .collect(),
        volume_mounts: s
            .volume_mounts
            .iter()
            .map(|v| api::VolumeMount {
                name: v.name.clone(),
                host_path: v.host_path.clone(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only,
            })
            .collect(),
        ports: s
            .ports
            .iter()
            .map(|p| api::ContainerPort {
                name: p.name.clone(),
                container_port: p.container_port,
                protocol: debug_name(p.protocol).to_uppercase(),
                host_port: p.host_port,
            })
            .collect(),
        resources: api_resources(&s.resources),
        security_context: (*sc != SecurityContext::default()).then(|| api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: sc.capabilities.add.clone(),
                drop: sc.capabilities.drop.clone(),
            }),
            privileged: sc.privileged,
            run_as_user: sc.run_as_user,
            run_as_group: sc.run_as_group,
            run_as_non_root: sc.run_as_non_root,
            read_only_root_filesystem: sc.read_only_root_filesystem,
            allow_privilege_escalation: sc.allow_privilege_escalation,
            se_linux_level: sc.se_linux_level.clone(),
            seccomp_profile: profile_text(&sc.seccomp),
            apparmor_profile: profile_text(&sc.apparmor),
            proc_mount: debug_name(sc.proc_mount),
        }),
        tty: s.tty,
        stdin: s.stdin,
        stdin_once: s.stdin_once,
        termination_message_path: s.termination_message_path.clone(),
        termination_message_policy: debug_name(s.termination_message_policy),
        restart_policy: debug_name(s.restart_policy),
        liveness_probe: api_probe(&s.liveness_probe),
        readiness_probe: api_probe(&s.readiness_probe),
        startup_probe: api_probe(&s.startup_probe),
        labels: s.labels.clone().into_iter().collect(),
        annotations: s.annotations.clone().into_iter().collect(),
    }
}

pub fn pod_ref(p: &PodId) -> api::PodRef {
    api::PodRef {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
        sandbox_id: p.sandbox_id.clone(),
    }
}

fn state(s: ContainerState) -> api::ContainerState {
    match s {
        ContainerState::Unknown => api::ContainerState::Unknown,
        ContainerState::Created => api::ContainerState::Created,
        ContainerState::Running => api::ContainerState::Running,
        ContainerState::Exited => api::ContainerState::Exited,
    }
}

pub fn container(v: ContainerView) -> api::DynamicContainer {
    let spec = api_spec(&v.spec);
    api::DynamicContainer {
        pod: Some(pod_ref(&v.pod)),
        name: v.name,
        container_id: v.container_id,
        state: state(v.state) as i32,
        exit_code: v.exit_code,
        reason: v.reason,
        message: v.message,
        created_at_unix_nanos: v.created_at_unix_nanos,
        started_at_unix_nanos: v.started_at_unix_nanos,
        finished_at_unix_nanos: v.finished_at_unix_nanos,
        restart_count: v.restart_count,
        image: spec.image.clone(),
        image_id: v.image_id,
        resources: spec.resources.clone(),
        labels: spec.labels.clone(),
        log_path: v.log_path,
        spec: Some(spec),
    }
}

pub fn event(e: model::Event) -> api::Event {
    use api::event::Type;
    let kind = match e.kind {
        EventKind::Unknown => Type::Unknown,
        EventKind::Added => Type::Added,
        EventKind::Started => Type::Started,
        EventKind::Exited => Type::Exited,
        EventKind::Removed => Type::Removed,
        EventKind::Failed => Type::Failed,
        EventKind::Resync => Type::Resync,
    };
    api::Event {
        sequence: e.sequence,
        oldest_sequence: e.oldest_sequence,
        r#type: kind as i32,
        time_unix_nanos: e.time_unix_nanos,
        pod: e.pod.as_ref().map(pod_ref),
        name: e.name,
        container_id: e.container_id,
        message: e.message,
        container: None,
    }
}

/// Reads the spec annotation of containers made by podgraft builds that stored the control API's
/// protobuf (base64) there; handed to `dynamic` as its legacy decoder.
pub fn legacy_spec(text: &str) -> Option<ContainerSpec> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let spec = api::ContainerSpec::decode(raw.as_slice()).ok()?;
    container_spec(&spec, 0)
        .inspect_err(|e| tracing::warn!(error = %e, "unreadable stored container spec"))
        .ok()
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
