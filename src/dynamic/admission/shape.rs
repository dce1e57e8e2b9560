//! The shape of a requested container, before anything about its pod is known: names, sizes,
//! paths, and what KEP-5972 forbids outright (privileged, hostPort). Errors name the field as
//! `containers[i].<field>`; malformed input is INVALID_ARGUMENT, forbidden input PERMISSION_DENIED.

use std::collections::HashSet;

use super::caps::CapName;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::keys::RESERVED_PREFIXES;
use crate::dynamic::model::spec::{
    ContainerPort, ContainerSpec, PortRef, Probe, ProbeHandler, Profile, Quantity,
};

/// Upper bounds on what one container may carry; generous for real use, small enough that a
/// request cannot balloon podgraft's memory or containerd's metadata.
pub const MAX_ENV: usize = 1024;
pub const MAX_ARGS: usize = 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Containers per AddContainers request.
pub const MAX_BATCH: usize = 32;
/// Probe delays, periods and timeouts, in seconds.
pub const MAX_PROBE_SECONDS: i32 = 3600;
pub const MAX_PROBE_THRESHOLD: i32 = 1000;
/// Requests and limits: bounded so that the kubelet's arithmetic on them (CPU shares, CFS quota,
/// oom_score_adj) and the ledger's sums stay within 64 bits.
pub const MAX_CPU_MILLI: i64 = 1_000_000_000;
pub const MAX_MEMORY_BYTES: i64 = 1 << 50;

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

fn port_ok(port: i32) -> bool {
    (1..=65535).contains(&port)
}

