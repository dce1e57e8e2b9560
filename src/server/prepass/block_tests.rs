//! Header blocks judged one by one: what h2 decodes from the result.

use super::*;
use crate::testing::IndexingEncoder;

fn decode(block: &[u8]) -> Vec<(String, String)> {
    let mut dst = Vec::new();
    httlib_hpack::Decoder::default()
        .decode(&mut block.to_vec(), &mut dst)
        .unwrap();
    dst.into_iter()
        .map(|(n, v, _)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (
            b":path".to_vec(),
            b"/runtime.v1.RuntimeService/Version".to_vec(),
        ),
        (b":authority".to_vec(), authority.to_vec()),
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"te".to_vec(), b"trailers".to_vec()),
    ]
}

fn encode(enc: &mut IndexingEncoder, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    enc.encode(fields)
}

#[test]
fn valid_blocks_pass_as_sent_and_the_table_is_tracked() {
    let mut blocks = HeaderBlocks::new(1 << 20);
    let mut enc = IndexingEncoder::default();
    let first = encode(&mut enc, &request(b"localhost"));
    assert_eq!(blocks.judge(&first), Verdict::AsSent);
    // The second block is all references into the client's dynamic table.
    let second = encode(&mut enc, &request(b"localhost"));
    assert!(second.len() < 8, "{second:?}");
    assert_eq!(blocks.judge(&second), Verdict::AsSent);
    // An invalid authority that only a table reference names is still found.
    let third = encode(&mut enc, &request(b"tmp%2Fpg.sock"));
    assert_eq!(blocks.judge(&third), Verdict::Rewritten);
}

#[test]
fn authorities_h2_refuses_are_normalized_once_rewriting_stays() {
    for bad in [
        &b"tmp%2Fpg%2Fpodgraft.sock"[..],
        b"/tmp/pg/podgraft.sock",
        b"",
        b"a b",
        b"x{y}",
        "h\u{e9}llo".as_bytes(),
    ] {
        let mut blocks = HeaderBlocks::new(1 << 20);
        let mut enc = IndexingEncoder::default();
        let block = encode(&mut enc, &request(bad));
        assert_eq!(blocks.judge(&block), Verdict::Rewritten, "{bad:?}");
        let out = blocks.take_rewritten().to_vec();
        assert_eq!(
            out[0], SIZE_UPDATE_TO_ZERO,
            "first rewrite empties h2's table"
        );
        let want: Vec<(String, String)> = request(b"localhost")
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(decode(&out), want);
        // Later blocks are re-encoded too, valid or not, without a second size update.
        let next = encode(&mut enc, &request(b"localhost"));
        assert_eq!(blocks.judge(&next), Verdict::Rewritten);
        let out = blocks.take_rewritten().to_vec();
        assert_ne!(out[0], SIZE_UPDATE_TO_ZERO);
        assert_eq!(decode(&out), want);
    }
}

#[test]
fn control_characters_are_left_for_h2_to_refuse() {
    let mut blocks = HeaderBlocks::new(1 << 20);
    let mut enc = IndexingEncoder::default();
    let block = encode(&mut enc, &request(b"local\0host"));
    assert_eq!(blocks.judge(&block), Verdict::AsSent);
}

#[test]
fn te_in_other_case_is_normalized_other_values_are_not() {
    let mut blocks = HeaderBlocks::new(1 << 20);
    let mut enc = IndexingEncoder::default();
    let mut fields = request(b"localhost");
    fields[5].1 = b"gzip".to_vec();
    assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::AsSent);
    fields[5].1 = b"Trailers".to_vec();
    assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::Rewritten);
    let out = decode(blocks.take_rewritten());
    assert_eq!(out[5], ("te".into(), "trailers".into()));
}

#[test]
fn broken_blocks_and_oversized_lists() {
    let mut blocks = HeaderBlocks::new(1 << 20);
    // Index 0 exists in no table.
    assert_eq!(blocks.judge(&[0x80]), Verdict::Broken { in_sync: true });

    // A list far over the limit is copied only until it is over the limit.
    let mut blocks = HeaderBlocks::new(1000);
    let mut fields = request(b"/run/x.sock");
    for i in 0..100 {
        fields.push((format!("x-meta-{i}").into_bytes(), vec![b'v'; 100]));
    }
    let mut enc = IndexingEncoder::default();
    assert_eq!(blocks.judge(&encode(&mut enc, &fields)), Verdict::Rewritten);
    let out = decode(blocks.take_rewritten());
    let size: usize = out.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
    assert!((1000..1200).contains(&size), "{size}");
    assert_eq!(blocks.judge(&[0x80]), Verdict::Broken { in_sync: false });
}

/// What a stateful HPACK decoder (h2's side) reads from `block`.
fn decode_with(h2: &mut httlib_hpack::Decoder<'_>, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut dst = Vec::new();
    h2.decode(&mut block.to_vec(), &mut dst).unwrap();
    dst.into_iter().map(|(n, v, _)| (n, v)).collect()
}

