//! The audit trail of the control API: one JSON line per mutating or exec call and per denial —
//! when, who (peer credentials), what (call, pod, container names, a digest of each spec), the
//! decision, why, and how long it took. Appended and flushed per record, to a file or stderr.
//!
//! Specs are recorded by digest only: env values and registry credentials never reach the trail.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::auth::Caller;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Off,
    Stderr,
    File(PathBuf),
}

enum Writer {
    Off,
    Stderr,
    File(std::fs::File),
}

pub struct AuditLog {
    writer: Mutex<Writer>,
}

#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub time_unix_nanos: i64,
    pub call: &'static str,
    pub caller: Option<&'a Caller>,
    pub pod: String,
    pub containers: Vec<String>,
    pub spec_digests: Vec<String>,
    /// "allowed", "denied" (by the access policy) or "failed" (refused or failed by podgraft or
    /// containerd).
    pub decision: &'static str,
    pub code: String,
    pub reason: String,
    pub duration_ms: f64,
}

/// SHA-256 of a spec's stored form (which carries no registry credentials).
pub fn digest(stored: &str) -> String {
    Sha256::digest(stored.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl AuditLog {
    pub fn open(sink: &AuditSink) -> std::io::Result<AuditLog> {
        let writer = match sink {
            AuditSink::Off => Writer::Off,
            AuditSink::Stderr => Writer::Stderr,
            AuditSink::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Writer::File(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                )
            }
        };
        Ok(AuditLog {
            writer: Mutex::new(writer),
        })
    }

    /// Writes one record as a line. A write that fails is logged, never fatal to the call.
    pub fn record(&self, record: &Record) {
        let mut line = serde_json::to_vec(record).expect("audit records serialize");
        line.push(b'\n');
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *writer {
            Writer::Off => Ok(()),
            Writer::Stderr => std::io::stderr().write_all(&line),
            Writer::File(f) => f.write_all(&line).and_then(|()| f.flush()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "writing the audit record failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_appended_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.log");
        let log = AuditLog::open(&AuditSink::File(path.clone())).unwrap();
        let caller = Caller::Local(super::super::auth::Local {
            uid: 1000,
            gid: 1000,
            pid: Some(42),
            groups: vec![],
        });
        for decision in ["allowed", "denied"] {
            log.record(&Record {
                time_unix_nanos: 1,
                call: "AddContainers",
                caller: Some(&caller),
                pod: "pod default/agent".into(),
                containers: vec!["tool".into()],
                spec_digests: vec![digest("{}")],
                decision,
                code: "Ok".into(),
                reason: String::new(),
                duration_ms: millis(Duration::from_micros(1500)),
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["decision"], "denied");
        assert_eq!(lines[0]["caller"]["uid"], 1000);
        assert_eq!(lines[0]["duration_ms"], 1.5);
        assert_eq!(lines[0]["spec_digests"][0].as_str().unwrap().len(), 64);
    }
}