fn check_probe(
    field: &str,
    probe: &Probe,
    liveness_or_startup: bool,
    ports: &[ContainerPort],
) -> Result<()> {
    let bad_port = |name: &str| {
        Err(Error::invalid(
            format!("{field}.{name}.port"),
            "must be 1-65535",
        ))
    };
    let port_ref_ok = |port: &PortRef| match port {
        PortRef::Number(n) => port_ok(*n),
        PortRef::Name(name) => ports.iter().any(|p| !name.is_empty() && p.name == *name),
    };
    let unknown_name = |kind: &str, port: &PortRef| match port {
        PortRef::Name(name) => Err(Error::invalid(
            format!("{field}.{kind}.port"),
            format!("{name:?} names none of the container's ports"),
        )),
        PortRef::Number(_) => bad_port(kind),
    };
    match &probe.handler {
        ProbeHandler::Exec { command } if command.is_empty() => {
            return Err(Error::invalid(
                format!("{field}.exec.command"),
                "must not be empty",
            ));
        }
        ProbeHandler::HttpGet { port, .. } if !port_ref_ok(port) => {
            return unknown_name("httpGet", port);
        }
        ProbeHandler::TcpSocket { port, .. } if !port_ref_ok(port) => {
            return unknown_name("tcpSocket", port);
        }
        ProbeHandler::Grpc { port, .. } if !port_ok(*port) => return bad_port("grpc"),
        _ => {}
    }
    // 0 means the kubelet's default; the upper bounds keep a probe from pinning work forever.
    for (name, v, max) in [
        (
            "initialDelaySeconds",
            probe.initial_delay_seconds,
            MAX_PROBE_SECONDS,
        ),
        ("timeoutSeconds", probe.timeout_seconds, MAX_PROBE_SECONDS),
        ("periodSeconds", probe.period_seconds, MAX_PROBE_SECONDS),
        (
            "successThreshold",
            probe.success_threshold,
            MAX_PROBE_THRESHOLD,
        ),
        (
            "failureThreshold",
            probe.failure_threshold,
            MAX_PROBE_THRESHOLD,
        ),
    ] {
        if v < 0 {
            return Err(Error::invalid(
                format!("{field}.{name}"),
                "must not be negative",
            ));
        }
        if v > max {
            return Err(Error::invalid(
                format!("{field}.{name}"),
                format!("{v} is above the limit of {max}"),
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

/// Values containerd would refuse, refused first with the field named (not as UNKNOWN later).
fn security_values(spec: &ContainerSpec, f: &dyn Fn(&str) -> String) -> Result<()> {
    let sc = &spec.security;
    for (name, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if let Some(id) = id.filter(|id| !(0..=i64::from(u32::MAX - 1)).contains(id)) {
            return Err(Error::invalid(
                f(&format!("securityContext.{name}")),
                format!("{id} is not a valid id (0 to 4294967294)"),
            ));
        }
    }
    for (list, names) in [
        ("add", &sc.capabilities.add),
        ("drop", &sc.capabilities.drop),
    ] {
        for (j, name) in names.iter().enumerate() {
            if CapName::parse(name).is_none() {
                return Err(Error::invalid(
                    f(&format!("securityContext.capabilities.{list}[{j}]")),
                    format!("{name:?} is not a Linux capability"),
                ));
            }
        }
    }
    if let Some(Profile::Localhost(path)) = &sc.seccomp {
        if path.split('/').any(|c| c == "..") {
            return Err(Error::invalid(
                f("securityContext.seccompProfile"),
                format!("localhost/{path}: the profile path must not contain '..'"),
            ));
        }
    }
    Ok(())
}

/// Checks a request as a whole: how many containers, and no name twice.
pub fn batch(specs: &[ContainerSpec]) -> Result<()> {
    if specs.is_empty() || specs.len() > MAX_BATCH {
        return Err(Error::invalid(
            "containers",
            format!("give 1 to {MAX_BATCH} containers"),
        ));
    }
    let mut names = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        if !names.insert(spec.name.as_str()) {
            return Err(Error::invalid(
                format!("containers[{i}].name"),
                format!("{:?} appears twice in the request", spec.name),
            ));
        }
    }
    Ok(())
}

/// Checks everything about one container that needs no knowledge of the pod.
pub fn container(spec: &ContainerSpec, i: usize) -> Result<()> {
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
    // podgraft bind-mounts its own file there: a clean path outside the kernel's filesystems.
    let tmp = &spec.termination_message_path;
    if !tmp.is_empty()
        && (super::mounts::lexical(tmp) != *tmp
            || tmp == "/"
            || ["/proc", "/sys"]
                .iter()
                .any(|p| tmp == p || tmp.starts_with(&format!("{p}/"))))
    {
        return Err(Error::invalid(
            f("terminationMessagePath"),
            format!(
                "{tmp:?} must be a clean path (no '.', '..', '//' or trailing '/'), not /, /proc or /sys"
            ),
        ));
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
            if RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
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
        if !port_ok(port.container_port) {
            return Err(Error::invalid(
                f(&format!("ports[{j}].containerPort")),
                "must be 1-65535",
            ));
        }
    }
    let value = |q: &Option<Quantity>| q.as_ref().map_or(0, |q| q.value);
    let (req, lim) = (&spec.resources.requests, &spec.resources.limits);
    for (res_name, request, limit, max, bound) in [
        (
            "cpu",
            value(&req.cpu),
            value(&lim.cpu),
            MAX_CPU_MILLI,
            "1000000 CPUs",
        ),
        (
            "memory",
            value(&req.memory),
            value(&lim.memory),
            MAX_MEMORY_BYTES,
            "1Pi",
        ),
    ] {
        for (list, v) in [("requests", request), ("limits", limit)] {
            if v > max {
                return Err(Error::invalid(
                    f(&format!("resources.{list}.{res_name}")),
                    format!("must be at most {bound}"),
                ));
            }
        }
        if limit > 0 && request > limit {
            return Err(Error::invalid(
                f(&format!("resources.requests.{res_name}")),
                "must not exceed the limit",
            ));
        }
    }
    if spec.security.privileged {
        return Err(Error::PermissionDenied(format!(
            "{}: privileged dynamic containers are not allowed",
            f("securityContext.privileged")
        )));
    }
    security_values(spec, &f)?;
    for (name, probe, strict) in [
        ("livenessProbe", &spec.liveness_probe, true),
        ("readinessProbe", &spec.readiness_probe, false),
        ("startupProbe", &spec.startup_probe, true),
    ] {
        if let Some(p) = probe {
            check_probe(&f(name), p, strict, &spec.ports)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_message_paths_are_clean_and_outside_proc_and_sys() {
        let with = |path: &str| ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            termination_message_path: path.into(),
            ..Default::default()
        };
        for ok in ["", "/dev/termination-log", "/tmp/msg", "/processes/x"] {
            container(&with(ok), 0).unwrap();
        }
        for bad in [
            "/",
            "/proc/1/mem",
            "/sys",
            "/a/../proc/x",
            "/a//b",
            "/a/",
            "rel",
            "/a/./b",
        ] {
            let err = container(&with(bad), 2).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field, .. } if field == "containers[2].terminationMessagePath"),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn probes_and_batches_name_the_field() {
        let probe = |handler| Probe {
            handler,
            initial_delay_seconds: 0,
            timeout_seconds: 1,
            period_seconds: 10,
            success_threshold: 2,
            failure_threshold: 3,
            termination_grace_period_seconds: None,
        };
        let mut spec = ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            ..Default::default()
        };
        spec.readiness_probe = Some(probe(ProbeHandler::TcpSocket {
            port: PortRef::Name("http".into()),
            host: String::new(),
        }));
        let err = container(&spec, 0).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, reason } if field == "containers[0].readinessProbe.tcpSocket.port" && reason.contains("\"http\"")),
            "{err:?}"
        );
        spec.ports.push(ContainerPort {
            name: "http".into(),
            container_port: 80,
            ..Default::default()
        });
        container(&spec, 0).unwrap();
        spec.liveness_probe = spec.readiness_probe.clone();
        let err = container(&spec, 1).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "containers[1].livenessProbe.successThreshold"),
            "{err:?}"
        );
        spec.liveness_probe = Some(probe(ProbeHandler::Grpc {
            port: 0,
            service: String::new(),
        }));
        let err = container(&spec, 0).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "containers[0].livenessProbe.grpc.port"),
            "{err:?}"
        );
        assert!(batch(&[]).is_err());
        let err = batch(&[spec.clone(), spec]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "containers[1].name")
        );
    }
}
