//! The mutable sandboxes podgraft knows, each with the PodSandboxConfig its containers are created
//! with.
//!
//! The config is recorded when RunPodSandbox passes through the relay and written to
//! `state_dir/sandboxes/<id>.json`; for a sandbox that started while podgraft was not running it is
//! rebuilt from containerd's verbose sandbox status. containerd stays the source of truth for which
//! sandboxes exist: records of sandboxes it no longer has are dropped at start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::verbose::{cgroup_parent_from_spec, config_from_verbose};
use super::writer::{self, StateError, Writer, run_blocking};
use crate::cri::{Cri, CriResult};
use crate::dynamic::model::security::PodSecurity;

/// Removed container names remembered per pod: a name becomes reusable only once it has fallen out
/// of this list (KEP-5972 keeps the last ~10 removed statuses).
pub const REMOVED_NAMES_KEPT: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub runtime_handler: String,
    pub config: cri::PodSandboxConfig,
    #[serde(default)]
    pub removed_names: VecDeque<String>,
    /// The pod cgroup as the kubelet set it, and as podgraft last wrote it (baseline + growth).
    #[serde(default)]
    pub cgroup: Option<CgroupState>,
    /// The last removed containers' final statuses, oldest first.
    #[serde(default)]
    pub removed_statuses: VecDeque<super::KeptStatus>,
    /// Removals under way, recorded before their first stop: one a crash cut short is finished
    /// at the next start, not undone by a restart. Absent when empty, so such a record stays
    /// readable by builds that predate it (see [`SandboxRecord::format_version`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<super::PendingRemoval>,
}

