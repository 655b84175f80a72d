//! `baton terminal <device> [-- command…]` (alias `baton ssh`): the device's shell, or one
//! command with a TTY, through the server — the session API opens it, the attach WebSocket
//! carries the bytes ([`super::attach`]). When stdin is a terminal it is in raw mode while
//! attached (every key, Ctrl-C included, goes to the device; [`super::tty`] restores it however
//! the session ends) and size changes follow. Input that is not a terminal is sent as it comes,
//! then Ctrl-D, so the program on the device reads end of file.
//!
//! `--watch <session>` joins someone's open session read-only; Ctrl-C stops watching.
//!
//! The exit status is the remote program's when the device reports one; 0 when the session
//! ended otherwise (closed by someone, idle, …); 1 when it was refused; 255 when the connection
//! to the server was lost; 128 + the signal's number when a signal ended it here. The reason is
//! printed on stderr once the terminal is restored.

use std::io::{IsTerminal, Read, Write};

use baton_client::Client;
use baton_proto::api::remote::{AttachClientMessage, AttachServerMessage, SessionCreate, SessionKind};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{
    ExitStatus,
    attach::{self, Start},
    devices, tty,
};

/// The end-of-transmission byte (Ctrl-D): end of file for a program reading a terminal.
const EOT: u8 = 4;

#[derive(clap::Args)]
pub struct TerminalArgs {
    /// The device: its id, serial or name.
    device: String,
    /// Join this open session read-only instead of opening one (see `baton sessions list`).
    #[arg(long, value_name = "SESSION")]
    watch: Option<String>,
    /// Run this program with its arguments on a TTY instead of the device's shell.
    #[arg(last = true, value_name = "COMMAND", conflicts_with = "watch")]
    command: Vec<String>,
}

/// How the attached part ended.
enum Ending {
    /// The server said so.
    Closed { reason: String, exit_code: Option<i32> },
    /// The connection broke without a word from the server.
    Lost(String),
    /// A signal here (its number).
    Signal(i32),
}

pub async fn run(args: TerminalArgs, client: &Client) -> anyhow::Result<()> {
    let device = devices::resolve(client, &args.device).await?;
    let watching = args.watch.is_some();
    let ticket = match &args.watch {
        Some(session) => client.watch_session(&device, session).await?,
        None => {
            let (cols, rows) = tty::size().unzip();
            let req =
                SessionCreate { kind: SessionKind::Terminal, cols, rows, command: args.command, ..Default::default() };
            client.open_session(&device, &req).await?
        }
    };
    let mut ws = attach::connect(&client.attach_url(&ticket), super::ca_pem()?.as_deref()).await?;
    if let Start::Refused(reason) = attach::start(&mut ws).await? {
        anyhow::bail!("the session on {} was refused: {reason}", args.device);
    }
    let (mut sink, frames) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let last = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
    });
    let stop = tty::stop_signal()?;
    let interactive = !watching && std::io::stdin().is_terminal();
    let raw = if interactive { Some(tty::RawMode::enable()?) } else { None };
    if watching {
        let _ = writeln!(std::io::stderr(), "baton: watching session {} read-only; Ctrl-C stops.", ticket.session.id);
    } else {
        forward_stdin(tx.clone(), interactive);
        let resizes = tx.clone();
        tty::follow_resizes(move |cols, rows| {
            let text = serde_json::to_string(&AttachClientMessage::Resize { cols, rows }).unwrap_or_default();
            resizes.try_send(Message::Text(text.into())).is_ok() || !resizes.is_closed()
        })?;
    }
    let mut screen = Screen { at_line_start: true };
    let ending = relay(frames, &mut screen, stop).await;
    if let Ending::Signal(_) = ending {
        // Tell the server, so the session ends now rather than when the connection times out.
        let _ = tx.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    }
    drop(raw);
    finish(ending, &screen, watching)
}

/// Prints what the device sends until the session ends or a signal comes.
async fn relay(
    mut frames: impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    screen: &mut Screen,
    stop: impl Future<Output = i32>,
) -> Ending {
    tokio::pin!(stop);
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            number = &mut stop => return Ending::Signal(number),
        };
        match frame {
            Some(Ok(Message::Binary(bytes))) => screen.write(&bytes),
            Some(Ok(Message::Text(text))) => {
                if let Ok(AttachServerMessage::Closed { reason, exit_code }) = serde_json::from_str(&text) {
                    return Ending::Closed { reason, exit_code };
                }
            }
            Some(Ok(Message::Close(_))) | None => return Ending::Lost("the server closed the connection".into()),
            Some(Err(e)) => return Ending::Lost(e.to_string()),
            Some(Ok(_)) => {}
        }
    }
}

/// Says how the session ended (on a line of its own) and picks the exit status.
fn finish(ending: Ending, screen: &Screen, watching: bool) -> anyhow::Result<()> {
    let mut stderr = std::io::stderr();
    if !screen.at_line_start {
        let _ = stderr.write_all(b"\r\n");
    }
    let (line, code) = match ending {
        Ending::Closed { reason, exit_code } => {
            let code = exit_code.map_or(0, |c| u8::try_from(c).unwrap_or(1));
            (format!("session ended: {reason}"), code)
        }
        Ending::Lost(why) => (format!("the connection to the server was lost: {why}"), 255),
        Ending::Signal(_) if watching => ("stopped watching".to_owned(), 0),
        Ending::Signal(n) => (format!("left the session on {}", tty::signal_name(n)), 128 + n as u8),
    };
    let _ = writeln!(stderr, "baton: {line}");
    match code {
        0 => Ok(()),
        code => Err(ExitStatus { code, message: String::new() }.into()),
    }
}

/// Stdout, written as the device's bytes come.
struct Screen {
    /// Whether the last byte written ended a line, so the closing words start on their own.
    at_line_start: bool,
}

impl Screen {
    fn write(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        if out.write_all(bytes).and_then(|()| out.flush()).is_ok()
            && let Some(&last) = bytes.last()
        {
            self.at_line_start = last == b'\n';
        }
    }
}

/// Sends what is read from stdin, on a thread of its own (a read from a terminal cannot be
/// cancelled; the thread ends with the process). At the end of input that is not a terminal,
/// sends Ctrl-D, so the program on the device reads end of file.
fn forward_stdin(tx: mpsc::Sender<Message>, interactive: bool) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !interactive {
            let _ = tx.blocking_send(Message::Binary(Bytes::from_static(&[EOT])));
        }
    });
}
