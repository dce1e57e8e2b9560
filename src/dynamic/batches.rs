//! Crash safety for adds. An add creates several containers one after the other; if podgraft dies
//! half-way, the batch must still end up all-or-nothing. Before creating anything, the batch is
//! written to `state_dir/batches/<id>.json` (atomically) and every container it creates carries the
//! label [`BATCH_LABEL`]; the file is removed once the add has finished or been rolled back. A file
//! found at start names an add that was interrupted: its containers are removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::sandboxes::{StateError, write_atomic};

/// Label on each container an add creates, naming its batch.
pub const BATCH_LABEL: &str = "podgraft.io/batch";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub sandbox: String,
    pub names: Vec<String>,
}

pub struct BatchLog {
    dir: PathBuf,
    counter: AtomicU64,
}

impl BatchLog {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("batches"),
            counter: AtomicU64::new(0),
        }
    }

    /// Records a batch about to be created; its ID is unique on this node across restarts.
    pub fn begin(&self, sandbox: &str, names: Vec<String>) -> Result<Batch, StateError> {
        let id = format!(
            "{:x}-{:x}-{:x}",
            super::events::now_nanos(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let batch = Batch {
            id,
            sandbox: sandbox.to_string(),
            names,
        };
        let path = self.path_of(&batch.id);
        let data = serde_json::to_vec(&batch).expect("batches serialize");
        write_atomic(&path, &data).map_err(|source| StateError::new(path, source))?;
        Ok(batch)
    }

    /// The batch is complete or rolled back.
    pub fn end(&self, batch: &Batch) {
        let _ = std::fs::remove_file(self.path_of(&batch.id));
    }

    /// Batches whose add never finished (podgraft died during it).
    pub fn interrupted(&self) -> Vec<Batch> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}
