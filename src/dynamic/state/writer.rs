//! The one way podgraft writes its state files: JSON with a format version, written to a uniquely
//! named temporary file, fsynced, renamed over the old file and the directory fsynced, so a crash
//! at any instant leaves either the old or the new content. Writes run on the blocking pool, never
//! on the async threads that relay the kubelet's calls, and each file's writes land in the order
//! their contents were produced (a stale snapshot never overwrites a newer one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The newest format this build reads. Version 1 had no `version` field, its fields a subset of
/// version 2's. Version 3 is a sandbox record with removals under way (`removing`): a version-2
/// reader would ignore them and restart what was being removed, so it must refuse the file.
pub const FORMAT_VERSION: u64 = 3;
/// The format records are written in unless their content needs a newer one
/// ([`encode_as`]): a record a version-2 build reads correctly is written for it to read.
pub const BASE_VERSION: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("podgraft state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("podgraft state {path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl StateError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Serializes `value` in the base format version.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(value, BASE_VERSION)
}

/// Serializes `value` as format `version` (at most [`FORMAT_VERSION`]).
pub fn encode_as<T: Serialize>(value: &T, version: u64) -> Vec<u8> {
    debug_assert!(version <= FORMAT_VERSION);
    let mut json = serde_json::to_value(value).expect("state records serialize");
    if let Some(map) = json.as_object_mut() {
        map.insert("version".into(), version.into());
    }
    serde_json::to_vec(&json).expect("JSON values serialize")
}

/// Reads a state file of this or the previous format; refuses one written by a newer podgraft
/// rather than misreading it.
pub fn decode<T: DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T, StateError> {
    let format = |reason: String| StateError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut json: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format(e.to_string()))?;
    let version = json.get("version").and_then(|v| v.as_u64()).unwrap_or(1);
    if version > FORMAT_VERSION {
        return Err(format(format!(
            "format version {version} is newer than this podgraft's ({FORMAT_VERSION})"
        )));
    }
    if let Some(map) = json.as_object_mut() {
        map.remove("version");
    }
    serde_json::from_value(json).map_err(|e| format(e.to_string()))
}

/// Every state file (`*.json`) in `dir`, read and decoded or failed; none if `dir` is missing.
/// Blocking: call through [`run_blocking`].
pub fn read_all<T: DeserializeOwned>(dir: &Path) -> Vec<(PathBuf, Result<T, StateError>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let value = std::fs::read(&path)
                .map_err(StateError::io(&path))
                .and_then(|data| decode(&path, &data));
            (path, value)
        })
        .collect()
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` so that a crash leaves either the old or the new content. The
/// temporary file's name is unique (process and counter), so concurrent writers never share one.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        // A kill here leaves the temporary file behind: load removes such leftovers.
        crate::fault::point("writer.before_rename");
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files that a process killed between write and rename left in `dir`
/// and its subdirectories (one level); this process's own are kept (a write may be under way).
/// Returns what was removed. Blocking: call through [`run_blocking`].
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let own = std::process::id().to_string();
    // `.<name>.<pid>.<counter>.tmp`, as `write_atomic` names them.
    let is_stale = |p: &Path| {
        let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let Some(stem) = n.strip_suffix(".tmp").filter(|_| n.starts_with('.')) else {
            return false;
        };
        let fields: Vec<&str> = stem.rsplitn(3, '.').collect();
        fields.len() == 3 && fields[1] != own
    };
    let mut removed = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_file() && is_stale(&path) && std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

/// Orders the writes of each file and runs them on the blocking pool.
#[derive(Clone, Default)]
pub struct Writer {
    /// The newest generation written (or removed, as `u64::MAX`) per file.
    written: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

impl Writer {
    /// Writes generation `generation` of `path`, unless a newer one has been written already.
    pub async fn write(
        &self,
        path: PathBuf,
        generation: u64,
        data: Vec<u8>,
    ) -> Result<(), StateError> {
        let written = self.written.clone();
        run_blocking(move || {
            // Held across the write: two writes of one file never interleave or reorder.
            let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
            if written.get(&path).is_some_and(|g| *g >= generation) {
                return Ok(());
            }
            write_atomic(&path, &data).map_err(StateError::io(&path))?;
            written.insert(path, generation);
            Ok(())
        })
        .await
    }

    /// Removes `path`; no later write of an older generation brings it back.
    pub async fn remove(&self, path: PathBuf) {
        let written = self.written.clone();
        run_blocking(move || {
            let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing a state file failed");
                }
            }
            written.insert(path, u64::MAX);
        })
        .await
    }
}

/// Runs blocking file or cgroup I/O on Tokio's blocking pool (inline when there is no runtime,
/// e.g. in synchronous tests).
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        id: String,
        #[serde(default)]
        extra: u32,
    }

    #[test]
    fn writes_carry_the_version_and_reads_accept_the_previous_format() {
        let path = Path::new("x.json");
        let data = encode(&Rec {
            id: "a".into(),
            extra: 3,
        });
        let json: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(json["version"], BASE_VERSION);
        let v3: serde_json::Value = serde_json::from_slice(&encode_as(&Rec::default(), 3)).unwrap();
        assert_eq!(v3["version"], 3);
        assert_eq!(
            decode::<Rec>(path, &encode_as(&Rec::default(), 3)).unwrap(),
            Rec::default()
        );
        assert_eq!(
            decode::<Rec>(path, &data).unwrap(),
            Rec {
                id: "a".into(),
                extra: 3
            }
        );
        // Version 1 had no version field.
        let v1: Rec = decode(path, br#"{"id":"old"}"#).unwrap();
        assert_eq!(v1.id, "old");
        let newer = decode::<Rec>(path, br#"{"id":"x","version":99}"#).unwrap_err();
        assert!(newer.to_string().contains("newer"), "{newer}");
    }

    /// Defect (issue 8): state writes (two fsyncs) ran on the relay's single runtime thread.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_leaves_the_async_thread() {
        let here = std::thread::current().id();
        let there = run_blocking(|| std::thread::current().id()).await;
        assert_ne!(here, there);
    }

    #[tokio::test]
    async fn stale_generations_never_overwrite_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/rec.json");
        let writer = Writer::default();
        writer
            .write(path.clone(), 2, b"two".to_vec())
            .await
            .unwrap();
        writer
            .write(path.clone(), 1, b"one".to_vec())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        writer.remove(path.clone()).await;
        writer
            .write(path.clone(), 3, b"three".to_vec())
            .await
            .unwrap();
        assert!(!path.exists(), "a removed file stays removed");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("s"))
            .unwrap()
            .flatten()
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn temporary_files_of_dead_writers_are_removed_and_ours_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("batches");
        std::fs::create_dir_all(&sub).unwrap();
        let dead = sub.join(".b.json.999999999.3.tmp");
        let ours = sub.join(format!(".b.json.{}.0.tmp", std::process::id()));
        let top = dir.path().join(".x.json.1.0.tmp");
        let record = sub.join("b.json");
        for p in [&dead, &ours, &top, &record] {
            std::fs::write(p, b"{}").unwrap();
        }
        let mut removed = remove_stale_temps(dir.path());
        removed.sort();
        let mut want = vec![dead.clone(), top.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(ours.exists() && record.exists());
    }
}
