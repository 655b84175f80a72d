//! The relay loops: the owner's (who typed into the device's terminal, recorded; the session
//! lives as long as this), and a watcher's (output only).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use baton_core::remote::{
    self, Attach,
    asciicast::Header,
    policy,
    recordings::{Recorder, Stored},
};
use baton_proto::{
    api::remote::{AttachClientMessage, AttachServerMessage},
    streams::{StreamKind, valid_size},
};
use bytes::Bytes;
use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{Instant, sleep_until, timeout},
};

use super::{Live, Relay, Watch, open_stream};
use crate::connections::{DeviceStream, streams::StreamOutput};

/// Chunks a watcher may fall behind before it is dropped.
const WATCH_BACKLOG: usize = 16;

/// Serves the client that opened the session, from asking the device to the stored end.
pub async fn serve_owner(app: Relay, attach: Attach, mut socket: WebSocket) {
    let _running = app.connections.running();
    let (ended_tx, ended_rx) = watch::channel(None);
    let (mut ending, recorder) = relay(&app, &attach, &mut socket, ended_rx).await;
    if let Some(recorder) = recorder {
        match recorder.finish(app.artifacts.as_ref()).await {
            Ok(stored) => ending.recording = Some(stored),
            Err(e) => tracing::error!(error = %e, session_id = %attach.session.id, "cannot store the recording"),
        }
    }
    if let Err(e) = remote::closed(&app.db, &app.bus, &attach.scope, &attach.session, &attach.actor, &ending).await {
        tracing::error!(error = %e, session_id = %attach.session.id, "cannot record the end of a session");
    }
    app.live.remove(&attach.session.id);
    let _ = ended_tx.send(Some((ending.reason.clone(), ending.exit_code)));
    tell_closed(&mut socket, &ending.reason, ending.exit_code).await;
    tracing::info!(session_id = %attach.session.id, reason = %ending.reason, "remote session ended");
}

async fn relay(
    app: &Relay,
    attach: &Attach,
    socket: &mut WebSocket,
    ended: watch::Receiver<super::Ended>,
) -> (remote::Ending, Option<Recorder>) {
    let end = |reason: String| remote::Ending { reason, ..Default::default() };
    let session = &attach.session;
    let terminal = &attach.terminal;
    let kind = StreamKind::Terminal { cols: terminal.cols, rows: terminal.rows, command: terminal.command.clone() };
    let mut stream =
        match open_stream(&app.connections, &session.device_id, &session.id, &attach.actor.label, kind).await {
            Ok(stream) => stream,
            Err(not) => return (end(not.reason()), None),
        };
    if let Err(e) = remote::opened(&app.db, &app.bus, attach).await {
        tracing::error!(error = %e, "cannot record an opened session");
        stream.to_device.close("the server failed").await;
        return (end("the server could not record the session".into()), None);
    }
    let record_input = policy::get(&app.db, &attach.scope).await.map(|p| p.record_input).unwrap_or(false);
    let title = format!("{} on {}", attach.actor.label, session.device_id);
    let header =
        Header { cols: terminal.cols, rows: terminal.rows, timestamp: chrono::Utc::now().timestamp(), title: &title };
    let mut recorder =
        match Recorder::start(app.artifacts.as_ref(), attach.scope.id(), &session.id, &header, record_input) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a recording; the session is refused");
                stream.to_device.close("the server cannot record the session").await;
                return (end("the server cannot record the session".into()), None);
            }
        };
    let (output, _) = broadcast::channel::<Bytes>(WATCH_BACKLOG);
    let (close_tx, mut close_rx) = mpsc::channel(1);
    let live = Live { tenant_id: attach.scope.id().to_owned(), output: Some(output.clone()), close: close_tx, ended };
    app.live.insert(&session.id, live);
    let opened = AttachServerMessage::Opened { session_id: session.id.clone(), read_only: false };
    if send_text(socket, &opened).await.is_err() {
        stream.to_device.close("the client went away").await;
        return (end("the client went away".into()), recorder);
    }
    let label = &attach.actor.label;
    let (reason, exit_code) = pump(app, label, socket, &mut stream, &mut recorder, &output, &mut close_rx).await;
    stream.to_device.close(reason.clone()).await;
    (remote::Ending { reason, exit_code, recording: None::<Stored>, traffic: None }, recorder)
}

