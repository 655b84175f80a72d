//! Tunnel sessions: TCP connections to one port on (or behind) a device. The opener's attach
//! WebSocket holds the session: the server first opens one connection to check that the device
//! allows and reaches the port (so a refusal is said at once, not on each connection), then
//! keeps the session until that WebSocket closes, the session is closed, idles, or reaches the
//! longest a session may last. Each TCP connection is a WebSocket of its own
//! ([`serve_connection`], authenticated as the opener) piped to a device stream; all of them
//! end with the session. What went through is counted for the session's closing event.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use baton_core::remote::{self, Attach, Traffic};
use baton_proto::{api::remote::AttachServerMessage, streams::StreamKind};
use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{Instant, sleep_until},
};

use super::{Live, NotOpened, Relay, open_stream, pipe::pipe, send_text, tell_closed_frame};
use crate::connections::DeviceStream;

/// A tunnel session open on this node.
pub struct Tunnel {
    pub tenant_id: String,
    pub session_id: String,
    pub device_id: String,
    /// Who opened it (`user:…`, `token:…`): only they connect through it.
    pub opened_by: String,
    pub host: String,
    pub port: u16,
    connections: AtomicU64,
    to_device: AtomicU64,
    from_device: AtomicU64,
    active: AtomicUsize,
    last: Mutex<Instant>,
    /// Turns `Some(reason)` when the session ends; every connection ends with it.
    ended: watch::Receiver<Option<String>>,
}

impl Tunnel {
    fn traffic(&self) -> Traffic {
        Traffic {
            connections: self.connections.load(Ordering::Relaxed),
            bytes_to_device: self.to_device.load(Ordering::Relaxed),
            bytes_from_device: self.from_device.load(Ordering::Relaxed),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens one TCP connection through the tunnel: a device stream to its host and port.
    pub async fn connect(&self, app: &Relay) -> Result<Connection<'_>, NotOpened> {
        self.touch();
        let kind = StreamKind::Tunnel { host: self.host.clone(), port: self.port };
        let stream = open_stream(&app.connections, &self.device_id, &self.session_id, &self.opened_by, kind).await?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Connection { tunnel: self, stream: Some(stream) })
    }

    /// Completes with the session's end reason.
    pub async fn ended(&self) -> String {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the tunnel session ended".to_owned(),
        }
    }
}

/// One connection through a tunnel; counted as active until dropped.
pub struct Connection<'a> {
    tunnel: &'a Tunnel,
    stream: Option<DeviceStream>,
}

impl Connection<'_> {
    /// The device's end of the connection (once).
    pub fn take_stream(&mut self) -> Option<DeviceStream> {
        self.stream.take()
    }

    /// Counts bytes that went through.
    pub fn count(&self, to_device: u64, from_device: u64) {
        self.tunnel.to_device.fetch_add(to_device, Ordering::Relaxed);
        self.tunnel.from_device.fetch_add(from_device, Ordering::Relaxed);
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.tunnel.active.fetch_sub(1, Ordering::Relaxed);
        self.tunnel.touch();
    }
}

/// Serves the attach WebSocket that holds a tunnel session open.
pub async fn serve_control(app: Relay, attach: Attach, mut socket: WebSocket) {
    let _running = app.connections.running();
    let session = &attach.session;
    let (ended_tx, ended_rx) = watch::channel(None);
    let tunnel = Arc::new(Tunnel {
        tenant_id: attach.scope.id().to_owned(),
        session_id: session.id.clone(),
        device_id: session.device_id.clone(),
        opened_by: attach.actor.label.clone(),
        host: session.host.clone().unwrap_or_else(|| "localhost".into()),
        port: session.port.unwrap_or_default(),
        connections: AtomicU64::new(0),
        to_device: AtomicU64::new(0),
        from_device: AtomicU64::new(0),
        active: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
        ended: ended_rx.clone(),
    });
    let reason = match hold(&app, &attach, &tunnel, &mut socket, ended_rx).await {
        Ok(reason) | Err(reason) => reason,
    };
    let _ = ended_tx.send(Some(reason.clone()));
    app.live.remove(&session.id);
    app.live.remove_tunnel(&session.id);
    let ending = remote::Ending { reason: reason.clone(), traffic: Some(tunnel.traffic()), ..Default::default() };
    if let Err(e) = remote::closed(&app.db, &app.bus, &attach.scope, session, &attach.actor, &ending).await {
        tracing::error!(error = %e, session_id = %session.id, "cannot record the end of a session");
    }
    let closed = AttachServerMessage::Closed { reason: reason.clone(), exit_code: None };
    let _ = tokio::time::timeout(Duration::from_secs(5), send_text(&mut socket, &closed)).await;
    tell_closed_frame(&mut socket, &reason).await;
    tracing::info!(session_id = %session.id, reason = %reason, "tunnel session ended");
}

