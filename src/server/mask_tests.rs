//! The streaming mask: exact-size padding, any chunking, several messages, malformed input.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use k8s_cri::v1 as cri;
use prost::Message;

use super::*;
use crate::server::grpc::encode_message;
use crate::wire;

fn dynamic_free(entry: &[u8]) -> Result<bool, WireError> {
    Ok(wire::map_get(entry, 8, "podgraft.io/dynamic")?.is_none())
}

const MASK: FieldMask = FieldMask {
    field: 1,
    visible: dynamic_free,
};

#[test]
fn padding_takes_exactly_the_room_and_decodes_as_unknown_fields() {
    for len in (6..3000).chain([16389, 16390, 16391, 16395, 40_000, 100_001]) {
        let mut out = BytesMut::new();
        put_padding(&mut out, len);
        assert_eq!(out.len(), len, "padding of {len}");
        for field in wire::fields(&out) {
            assert_eq!(u64::from(field.unwrap().number), PAD_FIELD, "{len}");
        }
    }
}

fn listing(n: usize, hidden: &[usize]) -> cri::ListContainersResponse {
    cri::ListContainersResponse {
        containers: (0..n)
            .map(|i| {
                let mut labels =
                    HashMap::from([("io.kubernetes.pod.uid".to_string(), format!("u{i}"))]);
                if hidden.contains(&i) {
                    labels.insert("podgraft.io/dynamic".into(), "true".into());
                }
                cri::Container {
                    id: format!("{i:064x}"),
                    labels,
                    ..Default::default()
                }
            })
            .collect(),
    }
}

/// The framed message, with a trailing field no schema knows.
fn framed(msg: &cri::ListContainersResponse) -> Bytes {
    let mut raw = msg.encode_to_vec();
    raw.extend_from_slice(&[0xc2, 0x3e, 3, b'n', b'e', b'w']);
    encode_message(&raw)
}

fn run(input: &Bytes, chunk: usize) -> Bytes {
    run_with(input, || chunk)
}

/// Masks `input` fed in chunks of the sizes `next_chunk` picks, and joins what comes out.
fn run_with(input: &Bytes, mut next_chunk: impl FnMut() -> usize) -> Bytes {
    let mut m = Masker::new(MASK);
    let mut out = BytesMut::new();
    let mut rest = input.clone();
    while !rest.is_empty() {
        let n = next_chunk().min(rest.len());
        let mut parts = Vec::new();
        m.push(rest.split_to(n), &mut parts).unwrap();
        for part in parts {
            out.extend_from_slice(&part);
        }
    }
    out.freeze()
}

#[test]
fn hidden_entries_become_padding_under_any_chunking() {
    let input = framed(&listing(12, &[0, 5, 11]));
    let whole = run(&input, input.len());
    assert_eq!(whole.len(), input.len(), "length prefix stays valid");
    assert_eq!(whole[..5], input[..5]);
    let decoded = cri::ListContainersResponse::decode(&whole[5..]).unwrap();
    let ids: Vec<usize> = decoded
        .containers
        .iter()
        .map(|c| usize::from_str_radix(&c.id, 16).unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 6, 7, 8, 9, 10]);
    assert!(
        whole.ends_with(&[0xc2, 0x3e, 3, b'n', b'e', b'w']),
        "unknown fields pass"
    );
    // Only the hidden entries' bytes differ.
    let differing = input
        .iter()
        .zip(whole.iter())
        .filter(|(a, b)| a != b)
        .count();
    assert!(differing > 0 && differing < input.len() / 3);
    for chunk in (1..=64).chain([100, 333, 1000, 4096]) {
        assert_eq!(run(&input, chunk), whole, "chunk size {chunk}");
    }
    // Chunks of irregular sizes, as a socket delivers them.
    for seed in 1..50u64 {
        let mut state = seed;
        let sizes = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % 300 + 1
        };
        assert_eq!(run_with(&input, sizes), whole, "seed {seed}");
    }
}

#[test]
fn several_messages_and_nothing_to_hide() {
    let a = framed(&listing(3, &[1]));
    let b = framed(&listing(4, &[]));
    let mut both = BytesMut::new();
    both.extend_from_slice(&a);
    both.extend_from_slice(&encode_message(b""));
    both.extend_from_slice(&b);
    let out = run(&both.freeze(), 5);
    assert_eq!(out.len(), a.len() + 5 + b.len());
    assert_eq!(
        &out[a.len() + 5..],
        &b[..],
        "a message with nothing to hide is unchanged"
    );
    let first = cri::ListContainersResponse::decode(&out[5..a.len()]).unwrap();
    assert_eq!(first.containers.len(), 2);
}

#[test]
fn malformed_or_compressed_input_is_an_error() {
    let mut m = Masker::new(MASK);
    assert!(
        m.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]), &mut Vec::new())
            .is_err(),
        "compressed"
    );
    let mut m = Masker::new(MASK);
    // A field claiming 100 bytes inside a 3-byte message.
    assert!(
        m.push(
            Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 100, 0]),
            &mut Vec::new()
        )
        .is_err()
    );
}

#[test]
fn unchanged_stretches_pass_as_slices_of_the_input() {
    let input = framed(&listing(50, &[20]));
    let mut parts = Vec::new();
    Masker::new(MASK).push(input.clone(), &mut parts).unwrap();
    // Before the hidden entry, padding, after it: no byte of the kubelet's entries copied.
    assert_eq!(
        parts.len(),
        3,
        "{:?}",
        parts.iter().map(Bytes::len).collect::<Vec<_>>()
    );
    assert_eq!(parts[0].as_ptr(), input.as_ptr());
    let after = input.len() - parts[2].len();
    assert_eq!(parts[2].as_ptr(), input[after..].as_ptr());
    assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), input.len());
    let mut nothing_hidden = Vec::new();
    let plain = framed(&listing(50, &[]));
    Masker::new(MASK)
        .push(plain.clone(), &mut nothing_hidden)
        .unwrap();
    assert_eq!(nothing_hidden, [plain]);
}
