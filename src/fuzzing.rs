//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and the replay of their seeds and
//! findings as unit tests. Only with the `testing` feature (or in tests).
//!
//! Each entry point takes arbitrary bytes and must never panic: malformed input is an error for
//! the code under test, not a crash. Beyond "no panic", each checks properties that hold for every
//! input, so a fuzzer finds wrong answers too, not only crashes:
//!
//! - [`wire`]: the protobuf wire helpers (`crate::wire`): fields tile the message, keeping every
//!   entry or rewriting nothing returns the message unchanged, dropping leaves a well-formed
//!   message, varints round-trip.
//! - [`hide`]: what the relay runs over every kubelet response: the unary and stream hiding
//!   filters, the event filter, gRPC framing (`MessageDecoder`, `FrameScanner`) and the streaming
//!   `FieldMask`, which must give the same bytes under any chunking and agree with
//!   `wire::retain_repeated` once its padding is ignored.
//! - [`control_spec`]: an `AddContainersRequest` as the control API receives it: conversion,
//!   request checks, `harden` and `admit` against fixed pods; whatever is admitted never holds
//!   more than the pod's containers (the no-escalation rules, restated), and its spec survives
//!   the API and the stored-annotation round trips; growth stays within the ledger's budget.
//!
//! Inputs that once crashed live in `fuzz/regressions/<target>/` and are replayed here, with the
//! committed seed corpus (`fuzz/seeds/<target>/`), by `cargo nextest run`.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use k8s_cri::v1 as cri;
use prost::Message;

use crate::api;
use crate::control::convert;
use crate::dynamic::admission::caps::{self, CapName};
use crate::dynamic::admission::security::{self, APPARMOR_RUNTIME_DEFAULT};
use crate::dynamic::admission::{self, Limits, PodFacts, TakenNames};
use crate::dynamic::lifecycle::stored_spec::SpecCodec;
use crate::dynamic::lifecycle::translate;
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::keys::DYNAMIC_LABEL;
use crate::dynamic::model::kubelet::{MASKED_PATHS, Qos, READONLY_PATHS};
use crate::dynamic::model::security::{
    ContainerSecurity, Effective, ImageUser, PodSecurity, SandboxSecurity, SeccompFact,
};
use crate::dynamic::model::spec::Profile;
use crate::dynamic::resources::{Bounds, Ledger, growth_of};
use crate::server::grpc::{FrameScanner, MessageDecoder, PREFIX_LEN};
use crate::server::hide;
use crate::server::mask::{FieldMask, Masker, PAD_FIELD};
use crate::wire::{self, WireError};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and the corpus directories.
pub const TARGETS: [(&str, Target); 3] = [
    ("wire", wire),
    ("hide", hide),
    ("control_spec", control_spec),
];

/// Chunk sizes for a byte stream, as a socket might deliver it: the low 3 bits of `seed` pick
/// the largest size, the rest seed a xorshift.
struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    fn new(seed: u8) -> Self {
        Chunks {
            state: (u32::from(seed >> 3) + 1).wrapping_mul(0x9e37_79b9),
            max: [1, 2, 3, 5, 8, 64, 512, 1 << 16][usize::from(seed & 7)],
        }
    }

    fn next(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + x as usize % self.max
    }

    /// `data` cut into chunks.
    fn split(mut self, data: &Bytes) -> Vec<Bytes> {
        let mut rest = data.clone();
        let mut out = Vec::new();
        while !rest.is_empty() {
            let n = self.next().min(rest.len());
            out.push(rest.split_to(n));
        }
        out
    }
}

