//! The `hide` target: every filter the relay runs over kubelet responses.

use super::*;

/// The largest message the relay accepts by default (`max_message_bytes`).
pub(super) const MESSAGE_LIMIT: usize = 16 << 20;

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
pub(super) fn filters(msg: &Bytes) {
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

pub(super) fn container_event(msg: &Bytes) -> Result<Option<Bytes>, WireError> {
    let id = wire::get_string(msg, 1)?.unwrap_or_default();
    if hide::event_names_dynamic(msg, &id)? {
        return Ok(None);
    }
    wire::retain_repeated(msg, 5, hide::status_visible).map(Some)
}

/// The stream through a `Masker`, fed in the given chunks.
pub(super) fn mask_stream(mask: FieldMask, chunks: &[Bytes]) -> Result<Vec<u8>, WireError> {
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
pub(super) fn frames(stream: &[u8]) -> Vec<(usize, usize)> {
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
pub(super) fn without_padding(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    for field in wire::fields(msg) {
        let field = field.expect("a masked well-formed message parses");
        if u64::from(field.number) != PAD_FIELD {
            out.extend_from_slice(&msg[field.start..field.end]);
        }
    }
    out
}

pub(super) fn masked(mask: FieldMask, stream: &Bytes, chunks: &[Bytes]) {
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
