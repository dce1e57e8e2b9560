//! A private node for one test: a real containerd (hack/containerd.sh, own root/state/socket under a
//! temp dir) with the podgraft binary in front of it.
//!
//! When containerd or runc is missing the test fails under CI=true; elsewhere it is skipped with a
//! loud message on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
pub const BUSYBOX: &str = "podgraft.test/busybox:1";

/// The RuntimeClass handler the test node treats as mutable (a runc runtime in containerd's config).
pub const MUTABLE: &str = "podgraft";

pub struct Node {
    /// Extra lines for podgraft's config file (a key set here replaces the node's default for it).
    pub extra_config: String,
    pub dir: tempfile::TempDir,
    pub containerd: PathBuf,
    pub podgraft: PathBuf,
    pub control: PathBuf,
    podgraft_proc: Option<Child>,
}

fn missing_tools() -> Vec<&'static str> {
    ["containerd", "runc", "ctr"]
        .into_iter()
        .filter(|tool| {
            !std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false)
        })
        .collect()
}

impl Node {
    /// Starts containerd and podgraft, or returns `None` (after a loud notice) where the real parts
    /// are missing outside CI.
    pub fn start() -> Option<Node> {
        Self::start_with("")
    }

    /// Like [`Node::start`], with extra podgraft config lines.
    pub fn start_with(extra_config: &str) -> Option<Node> {
        let missing = missing_tools();
        let not_root = !nix::unistd::geteuid().is_root();
        if !missing.is_empty() || not_root {
            let why = if not_root {
                "tests need root to run containers".to_string()
            } else {
                format!(
                    "{} not installed (run hack/install-deps.sh)",
                    missing.join(", ")
                )
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("real-containerd integration test cannot run: {why}");
            }
            eprintln!("\n*** SKIPPED: real-containerd integration test: {why} ***\n");
            return None;
        }
        // Short base path: Unix socket paths are limited to 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pgt-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let out = Command::new(format!("{MANIFEST_DIR}/hack/containerd.sh"))
            .arg("start")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/containerd.sh");
        assert!(out.status.success(), "hack/containerd.sh start failed");
        let containerd = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let mut node = Node {
            extra_config: extra_config.to_string(),
            podgraft: dir.path().join("podgraft.sock"),
            control: dir.path().join("control.sock"),
            dir,
            containerd,
            podgraft_proc: None,
        };
        node.start_podgraft();
        Some(node)
    }

    pub fn start_podgraft(&mut self) {
        self.spawn_podgraft(&[]);
        wait_for_socket(&self.podgraft);
        wait_for_socket(&self.control);
    }