/// `wire`: the first byte picks the field number (1–16) the helpers look for; the rest is the
/// message.
pub fn wire(data: &[u8]) {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let number = u32::from(selector & 0x0f) + 1;
    let bytes = Bytes::copy_from_slice(msg);

    // Fields tile the message in order; all of it when every field parses.
    let mut pos = 0;
    let mut well_formed = true;
    for field in wire::fields(msg) {
        match field {
            Ok(f) => {
                assert_eq!(f.start, pos, "fields are contiguous");
                assert!(f.start < f.end && f.end <= msg.len());
                if let Some(payload) = f.bytes() {
                    let offset = payload.as_ptr() as usize - msg.as_ptr() as usize;
                    assert!(offset > f.start && offset + payload.len() == f.end);
                }
                pos = f.end;
            }
            Err(e) => {
                assert!(e.offset <= msg.len().max(pos) + 10, "{e}");
                well_formed = false;
            }
        }
    }
    if well_formed {
        assert_eq!(pos, msg.len(), "fields cover the message");
    }

    let found = wire::get_bytes(msg, number);
    assert_eq!(found.is_ok(), well_formed);
    let _ = wire::get_string(msg, number);
    let _ = wire::map_get(msg, number, DYNAMIC_LABEL);
    let _ = wire::map_get(msg, number, "");

    // Keeping everything, or rewriting nothing, gives back the message itself.
    match wire::retain_repeated(&bytes, number, |_| Ok(true)) {
        Ok(out) => {
            assert!(well_formed);
            assert_eq!(out, bytes);
        }
        Err(_) => assert!(!well_formed),
    }
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| Ok(inner.clone())) {
        assert_eq!(out, bytes);
    }
    // Dropping every entry leaves a well-formed message without them.
    if let Ok(out) = wire::retain_repeated(&bytes, number, |_| Ok(false)) {
        for field in wire::fields(&out) {
            let field = field.expect("what is left of a well-formed message parses");
            assert!(field.number != number || field.bytes().is_none());
        }
    }
    // The predicate the relay hides with, one level down, errors passed on.
    let _ = wire::retain_repeated(&bytes, number, |entry| {
        Ok(wire::map_get(entry, 8, DYNAMIC_LABEL)?.is_none())
    });
    // A rewrite that changes the length of each sub-message gets its length prefix right.
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| {
        let mut grown = inner.to_vec();
        grown.extend_from_slice(&[0x08, 0x01]);
        Ok(Bytes::from(grown))
    }) {
        for field in wire::fields(&out) {
            field.expect("a rewritten message parses");
        }
    }
    if let Ok(out) = wire::rewrite_submessage(&bytes, number, |inner| {
        wire::retain_repeated(inner, 1, |e| Ok(wire::get_bytes(e, 1)?.is_none()))
    }) {
        for field in wire::fields(&out) {
            field.expect("a rewritten message parses");
        }
    }

    // Varints: what decodes re-encodes to the same value in at most as many bytes.
    if let Ok(Some((value, len))) = wire::decode_varint(msg) {
        assert!((1..=10).contains(&len));
        let mut out = bytes::BytesMut::new();
        wire::put_varint(&mut out, value);
        assert!(out.len() <= len);
        assert_eq!(wire::decode_varint(&out), Ok(Some((value, out.len()))));
    }
    let mut word = [0u8; 8];
    let n = msg.len().min(8);
    word[..n].copy_from_slice(&msg[..n]);
    let value = u64::from_le_bytes(word);
    let mut out = bytes::BytesMut::new();
    wire::put_varint(&mut out, value);
    assert_eq!(wire::decode_varint(&out), Ok(Some((value, out.len()))));
    assert_eq!(wire::decode_varint(&out[..out.len() - 1]), Ok(None));
}

/// The largest message the relay accepts by default (`max_message_bytes`).
const MESSAGE_LIMIT: usize = 16 << 20;

/// `hide`: the first byte picks the chunking; the rest is run through every filter as one
/// message, and as a gRPC stream (framing, each message through every filter, the masks).
pub fn hide(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    filters(&body);

    let chunks = Chunks::new(seed).split(&body);
    let mut decoder = MessageDecoder::new(MESSAGE_LIMIT);
    'stream: for chunk in &chunks {
        decoder.push(chunk.clone());
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => filters(&msg),
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    let mut whole = FrameScanner::new(MESSAGE_LIMIT);
    let mut scanner = FrameScanner::new(MESSAGE_LIMIT);
    let chunked = chunks.iter().try_for_each(|c| scanner.scan(c));
    assert_eq!(
        whole.scan(&body),
        chunked,
        "framing does not depend on chunking"
    );

    for (_, mask) in hide::MASKED {
        masked(mask, &body, &chunks);
    }
}

/// Every per-message filter of the relay, on one message.
fn filters(msg: &Bytes) {
    for filter in [hide::container_status, hide::container_stats] {
        if let Ok(out) = filter(msg) {
            assert_eq!(&out, msg, "a visible container's answer is passed as it is");
        }
    }
    // Hiding twice hides nothing more.
    if let Ok(out) = hide::pod_sandbox_stats(msg) {
        assert!(out.len() <= msg.len());
        assert_eq!(hide::pod_sandbox_stats(&out).ok(), Some(out));
    }
    for filter in [hide::stream_containers, hide::stream_container_stats] {
        if let Ok(Some(out)) = filter(msg) {
            assert_eq!(&out, msg);
        }
    }
    if let Ok(Some(out)) = hide::stream_pod_sandbox_stats(msg) {
        assert_eq!(hide::stream_pod_sandbox_stats(&out).ok(), Some(Some(out)));
    }
    // GetContainerEvents, as `HideEvents` filters it (minus the registry lookup).
    if let Ok(Some(out)) = container_event(msg) {
        for field in wire::fields(&out) {
            let field = field.expect("a filtered event parses");
            if let Some(status) = field.bytes().filter(|_| field.number == 5) {
                assert_eq!(hide::status_visible(status), Ok(true));
            }
        }
    }
}

fn container_event(msg: &Bytes) -> Result<Option<Bytes>, WireError> {
    let id = wire::get_string(msg, 1)?.unwrap_or_default();
    if hide::event_names_dynamic(msg, &id)? {
        return Ok(None);
    }
    wire::retain_repeated(msg, 5, hide::status_visible).map(Some)
}

