//! Container specs in the Kubernetes shape users already write (YAML or JSON, camelCase), turned
//! into the control API's [`ContainerSpec`]. A file holds one container, a list of them, or an
//! object with a `containers:` list (so a pod spec's container section can be pasted as is).

use std::collections::HashMap;

use serde::Deserialize;

use crate::api;

/// A quantity may be written as a string ("500m") or a bare number (1, 0.5).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Quantity {
    fn text(self) -> String {
        match self {
            Quantity::Text(s) => s,
            Quantity::Int(i) => i.to_string(),
            Quantity::Float(f) => f.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourceMap {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
}

impl ResourceMap {
    fn into_api(self) -> api::ResourceList {
        api::ResourceList {
            cpu: self.cpu.map(Quantity::text).unwrap_or_default(),
            memory: self.memory.map(Quantity::text).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    requests: Option<ResourceMap>,
    limits: Option<ResourceMap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VolumeMount {
    #[serde(default)]
    name: String,
    /// podgraft extension: an existing mount's host path instead of a volume name.
    #[serde(default)]
    host_path: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Port {
    #[serde(default)]
    name: String,
    container_port: i32,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    host_port: i32,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Capabilities {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileRef {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    localhost_profile: String,
}

impl ProfileRef {
    fn text(self) -> String {
        match self.kind.as_str() {
            "Localhost" => format!("localhost/{}", self.localhost_profile),
            _ => self.kind,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeLinuxOptions {
    #[serde(default)]
    level: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecurityContext {
    capabilities: Option<Capabilities>,
    #[serde(default)]
    privileged: bool,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    se_linux_options: Option<SeLinuxOptions>,
    seccomp_profile: Option<ProfileRef>,
    app_armor_profile: Option<ProfileRef>,
    #[serde(default)]
    proc_mount: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpGet {
    #[serde(default)]
    path: String,
    port: ProbePort,
    #[serde(default)]
    host: String,
    #[serde(default)]
    scheme: String,
    #[serde(default)]
    http_headers: Vec<Header>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TcpSocket {
    port: ProbePort,
    #[serde(default)]
    host: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exec {
    command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Probe {
    exec: Option<Exec>,
    http_get: Option<HttpGet>,
    tcp_socket: Option<TcpSocket>,
    grpc: Option<Grpc>,
    #[serde(default)]
    initial_delay_seconds: i32,
    #[serde(default)]
    timeout_seconds: i32,
    #[serde(default)]
    period_seconds: i32,
    #[serde(default)]
    success_threshold: i32,
    #[serde(default)]
    failure_threshold: i32,
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Grpc {
    port: i32,
    #[serde(default)]
    service: String,
}

/// A probe port as a pod spec writes it: a number or a port name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ProbePort {
    Number(i32),
    Name(String),
}

impl ProbePort {
    fn into_api(self) -> (i32, String) {
        match self {
            ProbePort::Number(n) => (n, String::new()),
            ProbePort::Name(n) => (0, n),
        }
    }
}

impl Probe {
    fn into_api(self) -> api::Probe {
        use api::probe::Handler;
        let handler = if let Some(e) = self.exec {
            Some(Handler::Exec(api::ExecAction { command: e.command }))
        } else if let Some(h) = self.http_get {
            let (port, port_name) = h.port.into_api();
            Some(Handler::HttpGet(api::HttpGetAction {
                path: h.path,
                port,
                port_name,
                host: h.host,
                scheme: h.scheme,
                http_headers: h
                    .http_headers
                    .into_iter()
                    .map(|x| api::KeyValue {
                        name: x.name,
                        value: x.value,
                    })
                    .collect(),
            }))
        } else if let Some(t) = self.tcp_socket {
            let (port, port_name) = t.port.into_api();
            Some(Handler::TcpSocket(api::TcpSocketAction {
                port,
                port_name,
                host: t.host,
            }))
        } else {
            self.grpc.map(|g| {
                Handler::Grpc(api::GrpcAction {
                    port: g.port,
                    service: g.service,
                })
            })
        };
        api::Probe {
            handler,
            initial_delay_seconds: self.initial_delay_seconds,
            timeout_seconds: self.timeout_seconds,
            period_seconds: self.period_seconds,
            success_threshold: self.success_threshold,
            failure_threshold: self.failure_threshold,
            termination_grace_period_seconds: self.termination_grace_period_seconds,
        }
    }
}

/// One container, as in a pod spec (plus podgraft's `labels` and `annotations`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    name: String,
    image: String,
    #[serde(default)]
    image_pull_policy: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    working_dir: String,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    ports: Vec<Port>,
    resources: Option<Resources>,
    security_context: Option<SecurityContext>,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    stdin_once: bool,
    #[serde(default)]
    termination_message_path: String,
    #[serde(default)]
    termination_message_policy: String,
    #[serde(default)]
    restart_policy: String,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

impl Container {
    pub fn into_api(self) -> api::ContainerSpec {
        let sc = self.security_context.map(|sc| {
            let caps = sc.capabilities.unwrap_or_default();
            api::SecurityContext {
                capabilities: Some(api::Capabilities {
                    add: caps.add,
                    drop: caps.drop,
                }),
                privileged: sc.privileged,
                run_as_user: sc.run_as_user,
                run_as_group: sc.run_as_group,
                run_as_non_root: sc.run_as_non_root,
                read_only_root_filesystem: sc.read_only_root_filesystem,
                allow_privilege_escalation: sc.allow_privilege_escalation,
                se_linux_level: sc.se_linux_options.map(|o| o.level).unwrap_or_default(),
                seccomp_profile: sc.seccomp_profile.map(ProfileRef::text).unwrap_or_default(),
                apparmor_profile: sc
                    .app_armor_profile
                    .map(ProfileRef::text)
                    .unwrap_or_default(),
                proc_mount: sc.proc_mount,
            }
        });
        api::ContainerSpec {
            name: self.name,
            image: self.image,
            image_pull_policy: self.image_pull_policy,
            registry_auth: None,
            command: self.command,
            args: self.args,
            working_dir: self.working_dir,
            env: self
                .env
                .into_iter()
                .map(|e| api::KeyValue {
                    name: e.name,
                    value: e.value,
                })
                .collect(),
            volume_mounts: self
                .volume_mounts
                .into_iter()
                .map(|m| api::VolumeMount {
                    name: m.name,
                    host_path: m.host_path,
                    mount_path: m.mount_path,
                    read_only: m.read_only,
                })
                .collect(),
            ports: self
                .ports
                .into_iter()
                .map(|p| api::ContainerPort {
                    name: p.name,
                    container_port: p.container_port,
                    protocol: p.protocol,
                    host_port: p.host_port,
                })
                .collect(),
            resources: self.resources.map(|r| api::Resources {
                requests: r.requests.map(ResourceMap::into_api),
                limits: r.limits.map(ResourceMap::into_api),
            }),
            security_context: sc,
            tty: self.tty,
            stdin: self.stdin,
            stdin_once: self.stdin_once,
            termination_message_path: self.termination_message_path,
            termination_message_policy: self.termination_message_policy,
            restart_policy: self.restart_policy,
            liveness_probe: self.liveness_probe.map(Probe::into_api),
            readiness_probe: self.readiness_probe.map(Probe::into_api),
            startup_probe: self.startup_probe.map(Probe::into_api),
            labels: self.labels,
            annotations: self.annotations,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    Wrapped { containers: Vec<Container> },
    Many(Vec<Container>),
    One(Box<Container>),
}

/// Parses a spec file (YAML is a superset of JSON, so one parser serves both).
pub fn parse(text: &str) -> Result<Vec<api::ContainerSpec>, String> {
    // Parse each shape separately so a typo is reported against the shape the file looks like.
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let result = if value.get("containers").is_some() {
        serde_norway::from_value::<File>(value).map_err(|e| e.to_string())
    } else if value.is_sequence() {
        serde_norway::from_value::<Vec<Container>>(value)
            .map(File::Many)
            .map_err(|e| e.to_string())
    } else {
        serde_norway::from_value::<Container>(value)
            .map(|c| File::One(Box::new(c)))
            .map_err(|e| e.to_string())
    }?;
    let containers = match result {
        File::Wrapped { containers } | File::Many(containers) => containers,
        File::One(c) => vec![*c],
    };
    Ok(containers.into_iter().map(Container::into_api).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_kubernetes_container_in_yaml() {
        let specs = parse(
            r#"
name: tool
image: busybox:1.36
command: ["sh", "-c"]
args: ["sleep 3600"]
env: [{name: MODE, value: fast}]
resources:
  requests: {cpu: 250m, memory: 32Mi}
  limits: {cpu: 1, memory: 64Mi}
securityContext:
  capabilities: {drop: [ALL]}
  allowPrivilegeEscalation: false
  seccompProfile: {type: RuntimeDefault}
readinessProbe:
  exec: {command: [cat, /tmp/ready]}
  periodSeconds: 2
volumeMounts: [{name: scratch, mountPath: /scratch}]
"#,
        )
        .unwrap();
        let s = &specs[0];
        assert_eq!(s.name, "tool");
        assert_eq!(s.args, ["sleep 3600"]);
        let r = s.resources.clone().unwrap();
        assert_eq!(r.limits.unwrap().cpu, "1");
        assert_eq!(r.requests.unwrap().memory, "32Mi");
        let sc = s.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.seccomp_profile, "RuntimeDefault");
        assert!(matches!(
            s.readiness_probe.clone().unwrap().handler,
            Some(api::probe::Handler::Exec(_))
        ));
    }

    #[test]
    fn reads_lists_json_and_rejects_typos() {
        let many =
            parse(r#"{"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}"#)
                .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(parse("- {name: a, image: x}\n").unwrap().len(), 1);
        let err = parse("name: a\nimage: x\nimagePullPolicyy: Always\n").unwrap_err();
        assert!(err.contains("imagePullPolicyy"), "{err}");
    }
}
