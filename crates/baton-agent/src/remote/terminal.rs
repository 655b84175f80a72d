//! A remote terminal: the configured shell (or the asked command) on a PTY — a Unix PTY, or
//! ConPTY on Windows, through `portable-pty`. Two threads per terminal, since the PTY's ends
//! block: one reads output and sends it within the server's credit, one writes input, resizes
//! and, on close, kills the process. The stream ends with the process's exit code.

use std::{
    io::{Read, Write},
    sync::Arc,
};

use baton_proto::{agent::AgentMessage, streams};
use bytes::Bytes;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    cols: u16,
    rows: u16,
    command: &[String],
    session_id: &str,
    user: &str,
    mut input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let builder = match program(config, command) {
        Ok(argv) => {
            let mut b = CommandBuilder::from_argv(argv.into_iter().map(Into::into).collect());
            b.env("TERM", "xterm-256color");
            b.env("BATON_SESSION_ID", session_id);
            b.env("BATON_SESSION_USER", user);
            if let Some(home) = std::env::var_os("HOME").filter(|_| config.user.is_none()) {
                b.cwd(home);
            }
            b
        }
        Err(reason) => {
            let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
            return;
        }
    };
    let size = PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
    let opened = native_pty_system().openpty(size).map_err(|e| e.to_string()).and_then(|pair| {
        let child = pair.slave.spawn_command(builder).map_err(|e| e.to_string())?;
        drop(pair.slave);
        let reader = pair.master.try_clone_reader().map_err(|e| e.to_string())?;
        let writer = pair.master.take_writer().map_err(|e| e.to_string())?;
        Ok((pair.master, child, reader, writer))
    });
    let (master, mut child, mut reader, mut writer) = match opened {
        Ok(parts) => parts,
        Err(e) => {
            let reason = format!("cannot start the terminal: {e}");
            let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
            return;
        }
    };
    if tx
        .send(Outgoing::Message(AgentMessage::StreamOpened { stream, window: streams::WINDOW, file: None }))
        .await
        .is_err()
    {
        let _ = child.kill();
        return;
    }
    let mut killer = child.clone_killer();
    let runtime = tokio::runtime::Handle::current();

    // Input: written to the PTY, then credited back to the server.
    let input_tx = tx.clone();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        while let Some(next) = input.blocking_recv() {
            match next {
                Input::Data(bytes) => {
                    if writer.write_all(&bytes).and_then(|()| writer.flush()).is_err() {
                        break;
                    }
                    let credit = AgentMessage::StreamCredit { stream, bytes: bytes.len() as u32 };
                    if input_tx.blocking_send(Outgoing::Message(credit)).is_err() {
                        break;
                    }
                }
                Input::Resize(cols, rows) => {
                    let _ = master.resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 });
                }
                Input::Close(reason) => {
                    let _ = closed_tx.send(reason);
                    break;
                }
            }
        }
        // Closed, or the connection is gone: the process ends with the terminal.
        let _ = killer.kill();
        drop(master);
    });

    // Output: read from the PTY, sent within the server's credit.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; streams::MAX_CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let permits = runtime.block_on(credit.acquire_many(n as u32));
            match permits {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
            if tx.blocking_send(Outgoing::Data(stream, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                break;
            }
        }
        let status = child.wait().ok();
        let exit_code = status.as_ref().map(|s| s.exit_code() as i32);
        let reason = match closed_rx.try_recv() {
            Ok(reason) => reason,
            Err(_) => match exit_code {
                Some(code) => format!("the program exited with {code}"),
                None => "the terminal ended".to_owned(),
            },
        };
        let _ = tx.blocking_send(Outgoing::Message(AgentMessage::StreamClosed { stream, reason, exit_code }));
    });
}

/// The program and arguments to run: the asked command, or the shell; as the configured user.
fn program(config: &RemoteConfig, command: &[String]) -> Result<Vec<String>, String> {
    let argv = if command.is_empty() { vec![shell(config)] } else { command.to_vec() };
    match &config.user {
        Some(user) => as_user(user, argv),
        None => Ok(argv),
    }
}

/// Runs `argv` as `user` through `runuser`, which needs root.
#[cfg(unix)]
fn as_user(user: &str, argv: Vec<String>) -> Result<Vec<String>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "the agent does not run as root, so it cannot start terminals as `{user}`; run it as root or remove `[remote] user`"
        ));
    }
    Ok(["runuser", "-u", user, "--"].into_iter().map(str::to_owned).chain(argv).collect())
}

#[cfg(not(unix))]
fn as_user(user: &str, _argv: Vec<String>) -> Result<Vec<String>, String> {
    Err(format!("`[remote] user = \"{user}\"` is not supported on this system yet"))
}

fn shell(config: &RemoteConfig) -> String {
    if let Some(shell) = &config.shell {
        return shell.clone();
    }
    if cfg!(windows) {
        std::env::var("COMSPEC").unwrap_or_else(|_| "cmd.exe".into())
    } else {
        std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())
    }
}
