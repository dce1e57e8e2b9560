//! The client commands: each is one or two control API calls and some printing.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_stream::StreamExt;

use super::{Command, Format, output, spec};
use crate::api::{self, control_client::ControlClient};

type Client = ControlClient<tonic::transport::Channel>;

async fn connect(path: &std::path::Path) -> anyhow::Result<Client> {
    let channel = crate::client::uds_channel(path)
        .await
        .with_context(|| format!("connecting to podgraft's control socket {}", path.display()))?;
    Ok(ControlClient::new(channel))
}

/// A failed call, shown as the status code and podgraft's message.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

async fn get_container(
    client: &mut Client,
    pod: &super::PodArg,
    name: &str,
) -> anyhow::Result<api::DynamicContainer> {
    let req = api::GetContainerRequest {
        pod: Some(pod.0.clone()),
        name: name.to_string(),
    };
    Ok(client
        .get_container(req)
        .await
        .map_err(status)?
        .into_inner())
}

fn specs_from(command: &Command) -> anyhow::Result<Vec<api::ContainerSpec>> {
    let Command::Add {
        file,
        name,
        image,
        env,
        restart,
        command,
        ..
    } = command
    else {
        unreachable!("only called for add")
    };
    if let Some(file) = file {
        let text = if file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        };
        return spec::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()));
    }
    let env = env
        .iter()
        .map(|kv| {
            let (name, value) = kv
                .split_once('=')
                .with_context(|| format!("--env {kv:?}: use NAME=VALUE"))?;
            Ok(api::KeyValue {
                name: name.into(),
                value: value.into(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(vec![api::ContainerSpec {
        name: name.clone().unwrap_or_default(),
        image: image.clone().unwrap_or_default(),
        command: command.clone(),
        env,
        restart_policy: restart.clone().unwrap_or_default(),
        ..Default::default()
    }])
}

/// `value` as JSON, or as the human-readable text `table` makes of it.
fn render<T: serde::Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> String {
    match format {
        Format::Json => output::json(value),
        Format::Table => table(value),
    }
}

/// Runs a client command; returns the process exit code (exec passes the command's through).
pub async fn run_client(
    control: &std::path::Path,
    format: Format,
    command: Command,
) -> anyhow::Result<i32> {
    // Commands that need no podgraft.
    match &command {
        Command::Completions { shell } => {
            super::generate::completions(*shell, &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man { dir } => {
            super::generate::man(dir.as_deref(), &mut std::io::stdout())?;
            return Ok(0);
        }
        Command::Cri { endpoint, .. } => {
            let Some(endpoint) = endpoint.clone() else {
                bail!(
                    "podgraft cri: give the CRI socket with --endpoint or CONTAINER_RUNTIME_ENDPOINT"
                );
            };
            let Command::Cri { verb, .. } = command else {
                unreachable!("matched above")
            };
            return super::cri::run(&endpoint, format, verb).await;
        }
        _ => {}
    }
    let mut client = connect(control).await?;
    let print = |text: String| {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    };
    match &command {
        Command::Serve { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Cri { .. } => {
            unreachable!("not a client command")
        }
        Command::Add { pod, .. } => {
            let containers = specs_from(&command)?;
            let req = api::AddContainersRequest {
                pod: Some(pod.0.clone()),
                containers,
            };
            let added = client
                .add_containers(req)
                .await
                .map_err(status)?
                .into_inner()
                .containers;
            print(render(format, &added, |v| output::containers(v)));
        }
        Command::Ls {
            pod,
            selector,
            watch,
            removed,
        } => {
            let selector = super::ls::Selector::parse(selector)?;
            let pod = pod.as_ref().map(|p| &p.0);
            let show = |list: &[api::DynamicContainer]| {
                print(render(format, &list, |v| output::containers(v)))
            };
            if *watch {
                let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
                super::ls::watch(&mut client, pod, &selector, *removed, |list| {
                    if tty {
                        // Clear the screen: the listing replaces the last one.
                        print!("\x1b[H\x1b[2J");
                    }
                    show(list);
                    let _ = std::io::stdout().flush();
                })
                .await
                .map_err(status)?;
            } else {
                show(
                    &super::ls::list(&mut client, pod, &selector, *removed)
                        .await
                        .map_err(status)?,
                );
            }
        }
        Command::Status => {
            let s = client
                .get_status(api::GetStatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            print(render(format, &s, super::status::render));
        }
        Command::Get { pod, name } => {
            let c = get_container(&mut client, pod, name).await?;
            print(render(format, &c, output::container));
        }
        Command::Rm { pod, names, grace } => {
            let req = api::RemoveContainersRequest {
                pod: Some(pod.0.clone()),
                names: names.clone(),
                grace_period_seconds: *grace,
            };
            let removed = client
                .remove_containers(req)
                .await
                .map_err(status)?
                .into_inner()
                .removed;
            print(render(format, &removed, |v| v.join("\n")));
        }
        Command::Exec {
            pod,
            name,
            timeout,
            command,
        } => {
            let req = api::ExecRequest {
                pod: Some(pod.0.clone()),
                name: name.clone(),
                command: command.clone(),
                timeout_seconds: *timeout,
            };
            let out = client.exec(req).await.map_err(status)?.into_inner();
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            return Ok(out.exit_code);
        }
        Command::Logs { pod, name, follow } => {
            let c = get_container(&mut client, pod, name).await?;
            follow_log(&c.log_path, *follow).await?;
        }
        Command::Events { pod, since } => {
            let req = api::WatchEventsRequest {
                pod: pod.as_ref().map(|p| p.0.clone()),
                since_sequence: *since,
            };
            let mut stream = client.watch_events(req).await.map_err(status)?.into_inner();
            while let Some(ev) = stream.next().await {
                let ev = ev.map_err(status)?;
                if format == Format::Json {
                    println!("{}", serde_json::to_string(&ev)?);
                } else {
                    println!("{}", output::event(&ev));
                }
            }
        }
    }
    Ok(0)
}

/// Prints the text of a CRI log file, and with `follow` keeps printing what is appended.
async fn follow_log(path: &str, follow: bool) -> anyhow::Result<()> {
    if path.is_empty() {
        bail!("the container has no log path");
    }
    let mut file = std::fs::File::open(path).with_context(|| format!("opening log {path}"))?;
    let mut pending = String::new();
    let mut out = std::io::stdout();
    loop {
        let mut chunk = String::new();
        file.read_to_string(&mut chunk)?;
        pending.push_str(&chunk);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let (text, complete) = output::cri_log_text(line.trim_end_matches('\n'));
            out.write_all(text.as_bytes())?;
            if complete {
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