/// The stream through a `Masker`, fed in the given chunks.
fn mask_stream(mask: FieldMask, chunks: &[Bytes]) -> Result<Vec<u8>, WireError> {
    let mut masker = Masker::new(mask);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut parts = Vec::new();
        masker.push(chunk.clone(), &mut parts)?;
        for part in parts {
            out.extend_from_slice(&part);
        }
    }
    Ok(out)
}

/// The payloads of the complete gRPC messages of a stream, as byte ranges.
fn frames(stream: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(prefix) = stream.get(pos..pos + PREFIX_LEN) {
        let len = u32::from_be_bytes(prefix[1..].try_into().expect("4 bytes")) as usize;
        let start = pos + PREFIX_LEN;
        if stream.len() - start < len {
            break;
        }
        out.push((start, start + len));
        pos = start + len;
    }
    out
}

/// A message without its padding fields (those of the mask, and any the input had).
fn without_padding(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    for field in wire::fields(msg) {
        let field = field.expect("a masked well-formed message parses");
        if u64::from(field.number) != PAD_FIELD {
            out.extend_from_slice(&msg[field.start..field.end]);
        }
    }
    out
}

fn masked(mask: FieldMask, stream: &Bytes, chunks: &[Bytes]) {
    let whole = mask_stream(mask, std::slice::from_ref(stream));
    let chunked = mask_stream(mask, chunks);
    match (&whole, &chunked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "masking does not depend on chunking"),
        (Err(_), Err(_)) => {}
        _ => panic!("masking fails under one chunking only: {whole:?} / {chunked:?}"),
    }
    let Ok(out) = whole else {
        return;
    };
    // Padding takes exactly the room; only an unfinished entry at the end may still be held.
    let frames = frames(stream);
    let complete = frames.last().map_or(0, |&(_, end)| end);
    assert!(out.len() >= complete && out.len() <= stream.len());
    for (start, end) in frames {
        assert_eq!(
            out[start - PREFIX_LEN..start],
            stream[start - PREFIX_LEN..start]
        );
        let Ok(kept) = wire::retain_repeated(&stream.slice(start..end), mask.field, mask.visible)
        else {
            continue;
        };
        assert_eq!(
            without_padding(&out[start..end]),
            without_padding(&kept),
            "the mask hides what retain_repeated drops"
        );
    }
}

// ---- control_spec ----

/// An existing container of a hardened pod: uid 1000, no capabilities, read-only root,
/// no_new_privs, RuntimeDefault seccomp.
fn hardened_container() -> ContainerSecurity {
    ContainerSecurity {
        name: "main".into(),
        uid: 1000,
        gid: 3000,
        additional_gids: BTreeSet::new(),
        capabilities: BTreeSet::new(),
        no_new_privs: true,
        readonly_rootfs: true,
        masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
        readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        seccomp: SeccompFact::Profile(Profile::RuntimeDefault),
        apparmor: APPARMOR_RUNTIME_DEFAULT.into(),
        selinux_level: String::new(),
    }
}

/// The pods admission is tried against.
fn pods() -> [PodSecurity; 3] {
    let hardened = PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![hardened_container()],
    };
    // Root with the runtime's defaults, unconfined, plus a privileged-like sidecar.
    let permissive = PodSecurity {
        sandbox: SandboxSecurity::default(),
        containers: vec![
            ContainerSecurity {
                uid: 0,
                gid: 0,
                capabilities: caps::RUNTIME_DEFAULT
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                no_new_privs: false,
                readonly_rootfs: false,
                seccomp: SeccompFact::Unconfined,
                apparmor: String::new(),
                ..hardened_container()
            },
            ContainerSecurity {
                name: "sidecar".into(),
                uid: 0,
                gid: 0,
                capabilities: ["CAP_NET_ADMIN".to_string()].into(),
                no_new_privs: false,
                readonly_rootfs: false,
                masked_paths: BTreeSet::new(),
                readonly_paths: BTreeSet::new(),
                seccomp: SeccompFact::Unconfined,
                apparmor: String::new(),
                ..hardened_container()
            },
        ],
    };
    // Pod-level defaults, two users, a localhost profile, SELinux levels.
    let mixed = PodSecurity {
        sandbox: SandboxSecurity {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000],
            seccomp: Some(Profile::RuntimeDefault),
            apparmor: None,
            selinux_level: "s0:c1,c2".into(),
        },
        containers: vec![
            hardened_container(),
            ContainerSecurity {
                name: "web".into(),
                uid: 2000,
                gid: 3000,
                additional_gids: [4000].into(),
                capabilities: ["CAP_NET_BIND_SERVICE".to_string()].into(),
                readonly_rootfs: false,
                seccomp: SeccompFact::Profile(Profile::Localhost(
                    "/var/lib/kubelet/seccomp/profiles/audit.json".into(),
                )),
                apparmor: "k8s-web".into(),
                selinux_level: "s0:c3,c4".into(),
                ..hardened_container()
            },
        ],
    };
    [hardened, permissive, mixed]
}

