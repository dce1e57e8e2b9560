//! `podgraft cri`: a small CRI client that makes the calls a kubelet makes, over any CRI socket
//! (podgraft's, to act as the kubelet; containerd's, to measure containerd alone). hack/up.sh
//! uses it for its demo pod; it needs nothing installed beyond podgraft.

mod kubelet;
mod pods;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use k8s_cri::v1 as cri;
use serde::Serialize;
use tonic::transport::Channel;

use super::{Format, output};
pub use kubelet::Pod;

type Runtime = cri::runtime_service_client::RuntimeServiceClient<Channel>;

/// A container that runs until stopped. Its own trap, because PID 1 ignores a SIGTERM it has
/// no handler for and would make every stop wait out the grace period.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; while sleep 1; do :; done";

#[derive(Subcommand)]
pub enum Verb {
    /// Run a pod as the kubelet would (kubelet labels, log directory, cgroupfs parent
    /// /kubepods/burstable/pod<UID>) with one long-running container; prints the sandbox ID.
    RunPod {
        /// [NAMESPACE/]NAME
        pod: String,
        /// The pod's UID [default: a random one].
        #[arg(long)]
        uid: Option<String>,
        /// RuntimeClass handler (a handler in podgraft's mutable_handlers makes the pod mutable).
        #[arg(long, default_value = "podgraft")]
        handler: String,
        /// The kubelet's pod log root: the pod logs to LOG_ROOT/<namespace>_<name>_<uid>/.
        #[arg(long, default_value = "/var/log/pods")]
        log_root: PathBuf,
        /// The container's name.
        #[arg(long, default_value = "app")]
        container: String,
        #[arg(long)]
        image: String,
        /// The container's command [default: sh -c, sleeping until SIGTERM].
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List containers as the kubelet sees them through this socket.
    Ps {
        /// Only this pod's ([NAMESPACE/]NAME or sandbox ID).
        pod: Option<String>,
    },
    /// Create and start a container in a pod, print how long that took, then remove it. Against
    /// containerd's socket it is containerd's own latency for what `podgraft add` does.
    TimeCreateStart {
        /// [NAMESPACE/]NAME or sandbox ID.
        pod: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        image: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop and remove a pod as the kubelet does (containers first, with a grace period).
    RmPod {
        /// [NAMESPACE/]NAME or sandbox ID.
        pod: String,
        /// Seconds each container gets between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace: i64,
    },
}

fn socket_path(endpoint: &str) -> PathBuf {
    // crictl's form (CONTAINER_RUNTIME_ENDPOINT=unix:///run/…) as well as a bare path.
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

fn status(op: &str) -> impl Fn(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("{op}: {:?}: {}", s.code(), s.message())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

/// Runs `podgraft cri VERB` against the CRI socket `endpoint`; returns the exit code.
pub async fn run(endpoint: &str, format: Format, verb: Verb) -> anyhow::Result<i32> {
    let path = socket_path(endpoint);
    let channel = crate::client::uds_channel(&path)
        .await
        .with_context(|| format!("connecting to the CRI socket {}", path.display()))?;
    let mut rt = Runtime::new(channel.clone());
    match verb {
        Verb::RunPod {
            pod,
            uid,
            handler,
            log_root,
            container,
            image,
            command,
        } => {
            let (namespace, name) = pods::split_name(&pod);
            let uid = match uid {
                Some(uid) => uid,
                None => std::fs::read_to_string("/proc/sys/kernel/random/uuid")
                    .context("reading a random UID")?
                    .trim()
                    .to_string(),
            };
            let pod = Pod {
                namespace,
                name,
                uid,
                log_root: log_root.display().to_string(),
            };
            let command = if command.is_empty() {
                vec!["/bin/sh".into(), "-c".into(), LONG_RUNNING.into()]
            } else {
                command
            };
            let (sandbox, container) = run_pod(
                &mut rt, channel, &pod, &handler, &container, &image, &command,
            )
            .await?;
            #[derive(Serialize)]
            struct Out<'a> {
                sandbox_id: &'a str,
                container_id: &'a str,
                uid: &'a str,
                cgroup_parent: String,
                log_directory: String,
            }
            let out = Out {
                sandbox_id: &sandbox,
                container_id: &container,
                uid: &pod.uid,
                cgroup_parent: pod.cgroup_parent(),
                log_directory: pod.log_directory(),
            };
            match format {
                Format::Json => println!("{}", output::json(&out)),
                // The bare ID, for scripts: `id=$(podgraft cri run-pod …)`.
                Format::Table => println!("{sandbox}"),
            }
        }
        Verb::Ps { pod } => {
            let sandbox = match pod {
                Some(pod) => Some(pods::resolve(&mut rt, &pod).await?.id),
                None => None,
            };
            let containers = list_containers(&mut rt, sandbox).await?;
            match format {
                Format::Json => println!("{}", output::json(&containers)),
                Format::Table => print!("{}", pods::container_table(&containers)),
            }
        }
        Verb::TimeCreateStart {
            pod,
            name,
            image,
            command,
        } => {
            let sandbox = pods::resolve(&mut rt, &pod).await?;
            let t = time_create_start(&mut rt, &sandbox.id, &name, &image, &command).await?;
            match format {
                Format::Json => println!("{}", output::json(&t)),
                Format::Table => println!(
                    "create+start: {:.1} ms (create {:.1} ms, start {:.1} ms)",
                    t.total_ms, t.create_ms, t.start_ms
                ),
            }
        }
        Verb::RmPod { pod, grace } => {
            let sandbox = pods::resolve(&mut rt, &pod).await?;
            rm_pod(&mut rt, &sandbox.id, grace).await?;
            if format == Format::Table {
                println!("{}", sandbox.id);
            }
        }
    }
    Ok(0)
}

/// The kubelet's order: log directory, sandbox, image (pulled if absent), container, start.
async fn run_pod(
    rt: &mut Runtime,
    channel: Channel,
    pod: &Pod,
    handler: &str,
    container: &str,
    image: &str,
    command: &[String],
) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(pod.log_directory())
        .with_context(|| format!("creating the pod log directory {}", pod.log_directory()))?;
    let config = pod.sandbox_config();
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .map_err(status("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    tracing::debug!(%sandbox, "sandbox running");
    pods::ensure_image(channel, image).await?;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(pod.container(container, image, command)),
            sandbox_config: Some(config),
        })
        .await
        .map_err(status("CreateContainer"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(status("StartContainer"))?;
    Ok((sandbox, id))
}

/// One container of a listing, as `ps` shows it.
#[derive(Serialize)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub state: String,
    pub pod: String,
    pub sandbox_id: String,
    pub image: String,
}

async fn list_containers(rt: &mut Runtime, sandbox: Option<String>) -> anyhow::Result<Vec<Listed>> {
    let filter = sandbox.map(|id| cri::ContainerFilter {
        pod_sandbox_id: id,
        ..Default::default()
    });
    let mut list = rt
        .list_containers(cri::ListContainersRequest { filter })
        .await
        .map_err(status("ListContainers"))?
        .into_inner()
        .containers;
    list.sort_by_key(|c| c.created_at);
    Ok(list
        .into_iter()
        .map(|c| {
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            Listed {
                name: c
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                state: cri::ContainerState::try_from(c.state)
                    .map(|s| s.as_str_name().trim_start_matches("CONTAINER_").to_string())
                    .unwrap_or_else(|_| c.state.to_string()),
                pod: format!(
                    "{}/{}",
                    label("io.kubernetes.pod.namespace"),
                    label("io.kubernetes.pod.name")
                ),
                image: c
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                sandbox_id: c.pod_sandbox_id,
                id: c.id,
            }
        })
        .collect())
}

#[derive(Serialize)]
struct Timing {
    create_ms: f64,
    start_ms: f64,
    total_ms: f64,
}

/// CreateContainer + StartContainer of one container in the sandbox, timed from the first call to
/// the second answer; the container is then stopped and removed whatever happened.
async fn time_create_start(
    rt: &mut Runtime,
    sandbox: &str,
    name: &str,
    image: &str,
    command: &[String],
) -> anyhow::Result<Timing> {
    // Outside the timing: what podgraft's add also knows before it creates (the pod's config).
    let pod_config = pods::sandbox_config(rt, sandbox).await?;
    let pod = Pod {
        namespace: pod_config
            .metadata
            .as_ref()
            .map(|m| m.namespace.clone())
            .unwrap_or_default(),
        name: pod_config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        uid: pod_config
            .metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .unwrap_or_default(),
        log_root: String::new(),
    };
    let config = pod.container(name, image, command);
    let t0 = Instant::now();
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .map_err(status("CreateContainer"))?
        .into_inner()
        .container_id;
    let created = t0.elapsed();
    let started = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(status("StartContainer"));
    let total = t0.elapsed();
    let removed = remove_container(rt, &id).await;
    started?;
    removed?;
    Ok(Timing {
        create_ms: ms(created),
        start_ms: ms(total - created),
        total_ms: ms(total),
    })
}

async fn remove_container(rt: &mut Runtime, id: &str) -> anyhow::Result<()> {
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout: 0,
    })
    .await
    .map_err(status("StopContainer"))?;
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .map_err(status("RemoveContainer"))?;
    Ok(())
}

/// The kubelet's teardown: each container stopped with the grace period, then the sandbox stopped
/// and removed (which removes its containers).
async fn rm_pod(rt: &mut Runtime, sandbox: &str, grace: i64) -> anyhow::Result<()> {
    for c in list_containers(rt, Some(sandbox.to_string())).await? {
        if c.state == "RUNNING" {
            rt.stop_container(cri::StopContainerRequest {
                container_id: c.id.clone(),
                timeout: grace,
            })
            .await
            .map_err(status("StopContainer"))?;
        }
    }
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.to_string(),
    })
    .await
    .map_err(status("StopPodSandbox"))?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.to_string(),
    })
    .await
    .map_err(status("RemovePodSandbox"))?;
    Ok(())
}
