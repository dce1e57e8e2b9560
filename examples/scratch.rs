use k8s_cri::v1 as cri;
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = std::env::args().nth(1).unwrap();
    let ch = podgraft::testing::uds_channel(std::path::Path::new(&path))
        .await
        .unwrap();
    let mut c = cri::runtime_service_client::RuntimeServiceClient::new(ch);
    let cfg = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "scratch".into(),
            uid: "u-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "scratch".into(),
        log_directory: "/tmp/scratchlogs".into(),
        labels: [("io.kubernetes.pod.uid".to_string(), "u-1".to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/burstable/podu-1".into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = c
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: "podgraft".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let st = c
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    println!("{}", st.info.get("info").unwrap());
    let l = c
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    println!(
        "handler in list: {:?}",
        l.items
            .iter()
            .map(|i| i.runtime_handler.clone())
            .collect::<Vec<_>>()
    );
    c.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}
