//! A kubelet-like CRI flow through podgraft against a real containerd, each answer compared with the
//! one containerd gives directly.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use k8s_cri::v1 as cri;
use podgraft::testing::RawClient;
use prost::Message;
use tonic::Code;

use crate::harness::{BUSYBOX, Node};
use crate::pod::PodSpec;

/// Sends the same request to podgraft and to containerd and returns both answers.
macro_rules! both {
    ($pg:expr, $ctd:expr, $method:ident, $req:expr) => {{
        let req = $req;
        let via = $pg.$method(req.clone()).await.map(|r| r.into_inner());
        let direct = $ctd.$method(req).await.map(|r| r.into_inner());
        (via, direct)
    }};
}

fn by_id<T: Clone>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort_by(|a, b| id(a).cmp(id(b)));
    v
}

fn read_cgroup(controller: &str, path: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        .unwrap_or_else(|e| panic!("read {controller}{path}/{file}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn kubelet_flow_through_podgraft_matches_containerd() {
    let Some(node) = Node::start() else { return };
    let (mut pg, mut ctd) = (node.runtime(true).await, node.runtime(false).await);
    let (mut pgi, mut ctdi) = (node.images(true).await, node.images(false).await);

    // Version, Status: the same answers.
    let (via, direct) = both!(
        pg,
        ctd,
        version,
        cri::VersionRequest {
            version: "v1".into()
        }
    );
    assert_eq!(via.unwrap(), direct.unwrap());
    let (via, direct) = both!(pg, ctd, status, cri::StatusRequest { verbose: false });
    let via = via.unwrap();
    assert_eq!(via, direct.unwrap());
    assert!(
        via.status.unwrap().conditions.iter().all(|c| c.status),
        "runtime and network ready"
    );

    // Images: list and status.
    let (via, direct) = both!(
        pgi,
        ctdi,
        list_images,
        cri::ListImagesRequest { filter: None }
    );
    let (via, direct) = (via.unwrap().images, direct.unwrap().images);
    assert_eq!(by_id(&via, |i| &i.id), by_id(&direct, |i| &i.id));
    assert!(
        via.iter()
            .any(|i| i.repo_tags.contains(&BUSYBOX.to_string()))
    );
    let busybox = cri::ImageSpec {
        image: BUSYBOX.into(),
        ..Default::default()
    };
    let (via, direct) = both!(
        pgi,
        ctdi,
        image_status,
        cri::ImageStatusRequest {
            image: Some(busybox.clone()),
            verbose: false
        }
    );
    assert_eq!(via.unwrap(), direct.unwrap());

    // A pod with the kubelet's cgroup parent and labels.
    let pod = PodSpec::new("flow");
    let sandbox = pg
        .run_pod_sandbox(pod.run_request(&node))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mem_limit = read_cgroup("memory", &pod.cgroup_parent(), "memory.limit_in_bytes");
    assert!(
        !mem_limit.is_empty(),
        "pod cgroup exists under the kubelet's parent"
    );
    let (via, direct) = both!(
        pg,
        ctd,
        pod_sandbox_status,
        cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false
        }
    );
    let status = via.unwrap();
    assert_eq!(status, direct.unwrap());
    assert_eq!(
        status.status.as_ref().unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );
    let ip = status.status.unwrap().network.unwrap().ip;
    assert!(
        ip.starts_with("10."),
        "pod got an address from the bridge CNI: {ip:?}"
    );
    let by_uid = cri::ListPodSandboxRequest {
        filter: Some(cri::PodSandboxFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.uid".to_string(), pod.uid.clone())]),
            ..Default::default()
        }),
    };
    let (via, direct) = both!(pg, ctd, list_pod_sandbox, by_uid);
    let via = via.unwrap().items;
    assert_eq!(via.len(), 1);
    assert_eq!(via, direct.unwrap().items);

    // Two containers in the pod.
    let sandbox_config = pod.sandbox_config(&node);
    let mut ids = HashMap::new();
    for (name, script) in [
        (
            "server",
            "echo started; mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
        ("client", "echo client up; exec sleep 3600"),
    ] {
        let id = pg
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(pod.container(name, script)),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        pg.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        ids.insert(name, id);
    }
    for id in ids.values() {
        let (via, direct) = both!(
            pg,
            ctd,
            container_status,
            cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false
            }
        );
        let via = via.unwrap();
        assert_eq!(via, direct.unwrap());
        assert_eq!(
            via.status.unwrap().state,
            cri::ContainerState::ContainerRunning as i32
        );
    }

    // ListContainers with each kind of filter.
    let filters = [
        cri::ContainerFilter {
            pod_sandbox_id: sandbox.clone(),
            ..Default::default()
        },
        cri::ContainerFilter {
            label_selector: HashMap::from([(
                "io.kubernetes.container.name".to_string(),
                "client".to_string(),
            )]),
            ..Default::default()
        },
        cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        },
        cri::ContainerFilter {
            id: ids["server"].clone(),
            ..Default::default()
        },
    ];
    let expected_counts = [2, 1, 2, 1];
    for (filter, expected) in filters.into_iter().zip(expected_counts) {
        let (via, direct) = both!(
            pg,
            ctd,
            list_containers,
            cri::ListContainersRequest {
                filter: Some(filter.clone())
            }
        );
        let (via, direct) = (via.unwrap().containers, direct.unwrap().containers);
        assert_eq!(via.len(), expected, "{filter:?}");
        assert_eq!(by_id(&via, |c| &c.id), by_id(&direct, |c| &c.id));
    }

    // ExecSync: output, the shared network namespace, and non-zero exit codes.
    let exec = |cmd: &str| cri::ExecSyncRequest {
        container_id: ids["client"].clone(),
        cmd: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        timeout: 10,
    };
    let mut fetched = String::new();
    for _ in 0..50 {
        let r = pg
            .exec_sync(exec("wget -qO- http://127.0.0.1:8080/index.html"))
            .await
            .unwrap()
            .into_inner();
        if r.exit_code == 0 {
            fetched = String::from_utf8_lossy(&r.stdout).into_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fetched, "hello\n",
        "client reaches server over the pod's localhost"
    );
    let failed = pg
        .exec_sync(exec("echo oops >&2; exit 3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.exit_code, 3);
    assert_eq!(failed.stderr, b"oops\n");
    let streaming = pg
        .exec(cri::ExecRequest {
            container_id: ids["client"].clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        streaming.url.starts_with("http://127.0.0.1:"),
        "{}",
        streaming.url
    );

    // Logs in the kubelet's layout and CRI format.
    let log = std::path::Path::new(&pod.log_directory(&node)).join("server/0.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().next().expect("a log line");
    let fields: Vec<_> = line.splitn(4, ' ').collect();
    assert_eq!(&fields[1..], ["stdout", "F", "started"], "{line}");

    // Stats: the same containers, attributes and labels.
    let stats_filter = cri::ListContainerStatsRequest {
        filter: Some(cri::ContainerStatsFilter {
            pod_sandbox_id: sandbox.clone(),
            ..Default::default()
        }),
    };
    let (via, direct) = both!(pg, ctd, list_container_stats, stats_filter);
    let attrs = |s: Vec<cri::ContainerStats>| {
        let mut a: Vec<_> = s.into_iter().map(|s| s.attributes.unwrap()).collect();
        a.sort_by(|x, y| x.id.cmp(&y.id));
        a
    };
    let via = attrs(via.unwrap().stats);
    assert_eq!(via.len(), 2);
    assert_eq!(via, attrs(direct.unwrap().stats));
    let one = pg
        .container_stats(cri::ContainerStatsRequest {
            container_id: ids["server"].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.stats.unwrap().attributes.unwrap().id, ids["server"]);

    // UpdateContainerResources reaches the container's cgroup.
    pg.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: ids["client"].clone(),
        linux: Some(cri::LinuxContainerResources {
            cpu_shares: 204,
            cpu_period: 100_000,
            cpu_quota: 60_000,
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let cg = format!("{}/{}", pod.cgroup_parent(), ids["client"]);
    assert_eq!(
        read_cgroup("memory", &cg, "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(read_cgroup("cpu", &cg, "cpu.shares"), "204");

    // GetContainerEvents: whatever containerd answers (1.6: UNIMPLEMENTED), podgraft answers too.
    let events = |r: Result<
        tonic::Response<tonic::Streaming<cri::ContainerEventResponse>>,
        tonic::Status,
    >| async {
        match r {
            Err(s) => (s.code(), s.message().to_string()),
            Ok(stream) => match tokio::time::timeout(
                Duration::from_millis(300),
                stream.into_inner().message(),
            )
            .await
            {
                Ok(Err(s)) => (s.code(), s.message().to_string()),
                Ok(Ok(_)) | Err(_) => (Code::Ok, String::new()),
            },
        }
    };
    let via = events(pg.get_container_events(cri::GetEventsRequest {}).await).await;
    let direct = events(ctd.get_container_events(cri::GetEventsRequest {}).await).await;
    assert_eq!(via, direct);

    // Stop and remove containers, then the pod; errors for unknown ids are containerd's own.
    for id in ids.values() {
        pg.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        let st = pg
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
        pg.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    }
    let (via, direct) = both!(
        pg,
        ctd,
        stop_container,
        cri::StopContainerRequest {
            container_id: ids["client"].clone(),
            timeout: 0
        }
    );
    let (via, direct) = (via.unwrap_err(), direct.unwrap_err());
    assert_eq!(
        (via.code(), via.message()),
        (direct.code(), direct.message())
    );
    pg.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .unwrap();
    pg.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .unwrap();
    let (via, direct) = both!(
        pg,
        ctd,
        list_pod_sandbox,
        cri::ListPodSandboxRequest { filter: None }
    );
    assert!(via.unwrap().items.is_empty());
    assert!(direct.unwrap().items.is_empty());
}

#[tokio::test]
async fn unknown_fields_methods_and_old_api_versions_reach_real_containerd() {
    let Some(node) = Node::start() else { return };
    let mut via = RawClient::connect(&node.podgraft).await.unwrap();
    let mut direct = RawClient::connect(&node.containerd).await.unwrap();

    // A request carrying field 1000, which no CRI version defines: containerd ignores it either way.
    let mut msg = cri::VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();
    msg.extend_from_slice(&[0xc2, 0x3e, 3, b'n', b'e', b'w']);
    let msg = Bytes::from(msg);
    for method in [
        "/runtime.v1.RuntimeService/Version",
        "/runtime.v1alpha2.RuntimeService/Version",
        "/runtime.v1.RuntimeService/NoSuchMethodYet",
        "/runtime.v1.RuntimeService/UpdatePodSandboxResources",
    ] {
        let a = via
            .call(method, std::slice::from_ref(&msg), HeaderMap::new())
            .await;
        let b = direct
            .call(method, std::slice::from_ref(&msg), HeaderMap::new())
            .await;
        assert_eq!((a.code, &a.message), (b.code, &b.message), "{method}");
        assert_eq!(a.messages, b.messages, "{method}: response bytes differ");
    }

    // A deadline reaches containerd, which gives up on it exactly as when called directly.
    let pod = PodSpec::new("deadline");
    let mut pg = node.runtime(true).await;
    let sandbox = pg
        .run_pod_sandbox(pod.run_request(&node))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let id = pg
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(pod.container("sleeper", "exec sleep 3600")),
            sandbox_config: Some(pod.sandbox_config(&node)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    pg.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let slow = cri::ExecSyncRequest {
        container_id: id,
        cmd: vec!["sleep".into(), "5".into()],
        timeout: 0,
    };
    let mut md = HeaderMap::new();
    md.insert("grpc-timeout", HeaderValue::from_static("300m"));
    let slow = [Bytes::from(slow.encode_to_vec())];
    let started = std::time::Instant::now();
    let a = via
        .call("/runtime.v1.RuntimeService/ExecSync", &slow, md.clone())
        .await;
    // The raw client keeps no timer of its own: only the backend can have ended the call early.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "deadline was not enforced"
    );
    let b = direct
        .call("/runtime.v1.RuntimeService/ExecSync", &slow, md)
        .await;
    assert_ne!(a.code, Code::Ok);
    // containerd 1.6 reports the expired exec as UNKNOWN "...context deadline exceeded".
    assert_eq!(a.code, b.code, "{} / {}", a.message, b.message);
    assert!(a.message.contains("deadline exceeded"), "{}", a.message);
    pg.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .unwrap();
    pg.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn image_pull_through_podgraft_from_a_loopback_registry() {
    let Some(node) = Node::start() else { return };
    let layout = std::env::var("PODGRAFT_IMAGE_DIR")
        .unwrap_or_else(|_| format!("{}/target/test-images", crate::harness::MANIFEST_DIR));
    let registry = crate::registry::serve(
        &std::path::Path::new(&layout).join("busybox"),
        "podgraft/busybox",
    )
    .await;
    crate::registry::configure_containerd(&node.dir.path().join("certs.d"), registry.addr);
    let image = format!("{}/podgraft/busybox:1", registry.addr);
    let mut pgi = node.images(true).await;
    let mut ctdi = node.images(false).await;
    let spec = cri::ImageSpec {
        image: image.clone(),
        ..Default::default()
    };
    let missing = pgi
        .image_status(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.image.is_none());
    let pulled = pgi
        .pull_image(cri::PullImageRequest {
            image: Some(spec.clone()),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        pulled.image_ref.starts_with("sha256:"),
        "{}",
        pulled.image_ref
    );
    let (via, direct) = both!(
        pgi,
        ctdi,
        image_status,
        cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false
        }
    );
    let via = via.unwrap();
    assert_eq!(via, direct.unwrap());
    assert!(via.image.unwrap().repo_tags.contains(&image));
    let bad = pgi
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: format!("{}/podgraft/nope:1", registry.addr),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_ne!(bad.code(), Code::Ok);
    pgi.remove_image(cri::RemoveImageRequest { image: Some(spec) })
        .await
        .unwrap();
}

#[tokio::test]
async fn podgraft_rides_out_a_containerd_restart_and_stops_cleanly() {
    let Some(mut node) = Node::start() else {
        return;
    };
    let mut pg = node.runtime(true).await;
    pg.version(cri::VersionRequest::default()).await.unwrap();

    node.kill_containerd();
    let down = pg
        .version(cri::VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down}");
    assert!(
        down.message().contains("containerd.sock"),
        "{}",
        down.message()
    );

    node.restart_containerd();
    let mut ok = None;
    for _ in 0..100 {
        match pg.version(cri::VersionRequest::default()).await {
            Ok(v) => {
                ok = Some(v.into_inner());
                break;
            }
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "{s}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ok.expect("podgraft reconnected").runtime_name, "containerd");

    let started = std::time::Instant::now();
    let status = node.stop_podgraft().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connections must not hold up shutdown"
    );
    assert!(
        status.success(),
        "podgraft exit status after SIGTERM: {status}"
    );
    assert!(!node.podgraft.exists(), "socket removed on shutdown");
    assert!(node.podgraft_log().contains("podgraft stopped"));
}
