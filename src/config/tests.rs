//! Config parsing, overrides and checks; every key documented.

use super::*;

fn settle(text: &str) -> Result<Settings, ConfigError> {
    Config::parse(text, Path::new("t.toml"))?.settle(Overrides::default())
}

#[test]
fn defaults_fit_a_stock_node() {
    let s = settle("").unwrap();
    assert_eq!(s.listen, PathBuf::from("/run/podgraft/podgraft.sock"));
    assert_eq!(
        s.runtime_endpoint,
        PathBuf::from("/run/containerd/containerd.sock")
    );
    assert_eq!(s.socket_mode, 0o660);
    assert_eq!(s.max_message_bytes, 16 << 20);
    assert_eq!(s.image_endpoint, None);
    assert_eq!(s.metrics_listen, Some(([127, 0, 0, 1], 9464).into()));
    assert_eq!(
        settle("metrics_listen = \"off\"").unwrap().metrics_listen,
        None
    );
}

#[test]
fn flags_override_the_file() {
    let cfg = Config::parse(
        "listen = \"/a.sock\"\nruntime_endpoint = \"/b.sock\"",
        Path::new("t"),
    )
    .unwrap();
    let s = cfg
        .settle(Overrides {
            listen: Some("unix:///c.sock".into()),
            image_endpoint: Some("/i.sock".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.listen, PathBuf::from("/c.sock"));
    assert_eq!(s.runtime_endpoint, PathBuf::from("/b.sock"));
    assert_eq!(s.image_endpoint, Some(PathBuf::from("/i.sock")));
}

#[test]
fn errors_name_the_key() {
    let unknown = settle("lisen = \"/x\"").unwrap_err().to_string();
    assert!(
        unknown.contains("lisen") && unknown.contains("t.toml"),
        "{unknown}"
    );
    let wrong_type = settle("max_message_bytes = \"big\"")
        .unwrap_err()
        .to_string();
    assert!(wrong_type.contains("max_message_bytes"), "{wrong_type}");
    for (text, key) in [
        ("socket_mode = \"999\"", "socket_mode"),
        ("max_message_bytes = 10", "max_message_bytes"),
        ("runtime_endpoint = \"tcp://1.2.3.4:1\"", "runtime_endpoint"),
        ("listen = \"relative.sock\"", "listen"),
        ("backend_max_backoff_ms = 0", "backend_max_backoff_ms"),
        ("mutable_handlers = [\"a b\"]", "mutable_handlers"),
        ("state_dir = \"var\"", "state_dir"),
        ("control_listen = \"x\"", "control_listen"),
        ("dynamic_budget_memory = \"much\"", "dynamic_budget_memory"),
        ("cgroup_root = \"sys\"", "cgroup_root"),
        ("socket_group = \"no-such-group-here\"", "socket_group"),
        ("log_format = \"xml\"", "log_format"),
        ("metrics_listen = \"localhost\"", "metrics_listen"),
    ] {
        let err = settle(text).unwrap_err().to_string();
        assert!(err.starts_with(key), "{text}: {err}");
    }
}

/// Every key of the file is documented: serde's unknown-field error lists them all.
#[test]
fn every_key_is_in_docs_config_md() {
    let err = Config::parse("no_such_key = 1", Path::new("t")).unwrap_err();
    let msg = err.to_string();
    let listed = msg.split("expected one of").nth(1).expect(&msg);
    let keys: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    assert!(
        keys.contains(&"listen") && keys.contains(&"access"),
        "{keys:?}"
    );
    let doc = include_str!("../../docs/config.md");
    for key in keys {
        assert!(
            doc.contains(&format!("`{key}`")) || doc.contains(&format!("`[[{key}]]`")),
            "config key {key} is not documented in docs/config.md"
        );
    }
}

#[test]
fn missing_default_file_means_defaults_but_missing_explicit_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn tests_cannot_read_the_hosts_config() {
    for path in [None, Some(Path::new(DEFAULT_CONFIG_PATH))] {
        match Config::load(path) {
            Err(ConfigError::HostPath(e)) => {
                assert_eq!(e.path, PathBuf::from(DEFAULT_CONFIG_PATH))
            }
            other => panic!("{path:?}: expected HostPath, got {other:?}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "listen = \"/x.sock\"").unwrap();
    assert_eq!(Config::load(Some(&file)).unwrap().listen, "/x.sock");
}
