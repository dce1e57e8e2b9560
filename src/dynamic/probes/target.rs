//! Where a network probe goes: the host (the probe's own, or the pod's IP) and the port (a number,
//! or the name of one of the container's ports).

use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::spec::PortRef;

/// The address for a pod whose sandbox reports no IP: host-network pods (containerd 1.6 reports
/// none for them; the kubelet would use the node's address, which reaches the same listeners
/// bound to all addresses), or a sandbox whose network is not set up.
pub const NO_POD_IP: &str = "127.0.0.1";

/// The port a probe names, resolved against the container's ports as the kubelet does.
pub fn resolve_port(port: &PortRef, spec: &ContainerSpec) -> Result<u16, String> {
    let number = match port {
        PortRef::Number(n) => *n,
        PortRef::Name(name) => spec
            .ports
            .iter()
            .find(|p| p.name == *name)
            .map(|p| p.container_port)
            .ok_or_else(|| format!("no container port named {name:?}"))?,
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("port {number} is out of range"))
}

/// `host` (the probe's) or else the pod's address.
pub fn host_of<'a>(probe_host: &'a str, pod_ip: &'a str) -> &'a str {
    if probe_host.is_empty() {
        pod_ip
    } else {
        probe_host
    }
}

/// `host:port` for an authority or URL, with IPv6 addresses bracketed.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::spec::ContainerPort;

    #[test]
    fn ports_by_number_or_name() {
        let spec = ContainerSpec {
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(resolve_port(&PortRef::Number(80), &spec), Ok(80));
        assert_eq!(resolve_port(&PortRef::Name("http".into()), &spec), Ok(8080));
        assert!(resolve_port(&PortRef::Name("grpc".into()), &spec).is_err());
        assert!(resolve_port(&PortRef::Number(0), &spec).is_err());
        assert!(resolve_port(&PortRef::Number(70000), &spec).is_err());
        assert_eq!(authority("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(authority("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(host_of("", "10.0.0.1"), "10.0.0.1");
        assert_eq!(host_of("example", "10.0.0.1"), "example");
    }
}