    /// Starts podgraft with extra environment (e.g. `PODGRAFT_FAULT`) without waiting for its
    /// sockets: an armed fault point may kill it before they exist.
    pub fn spawn_podgraft(&mut self, env: &[(&str, &str)]) {
        let config = self.dir.path().join("podgraft.toml");
        let mut text = format!(
            "mutable_handlers = [\"{MUTABLE}\"]\nstate_dir = \"{}\"\naudit_log = \"{}\"\n",
            self.dir.path().join("state").display(),
            self.audit_path().display()
        );
        // The test node's timings, unless the test's extra config sets the key itself: TOML
        // refuses a key given twice.
        // Nodes run in parallel: no metrics listener unless a test asks for one on its own port.
        for (key, value) in [
            ("poll_interval_ms", "200"),
            ("pod_stop_grace_seconds", "2"),
            ("metrics_listen", "\"off\""),
        ] {
            if !self
                .extra_config
                .lines()
                .any(|l| l.split('=').next().map(str::trim) == Some(key))
            {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text.push_str(&self.extra_config);
        text.push('\n');
        std::fs::write(&config, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("podgraft.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_podgraft"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--control")
            .arg(&self.control)
            .arg("--listen")
            .arg(&self.podgraft)
            .arg("--runtime-endpoint")
            .arg(&self.containerd)
            .env("PODGRAFT_LOG", "debug")
            .env(podgraft::host_paths::FORBID_ENV, "1")
            .envs(env.iter().copied())
            .stderr(log)
            .spawn()
            .expect("spawn podgraft");
        self.podgraft_proc = Some(child);
    }

    /// Waits up to `limit` for podgraft to exit by itself (e.g. killed by a fault point); returns
    /// its exit status, or `None` if it is still running.
    pub async fn wait_podgraft_exit(
        &mut self,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.podgraft_proc.as_mut().expect("podgraft started");
            if let Some(status) = child.try_wait().unwrap() {
                self.podgraft_proc = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether a podgraft process is running (started and not seen to exit).
    pub fn podgraft_running(&mut self) -> bool {
        let running = self
            .podgraft_proc
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none());
        if !running {
            self.podgraft_proc = None;
        }
        running
    }

    /// The running podgraft's process ID.
    pub fn podgraft_pid(&self) -> u32 {
        self.podgraft_proc.as_ref().expect("podgraft running").id()
    }

    /// Kills podgraft as a crash would.
    pub fn kill_podgraft(&mut self) {
        let mut child = self.podgraft_proc.take().expect("podgraft running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub async fn control_client(&self) -> podgraft::api::control_client::ControlClient<Channel> {
        podgraft::api::control_client::ControlClient::new(
            podgraft::client::uds_channel(&self.control).await.unwrap(),
        )
    }

    /// Where podgraft writes its audit records.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// Every audit record so far.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit records are JSON lines"))
            .collect()
    }

    /// Runs the podgraft CLI as another user (uid, gid and supplementary groups), as a real
    /// process of that user would connect.
    pub fn cli_as(
        &self,
        uid: u32,
        gid: u32,
        groups: &[u32],
        args: &[&str],
    ) -> (i32, String, String) {
        use std::os::unix::process::CommandExt;
        let groups: Vec<nix::unistd::Gid> = groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podgraft"));
        cmd.arg("--control")
            .arg(&self.control)
            .args(args)
            .env(podgraft::host_paths::FORBID_ENV, "1");
        // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setgroups(&groups)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the podgraft CLI against this node's control socket; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_podgraft"))
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .env(podgraft::host_paths::FORBID_ENV, "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status. Async so that the test's
    /// own client connections keep being served (answering the server's GOAWAY/PING) meanwhile.
    pub async fn stop_podgraft(&mut self) -> std::process::ExitStatus {
        let mut child = self.podgraft_proc.take().expect("podgraft running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "podgraft did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills containerd as a crash would (its shims and containers live on).
    pub fn kill_containerd(&self) {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("containerd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while kill(Pid::from_raw(pid), None).is_ok() {
            assert!(Instant::now() < deadline, "containerd did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn restart_containerd(&self) {
        let status = Command::new(format!("{MANIFEST_DIR}/hack/containerd.sh"))
            .arg("start")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "containerd restart failed");
    }

    /// Records a cgroup path so that teardown removes it even if the test fails half-way.
    pub fn track_cgroup(&self, path: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cgroups"))
            .unwrap();
        writeln!(f, "{path}").unwrap();
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    pub async fn runtime(&self, via_podgraft: bool) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel(via_podgraft).await)
    }

    pub async fn images(&self, via_podgraft: bool) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel(via_podgraft).await)
    }

    pub async fn channel(&self, via_podgraft: bool) -> Channel {
        let path = if via_podgraft {
            &self.podgraft
        } else {
            &self.containerd
        };
        podgraft::client::uds_channel(path).await.expect("connect")
    }

    /// Stops and removes a pod through podgraft, as the kubelet does.
    pub async fn remove_pod(&self, sandbox: &str) {
        use k8s_cri::v1 as cri;
        let mut pg = self.runtime(true).await;
        pg.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.into(),
        })
        .await
        .unwrap();
        pg.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.into(),
        })
        .await
        .unwrap();
    }

    pub fn podgraft_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podgraft.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.podgraft_proc.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let status = Command::new(format!("{MANIFEST_DIR}/hack/containerd.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "hack/containerd.sh stop failed for {}",
                self.dir.path().display()
            );
        }
    }
}

pub fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not come up",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