fn images() -> [ImageUser; 4] {
    [
        ImageUser::default(),
        ImageUser {
            uid: Some(1000),
            username: String::new(),
        },
        ImageUser {
            uid: Some(65534),
            username: String::new(),
        },
        ImageUser {
            uid: None,
            username: "nobody".into(),
        },
    ]
}

fn facts(security: PodSecurity, qos: Qos) -> PodFacts {
    let volumes = "/var/lib/kubelet/pods/0c8f/volumes";
    let mount = |container: &str, host: String, readonly: bool| cri::Mount {
        container_path: container.into(),
        host_path: host,
        readonly,
        ..Default::default()
    };
    PodFacts {
        sandbox_id: "sb".into(),
        stopping: false,
        dynamic_in_pod: 1,
        dynamic_on_node: 10,
        limits: Limits::default(),
        kubelet_running: true,
        qos,
        names: TakenNames {
            containers: ["main".to_string()].into(),
            in_flight: ["busy".to_string()].into(),
        },
        mounts: vec![
            mount(
                "/data",
                format!("{volumes}/kubernetes.io~empty-dir/data"),
                false,
            ),
            mount(
                "/config",
                format!("{volumes}/kubernetes.io~configmap/config"),
                true,
            ),
            mount(
                "/etc/hosts",
                "/var/lib/kubelet/pods/0c8f/etc-hosts".into(),
                false,
            ),
        ],
        security,
        missing_profiles: ["/var/lib/kubelet/seccomp/missing.json".to_string()].into(),
        // A symlink inside the writable volume pointing at the read-only one.
        resolved_paths: HashMap::from([(
            format!("{volumes}/kubernetes.io~empty-dir/data/link"),
            format!("{volumes}/kubernetes.io~configmap/config"),
        )]),
    }
}

/// The no-escalation rules, restated on the outcome: what `eff` runs with in `pod`, for an image
/// running as `image`, is nothing the pod's containers do not already have.
fn assert_within(pod: &PodSecurity, image: &ImageUser, spec: &ContainerSpec, eff: &Effective) {
    let parse = |names: &[String]| -> Vec<CapName> {
        names.iter().map(|n| CapName::parse(n).expect(n)).collect()
    };
    let held: BTreeSet<String> = pod
        .containers
        .iter()
        .flat_map(|c| c.capabilities.iter().cloned())
        .collect();
    let effective = caps::effective(
        &parse(&eff.capabilities_add),
        &parse(&eff.capabilities_drop),
    );
    assert!(effective.is_subset(&held), "capabilities {effective:?}");

    let uids: BTreeSet<i64> = pod.containers.iter().map(|c| i64::from(c.uid)).collect();
    let gids: BTreeSet<i64> = pod.containers.iter().map(|c| i64::from(c.gid)).collect();
    let uid = eff
        .run_as_user
        .or(image.uid)
        .or_else(|| image.username.is_empty().then_some(0));
    assert!(uid.is_some_and(|u| uids.contains(&u)), "uid {uid:?}");
    if spec.security.run_as_non_root == Some(true) {
        assert_ne!(uid, Some(0));
    }
    let gid = eff.run_as_group.or_else(|| (uid == Some(0)).then_some(0));
    assert!(gid.is_some_and(|g| gids.contains(&g)), "gid {gid:?}");

    if pod.containers.iter().all(|c| c.no_new_privs) {
        assert!(eff.no_new_privs);
    }
    if pod.containers.iter().all(|c| c.readonly_rootfs) {
        assert!(eff.readonly_rootfs);
    }
    let masked: BTreeSet<String> = eff.masked_paths.iter().cloned().collect();
    let readonly: BTreeSet<String> = eff.readonly_paths.iter().cloned().collect();
    assert!(
        pod.containers
            .iter()
            .any(|c| c.masked_paths.is_subset(&masked) && c.readonly_paths.is_subset(&readonly)),
        "masked and read-only paths"
    );

    let any_unconfined = pod
        .containers
        .iter()
        .any(|c| c.seccomp == SeccompFact::Unconfined);
    match &eff.seccomp {
        None | Some(Profile::Unconfined) => assert!(any_unconfined, "seccomp unconfined"),
        Some(p) => assert!(
            any_unconfined
                || pod
                    .containers
                    .iter()
                    .any(|c| c.seccomp == SeccompFact::Profile(p.clone())),
            "seccomp {p:?}"
        ),
    }
    let apparmor: BTreeSet<&str> = pod.containers.iter().map(|c| c.apparmor.as_str()).collect();
    let oci = match &eff.apparmor {
        None | Some(Profile::RuntimeDefault) => APPARMOR_RUNTIME_DEFAULT,
        Some(Profile::Unconfined) => "",
        Some(Profile::Localhost(name)) => name,
    };
    assert!(
        apparmor.contains("") || apparmor.contains(oci),
        "apparmor {oci:?}"
    );
    let level = &eff.selinux_level;
    assert!(
        level.is_empty()
            || *level == pod.sandbox.selinux_level
            || pod.containers.iter().any(|c| c.selinux_level == *level),
        "selinux level {level:?}"
    );
}