/// Checks the port with a first connection, marks the session open, and holds it: the reason
/// it ended.
async fn hold(
    app: &Relay,
    attach: &Attach,
    tunnel: &Arc<Tunnel>,
    socket: &mut WebSocket,
    ended: watch::Receiver<Option<String>>,
) -> Result<String, String> {
    let session = &attach.session;
    drop(tunnel.connect(app).await.map_err(|not| not.reason())?.take_stream());
    tunnel.connections.store(0, Ordering::Relaxed); // the check is not one of the user's
    remote::opened(&app.db, &app.bus, attach).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record an opened session");
        "the server could not record the session".to_owned()
    })?;
    let (close_tx, mut close_rx) = mpsc::channel(1);
    let (output, _) = broadcast::channel(1);
    app.live.insert(
        &session.id,
        Live { tenant_id: tunnel.tenant_id.clone(), output, close: close_tx, ended: watch_end(ended) },
    );
    app.live.insert_tunnel(tunnel.clone());
    let opened = AttachServerMessage::Opened { session_id: session.id.clone(), read_only: false };
    send_text(socket, &opened).await.map_err(|_| "the client went away".to_owned())?;
    let closing = super::closing(app, async move { close_rx.recv().await });
    tokio::pin!(closing);
    let label = &attach.actor.label;
    loop {
        let idle_at = tunnel.last() + app.idle;
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Ok(format!("closed by {label}")),
                Some(Ok(_)) => {}
            },
            reason = &mut closing => return Ok(reason),
            () = sleep_until(idle_at) => {
                if tunnel.active.load(Ordering::Relaxed) == 0 && tunnel.last() + app.idle <= Instant::now() {
                    return Ok(format!("no connection for {} s", app.idle.as_secs()));
                }
                // Connections are open (or one just ended): the session is in use.
                tunnel.touch();
            }
        }
    }
}

/// The session's watchers see its end as the terminal's do: (reason, exit code).
fn watch_end(ended: watch::Receiver<Option<String>>) -> watch::Receiver<super::Ended> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut ended = ended;
        let reason = match ended.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "the tunnel session ended".to_owned(),
        };
        let _ = tx.send(Some((reason, None)));
    });
    rx
}

/// Serves one TCP connection's WebSocket through the tunnel session `session_id`, for `caller`
/// (who must have opened it).
pub async fn serve_connection(
    app: Relay,
    tenant_id: String,
    caller: String,
    session_id: String,
    mut socket: WebSocket,
) {
    let Some(tunnel) = app.live.tunnel(&tenant_id, &session_id).filter(|t| t.opened_by == caller) else {
        tell_closed_frame(&mut socket, "the tunnel session is not open on this server (or is not yours)").await;
        return;
    };
    let mut connection = match tunnel.connect(&app).await {
        Ok(c) => c,
        Err(not) => {
            tell_closed_frame(&mut socket, &not.reason()).await;
            return;
        }
    };
    let Some(stream) = connection.take_stream() else { return };
    let piped = pipe(&mut socket, stream, app.idle, tunnel.ended()).await;
    connection.count(piped.bytes_to_device, piped.bytes_from_device);
    if piped.client_open {
        tell_closed_frame(&mut socket, &piped.reason).await;
    }
}
