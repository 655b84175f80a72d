//! Tunnel sessions: TCP connections to one port on (or behind) a device. A [`Holder`] keeps the
//! session — the opener's attach WebSocket ([`serve_control`]), or the server itself for a
//! device's web page (`web`): it first opens one connection to check that the device allows and
//! reaches the port (so a refusal is said at once, not on each connection), then keeps the
//! session until its holder goes, the session is closed, idles, reaches the longest a session
//! may last, or its device goes offline. Each TCP connection is a WebSocket of its own
//! ([`serve_connection`], authenticated as the opener) piped to a device stream; all of them
//! end with the session. What went through is counted for the session's closing event.

use std::{
    future::Future,
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
    sync::{mpsc, watch},
    time::{Instant, interval, sleep, sleep_until},
};

use super::{Live, NotOpened, Relay, open_stream, pipe::pipe, send_text, tell_closed_frame};
use crate::connections::DeviceStream;

/// How long a connection waits for a device busy opening others, and how often it asks again.
const BUSY_PATIENCE: Duration = Duration::from_secs(10);
/// Connections open at once through one tunnel session: each may hold a window of bytes on the
/// device, so one session cannot take all of a small device's memory.
const MAX_CONNECTIONS: usize = 128;
const BUSY_RETRY: Duration = Duration::from_millis(20);
/// How often a session looks whether its device is still connected (it holds no stream while
/// no connection is open, so nothing else tells it): a session ends when its device goes.
const PRESENCE_CHECK: Duration = Duration::from_secs(2);

/// A tunnel session open on this node.
pub struct Tunnel {
    pub tenant_id: String,
    pub session_id: String,
    pub device_id: String,
    /// Who opened it (`user:…`, `token:…`), as the device and events name them.
    pub opened_by: String,
    /// The opener's unique id (`Principal::subject_id`): only they connect through it (a label
    /// names a token by its name, which another token may share).
    opener_id: Option<String>,
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

    /// Opens one TCP connection through the tunnel: a device stream to its host and port. A
    /// browser opens several at once: when the device's connection has too many requests
    /// waiting, this one waits its turn (a while) rather than fail.
    pub async fn connect(&self, app: &Relay) -> Result<Connection<'_>, NotOpened> {
        if self.active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            return Err(NotOpened::Refused(format!(
                "the tunnel already has {MAX_CONNECTIONS} connections open; close some first"
            )));
        }
        self.touch();
        let started = Instant::now();
        let stream = loop {
            let kind = StreamKind::Tunnel { host: self.host.clone(), port: self.port };
            match open_stream(&app.connections, &self.device_id, &self.session_id, &self.opened_by, kind).await {
                Err(NotOpened::Busy) if started.elapsed() < BUSY_PATIENCE => sleep(BUSY_RETRY).await,
                opened => break opened?,
            }
        };
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
    let mut holder = Holder::new(&attach);
    let reason = match holder.open(&app, &attach).await {
        Err(reason) => reason,
        Ok(()) => {
            let opened = AttachServerMessage::Opened { session_id: attach.session.id.clone(), read_only: false };
            match send_text(&mut socket, &opened).await {
                Err(_) => "the client went away".to_owned(),
                Ok(()) => holder.hold(&app, client_left(&mut socket, &attach.actor.label)).await,
            }
        }
    };
    holder.finish(&app, &attach, &reason).await;
    let closed = AttachServerMessage::Closed { reason: reason.clone(), exit_code: None };
    let _ = tokio::time::timeout(Duration::from_secs(5), send_text(&mut socket, &closed)).await;
    tell_closed_frame(&mut socket, &reason).await;
    tracing::info!(session_id = %attach.session.id, reason = %reason, "tunnel session ended");
}

/// Completes when the opener's attach WebSocket closes.
async fn client_left(socket: &mut WebSocket, label: &str) -> String {
    loop {
        match socket.recv().await {
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return format!("closed by {label}"),
            Some(Ok(_)) => {}
        }
    }
}

/// What holds a tunnel session open on this node, whoever does (the opener's attach WebSocket,
/// or the server itself for a device's web page): [`Holder::open`] it, [`Holder::hold`] it until
/// it must end, [`Holder::finish`] it.
pub(crate) struct Holder {
    pub tunnel: Arc<Tunnel>,
    /// Tells the tunnel's connections that it ended, and why.
    ended: watch::Sender<Option<String>>,
    /// Tells whoever closed the session (the API) that its end is stored.
    stored: watch::Sender<super::Ended>,
    /// The API's close, once the session is registered on this node.
    close: Option<mpsc::Receiver<String>>,
}

