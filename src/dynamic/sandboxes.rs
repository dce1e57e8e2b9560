//! The mutable sandboxes podgraft knows, each with the PodSandboxConfig its containers are created
//! with.
//!
//! The config is recorded when RunPodSandbox passes through the relay and written atomically to
//! `state_dir/sandboxes/<id>.json`; for a sandbox that started while podgraft was not running it is
//! rebuilt from containerd's verbose sandbox status. containerd stays the source of truth for which
//! sandboxes exist: records of sandboxes it no longer has are dropped at start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cri::{Cri, CriResult};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupState {
    pub baseline: crate::cgroup::Limits,
    pub written: crate::cgroup::Limits,
}

/// A mutable sandbox and its per-pod coordination.
#[derive(Debug)]
pub struct Sandbox {
    record: Mutex<SandboxRecord>,
    /// Set once StopPodSandbox arrives: no more adds.
    stopping: AtomicBool,
    /// Serializes the parts of adds and removes that must not interleave within one pod.
    pub lock: tokio::sync::Mutex<()>,
    /// Serializes reads and writes of the pod cgroup.
    pub cgroup_lock: Mutex<()>,
}

impl Sandbox {
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
}

#[derive(Debug, thiserror::Error)]
#[error("podgraft state {path}: {source}")]
pub struct StateError {
    path: PathBuf,
    source: std::io::Error,
}

impl StateError {
    pub fn new(path: PathBuf, source: std::io::Error) -> Self {
        Self { path, source }
    }
}

pub struct SandboxStore {
    dir: PathBuf,
    mutable_handlers: HashSet<String>,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
}

impl SandboxStore {
    pub fn new(state_dir: &Path, mutable_handlers: impl IntoIterator<Item = String>) -> Self {
        Self {
            dir: state_dir.join("sandboxes"),
            mutable_handlers: mutable_handlers.into_iter().collect(),
            sandboxes: Mutex::new(HashMap::new()),
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

    /// Records a sandbox that RunPodSandbox just created, if its handler is mutable.
    pub fn record_run(
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
        };
        self.insert(record)?;
        Ok(true)
    }

    fn insert(&self, record: SandboxRecord) -> Result<(), StateError> {
        self.persist(&record)?;
        let id = record.id.clone();
        self.map().insert(
            id,
            Arc::new(Sandbox {
                record: Mutex::new(record),
                stopping: AtomicBool::new(false),
                lock: tokio::sync::Mutex::new(()),
                cgroup_lock: Mutex::new(()),
            }),
        );
        Ok(())
    }

    /// Remembers a removed container name of `sandbox` (bounded) and persists it.
    pub fn remember_removed(&self, sandbox: &Sandbox, name: &str) -> Result<(), StateError> {
        let snapshot = {
            let mut rec = sandbox.record();
            rec.removed_names.push_back(name.to_string());
            while rec.removed_names.len() > REMOVED_NAMES_KEPT {
                rec.removed_names.pop_front();
            }
            rec.clone()
        };
        self.persist(&snapshot)
    }

    /// Records the pod cgroup state of `sandbox` and persists it.
    pub fn set_cgroup(&self, sandbox: &Sandbox, state: CgroupState) -> Result<(), StateError> {
        let snapshot = {
            let mut rec = sandbox.record();
            if rec.cgroup == Some(state) {
                return Ok(());
            }
            rec.cgroup = Some(state);
            rec.clone()
        };
        self.persist(&snapshot)
    }

    /// Drops a removed sandbox and its state file.
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
        let _ = std::fs::remove_file(self.path_of(id));
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn persist(&self, record: &SandboxRecord) -> Result<(), StateError> {
        let path = self.path_of(&record.id);
        let data = serde_json::to_vec(record).expect("records serialize");
        write_atomic(&path, &data).map_err(|source| StateError { path, source })
    }

    /// Rebuilds the store at start: state files for sandboxes containerd still has, and configs
    /// rebuilt from verbose status for mutable sandboxes that have no file.
    pub async fn load(&self, cri: &dyn Cri) -> CriResult<()> {
        let live = cri
            .list_pod_sandbox(cri::PodSandboxFilter::default())
            .await?;
        let live: HashMap<String, cri::PodSandbox> =
            live.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut records = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "json") {
                    match std::fs::read(&path).map(|d| serde_json::from_slice::<SandboxRecord>(&d))
                    {
                        Ok(Ok(rec)) if live.contains_key(&rec.id) => {
                            records.insert(rec.id.clone(), rec);
                        }
                        Ok(Ok(_)) => {
                            tracing::info!(path = %path.display(), "dropping state of a sandbox containerd no longer has");
                            let _ = std::fs::remove_file(&path);
                        }
                        _ => {
                            tracing::warn!(path = %path.display(), "unreadable sandbox state file; rebuilding")
                        }
                    }
                }
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
                },
            );
        }
        for (_, rec) in records {
            if let Err(e) = self.insert(rec) {
                tracing::warn!(error = %e, "could not persist rebuilt sandbox state");
            }
        }
        Ok(())
    }
}

