//! An in-memory [`Cri`] for unit tests of the domain logic: sandboxes, containers and images as
//! plain data, CRI filter semantics, a call log, and failure injection.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_cri::v1 as cri;

use crate::BoxFuture;
use crate::cri::{Cri, CriError, CriResult};

#[derive(Default)]
struct State {
    sandboxes: Vec<cri::PodSandbox>,
    configs: HashMap<String, cri::PodSandboxConfig>,
    containers: Vec<cri::ContainerStatus>,
    sandbox_of: HashMap<String, String>,
    images: HashSet<String>,
    next_id: u64,
}

#[derive(Default)]
pub struct MemCri {
    state: Mutex<State>,
    /// Container names whose StartContainer fails.
    pub fail_start: Mutex<HashSet<String>>,
    /// Container names whose StopContainer and RemoveContainer fail (UNAVAILABLE): a
    /// containerd that will not let go of them.
    pub fail_destroy: Mutex<HashSet<String>>,
    /// Every call as "Method id-or-name", oldest first.
    pub calls: Mutex<Vec<String>>,
    /// Plain (non-verbose) ContainerStatus fails (UNAVAILABLE) while set.
    pub fail_status: std::sync::atomic::AtomicBool,
    /// Verbose ContainerStatus `info` of containers by name (an OCI `runtimeSpec` and a CRI
    /// `config`); others get [`MemCri::default_info`]: root with containerd's default
    /// capabilities, unconfined.
    pub verbose_info: Mutex<HashMap<String, serde_json::Value>>,
    /// When set, the next ListContainers takes its snapshot, says so, and answers only once the
    /// gate opens: a test can make something happen while a listing is on its way.
    pub list_gate: Mutex<Option<ListGate>>,
}

/// See [`MemCri::list_gate`].
pub struct ListGate {
    pub snapshot_taken: tokio::sync::oneshot::Sender<()>,
    pub open: tokio::sync::oneshot::Receiver<()>,
}

fn not_found(op: &'static str, what: &str) -> CriError {
    CriError {
        op,
        code: CriError::NOT_FOUND,
        message: format!("{what} not found"),
    }
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(v))
}