impl SandboxRecord {
    /// The format this record is written in: the base one, unless removals are under way, which
    /// an older build would silently ignore (and restart what is being removed); it refuses a
    /// newer format instead.
    pub fn format_version(&self) -> u64 {
        if self.removing.is_empty() {
            writer::BASE_VERSION
        } else {
            writer::FORMAT_VERSION
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupState {
    pub baseline: crate::cgroup::Limits,
    pub written: crate::cgroup::Limits,
}

impl CgroupState {
    /// Whether podgraft's last write put growth of its own into the pod cgroup.
    pub fn holds_growth(&self) -> bool {
        self.written != self.baseline
    }
}

/// A mutable sandbox and its per-pod coordination.
#[derive(Debug)]
pub struct Sandbox {
    record: Mutex<SandboxRecord>,
    /// Bumped with every change of the record, so its writes land in order.
    generation: AtomicU64,
    /// Set once StopPodSandbox arrives: no more adds.
    stopping: AtomicBool,
    /// Serializes the admission and reservation part of adds within one pod.
    pub lock: tokio::sync::Mutex<()>,
    /// Serializes reads and writes of the pod cgroup (held on the blocking pool only).
    pub cgroup_lock: Mutex<()>,
    /// Held by a restart from creating its attempt to starting it, so a removal can wait for one
    /// in flight rather than meet a container still starting.
    pub restart_lock: tokio::sync::Mutex<()>,
    /// What the pod's kubelet containers run with, keyed by their IDs: read from containerd once
    /// per set of containers, not per add.
    pub security: Mutex<Option<(Vec<String>, Arc<PodSecurity>)>>,
}

impl Sandbox {
    fn new(record: SandboxRecord) -> Sandbox {
        Sandbox {
            record: Mutex::new(record),
            generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(()),
            cgroup_lock: Mutex::new(()),
            restart_lock: tokio::sync::Mutex::new(()),
            security: Mutex::new(None),
        }
    }

    pub fn id(&self) -> String {
        self.record().id.clone()
    }

    pub fn record(&self) -> std::sync::MutexGuard<'_, SandboxRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> cri::PodSandboxConfig {
        self.record().config.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Applies `change` to the record and returns the snapshot to persist, or `None` if nothing
    /// changed.
    fn update(&self, change: impl FnOnce(&mut SandboxRecord) -> bool) -> Option<Snapshot> {
        let mut rec = self.record();
        if !change(&mut rec) {
            return None;
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        Some(Snapshot {
            id: rec.id.clone(),
            generation,
            data: writer::encode_as(&*rec, rec.format_version()),
        })
    }

    /// Records the pod cgroup state (synchronously, so that it is in step with the cgroup write
    /// made under [`Sandbox::cgroup_lock`]); persist the snapshot with [`SandboxStore::save`].
    pub fn set_cgroup(&self, state: CgroupState) -> Option<Snapshot> {
        self.update(|rec| {
            let changed = rec.cgroup != Some(state);
            rec.cgroup = Some(state);
            changed
        })
    }
}

/// A record as it was after one change, to be written in generation order.
#[derive(Debug)]
pub struct Snapshot {
    id: String,
    generation: u64,
    data: Vec<u8>,
}

pub struct SandboxStore {
    dir: PathBuf,
    mutable_handlers: HashSet<String>,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    writer: Writer,
}

impl SandboxStore {
    pub fn new(state_dir: &Path, mutable_handlers: impl IntoIterator<Item = String>) -> Self {
        Self {
            dir: state_dir.join("sandboxes"),
            mutable_handlers: mutable_handlers.into_iter().collect(),
            sandboxes: Mutex::new(HashMap::new()),
            writer: Writer::default(),
        }
    }

    /// The directory holding podgraft's state files.
    pub fn state_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    pub fn is_mutable_handler(&self, handler: &str) -> bool {
        self.mutable_handlers.contains(handler)
    }

    pub fn mutable_handlers(&self) -> Vec<String> {
        let mut v: Vec<_> = self.mutable_handlers.iter().cloned().collect();
        v.sort();
        v
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Sandbox>>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Sandbox>> {
        self.map().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Sandbox>> {
        self.map().values().cloned().collect()
    }

    /// Records a sandbox that RunPodSandbox just created, if its handler is mutable. It is known
    /// at once; the file follows.
    pub async fn record_run(
        &self,
        id: &str,
        req: &cri::RunPodSandboxRequest,
    ) -> Result<bool, StateError> {
        if !self.is_mutable_handler(&req.runtime_handler) {
            return Ok(false);
        }
        let record = SandboxRecord {
            id: id.to_string(),
            runtime_handler: req.runtime_handler.clone(),
            config: req.config.clone().unwrap_or_default(),
            removed_names: VecDeque::new(),
            cgroup: None,
            removed_statuses: VecDeque::new(),
            removing: Vec::new(),
        };
        let sandbox = self.insert(record);
        self.persist(&sandbox, |_| true).await?;
        Ok(true)
    }

    fn insert(&self, record: SandboxRecord) -> Arc<Sandbox> {
        let sandbox = Arc::new(Sandbox::new(record));
        self.map().insert(sandbox.id(), sandbox.clone());
        sandbox
    }

    async fn persist(
        &self,
        sandbox: &Sandbox,
        change: impl FnOnce(&mut SandboxRecord) -> bool,
    ) -> Result<(), StateError> {
        match sandbox.update(change) {
            Some(snapshot) => self.save(snapshot).await,
            None => Ok(()),
        }
    }

    /// Writes a record snapshot (unless a newer one of the same record was written already).
    pub async fn save(&self, snapshot: Snapshot) -> Result<(), StateError> {
        self.writer
            .write(
                self.path_of(&snapshot.id),
                snapshot.generation,
                snapshot.data,
            )
            .await
    }

    /// Records removals about to begin (replacing any earlier one of the same name) and
    /// persists them before the caller stops anything.
    pub async fn begin_removal(
        &self,
        sandbox: &Sandbox,
        pending: Vec<super::PendingRemoval>,
    ) -> Result<(), StateError> {
        self.persist(sandbox, |rec| {
            rec.removing
                .retain(|r| !pending.iter().any(|p| p.name == r.name));
            rec.removing.extend(pending);
            true
        })
        .await
    }

    /// Ends removals in one write: the names in `removed` are remembered with the final
    /// statuses in `kept` (both bounded), and they and those in `abandoned` (a removal that
    /// failed, its container still there) are no longer under way.
    pub async fn finish_removal(
        &self,
        sandbox: &Sandbox,
        removed: &[String],
        kept: Vec<super::KeptStatus>,
        abandoned: &[String],
    ) -> Result<(), StateError> {
        self.persist(sandbox, |rec| {
            for name in removed {
                rec.removed_names.push_back(name.clone());
            }
            while rec.removed_names.len() > REMOVED_NAMES_KEPT {
                rec.removed_names.pop_front();
            }
            rec.removed_statuses.extend(kept);
            while rec.removed_statuses.len() > super::REMOVED_STATUSES_KEPT {
                rec.removed_statuses.pop_front();
            }
            rec.removing
                .retain(|r| !removed.contains(&r.name) && !abandoned.contains(&r.name));
            true
        })
        .await
    }

    /// Drops a removed sandbox and its state file.
    pub async fn forget(&self, id: &str) {
        self.map().remove(id);
        self.writer.remove(self.path_of(id)).await;
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Rebuilds the store at start: state files for sandboxes containerd still has, and configs
    /// rebuilt from verbose status for mutable sandboxes that have no file.
    pub async fn load(&self, cri: &dyn Cri) -> CriResult<()> {
        let live = cri
            .list_pod_sandbox(cri::PodSandboxFilter::default())
            .await?;
        let live: HashMap<String, cri::PodSandbox> =
            live.into_iter().map(|s| (s.id.clone(), s)).collect();
        let dir = self.dir.clone();
        let files = run_blocking(move || writer::read_all::<SandboxRecord>(&dir)).await;
        let mut records = HashMap::new();
        for (path, rec) in files {
            match rec {
                Ok(rec) if live.contains_key(&rec.id) => {
                    records.insert(rec.id.clone(), rec);
                }
                Ok(_) => {
                    tracing::info!(path = %path.display(), "dropping state of a sandbox containerd no longer has");
                    self.writer.remove(path).await;
                }
                Err(e) => tracing::warn!(error = %e, "unreadable sandbox state file; rebuilding"),
            }
        }
        for (id, sandbox) in &live {
            if records.contains_key(id) || !self.is_mutable_handler(&sandbox.runtime_handler) {
                continue;
            }
            let status = cri.pod_sandbox_status(id, true).await?;
            let info = status
                .info
                .get("info")
                .and_then(|i| serde_json::from_str::<Value>(i).ok());
            let Some(mut config) = info
                .as_ref()
                .and_then(|i| config_from_verbose(&i["config"]))
            else {
                tracing::warn!(sandbox = %id, "no config in containerd's verbose status; pod not mutable until re-created");
                continue;
            };
            if let (Some(linux), Some(info)) = (config.linux.as_mut(), info.as_ref()) {
                if linux.cgroup_parent.is_empty() {
                    linux.cgroup_parent =
                        cgroup_parent_from_spec(&info["runtimeSpec"]).unwrap_or_default();
                }
            }
            tracing::info!(sandbox = %id, "rebuilt sandbox config from containerd");
            records.insert(
                id.clone(),
                SandboxRecord {
                    id: id.clone(),
                    runtime_handler: sandbox.runtime_handler.clone(),
                    config,
                    removed_names: VecDeque::new(),
                    cgroup: None,
                    removed_statuses: VecDeque::new(),
                    removing: Vec::new(),
                },
            );
        }
        for (_, rec) in records {
            let sandbox = self.insert(rec);
            // Rewritten in the current format (and written at all, if rebuilt).
            if let Err(e) = self.persist(&sandbox, |_| true).await {
                tracing::warn!(error = %e, "could not persist sandbox state");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(h: &str) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                hostname: "h".into(),
                ..Default::default()
            }),
            runtime_handler: h.into(),
        }
    }

    #[tokio::test]
    async fn records_persist_atomically_and_only_for_mutable_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SandboxStore::new(dir.path(), ["podgraft".to_string()]);
        assert!(!store.record_run("a", &req("runc")).await.unwrap());
        assert!(store.record_run("b", &req("podgraft")).await.unwrap());
        let sb = store.get("b").unwrap();
        for n in 0..12 {
            let name = format!("c{n}");
            store
                .finish_removal(&sb, &[name], Vec::new(), &[])
                .await
                .unwrap();
        }
        let path = dir.path().join("sandboxes/b.json");
        let on_disk: SandboxRecord = writer::decode(&path, &std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk.config.hostname, "h");
        assert_eq!(on_disk.removed_names.len(), REMOVED_NAMES_KEPT);
        assert_eq!(on_disk.removed_names.front().unwrap(), "c2");
        assert!(store.get("a").is_none());
        store.forget("b").await;
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn reads_records_of_the_previous_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = SandboxStore::new(dir.path(), ["podgraft".to_string()]);
        store.record_run("b", &req("podgraft")).await.unwrap();
        // A version-1 file: the same record without a version field.
        let path = dir.path().join("sandboxes/b.json");
        let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("version");
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let read = writer::read_all::<SandboxRecord>(&dir.path().join("sandboxes"));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].1.as_ref().unwrap().config.hostname, "h");
    }
}
