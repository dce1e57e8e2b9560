use std::io::Write;
use std::sync::{Arc, Mutex};

use prost::Message;

use super::*;

const STATUS: &str = "/runtime.v1.RuntimeService/ContainerStatus";

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

#[test]
fn the_leading_id_is_read_without_decoding_the_rest() {
    let req = k8s_cri::v1::ContainerStatusRequest {
        container_id: "c0ffee".into(),
        verbose: true,
    }
    .encode_to_vec();
    assert_eq!(leading_id(&req), Some("c0ffee"));
    // Cut inside the ID: not whole, so nothing.
    assert_eq!(leading_id(&req[..4]), None);
    // Field 1 absent (only `verbose`), or not first, or too long to be an ID.
    let verbose_only = k8s_cri::v1::ContainerStatusRequest {
        container_id: String::new(),
        verbose: true,
    }
    .encode_to_vec();
    assert_eq!(leading_id(&verbose_only), None);
    let long = k8s_cri::v1::ContainerStatusRequest {
        container_id: "x".repeat(MAX_ID + 1),
        verbose: false,
    }
    .encode_to_vec();
    assert_eq!(leading_id(&long), None);
    assert_eq!(leading_id(&[0x0a, 0x02, 0xff, 0xfe]), None, "not UTF-8");
}

#[test]
fn methods_map_to_the_id_their_first_field_holds() {
    assert_eq!(id_field(STATUS), Some("container_id"));
    assert_eq!(
        id_field("/runtime.v1alpha2.RuntimeService/CreateContainer"),
        Some("pod_sandbox_id")
    );
    assert_eq!(
        id_field("/runtime.v1.RuntimeService/StopPodSandbox"),
        Some("pod_sandbox_id")
    );
    // RunPodSandbox's field 1 is the config; listings filter; images have no such IDs.
    assert_eq!(id_field("/runtime.v1.RuntimeService/RunPodSandbox"), None);
    assert_eq!(id_field("/runtime.v1.RuntimeService/ListContainers"), None);
    assert_eq!(id_field("/runtime.v1.ImageService/PullImage"), None);
    assert_eq!(id_field("/x.RuntimeService/ContainerStatus"), None);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` under the JSON format podgraft's `log_format = "json"` installs, at `level`.
fn json_lines(level: &str, f: impl FnOnce()) -> Vec<serde_json::Value> {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(move || writer.clone())
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn relay_one_call() {
    let span = call(STATUS);
    let req = k8s_cri::v1::ContainerStatusRequest {
        container_id: "c0ffee".into(),
        verbose: false,
    }
    .encode_to_vec();
    record_frame_ids(&span, STATUS, &framed(&req));
    finish(&span, Code::NotFound, Duration::from_micros(42), 7);
}

#[test]
fn a_call_logs_one_line_carrying_its_span_when_debug_is_on() {
    let lines = json_lines("info,podgraft::server::span=debug", relay_one_call);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["fields"]["message"], "relayed");
    assert_eq!(line["fields"]["response_bytes"], 7);
    let span = &line["span"];
    assert_eq!(span["name"], "cri_call");
    assert_eq!(span["method"], STATUS);
    assert_eq!(span["container_id"], "c0ffee");
    assert_eq!(span["code"], "NotFound");
    assert_eq!(span["elapsed_us"], 42);
    assert!(span.get("pod_sandbox_id").is_none(), "{span}");
}

#[test]
fn at_the_default_level_the_span_is_disabled_and_nothing_is_logged() {
    let lines = json_lines("info", || {
        let span = call(STATUS);
        assert!(span.is_disabled());
        relay_one_call();
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn a_compressed_or_foreign_frame_records_no_id() {
    let lines = json_lines("debug", || {
        let span = call(STATUS);
        let mut frame = framed(&[0x0a, 0x01, b'x']);
        frame[0] = 1;
        record_frame_ids(&span, STATUS, &frame);
        record_frame_ids(&span, STATUS, &[0, 0]);
        finish(&span, Code::Ok, Duration::ZERO, 0);
    });
    assert!(lines[0]["span"].get("container_id").is_none(), "{lines:?}");
}