/// Writes `data` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The pod's cgroup parent from the sandbox's OCI runtime spec, when the recorded config lacks it:
/// the parent of the pause container's `cgroupsPath` (cgroupfs `/kubepods/…/pod<uid>/<id>`, systemd
/// `kubepods-…-pod<uid>.slice:cri-containerd:<id>`).
pub fn cgroup_parent_from_spec(spec: &Value) -> Option<String> {
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec.clone()).ok()?;
    let path = spec.linux().as_ref()?.cgroups_path().clone()?;
    let path = path.to_str()?;
    match path.split_once(':') {
        Some((slice, _)) => Some(slice.to_string()),
        None => Some(std::path::Path::new(path).parent()?.to_str()?.to_string()),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_default()
}

fn map(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default()
}

/// The parts of a PodSandboxConfig that container creation uses, from containerd's verbose
/// sandbox info (the CRI message as JSON with snake_case names and empty fields omitted).
pub fn config_from_verbose(c: &Value) -> Option<cri::PodSandboxConfig> {
    let meta = c.get("metadata")?;
    let linux = &c["linux"];
    let sc = &linux["security_context"];
    let ns = &sc["namespace_options"];
    Some(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: s(&meta["name"]),
            uid: s(&meta["uid"]),
            namespace: s(&meta["namespace"]),
            attempt: i(&meta["attempt"]) as u32,
        }),
        hostname: s(&c["hostname"]),
        log_directory: s(&c["log_directory"]),
        dns_config: c.get("dns_config").map(|d| cri::DnsConfig {
            servers: strings(&d["servers"]),
            searches: strings(&d["searches"]),
            options: strings(&d["options"]),
        }),
        labels: map(&c["labels"]),
        annotations: map(&c["annotations"]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: s(&linux["cgroup_parent"]),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: i(&ns["network"]) as i32,
                    pid: i(&ns["pid"]) as i32,
                    ipc: i(&ns["ipc"]) as i32,
                    target_id: s(&ns["target_id"]),
                    ..Default::default()
                }),
                run_as_user: sc.get("run_as_user").map(|u| cri::Int64Value {
                    value: i(&u["value"]),
                }),
                run_as_group: sc.get("run_as_group").map(|g| cri::Int64Value {
                    value: i(&g["value"]),
                }),
                readonly_rootfs: sc["readonly_rootfs"].as_bool().unwrap_or(false),
                supplemental_groups: sc["supplemental_groups"]
                    .as_array()
                    .map(|a| a.iter().map(i).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            sysctls: map(&linux["sysctls"]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_config_from_containerd_verbose_info() {
        // Shape of containerd 1.6's verbose PodSandboxStatus "info" (trimmed).
        let info: Value = serde_json::from_str(
            r#"{"pid":1,"runtimeHandler":"podgraft","config":{"metadata":{"name":"web","uid":"u-1","namespace":"default"},
            "hostname":"web","log_directory":"/var/log/pods/default_web_u-1","labels":{"io.kubernetes.pod.uid":"u-1"},
            "linux":{"cgroup_parent":"/kubepods/burstable/podu-1","security_context":{"namespace_options":{"pid":1}}}}}"#,
        )
        .unwrap();
        let c = config_from_verbose(&info["config"]).unwrap();
        assert_eq!(c.metadata.unwrap().uid, "u-1");
        assert_eq!(c.log_directory, "/var/log/pods/default_web_u-1");
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/burstable/podu-1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!((ns.network, ns.pid, ns.ipc), (0, 1, 0));
        assert!(config_from_verbose(&Value::Null).is_none());
    }

    #[test]
    fn cgroup_parent_from_the_pause_containers_oci_spec() {
        let spec =
            |path: &str| serde_json::json!({"ociVersion": "1.0.2", "linux": {"cgroupsPath": path}});
        assert_eq!(
            cgroup_parent_from_spec(&spec("/kubepods/burstable/podu-1/abc123")).as_deref(),
            Some("/kubepods/burstable/podu-1")
        );
        assert_eq!(
            cgroup_parent_from_spec(&spec(
                "kubepods-burstable-podu_1.slice:cri-containerd:abc123"
            ))
            .as_deref(),
            Some("kubepods-burstable-podu_1.slice")
        );
        assert_eq!(
            cgroup_parent_from_spec(&serde_json::json!({"ociVersion": "1.0.2"})),
            None
        );
    }

    #[test]
    fn records_persist_atomically_and_only_for_mutable_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SandboxStore::new(dir.path(), ["podgraft".to_string()]);
        let req = |h: &str| cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                hostname: "h".into(),
                ..Default::default()
            }),
            runtime_handler: h.into(),
        };
        assert!(!store.record_run("a", &req("runc")).unwrap());
        assert!(store.record_run("b", &req("podgraft")).unwrap());
        let sb = store.get("b").unwrap();
        for n in 0..12 {
            store.remember_removed(&sb, &format!("c{n}")).unwrap();
        }
        let on_disk: SandboxRecord =
            serde_json::from_slice(&std::fs::read(dir.path().join("sandboxes/b.json")).unwrap())
                .unwrap();
        assert_eq!(on_disk.config.hostname, "h");
        assert_eq!(on_disk.removed_names.len(), REMOVED_NAMES_KEPT);
        assert_eq!(on_disk.removed_names.front().unwrap(), "c2");
        assert!(store.get("a").is_none());
        store.forget("b");
        assert!(!dir.path().join("sandboxes/b.json").exists());
    }
}
