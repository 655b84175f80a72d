//! Screen sessions: the device's VNC server relayed to the server's screen stream, for noVNC in
//! the console. The agent connects to the server at `[remote] screen_vnc` (or starts an x11vnc
//! of the session's own with `screen_x11vnc`) and does its security handshake itself, so a VNC
//! password never leaves the device; the viewer is greeted as by a server without
//! authentication (`viewer`). Without control, the viewer's keys, pointer and clipboard stop
//! here (`baton_proto::rfb::ViewOnly`), and x11vnc runs `-viewonly` too. The on-device notice
//! (`screen_notice_command`) runs for as long as the session. Everything the session started
//! is killed and waited for when it ends.

mod viewer;
mod vnc;
#[cfg(unix)]
mod x11vnc;

use std::{process::Stdio, sync::Arc};

use baton_proto::{agent::AgentMessage, streams::FILE_WINDOW};
use tokio::{
    process::{Child, Command},
    sync::{Semaphore, mpsc},
};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;
use viewer::{End, Viewer};

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    control: bool,
    user: &str,
    input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let (server, vnc) = match Server::start(config, control).await {
        Ok(started) => started,
        Err(reason) => return refuse(&tx, stream, reason).await,
    };
    let mut notice = match notice(config, user, control) {
        Ok(notice) => notice,
        Err(reason) => {
            server.stop().await;
            return refuse(&tx, stream, reason).await;
        }
    };
    let opened = AgentMessage::StreamOpened { stream, window: FILE_WINDOW, file: None };
    if tx.send(Outgoing::Message(opened)).await.is_ok()
        && let End::Because(reason) = Viewer::new(stream, input, credit, tx.clone()).serve(vnc, control).await
    {
        tracing::info!(%reason, "screen session ended");
        let _ = tx.send(Outgoing::Message(AgentMessage::StreamClosed { stream, reason, exit_code: None })).await;
    }
    if let Some(child) = notice.as_mut() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    server.stop().await;
}

/// The VNC server a session shows: the configured one, or an x11vnc of its own.
enum Server {
    Configured,
    #[cfg(unix)]
    Own(Box<x11vnc::X11vnc>),
}

impl Server {
    /// Connects to the session's VNC server (starting it first, with `screen_x11vnc`) and does
    /// the security handshake with it.
    async fn start(config: &RemoteConfig, control: bool) -> Result<(Server, vnc::Connection), String> {
        let (server, mut conn, address) = if config.screen_x11vnc {
            let display = config
                .screen_display
                .clone()
                .or_else(|| std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()))
                .unwrap_or_else(|| ":0".into());
            let (server, conn) = own_x11vnc(&display, control).await?;
            (server, conn, format!("x11vnc on display {display}"))
        } else {
            (Server::Configured, vnc::connect(&config.screen_vnc).await?, config.screen_vnc.clone())
        };
        let password = config.screen_password_file.as_deref().map(vnc::read_password);
        let shaken = match password.transpose() {
            Ok(password) => vnc::handshake(&mut conn, password.as_deref(), &address).await,
            Err(reason) => Err(reason),
        };
        match shaken {
            Ok(()) => Ok((server, conn)),
            Err(reason) => {
                server.stop().await;
                Err(reason)
            }
        }
    }

    async fn stop(self) {
        match self {
            Server::Configured => {}
            #[cfg(unix)]
            Server::Own(x11vnc) => x11vnc.stop().await,
        }
    }
}

#[cfg(unix)]
async fn own_x11vnc(display: &str, control: bool) -> Result<(Server, vnc::Connection), String> {
    let (x11vnc, conn) = x11vnc::X11vnc::start(display, control).await?;
    Ok((Server::Own(Box::new(x11vnc)), conn))
}

#[cfg(not(unix))]
async fn own_x11vnc(_display: &str, _control: bool) -> Result<(Server, vnc::Connection), String> {
    Err("x11vnc runs where X11 does; on this system set `[remote] screen_x11vnc = false` and `screen_vnc` to the address of a VNC server (TightVNC, UltraVNC, RealVNC…)".into())
}

/// Starts the on-device notice, if one is configured: `{user}` and `{mode}` replaced.
fn notice(config: &RemoteConfig, user: &str, control: bool) -> Result<Option<Child>, String> {
    let Some(argv) = &config.screen_notice_command else { return Ok(None) };
    let mode = if control { "control" } else { "view" };
    let user = super::plain(user);
    let args: Vec<String> = argv.iter().map(|a| a.replace("{user}", &user).replace("{mode}", mode)).collect();
    let Some((program, rest)) = args.split_first() else {
        return Err(
            "`[remote] screen_notice_command` is empty: name the program that shows the notice, or remove it".into()
        );
    };
    let mut command = Command::new(program);
    command.args(rest).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    match command.spawn() {
        Ok(child) => Ok(Some(child)),
        Err(e) => Err(format!("the on-device notice (`[remote] screen_notice_command`) could not start: {e}")),
    }
}

async fn refuse(tx: &mpsc::Sender<Outgoing>, stream: u32, reason: String) {
    tracing::info!(%reason, "screen session refused");
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}
