//! Add→Running latency of a dynamic container through podgraft, side by side in one run with
//! containerd's own CreateContainer+StartContainer of the same container in the same pod, and with
//! starting a new pod (RunPodSandbox + create + start). Image present; samples interleaved; plus 10
//! concurrent adds into one pod.
//!
//!     cargo bench --bench add        (BENCH_SCALE=0.5 for fewer samples)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Podgraft, PrivateContainerd, Samples, ms, scale};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use podgraft::api::{self, control_client::ControlClient};
use podgraft::cgroup::{Growth, Mode, PodCgroup, RealIo};
use podgraft::client::uds_channel;
use podgraft::dynamic::resources::{Bounds, Ledger};
use tonic::transport::Channel;

const IMAGE: &str = "podgraft.test/busybox:1";

struct Pod {
    config: cri::PodSandboxConfig,
    sandbox: String,
}

/// The very config podgraft sends for `spec(name)` (masked paths, resources, labels and all), so
/// the direct baseline does the same work in runc as the add does.
fn container(pod: &cri::PodSandboxConfig, name: &str) -> cri::ContainerConfig {
    use podgraft::dynamic::host::{Host, SystemHost};
    use podgraft::dynamic::lifecycle::{stored_spec::SpecCodec, translate};
    let memory = SystemHost::default().memory_bytes().unwrap_or(1 << 30);
    let spec = podgraft::control::convert::container_spec(&spec(name), 0).unwrap();
    let stored = SpecCodec::default().encode(&spec);
    // A permissive pod (root, the runtime's capabilities): admission leaves the spec as it is.
    let security = podgraft::dynamic::model::security::Effective::requested(&spec);
    let mut config = translate::container_config(&spec, &security, stored, pod, vec![], 0, memory);
    // Not a dynamic container: podgraft must not adopt it.
    config
        .labels
        .remove(podgraft::dynamic::model::keys::DYNAMIC_LABEL);
    config
}

async fn run_pod(
    cri: &mut RuntimeServiceClient<Channel>,
    config: cri::PodSandboxConfig,
    handler: &str,
) -> String {
    cri.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: handler.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .pod_sandbox_id
}

async fn create_start(cri: &mut RuntimeServiceClient<Channel>, pod: &Pod, name: &str) -> String {
    let id = cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.sandbox.clone(),
            config: Some(container(&pod.config, name)),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    id
}

async fn remove(cri: &mut RuntimeServiceClient<Channel>, id: &str) {
    cri.stop_container(cri::StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    })
    .await
    .unwrap();
    cri.remove_container(cri::RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .unwrap();
}

async fn remove_pod(cri: &mut RuntimeServiceClient<Channel>, id: &str) {
    cri.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .unwrap();
    cri.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .unwrap();
}

async fn escalation_rows(
    direct: &mut RuntimeServiceClient<Channel>,
    main_id: &str,
    config: &cri::PodSandboxConfig,
) {
    use podgraft::dynamic::admission::security::harden;
    use podgraft::dynamic::model::security::{
        ContainerSecurity, ImageUser, PodSecurity, SandboxSecurity,
    };
    let spec = podgraft::control::convert::container_spec(&spec("tool"), 0).unwrap();
    let status = |verbose| cri::ContainerStatusRequest {
        container_id: main_id.to_string(),
        verbose,
    };
    let (mut cold, mut warm, mut plain) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..scale(400) {
        let t = Instant::now();
        direct.container_status(status(false)).await.unwrap();
        plain.0.push(t.elapsed());

        let t = Instant::now();
        let reply = direct
            .container_status(status(true))
            .await
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&reply.info["info"]).unwrap();
        let pod = PodSecurity {
            sandbox: SandboxSecurity::of(config),
            containers: vec![ContainerSecurity::from_verbose("main", &info).unwrap()],
        };
        harden(&spec, 0, &pod, &ImageUser::default()).unwrap();
        cold.0.push(t.elapsed());

        // The same pod facts, as the cache keeps them.
        let t = Instant::now();
        harden(&spec, 0, &pod, &ImageUser::default()).unwrap();
        warm.0.push(t.elapsed());
    }
    println!("\nNo-escalation checks per added container (one kubelet container in the pod)");
    let base = row("containerd ContainerStatus (plain)", &mut plain, None);
    row(
        "escalation checks, cold per-pod cache",
        &mut cold,
        Some(base),
    );
    row(
        "escalation checks, warm per-pod cache",
        &mut warm,
        Some(base),
    );
}

