//! The domain's values as the control API shows them.

use crate::api;
use crate::dynamic::model::spec::{
    ContainerSpec, PortRef, ProbeHandler, Profile, Quantity, ResourceList, Resources, Scheme,
    SecurityContext,
};
use crate::dynamic::model::view::Termination;
use crate::dynamic::model::{self, ContainerState, ContainerView, EventKind, PodId};

fn profile_text(p: &Option<Profile>) -> String {
    match p {
        None => String::new(),
        Some(Profile::RuntimeDefault) => "RuntimeDefault".into(),
        Some(Profile::Unconfined) => "Unconfined".into(),
        Some(Profile::Localhost(path)) => format!("localhost/{path}"),
    }
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
            port: port_number(port),
            port_name: port_name(port),
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
            port: port_number(port),
            port_name: port_name(port),
            host: host.clone(),
        }),
        ProbeHandler::Grpc { port, service } => Handler::Grpc(api::GrpcAction {
            port: *port,
            service: service.clone(),
        }),
    };
    Some(api::Probe {
        handler: Some(handler),
        initial_delay_seconds: p.initial_delay_seconds,
        timeout_seconds: p.timeout_seconds,
        period_seconds: p.period_seconds,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
        termination_grace_period_seconds: p.termination_grace_period_seconds,
    })
}

fn port_number(p: &PortRef) -> i32 {
    match p {
        PortRef::Number(n) => *n,
        PortRef::Name(_) => 0,
    }
}

fn port_name(p: &PortRef) -> String {
    match p {
        PortRef::Number(_) => String::new(),
        PortRef::Name(n) => n.clone(),
    }
}

fn termination(t: Termination) -> api::TerminationState {
    api::TerminationState {
        exit_code: t.exit_code,
        reason: t.reason,
        message: t.message,
        started_at_unix_nanos: t.started_at_unix_nanos,
        finished_at_unix_nanos: t.finished_at_unix_nanos,
        container_id: t.container_id,
        signal: t.signal,
    }
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
        ready: v.ready,
        started: v.started,
        last_state: v.last_state.map(termination),
        removed_at_unix_nanos: v.removed_at_unix_nanos,
        waiting_reason: v.waiting_reason,
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
        EventKind::Restarting => Type::Restarting,
        EventKind::StartupSucceeded => Type::StartupSucceeded,
        EventKind::Ready => Type::Ready,
        EventKind::NotReady => Type::NotReady,
        EventKind::LivenessFailed => Type::LivenessFailed,
        EventKind::Collected => Type::Collected,
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
        reason: e.reason,
        container: None,
    }
}
