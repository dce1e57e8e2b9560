//! Crash safety for adds. An add creates several containers one after the other; if podgraft dies
//! half-way, the batch must still end up all-or-nothing. Before creating anything, the batch is
//! written to `state_dir/batches/<id>.json` (atomically) and every container it creates carries the
//! label [`BATCH_LABEL`](crate::dynamic::model::keys::BATCH_LABEL); the file is removed once the
//! add has finished or been rolled back. A file found at start names an add that was interrupted:
//! its containers are removed.
//!
//! A roll-back at start can race containerd still finishing the dead process's CreateContainer:
//! a rolled-back batch is kept as a tombstone (its record stays on disk, so a crash meanwhile
//! rolls it back again) until [`TOMBSTONE_FOR`] has passed with none of its containers left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::writer::{self, StateError, Writer, run_blocking};
use crate::dynamic::host::Host;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub sandbox: String,
    pub names: Vec<String>,
}

pub struct BatchLog {
    dir: PathBuf,
    counter: AtomicU64,
    writer: Writer,
    host: Arc<dyn Host>,
    /// Rolled-back batches, until when a late create of theirs may still land (monotonic).
    tombstones: Mutex<HashMap<String, (Batch, Duration)>>,
}

/// How long a rolled-back batch is watched for containers a dead podgraft's calls still create.
pub const TOMBSTONE_FOR: Duration = Duration::from_secs(30);

impl BatchLog {
    pub fn new(state_dir: &Path, host: Arc<dyn Host>) -> Self {
        Self {
            dir: state_dir.join("batches"),
            counter: AtomicU64::new(0),
            writer: Writer::default(),
            host,
            tombstones: Mutex::default(),
        }
    }

    /// A new batch; its ID is unique on this node across restarts.
    pub fn next(&self, sandbox: &str, names: Vec<String>) -> Batch {
        let id = format!(
            "{:x}-{:x}-{:x}",
            self.host.now_unix_nanos(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        Batch {
            id,
            sandbox: sandbox.to_string(),
            names,
        }
    }

    /// Records a batch about to be created.
    pub async fn begin(&self, batch: &Batch) -> Result<(), StateError> {
        self.writer
            .write(self.path_of(&batch.id), 1, writer::encode(batch))
            .await
    }

    /// The batch is complete or rolled back.
    pub async fn end(&self, batch: &Batch) {
        self.writer.remove(self.path_of(&batch.id)).await;
    }

    /// Batches whose add never finished (podgraft died during it).
    pub async fn interrupted(&self) -> Vec<Batch> {
        let dir = self.dir.clone();
        run_blocking(move || {
            writer::read_all::<Batch>(&dir)
                .into_iter()
                .filter_map(|(_, batch)| {
                    batch
                        .inspect_err(|e| tracing::warn!(error = %e, "unreadable batch record"))
                        .ok()
                })
                .collect()
        })
        .await
    }

    /// Keeps watching a rolled-back batch until `until` (monotonic); its record stays.
    pub fn bury(&self, batch: Batch, until: Duration) {
        self.tombstones()
            .entry(batch.id.clone())
            .and_modify(|(_, u)| *u = (*u).max(until))
            .or_insert((batch, until));
    }

    /// The rolled-back batches being watched, with their deadlines.
    pub fn buried(&self) -> Vec<(Batch, Duration)> {
        self.tombstones().values().cloned().collect()
    }

    /// The batch is rolled back for good: no more watching, and its record goes.
    pub async fn lay_to_rest(&self, batch: &Batch) {
        self.tombstones().remove(&batch.id);
        self.end(batch).await;
    }

    fn tombstones(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Batch, Duration)>> {
        self.tombstones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::host::FakeHost;

    #[tokio::test]
    async fn batches_are_recorded_until_they_end_and_old_records_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = BatchLog::new(dir.path(), Arc::new(FakeHost::default()));
        let a = log.next("sb", vec!["x".into()]);
        let b = log.next("sb", vec!["y".into()]);
        log.begin(&a).await.unwrap();
        log.begin(&b).await.unwrap();
        assert_ne!(a.id, b.id);
        // A record of the previous format (no version field) is an interrupted add too.
        std::fs::write(
            dir.path().join("batches/old.json"),
            br#"{"id":"old","sandbox":"sb","names":["z"]}"#,
        )
        .unwrap();
        log.end(&a).await;
        let mut left: Vec<_> = log.interrupted().await.into_iter().map(|b| b.id).collect();
        left.sort();
        assert_eq!(left, [b.id.clone(), "old".to_string()]);
    }

    #[tokio::test]
    async fn tombstones_keep_their_record_until_laid_to_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = BatchLog::new(dir.path(), Arc::new(FakeHost::default()));
        let a = log.next("sb", vec!["x".into()]);
        log.begin(&a).await.unwrap();
        log.bury(a.clone(), Duration::from_secs(5));
        log.bury(a.clone(), Duration::from_secs(3));
        assert_eq!(log.buried(), [(a.clone(), Duration::from_secs(5))]);
        assert_eq!(
            log.interrupted().await,
            std::slice::from_ref(&a),
            "the record stays"
        );
        log.lay_to_rest(&a).await;
        assert!(log.buried().is_empty());
        assert!(log.interrupted().await.is_empty());
    }
}
