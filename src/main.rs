//! The podgraft binary: a thin command-line layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use podgraft::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "podgraft",
    version,
    about = "CRI shim that adds containers to running pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CRI relay in front of containerd.
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODGRAFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("podgraft: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            runtime_endpoint,
            image_endpoint,
        } => {
            let settings = Config::load(config.as_deref())?.settle(Overrides {
                listen,
                runtime_endpoint,
                image_endpoint,
            })?;
            let runtime = if settings.worker_threads == 0 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(settings.worker_threads)
                    .enable_all()
                    .build()
            }
            .context("starting the async runtime")?;
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                podgraft::daemon::run(settings, shutdown).await?;
                anyhow::Ok(())
            })
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
