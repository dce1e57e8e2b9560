//! Checks a [`ContainerSpec`] before anything is created. Errors name the field as
//! `containers[i].<field>`; malformed input is INVALID_ARGUMENT, input that KEP-5972 forbids
//! (privileged, hostPort, volumes the pod does not have) is PERMISSION_DENIED.

use std::collections::HashSet;

use k8s_cri::v1 as cri;

use super::error::{Error, Result};
use super::quantity;
use crate::api::{ContainerSpec, Probe, probe::Handler};

/// Upper bounds on what one container may carry; generous for real use, small enough that a
/// request cannot balloon podgraft's memory or containerd's metadata.
pub const MAX_ENV: usize = 1024;
pub const MAX_ARGS: usize = 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Containers per AddContainers request.
pub const MAX_BATCH: usize = 32;

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A light check of the image reference grammar: `[registry[:port]/]path[:tag][@sha256:hex]`.
fn image_error(image: &str) -> Option<&'static str> {
    if image.is_empty() {
        return Some("must not be empty");
    }
    if image.len() > 4096 {
        return Some("longer than 4096 bytes");
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
        if !ok {
            return Some("digest must be sha256:<64 lowercase hex digits>");
        }
    }
    let ok_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
    };
    if name.is_empty()
        || !ok_chars(name)
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
    {
        return Some("is not a valid image reference");
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    let path_part = match last.rsplit_once(':') {
        Some((repo, tag)) => {
            if tag.is_empty() || tag.len() > 128 || tag.contains(':') {
                return Some("has an invalid tag");
            }
            name.len() - last.len() + repo.len()
        }
        None => name.len(),
    };
    // Repository path components (after an optional registry host) must be lowercase.
    let path = &name[..path_part];
    let repo = match path.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => path,
    };
    if repo.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("repository names must be lowercase");
    }
    None
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if value.is_empty() || allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

fn check_probe(field: &str, probe: &Probe, liveness_or_startup: bool) -> Result<()> {
    match &probe.handler {
        None => {
            return Err(Error::invalid(
                field,
                "needs exactly one of exec, httpGet, tcpSocket",
            ));
        }
        Some(Handler::Exec(e)) if e.command.is_empty() => {
            return Err(Error::invalid(
                format!("{field}.exec.command"),
                "must not be empty",
            ));
        }
        Some(Handler::HttpGet(h)) if !(1..=65535).contains(&h.port) => {
            return Err(Error::invalid(
                format!("{field}.httpGet.port"),
                "must be 1-65535",
            ));
        }
        Some(Handler::TcpSocket(t)) if !(1..=65535).contains(&t.port) => {
            return Err(Error::invalid(
                format!("{field}.tcpSocket.port"),
                "must be 1-65535",
            ));
        }
        Some(_) => {}
    }
    for (name, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if v < 0 {
            return Err(Error::invalid(
                format!("{field}.{name}"),
                "must not be negative",
            ));
        }
    }
    if liveness_or_startup && probe.success_threshold > 1 {
        return Err(Error::invalid(
            format!("{field}.successThreshold"),
            "must be 1 for liveness and startup probes",
        ));
    }
    Ok(())
}

fn text_bytes<'a>(items: impl Iterator<Item = &'a str>) -> usize {
    items.map(str::len).sum()
}

