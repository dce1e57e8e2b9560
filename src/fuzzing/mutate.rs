//! The structure-aware mutator of `control_spec`.

use super::*;

/// Quantities around the parser's edges and the arithmetic done with them (shares, quota,
/// oom_score_adj, the ledger's sums).
pub(super) const QUANTITIES: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "100m",
    "500m",
    "1.5",
    "0.001",
    "1n",
    "64Mi",
    "1Gi",
    "128M",
    "1e3",
    "1E",
    "1Ei",
    "9P",
    "100G",
    "92T",
    "4Ei",
    "7Ei",
    "8Ei",
    "1e18",
    "1e19",
    "-1",
    "NaN",
    "inf",
    "1e308",
    ".5",
    "+1",
    "1Ki",
    " 1 ",
    "1x",
    "9223372036854775807",
];
pub(super) const IDS: &[i64] = &[
    0,
    1,
    1000,
    2000,
    3000,
    4000,
    65534,
    -1,
    4_294_967_294,
    4_294_967_295,
    i64::MAX,
    i64::MIN,
];
pub(super) const NUMBERS: &[i32] = &[
    0,
    -1,
    1,
    3,
    10,
    80,
    1000,
    1001,
    3600,
    3601,
    65535,
    65536,
    i32::MAX,
    i32::MIN,
];
pub(super) const CAPABILITIES: &[&str] = &[
    "ALL",
    "all",
    "SYS_ADMIN",
    "CAP_SYS_ADMIN",
    "sys_admin",
    "NET_ADMIN",
    "NET_RAW",
    "NET_BIND_SERVICE",
    "CHOWN",
    " chown ",
    "CAP_",
    "",
    "BOGUS",
    "SYS_PTRACE",
    "SETUID",
];
pub(super) const PROFILES: &[&str] = &[
    "",
    "RuntimeDefault",
    "Unconfined",
    "localhost/",
    "localhost/profiles/audit.json",
    "localhost//var/lib/kubelet/seccomp/profiles/audit.json",
    "localhost/../etc/x",
    "localhost/missing.json",
    "localhost/k8s-web",
    "localhost/cri-containerd.apparmor.d",
    "runtime/default",
];
/// Names, paths, images, levels, policies and keys the fixtures and the parsers know.
pub(super) const WORDS: &[&str] = &[
    "",
    "a",
    "b",
    "tool",
    "main",
    "old",
    "busy",
    "Bad_Name",
    "data",
    "config",
    "etc-hosts",
    "/data",
    "/config",
    "/etc/hosts",
    "relative",
    "/",
    "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~empty-dir/data",
    "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~empty-dir/data/link",
    "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~empty-dir/data/../../kubernetes.io~configmap/config",
    "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~configmap/config/",
    "/var/lib/kubelet/pods/0c8f/etc-hosts",
    "/etc",
    "busybox",
    "docker.io/library/busybox:1.36",
    "busybox@sha256:0000",
    "a b",
    "s0:c1,c2",
    "s0:c3,c4",
    "s0:c9",
    "Unmasked",
    "Default",
    "TCP",
    "SCTP",
    "tcp",
    "HTTP",
    "HTTPS",
    "Always",
    "Never",
    "IfNotPresent",
    "OnFailure",
    "File",
    "FallbackToLogsOnError",
    "io.kubernetes.pod.uid",
    "podgraft.io/dynamic",
    "app",
];

pub(super) struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n.max(1)
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    fn word(&mut self) -> String {
        self.pick(WORDS).to_string()
    }

    fn flag(&mut self) -> Option<bool> {
        self.pick(&[None, Some(false), Some(true)])
    }

    fn probe(&mut self) -> Option<api::Probe> {
        use api::probe::Handler;
        if self.chance(4) {
            return None;
        }
        let handler = match self.below(5) {
            0 => None,
            1 => Some(Handler::Exec(api::ExecAction {
                command: vec![self.word()],
            })),
            2 => Some(Handler::HttpGet(api::HttpGetAction {
                path: self.word(),
                port: self.pick(NUMBERS),
                host: self.word(),
                scheme: self.word(),
                http_headers: vec![],
                port_name: if self.chance(3) {
                    self.word()
                } else {
                    String::new()
                },
            })),
            3 => Some(Handler::Grpc(api::GrpcAction {
                port: self.pick(NUMBERS),
                service: self.word(),
            })),
            _ => Some(Handler::TcpSocket(api::TcpSocketAction {
                port: self.pick(NUMBERS),
                host: String::new(),
                port_name: String::new(),
            })),
        };
        Some(api::Probe {
            handler,
            initial_delay_seconds: self.pick(NUMBERS),
            timeout_seconds: self.pick(NUMBERS),
            period_seconds: self.pick(NUMBERS),
            success_threshold: self.pick(NUMBERS),
            failure_threshold: self.pick(NUMBERS),
            termination_grace_period_seconds: self.chance(2).then(|| self.pick(NUMBERS).into()),
        })
    }
}