/// The node budget growth is checked against.
const BUDGET: Bounds = Bounds {
    cpu_milli: Some(64_000),
    memory: Some(256 << 30),
};

/// `control_spec`: the bytes as an `AddContainersRequest` (and, for old stored specs, as the
/// base64 text of one container spec).
pub fn control_spec(data: &[u8]) {
    let codec = SpecCodec::with_legacy(convert::legacy_spec);
    let _ = codec.decode(&String::from_utf8_lossy(data));
    let Ok(req) = api::AddContainersRequest::decode(data) else {
        return;
    };
    let _ = convert::pod_selector(req.pod.as_ref());
    let _ = convert::pod_filter(req.pod.as_ref());
    let Ok(specs) = convert::container_specs(&req.containers) else {
        return;
    };
    for (i, spec) in specs.iter().enumerate() {
        // What the API shows parses back to the same spec; what is stored reads back the same.
        let shown = convert::api_spec(spec);
        let back = convert::container_spec(&shown, i).expect("a shown spec parses");
        assert_eq!(back.registry_auth, None);
        let without_auth = ContainerSpec {
            registry_auth: None,
            ..spec.clone()
        };
        assert_eq!(back, without_auth, "api round trip");
        let stored = codec
            .decode(&codec.encode(spec))
            .expect("a stored spec reads");
        assert_eq!(stored, without_auth, "annotation round trip");
    }
    let shape = admission::request(&specs);

    // `harden` on its own: every pod, every image user, whatever the request checks said.
    for (i, spec) in specs.iter().enumerate() {
        for pod in &pods() {
            for image in &images() {
                if let Ok(eff) = security::harden(spec, i, pod, image) {
                    if shape.is_ok() {
                        assert_within(pod, image, spec, &eff);
                    }
                }
            }
        }
    }

    let [hardened, permissive, mixed] = pods();
    for (pod, qos, cgroup_parent) in [
        (hardened, Qos::Burstable, "kubepods-burstable-pod0c8f.slice"),
        (permissive, Qos::Guaranteed, "kubepods-pod0c8f.slice"),
        (mixed, Qos::BestEffort, "kubepods-besteffort-pod0c8f.slice"),
    ] {
        let config = cri::PodSandboxConfig {
            labels: HashMap::from([(
                "io.kubernetes.pod.namespace".to_string(),
                "default".to_string(),
            )]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for image in images() {
            let images = vec![image.clone(); specs.len()];
            let facts = facts(pod.clone(), qos);
            let Ok(admitted) = admission::admit(&specs, &images, &facts) else {
                continue;
            };
            assert_eq!(admitted.len(), specs.len());
            if shape.is_err() {
                continue;
            }
            for (spec, a) in specs.iter().zip(&admitted) {
                assert_within(&pod, &image, spec, &a.security);
                for m in &a.mounts {
                    let source = facts
                        .mounts
                        .iter()
                        .find(|e| e.host_path == m.host_path)
                        .expect("only the pod's mounts");
                    assert!(m.readonly || !source.readonly, "read-only stays read-only");
                    assert_eq!(m.propagation, source.propagation);
                }
                let cfg = translate::container_config(
                    spec,
                    &a.security,
                    codec.encode(spec),
                    &config,
                    a.mounts.clone(),
                    0,
                    8 << 30,
                );
                assert_eq!(
                    cfg.labels.get(DYNAMIC_LABEL).map(String::as_str),
                    Some("true")
                );
            }
        }
    }

    // Growth: what the ledger reserves fits its budget.
    if shape.is_ok() {
        let batch: Vec<(String, crate::cgroup::Growth)> = specs
            .iter()
            .map(|s| (s.name.clone(), growth_of(s)))
            .collect();
        let ledger = Ledger::new(BUDGET);
        if ledger.reserve("sb", Bounds::default(), &batch).is_ok() {
            let sum = |f: fn(&crate::cgroup::Growth) -> i64| -> i128 {
                batch.iter().map(|(_, g)| i128::from(f(g))).sum()
            };
            assert!(sum(|g| g.cpu_milli) <= i128::from(BUDGET.cpu_milli.unwrap()));
            assert!(sum(|g| g.memory) <= i128::from(BUDGET.memory.unwrap()));
        }
    }
}

// ---- control_spec: structure-aware mutation ----

/// Quantities around the parser's edges and the arithmetic done with them (shares, quota,
/// oom_score_adj, the ledger's sums).
const QUANTITIES: &[&str] = &[
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
const IDS: &[i64] = &[
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
const NUMBERS: &[i32] = &[
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
const CAPABILITIES: &[&str] = &[
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
const PROFILES: &[&str] = &[
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
const WORDS: &[&str] = &[
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

struct Rng(u32);

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
fn mutate_request(req: &mut api::AddContainersRequest, rng: &mut Rng) {
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

// ---- seeds ----

fn with_labels(dynamic: bool, i: usize) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        ("io.kubernetes.pod.uid".to_string(), format!("uid-{i}")),
        ("io.kubernetes.container.name".to_string(), format!("c{i}")),
    ]);
    if dynamic {
        labels.insert(DYNAMIC_LABEL.into(), "true".into());
    }
    labels
}

fn container(i: usize, dynamic: bool) -> cri::Container {
    cri::Container {
        id: format!("{i:064x}"),
        pod_sandbox_id: "a".repeat(64),
        metadata: Some(cri::ContainerMetadata {
            name: format!("c{i}"),
            attempt: 0,
        }),
        labels: with_labels(dynamic, i),
        state: cri::ContainerState::ContainerRunning as i32,
        created_at: 1_700_000_000_000_000_000,
        ..Default::default()
    }
}

fn status(i: usize, dynamic: bool) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: format!("{i:064x}"),
        metadata: Some(cri::ContainerMetadata {
            name: format!("c{i}"),
            attempt: 1,
        }),
        state: cri::ContainerState::ContainerRunning as i32,
        labels: with_labels(dynamic, i),
        ..Default::default()
    }
}

fn stats(i: usize, dynamic: bool) -> cri::ContainerStats {
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: format!("{i:064x}"),
            labels: with_labels(dynamic, i),
            ..Default::default()
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: 1,
            usage_core_nano_seconds: Some(cri::UInt64Value { value: 12_345 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.push(0);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn prefixed(first: u8, msg: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(msg);
    out
}

fn spec(name: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: "docker.io/library/busybox:1.36".into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

/// The seed corpus: real messages the relay and the control API see, per target.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let list = |hidden: &[usize]| cri::ListContainersResponse {
        containers: (0..4).map(|i| container(i, hidden.contains(&i))).collect(),
    };
    let list_stats = cri::ListContainerStatsResponse {
        stats: (0..3).map(|i| stats(i, i == 1)).collect(),
    };
    let sandbox_status = cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: "a".repeat(64),
            ..Default::default()
        }),
        containers_statuses: (0..3).map(|i| status(i, i == 2)).collect(),
        ..Default::default()
    };
    let pod_stats = cri::ListPodSandboxStatsResponse {
        stats: vec![cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "a".repeat(64),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                containers: (0..3).map(|i| stats(i, i == 0)).collect(),
                ..Default::default()
            }),
            windows: None,
        }],
    };
    let status_of = |dynamic| cri::ContainerStatusResponse {
        status: Some(status(7, dynamic)),
        ..Default::default()
    };
    let stats_of = |dynamic| cri::ContainerStatsResponse {
        stats: Some(stats(7, dynamic)),
    };
    let event = cri::ContainerEventResponse {
        container_id: format!("{:064x}", 2),
        container_event_type: cri::ContainerEventType::ContainerStartedEvent as i32,
        created_at: 1,
        pod_sandbox_status: None,
        containers_statuses: (0..3).map(|i| status(i, i == 2)).collect(),
    };

    // wire: the selector is the field number − 1.
    for (name, selector, msg) in [
        ("list_containers", 0, list(&[1]).encode_to_vec()),
        ("list_stats", 0, list_stats.encode_to_vec()),
        ("sandbox_status", 2, sandbox_status.encode_to_vec()),
        ("pod_stats", 0, pod_stats.encode_to_vec()),
        ("container", 7, container(3, true).encode_to_vec()),
        ("event", 4, event.encode_to_vec()),
    ] {
        out.push(("wire", name.to_string(), prefixed(selector, msg)));
    }

    // hide: the first byte is the chunking; then a message, or a gRPC stream.
    for (name, seed, body) in [
        ("status_dynamic", 0x2d, status_of(true).encode_to_vec()),
        ("status_kubelet", 0x15, status_of(false).encode_to_vec()),
        ("stats_dynamic", 0x0c, stats_of(true).encode_to_vec()),
        ("pod_stats", 0x33, pod_stats.encode_to_vec()),
        ("event", 0x47, event.encode_to_vec()),
        (
            "list_framed",
            0x05,
            framed(&[list(&[0, 3]).encode_to_vec(), list(&[]).encode_to_vec()]),
        ),
        (
            "list_stats_framed",
            0x01,
            framed(&[list_stats.encode_to_vec()]),
        ),
        (
            "sandbox_status_framed",
            0x0e,
            framed(&[sandbox_status.encode_to_vec(), Vec::new()]),
        ),
        (
            "stream_container",
            0x06,
            framed(&[cri::ContainerStatusResponse {
                status: Some(status(1, true)),
                ..Default::default()
            }
            .encode_to_vec()]),
        ),
    ] {
        out.push(("hide", name.to_string(), prefixed(seed, body)));
    }

    // control_spec: requests, plain and hostile.
    let pod = Some(api::PodRef {
        namespace: "default".into(),
        name: "web".into(),
        ..Default::default()
    });
    let hardened = api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec![],
                drop: vec!["ALL".into()],
            }),
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            seccomp_profile: "RuntimeDefault".into(),
            ..Default::default()
        }),
        volume_mounts: vec![api::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: true,
            ..Default::default()
        }],
        resources: Some(api::Resources {
            requests: Some(api::ResourceList {
                cpu: "100m".into(),
                memory: "64Mi".into(),
            }),
            limits: Some(api::ResourceList {
                cpu: "500m".into(),
                memory: "128Mi".into(),
            }),
        }),
        ..spec("tool")
    };
    let probe = api::Probe {
        handler: Some(api::probe::Handler::HttpGet(api::HttpGetAction {
            path: "/healthz".into(),
            port: 8080,
            host: String::new(),
            scheme: "HTTP".into(),
            http_headers: vec![api::KeyValue {
                name: "X-Probe".into(),
                value: "1".into(),
            }],
            port_name: String::new(),
        })),
        initial_delay_seconds: 1,
        timeout_seconds: 1,
        period_seconds: 10,
        success_threshold: 1,
        failure_threshold: 3,
        termination_grace_period_seconds: Some(5),
    };
    let full = api::ContainerSpec {
        image_pull_policy: "IfNotPresent".into(),
        registry_auth: Some(api::RegistryAuth {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }),
        working_dir: "/work".into(),
        env: vec![api::KeyValue {
            name: "MODE".into(),
            value: "debug".into(),
        }],
        ports: vec![api::ContainerPort {
            name: "http".into(),
            container_port: 8080,
            protocol: "TCP".into(),
            host_port: 0,
        }],
        termination_message_policy: "FallbackToLogsOnError".into(),
        restart_policy: "OnFailure".into(),
        liveness_probe: Some(probe.clone()),
        readiness_probe: Some(api::Probe {
            handler: Some(api::probe::Handler::TcpSocket(api::TcpSocketAction {
                port: 8080,
                host: String::new(),
                port_name: String::new(),
            })),
            ..probe.clone()
        }),
        startup_probe: Some(api::Probe {
            handler: Some(api::probe::Handler::Exec(api::ExecAction {
                command: vec!["true".into()],
            })),
            ..probe
        }),
        labels: HashMap::from([("app".to_string(), "tool".to_string())]),
        annotations: HashMap::from([("note".to_string(), "x".to_string())]),
        ..hardened.clone()
    };
    let escalating = api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec!["SYS_ADMIN".into(), "cap_net_raw".into()],
                drop: vec![],
            }),
            privileged: false,
            run_as_user: Some(0),
            seccomp_profile: "Unconfined".into(),
            apparmor_profile: "localhost/k8s-web".into(),
            proc_mount: "Unmasked".into(),
            se_linux_level: "s0:c3,c4".into(),
            ..Default::default()
        }),
        volume_mounts: vec![api::VolumeMount {
            host_path: "/var/lib/kubelet/pods/0c8f/volumes/kubernetes.io~empty-dir/data/../../kubernetes.io~configmap/config".into(),
            mount_path: "/cfg".into(),
            ..Default::default()
        }],
        ..spec("root")
    };
    // Root with more than the runtime's defaults, into the permissive (Guaranteed) pod.
    let guaranteed = |name: &str| api::ContainerSpec {
        security_context: Some(api::SecurityContext {
            capabilities: Some(api::Capabilities {
                add: vec!["NET_ADMIN".into()],
                drop: vec![],
            }),
            run_as_user: Some(0),
            seccomp_profile: "Unconfined".into(),
            proc_mount: "Unmasked".into(),
            ..Default::default()
        }),
        resources: Some(api::Resources {
            requests: None,
            limits: Some(api::ResourceList {
                cpu: "2".into(),
                memory: "1Gi".into(),
            }),
        }),
        ..spec(name)
    };
    for (name, containers) in [
        ("minimal", vec![spec("tool")]),
        ("guaranteed", vec![guaranteed("net"), guaranteed("dbg")]),
        ("hardened", vec![hardened.clone()]),
        ("full", vec![full]),
        ("escalating", vec![escalating]),
        ("two", vec![spec("a"), hardened]),
    ] {
        let req = api::AddContainersRequest {
            pod: pod.clone(),
            containers,
        };
        out.push(("control_spec", name.to_string(), req.encode_to_vec()));
    }
    out.push((
        "control_spec",
        "legacy_stored_spec".to_string(),
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            spec("old").encode_to_vec(),
        )
        .into_bytes(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// Every file under `fuzz/<kind>/<target>/`, with its target's entry point.
    fn files(kind: &str) -> Vec<(PathBuf, Target)> {
        let mut out = Vec::new();
        for (target, run) in TARGETS {
            let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
                continue;
            };
            for entry in dir {
                out.push((entry.unwrap().path(), run));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn generated_seeds_pass_every_entry_point() {
        let seeds = seeds();
        assert!(seeds.len() > 15);
        for (target, name, data) in &seeds {
            let run = TARGETS.iter().find(|(t, _)| t == target).unwrap().1;
            run(data);
            // Cut anywhere, a seed must still pass (a truncated response or request).
            for cut in [1, data.len() / 3, data.len() / 2, data.len() - 1] {
                run(&data[..cut.min(data.len())]);
            }
            let _ = name;
        }
    }

    #[test]
    fn committed_seeds_and_regressions_replay_without_panic() {
        let seeds = files("seeds");
        assert!(seeds.len() > 15, "fuzz/seeds/ holds the seed corpus");
        for (path, run) in seeds.into_iter().chain(files("regressions")) {
            eprintln!("replaying {}", path.display());
            run(&std::fs::read(&path).unwrap());
        }
    }

    #[test]
    fn the_admitted_seed_holds_nothing_beyond_the_hardened_pod() {
        // The oracle is not vacuous: a plain request into the hardened pod is admitted, hardened.
        let [hardened, ..] = pods();
        let specs = convert::container_specs(&[spec("tool")]).unwrap();
        let admitted = admission::admit(
            &specs,
            &[ImageUser::default()],
            &facts(hardened.clone(), Qos::Burstable),
        )
        .unwrap();
        let eff = &admitted[0].security;
        assert_eq!(eff.run_as_user, Some(1000));
        assert!(eff.no_new_privs && eff.readonly_rootfs);
        assert_within(&hardened, &ImageUser::default(), &specs[0], eff);
    }

    #[test]
    fn the_mutator_keeps_requests_well_formed_and_reaches_admission() {
        let seed_input = seeds()
            .into_iter()
            .find(|(t, n, _)| *t == "control_spec" && n == "hardened")
            .unwrap()
            .2;
        let no_bytes: ByteMutator = |_, size, _| size;
        let facts = facts(pods()[0].clone(), Qos::Burstable);
        let mut admitted = 0;
        for seed in 1..1000u32 {
            let mut data = seed_input.clone();
            data.resize(4096, 0);
            let size = mutate_control_spec(&mut data, seed_input.len(), 4096, seed, no_bytes);
            let req = api::AddContainersRequest::decode(&data[..size]).expect("still a request");
            control_spec(&data[..size]);
            let Ok(specs) = convert::container_specs(&req.containers) else {
                continue;
            };
            let images = vec![ImageUser::default(); specs.len()];
            if admission::request(&specs).is_ok()
                && admission::admit(&specs, &images, &facts).is_ok()
            {
                admitted += 1;
            }
        }
        // Most changes are refused, but far from all: the mutator explores admission's edges.
        assert!((50..900).contains(&admitted), "{admitted} of 999 admitted");
    }

    /// Found by `control_spec` (fuzz/regressions/control_spec/): a CPU or memory quantity large
    /// enough to overflow the kubelet's arithmetic (shares, quota, oom_score_adj) or the
    /// ledger's sums panicked in a debug build and wrapped in a release one. Now refused first.
    #[test]
    fn quantities_too_large_to_compute_with_are_invalid() {
        for (cpu, memory, field) in [
            ("100G", "1Gi", "containers[0].resources.limits.cpu"),
            ("9P", "1Gi", "containers[0].resources.limits.cpu"),
            ("2", "4Ei", "containers[0].resources.limits.memory"),
            ("2", "7Ei", "containers[0].resources.limits.memory"),
        ] {
            let one = api::ContainerSpec {
                resources: Some(api::Resources {
                    requests: None,
                    limits: Some(api::ResourceList {
                        cpu: cpu.into(),
                        memory: memory.into(),
                    }),
                }),
                ..spec("a")
            };
            let req = api::AddContainersRequest {
                pod: None,
                containers: vec![
                    one.clone(),
                    api::ContainerSpec {
                        name: "b".into(),
                        ..one
                    },
                ],
            };
            control_spec(&req.encode_to_vec());
            let specs = convert::container_specs(&req.containers).unwrap();
            match admission::request(&specs) {
                Err(crate::dynamic::Error::InvalidArgument { field: f, .. }) => {
                    assert_eq!(f, field, "{cpu} {memory}")
                }
                other => panic!("{cpu} {memory}: {other:?}"),
            }
        }
        // The bounds themselves still pass, and add up without overflow.
        let specs = convert::container_specs(&[api::ContainerSpec {
            resources: Some(api::Resources {
                requests: None,
                limits: Some(api::ResourceList {
                    cpu: "1000000".into(),
                    memory: "1Pi".into(),
                }),
            }),
            ..spec("a")
        }])
        .unwrap();
        admission::request(&specs).unwrap();
    }
}