/// Checks everything that needs no knowledge of the pod.
pub fn spec(spec: &ContainerSpec, i: usize) -> Result<()> {
    let f = |name: &str| format!("containers[{i}].{name}");
    if !is_dns1123_label(&spec.name) {
        return Err(Error::invalid(
            f("name"),
            format!(
                "{:?} must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)",
                spec.name
            ),
        ));
    }
    if let Some(reason) = image_error(&spec.image) {
        return Err(Error::invalid(
            f("image"),
            format!("{:?} {reason}", spec.image),
        ));
    }
    one_of(
        &f("imagePullPolicy"),
        &spec.image_pull_policy,
        &["Always", "IfNotPresent", "Never"],
    )?;
    one_of(
        &f("restartPolicy"),
        &spec.restart_policy,
        &["Always", "OnFailure", "Never"],
    )?;
    one_of(
        &f("terminationMessagePolicy"),
        &spec.termination_message_policy,
        &["File", "FallbackToLogsOnError"],
    )?;
    for (name, value) in [
        ("workingDir", &spec.working_dir),
        ("terminationMessagePath", &spec.termination_message_path),
    ] {
        if !value.is_empty() && !value.starts_with('/') {
            return Err(Error::invalid(
                f(name),
                format!("{value:?} must be an absolute path"),
            ));
        }
    }
    if spec.command.len() > MAX_ARGS || spec.args.len() > MAX_ARGS {
        return Err(Error::invalid(
            f("args"),
            format!("at most {MAX_ARGS} entries each in command and args"),
        ));
    }
    if text_bytes(spec.command.iter().chain(&spec.args).map(String::as_str)) > MAX_TEXT_BYTES {
        return Err(Error::invalid(
            f("args"),
            format!("command and args exceed {MAX_TEXT_BYTES} bytes"),
        ));
    }
    if spec.env.len() > MAX_ENV {
        return Err(Error::invalid(
            f("env"),
            format!("at most {MAX_ENV} entries"),
        ));
    }
    for (j, kv) in spec.env.iter().enumerate() {
        if kv.name.is_empty()
            || kv.name.contains('=')
            || kv.name.bytes().any(|b| b.is_ascii_control())
        {
            return Err(Error::invalid(
                f(&format!("env[{j}].name")),
                format!("{:?} is not a valid variable name", kv.name),
            ));
        }
    }
    if text_bytes(
        spec.env
            .iter()
            .flat_map(|kv| [kv.name.as_str(), kv.value.as_str()]),
    ) > MAX_TEXT_BYTES
    {
        return Err(Error::invalid(
            f("env"),
            format!("exceeds {MAX_TEXT_BYTES} bytes"),
        ));
    }
    for (name, map) in [("labels", &spec.labels), ("annotations", &spec.annotations)] {
        if map.len() > MAX_LABELS {
            return Err(Error::invalid(
                f(name),
                format!("at most {MAX_LABELS} entries"),
            ));
        }
        if text_bytes(map.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()])) > MAX_TEXT_BYTES {
            return Err(Error::invalid(
                f(name),
                format!("exceeds {MAX_TEXT_BYTES} bytes"),
            ));
        }
        for key in map.keys() {
            if key.is_empty() || key.len() > 253 {
                return Err(Error::invalid(
                    f(name),
                    format!("key {key:?} must be 1-253 bytes"),
                ));
            }
            if key.starts_with("io.kubernetes.") || key.starts_with("podgraft.io/") {
                return Err(Error::invalid(
                    f(&format!("{name}[{key}]")),
                    "is reserved for the kubelet and podgraft",
                ));
            }
        }
    }
    for (j, port) in spec.ports.iter().enumerate() {
        if port.host_port != 0 {
            return Err(Error::PermissionDenied(format!(
                "{}: host ports are not allowed for dynamic containers",
                f(&format!("ports[{j}].hostPort"))
            )));
        }
        if !(1..=65535).contains(&port.container_port) {
            return Err(Error::invalid(
                f(&format!("ports[{j}].containerPort")),
                "must be 1-65535",
            ));
        }
        one_of(
            &f(&format!("ports[{j}].protocol")),
            &port.protocol,
            &["TCP", "UDP", "SCTP"],
        )?;
    }
    if let Some(res) = &spec.resources {
        let mut values = [[0i64; 2]; 2];
        for (k, (name, list)) in [("requests", &res.requests), ("limits", &res.limits)]
            .into_iter()
            .enumerate()
        {
            let list = list.clone().unwrap_or_default();
            for (j, (res_name, text, parse)) in [
                (
                    "cpu",
                    &list.cpu,
                    quantity::milli_cpu as fn(&str) -> Option<i64>,
                ),
                ("memory", &list.memory, quantity::bytes),
            ]
            .into_iter()
            .enumerate()
            {
                if text.is_empty() {
                    continue;
                }
                values[k][j] = parse(text).ok_or_else(|| {
                    Error::invalid(
                        f(&format!("resources.{name}.{res_name}")),
                        format!("{text:?} is not a quantity"),
                    )
                })?;
            }
        }
        for (j, res_name) in ["cpu", "memory"].into_iter().enumerate() {
            let (request, limit) = (values[0][j], values[1][j]);
            if limit > 0 && request > limit {
                return Err(Error::invalid(
                    f(&format!("resources.requests.{res_name}")),
                    "must not exceed the limit",
                ));
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        if sc.privileged {
            return Err(Error::PermissionDenied(format!(
                "{}: privileged dynamic containers are not allowed",
                f("securityContext.privileged")
            )));
        }
        one_of(
            &f("securityContext.procMount"),
            &sc.proc_mount,
            &["Default", "Unmasked"],
        )?;
        for (name, value) in [
            ("seccompProfile", &sc.seccomp_profile),
            ("appArmorProfile", &sc.apparmor_profile),
        ] {
            let ok = value.is_empty()
                || value == "RuntimeDefault"
                || value == "Unconfined"
                || value
                    .strip_prefix("localhost/")
                    .is_some_and(|p| !p.is_empty());
            if !ok {
                return Err(Error::invalid(
                    f(&format!("securityContext.{name}")),
                    format!("{value:?}: use RuntimeDefault, Unconfined or localhost/<profile>"),
                ));
            }
        }
    }
    for (name, probe, strict) in [
        ("livenessProbe", &spec.liveness_probe, true),
        ("readinessProbe", &spec.readiness_probe, false),
        ("startupProbe", &spec.startup_probe, true),
    ] {
        if let Some(p) = probe {
            check_probe(&f(name), p, strict)?;
        }
    }
    Ok(())
}

/// Resolves the spec's volume mounts to mounts the pod's existing containers already have: a mount
/// names a pod volume (the last component of the kubelet's host path) or an existing host path.
pub fn mounts(spec: &ContainerSpec, i: usize, existing: &[cri::Mount]) -> Result<Vec<cri::Mount>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(spec.volume_mounts.len());
    for (j, vm) in spec.volume_mounts.iter().enumerate() {
        let field = format!("containers[{i}].volumeMounts[{j}]");
        if !vm.mount_path.starts_with('/') {
            return Err(Error::invalid(
                format!("{field}.mountPath"),
                format!("{:?} must be an absolute path", vm.mount_path),
            ));
        }
        if !seen.insert(vm.mount_path.as_str()) {
            return Err(Error::invalid(
                format!("{field}.mountPath"),
                format!("{:?} is mounted twice", vm.mount_path),
            ));
        }
        let source = existing.iter().find(|m| {
            if vm.host_path.is_empty() {
                !vm.name.is_empty()
                    && m.host_path.trim_end_matches('/').rsplit('/').next()
                        == Some(vm.name.as_str())
            } else {
                m.host_path == vm.host_path
            }
        });
        let Some(source) = source else {
            let what = if vm.host_path.is_empty() {
                &vm.name
            } else {
                &vm.host_path
            };
            return Err(Error::PermissionDenied(format!(
                "{field}: {what:?} is not a volume of this pod; dynamic containers may only mount what the pod's containers already mount"
            )));
        };
        out.push(cri::Mount {
            container_path: vm.mount_path.clone(),
            host_path: source.host_path.clone(),
            // Never weaker than the existing mount: read-only stays read-only.
            readonly: vm.read_only || source.readonly,
            selinux_relabel: source.selinux_relabel,
            propagation: source.propagation,
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