impl MemCri {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// Adds a ready sandbox with the kubelet's pod labels and a running kubelet container "main",
    /// under the cgroupfs parent of a Burstable pod.
    pub fn add_pod(
        &self,
        id: &str,
        handler: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> cri::PodSandboxConfig {
        self.add_pod_in(
            id,
            handler,
            namespace,
            name,
            uid,
            &format!("/kubepods/burstable/pod{uid}"),
        )
    }

    /// Like [`MemCri::add_pod`] with a given cgroup parent (e.g. a systemd slice).
    pub fn add_pod_in(
        &self,
        id: &str,
        handler: &str,
        namespace: &str,
        name: &str,
        uid: &str,
        cgroup_parent: &str,
    ) -> cri::PodSandboxConfig {
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            labels: labels.clone(),
            log_directory: format!("/var/log/pods/{namespace}_{name}_{uid}"),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut st = self.state();
        let created_at = st.next_id as i64;
        st.sandboxes.push(cri::PodSandbox {
            id: id.into(),
            metadata: config.metadata.clone(),
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at,
            labels: labels.clone(),
            runtime_handler: handler.into(),
            ..Default::default()
        });
        st.configs.insert(id.into(), config.clone());
        drop(st);
        let mut main_labels = labels;
        main_labels.insert("io.kubernetes.container.name".into(), "main".into());
        self.insert_container(
            id,
            "main",
            main_labels,
            HashMap::new(),
            cri::ContainerState::ContainerRunning,
        );
        config
    }

    pub fn add_image(&self, image: &str) {
        self.state().images.insert(image.to_string());
    }

    fn insert_container(
        &self,
        sandbox: &str,
        name: &str,
        labels: HashMap<String, String>,
        annotations: HashMap<String, String>,
        state: cri::ContainerState,
    ) -> String {
        let mut st = self.state();
        st.next_id += 1;
        let id = format!("c{:04}", st.next_id);
        let created_at = st.next_id as i64;
        st.containers.push(cri::ContainerStatus {
            id: id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            state: state as i32,
            created_at,
            labels,
            annotations,
            ..Default::default()
        });
        st.sandbox_of.insert(id.clone(), sandbox.into());
        id
    }

    /// Every container, with its sandbox and state.
    pub fn containers(&self) -> Vec<(String, cri::ContainerStatus)> {
        let st = self.state();
        st.containers
            .iter()
            .map(|c| (st.sandbox_of[&c.id].clone(), c.clone()))
            .collect()
    }

    pub fn set_state(&self, id: &str, state: cri::ContainerState, exit_code: i32) {
        for c in self.state().containers.iter_mut().filter(|c| c.id == id) {
            c.state = state as i32;
            c.exit_code = exit_code;
        }
    }

    /// Ends a container as containerd reports an exit: code and reason (e.g. OOMKilled).
    pub fn set_exited(&self, id: &str, exit_code: i32, reason: &str) {
        self.set_state(id, cri::ContainerState::ContainerExited, exit_code);
        for c in self.state().containers.iter_mut().filter(|c| c.id == id) {
            c.reason = reason.to_string();
        }
    }

    /// Sets a sandbox's state, or drops it (`None`) as a removal behind podgraft's back would.
    pub fn set_sandbox_state(&self, id: &str, state: Option<cri::PodSandboxState>) {
        let mut st = self.state();
        match state {
            Some(state) => {
                for s in st.sandboxes.iter_mut().filter(|s| s.id == id) {
                    s.state = state as i32;
                }
            }
            None => st.sandboxes.retain(|s| s.id != id),
        }
    }

    /// Where containerd would say the container's log is.
    /// The injected failure of `op` on `id`, if its name is in [`MemCri::fail_destroy`].
    fn destroy_failure(&self, op: &'static str, id: &str) -> Option<CriError> {
        let failing = self.fail_destroy.lock().unwrap();
        let named = self.state().containers.iter().any(|c| {
            c.id == id
                && c.metadata
                    .as_ref()
                    .is_some_and(|m| failing.contains(&m.name))
        });
        named.then(|| CriError {
            op,
            code: 14,
            message: format!("injected failure of {op} {id}"),
        })
    }

    pub fn set_log_path(&self, id: &str, path: &str) {
        for c in self.state().containers.iter_mut().filter(|c| c.id == id) {
            c.log_path = path.to_string();
        }
    }

    /// What a container runs with unless `verbose_info` says otherwise.
    pub fn default_info() -> serde_json::Value {
        serde_json::json!({
            "config": {},
            "runtimeSpec": {
                "ociVersion": "1.0.2",
                "process": {
                    "user": {"uid": 0, "gid": 0},
                    "cwd": "/",
                    "capabilities": {
                        "bounding": crate::dynamic::admission::caps::RUNTIME_DEFAULT,
                    },
                },
                "linux": {
                    "maskedPaths": crate::dynamic::model::kubelet::MASKED_PATHS,
                    "readonlyPaths": crate::dynamic::model::kubelet::READONLY_PATHS,
                },
            },
        })
    }

    pub fn sandbox_config(&self, id: &str) -> cri::PodSandboxConfig {
        self.state().configs[id].clone()
    }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Cri for MemCri {
    fn list_pod_sandbox(
        &self,
        filter: cri::PodSandboxFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::PodSandbox>>> {
        let out = self
            .state()
            .sandboxes
            .iter()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| labels_match(&s.labels, &filter.label_selector))
            .cloned()
            .collect();
        ready(Ok(out))
    }

    fn pod_sandbox_status(
        &self,
        id: &str,
        _verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::PodSandboxStatusResponse>> {
        let st = self.state();
        let out = st
            .sandboxes
            .iter()
            .find(|s| s.id == id)
            .map(|s| cri::PodSandboxStatusResponse {
                status: Some(cri::PodSandboxStatus {
                    id: s.id.clone(),
                    state: s.state,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .ok_or_else(|| not_found("PodSandboxStatus", id));
        ready(out)
    }

    fn list_containers(
        &self,
        filter: cri::ContainerFilter,
    ) -> BoxFuture<'_, CriResult<Vec<cri::Container>>> {
        let st = self.state();
        let out = st
            .containers
            .iter()
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .filter(|c| {
                filter.pod_sandbox_id.is_empty() || st.sandbox_of[&c.id] == filter.pod_sandbox_id
            })
            .filter(|c| filter.state.as_ref().is_none_or(|s| s.state == c.state))
            .filter(|c| labels_match(&c.labels, &filter.label_selector))
            .map(|c| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: st.sandbox_of[&c.id].clone(),
                metadata: c.metadata.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                ..Default::default()
            })
            .collect();
        drop(st);
        if let Some(gate) = self.list_gate.lock().unwrap().take() {
            return Box::pin(async move {
                let _ = gate.snapshot_taken.send(());
                let _ = gate.open.await;
                Ok(out)
            });
        }
        ready(Ok(out))
    }

    fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> BoxFuture<'_, CriResult<cri::ContainerStatusResponse>> {
        let verbose_info = |status: &cri::ContainerStatus| -> HashMap<String, String> {
            if !verbose {
                return HashMap::new();
            }
            let name = status
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let info = self
                .verbose_info
                .lock()
                .unwrap()
                .get(&name)
                .cloned()
                .unwrap_or_else(Self::default_info);
            [("info".to_string(), info.to_string())].into()
        };
        if !verbose && self.fail_status.load(std::sync::atomic::Ordering::SeqCst) {
            return ready(Err(CriError {
                op: "ContainerStatus",
                code: 14,
                message: "injected failure".into(),
            }));
        }
        let out = self
            .state()
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| cri::ContainerStatusResponse {
                status: Some(c.clone()),
                info: verbose_info(c),
            })
            .ok_or_else(|| not_found("ContainerStatus", id));
        ready(out)
    }

    fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> BoxFuture<'_, CriResult<String>> {
        let config = req.config.unwrap_or_default();
        let attempt = config.metadata.as_ref().map_or(0, |m| m.attempt);
        let name = config.metadata.map(|m| m.name).unwrap_or_default();
        self.log(format!("CreateContainer {name}"));
        let image = config.image.map(|i| i.image).unwrap_or_default();
        if !self.state().images.contains(&image) {
            return ready(Err(not_found("CreateContainer", &format!("image {image}"))));
        }
        let id = self.insert_container(
            &req.pod_sandbox_id,
            &name,
            config.labels,
            config.annotations,
            cri::ContainerState::ContainerCreated,
        );
        let mut st = self.state();
        if let Some(c) = st.containers.iter_mut().find(|c| c.id == id) {
            c.metadata.as_mut().unwrap().attempt = attempt;
            c.mounts = config.mounts;
            c.log_path = config.log_path;
        }
        ready(Ok(id))
    }

    fn start_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>> {
        self.log(format!("StartContainer {id}"));
        let name = self
            .state()
            .containers
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.metadata.clone())
            .map(|m| m.name);
        let Some(name) = name else {
            return ready(Err(not_found("StartContainer", id)));
        };
        if self.fail_start.lock().unwrap().contains(&name) {
            return ready(Err(CriError {
                op: "StartContainer",
                code: 2,
                message: format!("injected start failure for {name}"),
            }));
        }
        self.set_state(id, cri::ContainerState::ContainerRunning, 0);
        ready(Ok(()))
    }

    fn stop_container(&self, id: &str, timeout_seconds: i64) -> BoxFuture<'_, CriResult<()>> {
        self.log(format!("StopContainer {id} {timeout_seconds}"));
        if !self.state().containers.iter().any(|c| c.id == id) {
            return ready(Err(not_found("StopContainer", id)));
        }
        if let Some(e) = self.destroy_failure("StopContainer", id) {
            return ready(Err(e));
        }
        self.set_state(id, cri::ContainerState::ContainerExited, 137);
        ready(Ok(()))
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, CriResult<()>> {
        self.log(format!("RemoveContainer {id}"));
        if let Some(e) = self.destroy_failure("RemoveContainer", id) {
            return ready(Err(e));
        }
        let mut st = self.state();
        let before = st.containers.len();
        st.containers.retain(|c| c.id != id);
        let out = if st.containers.len() < before {
            Ok(())
        } else {
            Err(not_found("RemoveContainer", id))
        };
        ready(out)
    }

    fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> BoxFuture<'_, CriResult<cri::ExecSyncResponse>> {
        ready(Ok(cri::ExecSyncResponse {
            stdout: req.cmd.join(" ").into_bytes(),
            stderr: Vec::new(),
            exit_code: 0,
        }))
    }

    fn image_status(&self, image: &str) -> BoxFuture<'_, CriResult<Option<cri::Image>>> {
        let found = self.state().images.contains(image).then(|| cri::Image {
            id: format!("sha256:{image}"),
            ..Default::default()
        });
        ready(Ok(found))
    }

    fn pull_image(&self, req: cri::PullImageRequest) -> BoxFuture<'_, CriResult<String>> {
        let image = req.image.map(|i| i.image).unwrap_or_default();
        self.log(format!("PullImage {image}"));
        if image.contains("missing") {
            return ready(Err(not_found("PullImage", &image)));
        }
        self.state().images.insert(image.clone());
        ready(Ok(format!("sha256:{image}")))
    }
}
