//! Operability on a real node: /metrics after a relayed call and an add (parsed as OpenMetrics
//! text), /healthz and /readyz, and `podgraft ls --selector`.

use std::collections::HashMap;
use std::io::{Read, Write};

use podgraft::api;

use crate::harness::{BUSYBOX, MUTABLE, Node};
use crate::pod::start_pod;

/// A loopback port free right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    // The listener starts just after the sockets appear: allow it a moment.
    let mut tries = 0;
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("metrics listener on port {port}: {e}"),
        }
    };
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect(&response);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// One sample: family-level name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the text format strictly enough to catch a broken exposition: every line is a
/// `# TYPE`/`# HELP`/`# UNIT` comment, `# EOF` (last), or `name{k="v",...} value`, and every
/// sample belongs to a family declared before it.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "exposition must end with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect(line);
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect(line);
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, HashMap::new()),
        };
        let family = types
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("{name} has no # TYPE before it"));
        assert!(name.len() >= family.len());
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test]
async fn metrics_health_and_selectors_on_a_real_node() {
    let port = free_port();
    let Some(node) = Node::start_with(&format!("metrics_listen = \"127.0.0.1:{port}\"")) else {
        return;
    };
    // Health: sockets served; ready once containerd answers and state is loaded.
    assert_eq!(get(port, "/healthz"), (200, "ok\n".into()));
    let mut ready = get(port, "/readyz");
    for _ in 0..50 {
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = get(port, "/readyz");
    }
    assert_eq!(ready, (200, "ok\n".into()));
    assert_eq!(get(port, "/nope").0, 404);

    // A relayed call (the pod's creation is several) and an add.
    let (pod, _, _) = start_pod(&node, "observed", MUTABLE, "main", "exec sleep 3600", None).await;
    let mut control = node.control_client().await;
    let tool = |name: &str, team: &str| api::ContainerSpec {
        name: name.into(),
        image: BUSYBOX.into(),
        command: vec!["sleep".into(), "3600".into()],
        labels: [("team".to_string(), team.to_string())].into(),
        ..Default::default()
    };
    control
        .add_containers(api::AddContainersRequest {
            pod: Some(api::PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ..Default::default()
            }),
            containers: vec![
                tool("red-tool", "red"),
                tool("blue-tool", "blue"),
                tool("gone-tool", "none"),
            ],
        })
        .await
        .unwrap();
    // An add refused by admission: the name is taken.
    let refused = control
        .add_containers(api::AddContainersRequest {
            pod: Some(api::PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ..Default::default()
            }),
            containers: vec![tool("red-tool", "red")],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);

    // A removal of one of them.
    control
        .remove_containers(api::RemoveContainersRequest {
            pod: Some(api::PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ..Default::default()
            }),
            names: vec!["gone-tool".into()],
            grace_period_seconds: Some(0),
        })
        .await
        .unwrap();

    let (status, text) = get(port, "/metrics");
    assert_eq!(status, 200);
    let (types, samples) = parse(&text);
    for (family, kind) in [
        ("podgraft_cri_calls", "counter"),
        ("podgraft_cri_call_duration_seconds", "histogram"),
        ("podgraft_add_duration_seconds", "histogram"),
        ("podgraft_remove_duration_seconds", "histogram"),
        ("podgraft_admission_refusals", "counter"),
        ("podgraft_dynamic_containers", "gauge"),
        ("podgraft_pod_cgroup_growth_memory_bytes", "gauge"),
        ("podgraft_pod_cgroup_growth_cpu_millicores", "gauge"),
        ("podgraft_restarts", "counter"),
        ("podgraft_state_loaded", "gauge"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}\n{text}"
        );
    }
    let run = [
        ("method", "runtime.v1.RuntimeService/RunPodSandbox"),
        ("code", "ok"),
    ];
    assert_eq!(
        value(&samples, "podgraft_cri_calls_total", &run),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(
            &samples,
            "podgraft_cri_call_duration_seconds_count",
            &run[..1]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(
            &samples,
            "podgraft_add_duration_seconds_count",
            &[("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "podgraft_add_duration_seconds_count",
            &[("outcome", "already_exists")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "podgraft_admission_refusals_total",
            &[("reason", "already_exists")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "podgraft_dynamic_containers",
            &[("state", "running")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&samples, "podgraft_state_loaded", &[]), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "podgraft_remove_duration_seconds_count",
            &[("outcome", "ok")]
        ),
        Some(1.0)
    );
    // Only methods that were called have series.
    assert!(!text.contains("v1alpha2"), "{text}");

    // `podgraft status`: GetStatus through the CLI, with the refused add as the last error.
    let (code, out, err) = node.cli(&["-o", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(st["containerd_reachable"], true, "{st}");
    assert_eq!(st["state_loaded"], true, "{st}");
    assert_eq!(st["mutable_handlers"], serde_json::json!([MUTABLE]), "{st}");
    assert_eq!(st["containers_by_state"]["running"], 2, "{st}");
    let last = st["recent_errors"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["call"], "AddContainers", "{st}");
    assert_eq!(last["code"], "AlreadyExists", "{st}");
    let (code, out, _) = node.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("containerd reachable  yes"), "{out}");

    // `ls --selector` filters on the dynamic containers' labels.
    let (code, out, err) = node.cli(&["ls", "-l", "team=blue"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("blue-tool") && !out.contains("red-tool"),
        "{out}"
    );
    let (code, out, _) = node.cli(&["ls", "--selector", "team!=blue,team"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("red-tool") && !out.contains("blue-tool"),
        "{out}"
    );
}
