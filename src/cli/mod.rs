//! The `podgraft` command line: `serve` runs the daemon; every other command is a client of the
//! control API.

mod commands;
mod cri;
mod generate;
mod ls;
mod output;
mod spec;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use commands::run_client;

/// Where clients look for the control socket when `--control` is not given.
pub const DEFAULT_CONTROL: &str = "/run/podgraft/control.sock";

#[derive(Parser)]
#[command(
    name = "podgraft",
    version,
    about = "CRI shim that adds containers to running pods"
)]
pub struct Cli {
    /// The control API socket: clients connect to it, `serve` listens on it
    /// [default: /run/podgraft/control.sock, or control_listen from serve's config].
    #[arg(long, global = true, value_name = "SOCKET", env = "PODGRAFT_CONTROL")]
    pub control: Option<PathBuf>,
    /// Output format of client commands.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A pod on the command line: `[NAMESPACE/]NAME` (namespace "default" if omitted),
/// `uid:<UID>` or `sandbox:<ID>`.
#[derive(Clone, Debug)]
pub struct PodArg(pub crate::api::PodRef);

impl std::str::FromStr for PodArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut pod = crate::api::PodRef::default();
        if let Some(uid) = s.strip_prefix("uid:") {
            pod.uid = uid.to_string();
        } else if let Some(id) = s.strip_prefix("sandbox:") {
            pod.sandbox_id = id.to_string();
        } else if let Some((ns, name)) = s.split_once('/') {
            pod.namespace = ns.to_string();
            pod.name = name.to_string();
        } else {
            pod.namespace = "default".to_string();
            pod.name = s.to_string();
        }
        if [&pod.uid, &pod.sandbox_id, &pod.name]
            .iter()
            .all(|v| v.is_empty())
            || (!pod.name.is_empty() && pod.namespace.is_empty())
        {
            return Err(format!(
                "{s:?}: use [NAMESPACE/]NAME, uid:<UID> or sandbox:<ID>"
            ));
        }
        Ok(PodArg(pod))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the CRI relay and the control API in front of containerd.
    Serve {
        /// TOML config file (default: /etc/podgraft/config.toml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Socket the kubelet connects to.
        #[arg(long, value_name = "SOCKET")]
        listen: Option<String>,
        /// containerd's CRI socket.
        #[arg(long, value_name = "SOCKET")]
        runtime_endpoint: Option<String>,
        /// A separate CRI image service socket.
        #[arg(long, value_name = "SOCKET")]
        image_endpoint: Option<String>,
    },
    /// Add containers to a running pod (from a spec file, or from flags).
    Add {
        pod: PodArg,
        /// Spec file: a Kubernetes container (or a list, or {containers: [...]}), YAML or JSON; - for stdin.
        #[arg(short = 'f', long, conflicts_with_all = ["name", "image"])]
        file: Option<PathBuf>,
        #[arg(long, required_unless_present = "file")]
        name: Option<String>,
        #[arg(long, required_unless_present = "file")]
        image: Option<String>,
        /// Environment variable NAME=VALUE (repeatable).
        #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Always, OnFailure or Never.
        #[arg(long)]
        restart: Option<String>,
        /// The container's command (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List dynamic containers (of one pod, or of every mutable pod).
    Ls {
        pod: Option<PodArg>,
        /// Only containers whose labels match: KEY=VALUE, KEY!=VALUE, KEY or !KEY, comma-separated
        /// (repeatable; all must hold).
        #[arg(short = 'l', long, value_name = "SELECTOR")]
        selector: Vec<String>,
        /// Keep watching: print the listing again whenever a container changes.
        #[arg(short, long)]
        watch: bool,
        /// Also show the kept final statuses of removed containers.
        #[arg(long)]
        removed: bool,
    },
    /// Show one dynamic container.
    Get { pod: PodArg, name: String },
    /// Stop and remove dynamic containers.
    Rm {
        pod: PodArg,
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds between SIGTERM and SIGKILL (default 30).
        #[arg(long)]
        grace: Option<i64>,
    },
    /// Print a dynamic container's log.
    Logs {
        pod: PodArg,
        name: String,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
    },
    /// Run a command in a dynamic container.
    Exec {
        pod: PodArg,
        name: String,
        /// Seconds before the command is killed (0: none).
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show podgraft's own state: version, backend, mutable handlers, counts, health, last errors.
    Status,
    /// Print a shell completion script (e.g. `podgraft completions bash > /etc/bash_completion.d/podgraft`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or with --dir write one page per command there.
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// A small CRI client making the kubelet's calls on any CRI socket: run and remove a
    /// kubelet-like pod, list what the kubelet sees, time containerd's own create+start.
    Cri {
        /// The CRI socket (a path or unix://PATH): podgraft's to act as the kubelet,
        /// containerd's to bypass podgraft.
        #[arg(
            long,
            global = true,
            value_name = "SOCKET",
            env = "CONTAINER_RUNTIME_ENDPOINT"
        )]
        endpoint: Option<String>,
        #[command(subcommand)]
        verb: cri::Verb,
    },
    /// Stream lifecycle events.
    Events {
        pod: Option<PodArg>,
        /// Resume after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}
