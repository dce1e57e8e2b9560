//! Requests of the control API parsed into the domain's types.

use super::{Result, choice};
use crate::api;
use crate::dynamic::Error;
use crate::dynamic::model;
use crate::dynamic::model::quantity;
use crate::dynamic::model::spec::{
    Capabilities, ContainerPort, ContainerSpec, EnvVar, PortRef, ProbeHandler, ProcMount, Profile,
    Protocol, PullPolicy, Quantity, RegistryAuth, ResourceList, Resources, RestartPolicy, Scheme,
    SecurityContext, TerminationMessagePolicy, VolumeMount,
};

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
                "needs exactly one of exec, httpGet, tcpSocket, grpc",
            ));
        }
        Some(Handler::Exec(e)) => ProbeHandler::Exec {
            command: e.command.clone(),
        },
        Some(Handler::HttpGet(h)) => ProbeHandler::HttpGet {
            path: h.path.clone(),
            port: port_ref(&format!("{field}.httpGet"), h.port, &h.port_name)?,
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
            port: port_ref(&format!("{field}.tcpSocket"), t.port, &t.port_name)?,
            host: t.host.clone(),
        },
        Some(Handler::Grpc(g)) => ProbeHandler::Grpc {
            port: g.port,
            service: g.service.clone(),
        },
    };
    Ok(Some(model::spec::Probe {
        handler,
        initial_delay_seconds: p.initial_delay_seconds,
        timeout_seconds: p.timeout_seconds,
        period_seconds: p.period_seconds,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
        termination_grace_period_seconds: p.termination_grace_period_seconds,
    }))
}

/// A probe's port: a number or a port name, not both.
fn port_ref(field: &str, number: i32, name: &str) -> Result<PortRef> {
    match (number, name) {
        (n, "") => Ok(PortRef::Number(n)),
        (0, name) => Ok(PortRef::Name(name.to_string())),
        _ => Err(Error::invalid(
            format!("{field}.port"),
            "give a port number or a port name, not both",
        )),
    }
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
