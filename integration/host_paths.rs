//! The podgraft binary under the test harness's environment refuses the host's own podgraft paths,
//! so that no test or benchmark can take over a real node's sockets, state or config.

use std::process::Command;

use podgraft::host_paths::FORBID_ENV;

/// Runs `podgraft serve` with host paths forbidden; returns (exit code, stderr).
fn serve(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podgraft"))
        .arg("serve")
        .args(args)
        .env(FORBID_ENV, "1")
        .env("PODGRAFT_LOG", "warn")
        .env_remove("PODGRAFT_CONTROL")
        .output()
        .expect("run podgraft");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_the_hosts_config_file() {
    let (code, stderr) = serve(&[]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("/etc/podgraft/config.toml"), "{stderr}");
}

#[test]
fn serve_refuses_the_hosts_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podgraft.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n", dir.path().join("state").display()),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let backend = dir.path().join("cri.sock");
    let backend = backend.to_str().unwrap();
    let control = dir.path().join("control.sock");
    let control = control.to_str().unwrap();
    let listen = dir.path().join("podgraft.sock");
    let listen = listen.to_str().unwrap();
    for (args, refused) in [
        (
            vec![
                "--config",
                config,
                "--runtime-endpoint",
                backend,
                "--control",
                control,
            ],
            "/run/podgraft/podgraft.sock",
        ),
        (
            vec![
                "--config",
                config,
                "--runtime-endpoint",
                backend,
                "--listen",
                listen,
            ],
            "/run/podgraft/control.sock",
        ),
    ] {
        let (code, stderr) = serve(&args);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains(refused), "{stderr}");
    }
}