/// The open session: the client's keystrokes go to the device within its credit, the device's
/// output to the client, the recording and the watchers — until either end finishes, the
/// session is closed, idle or too old, or the server stops. Neither direction waits on the
/// other: a device slow to take input still has its output relayed (a paste into a program that
/// echoes it cannot lock the session up), and a client that stops reading can still be closed.
async fn pump(
    app: &Relay,
    label: &str,
    socket: &mut WebSocket,
    stream: &mut DeviceStream,
    recorder: &mut Option<Recorder>,
    output: &broadcast::Sender<Bytes>,
    close_rx: &mut mpsc::Receiver<String>,
) -> (String, Option<i32>) {
    let DeviceStream { to_device, from_device, .. } = stream;
    let (idle, longest) = (app.idle, app.longest);
    let deadline = Instant::now() + longest;
    let mut last = Instant::now();
    let mut shutdown = app.shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stop);
    let gone = || ("the device's connection ended".to_owned(), None);
    let stopping = || ("the server is shutting down".to_owned(), None);
    // What the client typed that the device has not taken yet; the client is read again once
    // it has all gone.
    let mut typed = Bytes::new();
    loop {
        tokio::select! {
            frame = socket.recv(), if typed.is_empty() => match frame {
                Some(Ok(WsMessage::Binary(data))) => {
                    last = Instant::now();
                    if let Some(r) = recorder.as_mut() { r.input(&data) }
                    typed = data;
                }
                Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<AttachClientMessage>(&text) {
                    Ok(AttachClientMessage::Resize { cols, rows }) if valid_size(cols, rows) => {
                        if let Some(r) = recorder.as_mut() { r.resize(cols, rows) }
                        if to_device.resize(cols, rows).await.is_err() {
                            return gone();
                        }
                    }
                    Ok(AttachClientMessage::Resize { .. }) => return ("the client asked for a size out of 1–1000".to_owned(), None),
                    Err(e) => return (format!("the client sent a frame not understood: {e}"), None),
                },
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return (format!("closed by {label}"), None),
            },
            sent = to_device.send_chunk(&mut typed), if !typed.is_empty() => {
                if sent.is_err() {
                    return gone();
                }
            }
            out = from_device.recv() => match out {
                Some(StreamOutput::Data(bytes)) => {
                    last = Instant::now();
                    if let Some(r) = recorder.as_mut() { r.output(&bytes) }
                    let _ = output.send(bytes.clone());
                    let len = bytes.len();
                    tokio::select! {
                        sent = timeout(idle, socket.send(WsMessage::Binary(bytes))) => match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return (format!("closed by {label}"), None),
                            Err(_) => return ("the client stopped reading".to_owned(), None),
                        },
                        Some(reason) = close_rx.recv() => return (reason, None),
                        () = &mut stop => return stopping(),
                    }
                    if to_device.consumed(len).await.is_err() {
                        return gone();
                    }
                }
                Some(StreamOutput::Closed { reason, exit_code }) => return (reason, exit_code),
                None => return gone(),
            },
            Some(reason) = close_rx.recv() => return (reason, None),
            () = sleep_until(last + idle) => return (format!("idle for {}", human(idle)), None),
            () = sleep_until(deadline) => return (format!("open for the longest a session may be ({})", human(longest)), None),
            () = &mut stop => return stopping(),
        }
    }
}

/// Serves a read-only watcher of a session relayed on this node.
pub async fn serve_watcher(app: Relay, attach: Attach, mut socket: WebSocket) {
    let Some(Watch { mut output, mut ended }) = app.live.watch(attach.scope.id(), &attach.session.id) else {
        tell_closed(&mut socket, "the session is not open on this server", None).await;
        return;
    };
    let opened = AttachServerMessage::Opened { session_id: attach.session.id.clone(), read_only: true };
    if send_text(&mut socket, &opened).await.is_err() {
        return;
    }
    let (reason, exit_code) = loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Ok(bytes) => {
                    if socket.send(WsMessage::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break ("the watcher fell behind the session's output".to_owned(), None),
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = ended.wait_for(Option::is_some).await;
                    let done = ended.borrow().clone();
                    break done.unwrap_or_else(|| ("the session ended".to_owned(), None));
                }
            },
            frame = socket.recv() => match frame {
                // Read-only: what a watcher types goes nowhere.
                Some(Ok(WsMessage::Binary(_) | WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                _ => return,
            },
        }
    };
    tell_closed(&mut socket, &reason, exit_code).await;
}

pub(super) async fn send_text(socket: &mut WebSocket, message: &AttachServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).unwrap_or_default();
    socket.send(WsMessage::Text(text.into())).await
}

/// Tells the client why the session ended, and closes its WebSocket.
pub(super) async fn tell_closed(socket: &mut WebSocket, reason: &str, exit_code: Option<i32>) {
    let closed = AttachServerMessage::Closed { reason: reason.to_owned(), exit_code };
    let _ = timeout(Duration::from_secs(5), send_text(socket, &closed)).await;
    tell_closed_frame(socket, reason).await;
}

/// Closes the client's WebSocket with the reason in its close frame (cut to the 123 bytes a
/// close frame holds), and completes the close handshake: what the client sent meanwhile is
/// read (and dropped) until its own close frame comes. Dropped with unread bytes, the socket
/// would end with a TCP reset, and a client may lose the close frame (and the reason) to it:
/// a browser then says only that the connection was lost.
pub(crate) async fn tell_closed_frame(socket: &mut WebSocket, reason: &str) {
    let mut short = reason.to_owned();
    while short.len() > 123 {
        short.pop();
    }
    let frame = CloseFrame { code: 1000, reason: short.into() };
    if timeout(Duration::from_secs(5), socket.send(WsMessage::Close(Some(frame)))).await.is_err() {
        return;
    }
    let _ = timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
