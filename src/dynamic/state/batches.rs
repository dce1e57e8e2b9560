//! Crash safety for adds. An add creates several containers one after the other; if podgraft dies
//! half-way, the batch must still end up all-or-nothing. Before creating anything, the batch is
//! written to `state_dir/batches/<id>.json` (atomically) and every container it creates carries the
//! label [`BATCH_LABEL`](crate::dynamic::model::keys::BATCH_LABEL); the file is removed once the
//! add has finished or been rolled back. A file found at start names an add that was interrupted:
//! its containers are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl BatchLog {
    pub fn new(state_dir: &Path, host: Arc<dyn Host>) -> Self {
        Self {
            dir: state_dir.join("batches"),
            counter: AtomicU64::new(0),
            writer: Writer::default(),
            host,
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
}