#[test]
fn every_representation_keeps_h2_reading_what_the_client_sent() {
    use httlib_hpack::Encoder as E;
    // Indexed fields, literals with and without indexing, never indexed, Huffman-coded names
    // and values, names from either table: as an independent encoder makes them.
    let flag_sets = [
        0,
        E::HUFFMAN_VALUE,
        E::HUFFMAN_NAME | E::HUFFMAN_VALUE,
        E::WITH_INDEXING,
        E::WITH_INDEXING | E::HUFFMAN_NAME | E::HUFFMAN_VALUE,
        E::NEVER_INDEXED | E::HUFFMAN_VALUE,
        E::BEST_FORMAT,
        E::BEST_FORMAT | E::WITH_INDEXING | E::HUFFMAN_VALUE,
        E::BEST_FORMAT | E::NEVER_INDEXED,
    ];
    for bad_at in [None, Some(0), Some(4), Some(11)] {
        let mut client = E::default();
        let mut blocks = HeaderBlocks::new(1 << 20);
        let mut h2 = httlib_hpack::Decoder::default();
        for i in 0..12 {
            let authority: &[u8] = if Some(i) == bad_at {
                b"tmp%2Fpg.sock"
            } else {
                b"localhost"
            };
            let fields: Vec<(Vec<u8>, Vec<u8>)> = [
                (&b":method"[..], &b"POST"[..]),
                (b":scheme", b"http"),
                (b":path", format!("/svc/M{}", i % 3).as_bytes()),
                (b":authority", authority),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"x-custom", format!("v{}", i % 2).as_bytes()),
                (b"grpc-timeout", format!("{i}m").as_bytes()),
            ]
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
            let mut block = Vec::new();
            if i == 7 {
                // The client shrinks its table, which evicts entries, then grows it again.
                client.update_max_dynamic_size(100, &mut block).unwrap();
                client.update_max_dynamic_size(4096, &mut block).unwrap();
            }
            for (k, (n, v)) in fields.iter().enumerate() {
                let flags = flag_sets[(i + k) % flag_sets.len()];
                client
                    .encode((n.clone(), v.clone(), flags), &mut block)
                    .unwrap();
            }
            let out = match blocks.judge(&block) {
                Verdict::AsSent => block.clone(),
                Verdict::Rewritten => blocks.take_rewritten().to_vec(),
                broken => panic!("block {i}: {broken:?}"),
            };
            let mut want = fields.clone();
            if Some(i) == bad_at {
                want[3].1 = b"localhost".to_vec();
            }
            assert_eq!(
                decode_with(&mut h2, &out),
                want,
                "block {i}, bad at {bad_at:?}"
            );
            let rewritten = bad_at.is_some_and(|at| i >= at);
            assert_eq!(out != block, rewritten, "block {i}, bad at {bad_at:?}");
        }
    }
}

#[test]
fn a_size_update_after_a_field_or_above_the_setting_is_broken() {
    let mut blocks = HeaderBlocks::new(1 << 20);
    assert_eq!(
        blocks.judge(&[0x82, 0x20]),
        Verdict::Broken { in_sync: true }
    );
    let mut blocks = HeaderBlocks::new(1 << 20);
    // 001 + 5-bit prefix 31, then 4097 - 31 = 4066 = 0xe2 0x1f.
    assert_eq!(
        blocks.judge(&[0x3f, 0xe2, 0x1f, 0x82]),
        Verdict::Broken { in_sync: true }
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Blocks built from representation-like pieces and plain noise; any verdict will do.
    let mut seed = 7u64;
    let mut next = |below: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % below
    };
    let pieces: [&[u8]; 10] = [
        &[0x82],
        &[0xbe],
        &[0xff, 0xff, 0xff, 0x0f],
        &[0x40, 0x83, 0xff, 0xff, 0xff, 0x81, 0x41],
        &[0x10, 0x01, b'a', 0x81, 0xff],
        &[0x04, 0x88, 0x62, 0x82, 0x5f, 0xff, 0x00],
        &[0x3f, 0xe1, 0x1f],
        &[0x20],
        &[0x01, 0x00],
        &[0x41, 0x7f, 0xff, 0xff],
    ];
    let mut blocks = HeaderBlocks::new(1 << 12);
    for _ in 0..20_000 {
        let mut block = Vec::new();
        for _ in 0..next(6) {
            if next(3) == 0 {
                block.push(next(256) as u8);
            } else {
                block.extend_from_slice(pieces[next(pieces.len())]);
            }
        }
        if let Verdict::Rewritten = blocks.judge(&block) {
            blocks.take_rewritten();
        }
        if next(50) == 0 {
            blocks = HeaderBlocks::new(1 << 12);
        }
    }
}
