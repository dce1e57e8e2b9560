//! The podgraft binary: a thin layer over the library. `serve` runs the daemon; every other
//! command is a client of the control API.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use podgraft::cli::{Cli, Command};
use podgraft::config::{Config, Overrides};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("podgraft: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let Command::Serve {
        config,
        listen,
        runtime_endpoint,
        image_endpoint,
    } = cli.command
    else {
        podgraft::logging::init(podgraft::logging::LogFormat::Text);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let control = cli
            .control
            .unwrap_or_else(|| podgraft::cli::DEFAULT_CONTROL.into());
        return runtime.block_on(podgraft::cli::run_client(&control, cli.output, cli.command));
    };
    let settings = Config::load(config.as_deref())?.settle(Overrides {
        listen,
        control_listen: cli.control.map(|p| p.display().to_string()),
        runtime_endpoint,
        image_endpoint,
    })?;
    // After the config, which chooses the format; config errors go to stderr as plain text.
    podgraft::logging::init(settings.log_format);
    // Crash tests arm fault points through the environment (a no-op without `testing`).
    podgraft::fault::arm();
    podgraft::daemon::tune_allocator();
    // Before any thread exists: capability sets are per thread.
    if nix::unistd::geteuid().is_root() {
        podgraft::privileges::drop_to_needed()?;
    } else {
        tracing::info!("not running as root: no capabilities to drop");
    }
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
        anyhow::Ok(0)
    })
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