/// One change to a request that keeps it a valid message: a field set to a value that matters
/// to conversion or admission, a container added, copied or removed.
pub(super) fn mutate_request(req: &mut api::AddContainersRequest, rng: &mut Rng) {
    if req.containers.is_empty() || rng.chance(16) {
        req.containers.push(spec(&rng.word()));
    }
    let n = req.containers.len();
    let i = rng.below(n);
    match rng.below(16) {
        0 => {
            if rng.chance(2) && n < 40 {
                let mut copy = req.containers[i].clone();
                copy.name = rng.word();
                req.containers.push(copy);
            } else if n > 1 {
                req.containers.remove(i);
            }
        }
        1 => {
            req.pod = match rng.below(4) {
                0 => None,
                1 => Some(api::PodRef {
                    uid: rng.word(),
                    ..Default::default()
                }),
                2 => Some(api::PodRef {
                    sandbox_id: rng.word(),
                    name: rng.word(),
                    ..Default::default()
                }),
                _ => Some(api::PodRef {
                    namespace: rng.word(),
                    name: rng.word(),
                    ..Default::default()
                }),
            }
        }
        op => {
            let c = &mut req.containers[i];
            let sc = c.security_context.get_or_insert_with(Default::default);
            match op {
                2 | 3 => {
                    let r = c.resources.get_or_insert_with(Default::default);
                    let list = if rng.chance(2) {
                        r.requests.get_or_insert_with(Default::default)
                    } else {
                        r.limits.get_or_insert_with(Default::default)
                    };
                    let q = rng.pick(QUANTITIES).to_string();
                    if rng.chance(2) {
                        list.cpu = q;
                    } else {
                        list.memory = q;
                    }
                }
                4 => {
                    let id = (!rng.chance(4)).then(|| rng.pick(IDS));
                    if rng.chance(2) {
                        sc.run_as_user = id;
                    } else {
                        sc.run_as_group = id;
                    }
                }
                5 => {
                    let caps = sc.capabilities.get_or_insert_with(Default::default);
                    let list = if rng.chance(2) {
                        &mut caps.add
                    } else {
                        &mut caps.drop
                    };
                    if rng.chance(4) {
                        list.clear();
                    } else {
                        list.push(rng.pick(CAPABILITIES).to_string());
                    }
                }
                6 => {
                    let p = rng.pick(PROFILES).to_string();
                    if rng.chance(2) {
                        sc.seccomp_profile = p;
                    } else {
                        sc.apparmor_profile = p;
                    }
                }
                7 => {
                    if rng.chance(2) {
                        sc.proc_mount = rng.word();
                    } else {
                        sc.se_linux_level = rng.word();
                    }
                }
                8 => match rng.below(6) {
                    0 => sc.privileged = !sc.privileged,
                    1 => sc.run_as_non_root = rng.flag(),
                    2 => sc.read_only_root_filesystem = rng.flag(),
                    3 => sc.allow_privilege_escalation = rng.flag(),
                    4 => c.security_context = None,
                    _ => c.tty = !c.tty,
                },
                9 => {
                    if rng.chance(4) {
                        c.volume_mounts.clear();
                    } else {
                        c.volume_mounts.push(api::VolumeMount {
                            name: rng.word(),
                            host_path: if rng.chance(2) {
                                String::new()
                            } else {
                                rng.word()
                            },
                            mount_path: rng.word(),
                            read_only: rng.chance(2),
                        });
                    }
                }
                10 => {
                    if rng.chance(2) {
                        c.name = rng.word();
                    } else {
                        c.image = rng.word();
                    }
                }
                11 => match rng.below(4) {
                    0 => c.image_pull_policy = rng.word(),
                    1 => c.restart_policy = rng.word(),
                    2 => c.termination_message_policy = rng.word(),
                    _ => c.working_dir = rng.word(),
                },
                12 => {
                    let (k, v) = (rng.word(), rng.word());
                    match rng.below(3) {
                        0 => c.env.push(api::KeyValue { name: k, value: v }),
                        1 => {
                            c.labels.insert(k, v);
                        }
                        _ => {
                            c.annotations.insert(k, v);
                        }
                    }
                }
                13 => c.ports.push(api::ContainerPort {
                    name: rng.word(),
                    container_port: rng.pick(NUMBERS),
                    protocol: rng.word(),
                    host_port: if rng.chance(4) { rng.pick(NUMBERS) } else { 0 },
                }),
                _ => {
                    let probe = rng.probe();
                    match rng.below(3) {
                        0 => c.liveness_probe = probe,
                        1 => c.readiness_probe = probe,
                        _ => c.startup_probe = probe,
                    }
                }
            }
        }
    }
}

/// libFuzzer's byte-level mutation (`LLVMFuzzerMutate`): `(data, size, max_size) -> new size`.
pub type ByteMutator = fn(&mut [u8], usize, usize) -> usize;

/// The custom mutator of `control_spec`: byte-level mutation keeps the protobuf parser busy, but
/// rarely yields a well-formed request with a value that matters (a quantity that overflows, a
/// capability spelled another way) behind four length prefixes. So, most of the time, decode the
/// request, change a field or two to such values, and encode it again.
pub fn mutate_control_spec(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    bytes: ByteMutator,
) -> usize {
    let mut rng = Rng(seed | 1);
    let decoded = api::AddContainersRequest::decode(&data[..size.min(data.len())]);
    let Ok(mut req) = decoded
        .map_err(drop)
        .and_then(|r| if rng.chance(4) { Err(()) } else { Ok(r) })
    else {
        return bytes(data, size, max_size);
    };
    for _ in 0..=rng.below(3) {
        mutate_request(&mut req, &mut rng);
    }
    let out = req.encode_to_vec();
    if out.len() > max_size.min(data.len()) {
        return bytes(data, size, max_size);
    }
    data[..out.len()].copy_from_slice(&out);
    out.len()
}