fn pod_ref(pod: &Pod) -> Option<api::PodRef> {
    Some(api::PodRef {
        sandbox_id: pod.sandbox.clone(),
        ..Default::default()
    })
}

fn spec(name: &str) -> api::ContainerSpec {
    api::ContainerSpec {
        name: name.into(),
        image: IMAGE.into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

fn row(label: &str, s: &mut Samples, base: Option<(Duration, Duration)>) -> (Duration, Duration) {
    let (p50, p99) = (s.pct(50), s.pct(99));
    let ratio = base.map_or(String::new(), |(b50, b99)| {
        format!(
            "{:>6.2}x {:>6.2}x",
            p50.as_secs_f64() / b50.as_secs_f64(),
            p99.as_secs_f64() / b99.as_secs_f64()
        )
    });
    println!(
        "{label:<44} {:>7} | {:>8.1} {:>8.1} | {ratio}",
        s.0.len(),
        ms(p50),
        ms(p99)
    );
    (p50, p99)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::Builder::new()
        .prefix("pga-")
        .tempdir_in("/tmp")
        .unwrap();
    let Some(ctd) = PrivateContainerd::start(&dir.path().join("node")) else {
        return;
    };
    let pg = Podgraft::start(dir.path(), "podgraft", &ctd.socket, &["podgraft"]);
    let mut direct = RuntimeServiceClient::new(uds_channel(&ctd.socket).await.unwrap());
    let mut via = RuntimeServiceClient::new(uds_channel(&pg.listen).await.unwrap());
    let mut control = ControlClient::new(uds_channel(&pg.control).await.unwrap());

    // A warm pod as the kubelet would have made it (through podgraft, mutable handler).
    let config = ctd.sandbox_config("warm");
    let sandbox = run_pod(&mut via, config.clone(), "podgraft").await;
    let pod = Pod { config, sandbox };
    let main_id = create_start(&mut via, &pod, "main").await;

    let n = scale(40);
    let (mut add, mut raw, mut fresh) =
        (Samples::default(), Samples::default(), Samples::default());
    for i in 0..n + 2 {
        // add → Running through podgraft
        let t = Instant::now();
        let added = control
            .add_containers(api::AddContainersRequest {
                pod: pod_ref(&pod),
                containers: vec![spec(&format!("dyn-{i}"))],
            })
            .await
            .unwrap()
            .into_inner();
        let add_time = t.elapsed();
        assert_eq!(
            added.containers[0].state,
            api::ContainerState::Running as i32
        );
        remove(&mut direct, &added.containers[0].container_id).await;

        // containerd's own create + start of the same container in the same pod
        let t = Instant::now();
        let id = create_start(&mut direct, &pod, &format!("raw-{i}")).await;
        let raw_time = t.elapsed();
        remove(&mut direct, &id).await;

        // a new pod: RunPodSandbox + create + start
        let config = ctd.sandbox_config(&format!("fresh-{i}"));
        let t = Instant::now();
        let sandbox = run_pod(&mut direct, config.clone(), "").await;
        create_start(
            &mut direct,
            &Pod {
                config,
                sandbox: sandbox.clone(),
            },
            "main",
        )
        .await;
        let fresh_time = t.elapsed();
        remove_pod(&mut direct, &sandbox).await;

        if i >= 2 {
            // the first two rounds warm caches and connections
            add.0.push(add_time);
            raw.0.push(raw_time);
            fresh.0.push(fresh_time);
        }
    }
    println!("Add → Running, image present; containerd 1.6 + runc, bridge CNI; latencies in ms");
    println!(
        "{:<44} {:>7} | {:>8} {:>8} | ratio to direct p50/p99",
        "path", "samples", "p50", "p99"
    );
    let base = row("containerd CreateContainer+StartContainer", &mut raw, None);
    let add_p50 = row("podgraft AddContainers (1 container)", &mut add, Some(base)).0;
    row(
        "new pod: RunPodSandbox+Create+Start",
        &mut fresh,
        Some(base),
    );

    // What admission + growth cost inside one add: reserve in the ledger, read the pod cgroup and
    // write baseline + growth (real cgroup v1 files of the warm pod), then give it back.
    let parent = pod.config.linux.as_ref().unwrap().cgroup_parent.clone();
    let root = Path::new("/sys/fs/cgroup");
    let cgroup = PodCgroup::new(root, Mode::detect(root), &parent).unwrap();
    let ledger = Ledger::new(Bounds::default());
    let growth = Growth {
        cpu_milli: 250,
        cpu_shares: 256,
        memory: 32 << 20,
    };
    let mut admission = Samples::default();
    for _ in 0..scale(2000) {
        let t = Instant::now();
        ledger
            .reserve(
                &pod.sandbox,
                Bounds::default(),
                &[("x".to_string(), growth)],
            )
            .unwrap();
        let current = cgroup.read(&RealIo).unwrap();
        let grown = current.plus(&growth);
        cgroup.write(&RealIo, &current, &grown).unwrap();
        admission.0.push(t.elapsed());
        ledger.release(&pod.sandbox, &["x".to_string()]);
        cgroup.write(&RealIo, &grown, &current).unwrap();
    }
    let (a50, a99) = (admission.pct(50), admission.pct(99));
    println!(
        "{:<44} {:>7} | {:>8.3} {:>8.3} | {:.2}% of the add's p50",
        "admission + pod cgroup growth (in an add)",
        admission.0.len(),
        ms(a50),
        ms(a99),
        100.0 * a50.as_secs_f64() / add_p50.as_secs_f64()
    );

    // The no-escalation checks per added container. Cold: the pod's per-pod cache is empty, so
    // the add reads the kubelet container's OCI spec from containerd (verbose ContainerStatus),
    // parses it and compares; warm: the comparison alone. Beside them, containerd's plain
    // ContainerStatus of the same container.
    escalation_rows(&mut direct, &main_id, &pod.config).await;

    // 10 concurrent adds into the warm pod, each its own request.
    let mut concurrent = Samples::default();
    let rounds = scale(5).min(10);
    let mut wall = Samples::default();
    for r in 0..rounds {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..10 {
            let mut c = control.clone();
            let pod = pod_ref(&pod);
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let out = c
                    .add_containers(api::AddContainersRequest {
                        pod,
                        containers: vec![spec(&format!("c{r}-{k}"))],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                (t.elapsed(), out.containers[0].container_id.clone())
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            let (d, id) = task.await.unwrap();
            concurrent.0.push(d);
            ids.push(id);
        }
        wall.0.push(t.elapsed());
        for id in ids {
            remove(&mut direct, &id).await;
        }
    }
    // The same ten, straight to containerd.
    let (mut direct_each, mut direct_wall) = (Samples::default(), Samples::default());
    for r in 0..rounds {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..10 {
            let mut c = direct.clone();
            let pod = Pod {
                config: pod.config.clone(),
                sandbox: pod.sandbox.clone(),
            };
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let id = create_start(&mut c, &pod, &format!("d{r}-{k}")).await;
                (t.elapsed(), id)
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            let (d, id) = task.await.unwrap();
            direct_each.0.push(d);
            ids.push(id);
        }
        direct_wall.0.push(t.elapsed());
        for id in ids {
            remove(&mut direct, &id).await;
        }
    }
    println!("\n10 concurrent adds into one pod, each its own request");
    let base_each = row("containerd create+start (each)", &mut direct_each, None);
    row(
        "podgraft AddContainers (each)",
        &mut concurrent,
        Some(base_each),
    );
    let base_wall = row("containerd create+start (all ten)", &mut direct_wall, None);
    row(
        "podgraft AddContainers (all ten)",
        &mut wall,
        Some(base_wall),
    );
    println!("podgraft RSS after the run: {} KiB", pg.rss_kib());
    remove_pod(&mut via, &pod.sandbox).await;
}