impl Holder {
    pub(crate) fn new(attach: &Attach) -> Holder {
        let session = &attach.session;
        let (ended, ended_rx) = watch::channel(None);
        let tunnel = Arc::new(Tunnel {
            tenant_id: attach.scope.id().to_owned(),
            session_id: session.id.clone(),
            device_id: session.device_id.clone(),
            opened_by: attach.actor.label.clone(),
            opener_id: attach.actor.subject_id.clone(),
            host: session.host.clone().unwrap_or_else(|| "localhost".into()),
            port: session.port.unwrap_or_default(),
            connections: AtomicU64::new(0),
            to_device: AtomicU64::new(0),
            from_device: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            ended: ended_rx,
        });
        Holder { tunnel, ended, stored: watch::channel(None).0, close: None }
    }

    /// Checks the port with a first connection (so a refusal is said at once), records the
    /// session open and registers it on this node; the reason when it could not.
    pub(crate) async fn open(&mut self, app: &Relay, attach: &Attach) -> Result<(), String> {
        let tunnel = &self.tunnel;
        drop(tunnel.connect(app).await.map_err(|not| not.reason())?.take_stream());
        tunnel.connections.store(0, Ordering::Relaxed); // the check is not one of the user's
        remote::opened(&app.db, &app.bus, attach).await.map_err(|e| {
            tracing::error!(error = %e, "cannot record an opened session");
            "the server could not record the session".to_owned()
        })?;
        let (close_tx, close_rx) = mpsc::channel(1);
        let ended = self.stored.subscribe();
        app.live.insert(
            &tunnel.session_id,
            Live { tenant_id: tunnel.tenant_id.clone(), output: None, close: close_tx, ended },
        );
        app.live.insert_tunnel(tunnel.clone());
        self.close = Some(close_rx);
        Ok(())
    }

    /// Holds the open session until it is closed, idles (no connection for the idle time),
    /// reaches the longest a session may last, its device goes offline, the server stops, or
    /// `left` completes (its holder went away): the reason it ended.
    pub(crate) async fn hold(&mut self, app: &Relay, left: impl Future<Output = String>) -> String {
        let tunnel = &self.tunnel;
        let mut close = self.close.take();
        let closing = super::closing(app, async move {
            match close.as_mut() {
                Some(close) => close.recv().await,
                None => std::future::pending().await,
            }
        });
        tokio::pin!(closing, left);
        let mut presence = interval(PRESENCE_CHECK);
        loop {
            let idle_at = tunnel.last() + app.idle;
            tokio::select! {
                reason = &mut left => return reason,
                reason = &mut closing => return reason,
                _ = presence.tick() => {
                    if !app.connections.is_connected(&tunnel.device_id) {
                        return "the device went offline".to_owned();
                    }
                }
                () = sleep_until(idle_at) => {
                    if tunnel.active.load(Ordering::Relaxed) == 0 && tunnel.last() + app.idle <= Instant::now() {
                        return format!("no connection for {} s", app.idle.as_secs());
                    }
                    // Connections are open (or one just ended): the session is in use.
                    tunnel.touch();
                }
            }
        }
    }

    /// Ends the session: its connections end with `reason`, it leaves this node's registry,
    /// and its end is stored with the traffic.
    pub(crate) async fn finish(self, app: &Relay, attach: &Attach, reason: &str) {
        let session = &attach.session;
        let _ = self.ended.send(Some(reason.to_owned()));
        app.live.remove(&session.id);
        app.live.remove_tunnel(&session.id);
        let traffic = Some(self.tunnel.traffic());
        let ending = remote::Ending { reason: reason.to_owned(), traffic, ..Default::default() };
        if let Err(e) = remote::closed(&app.db, &app.bus, &attach.scope, session, &attach.actor, &ending).await {
            tracing::error!(error = %e, session_id = %session.id, "cannot record the end of a session");
        }
        let _ = self.stored.send(Some((reason.to_owned(), None)));
    }
}

/// Serves one TCP connection's WebSocket through the tunnel session `session_id`, for `caller`
/// (a `Principal::subject_id`, who must have opened it).
pub async fn serve_connection(
    app: Relay,
    tenant_id: String,
    caller: String,
    session_id: String,
    mut socket: WebSocket,
) {
    let mine = |t: &Arc<Tunnel>| t.opener_id.as_deref() == Some(caller.as_str());
    let Some(tunnel) = app.live.tunnel(&tenant_id, &session_id).filter(mine) else {
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
