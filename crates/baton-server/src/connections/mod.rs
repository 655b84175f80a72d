//! Live device connections on this node, whatever door they came through: the registry of
//! sessions (one per device — an agent's WebSocket, an MQTT client, or a sub-device relayed by
//! its gateway's session), the dispatcher that routes bus messages (commands queued, device
//! decommissioned) to the right session, the per-address rate limit on connection attempts,
//! the caps on open connections (`gate`), back-pressure on device setups (`setup`) and the PROXY protocol that names a balancer's clients. Below both device doors (`agents`, `mqtt`), so neither imports the other. The
//! session loops themselves are the doors' (`agents::session`, `mqtt::session`).

pub mod admission;
pub mod gate;
pub mod proxy;
pub mod rate;
pub mod setup;
mod signals;
pub mod streams;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;

use baton_core::{
    bus::{Message, SharedBus},
    commands::delivery,
};
use baton_proto::agent::CommandEnvelope;

pub use signals::{Controls, Hints};
pub use streams::{DeviceStream, StreamRequest};

/// What a session is told from outside that it must act on. Kept apart from delivery hints,
/// so a burst of hints can never crowd one of these out.
#[derive(Debug)]
pub enum Control {
    /// The device was decommissioned: tell it and close.
    Decommission { wipe: bool },
    /// A newer connection of the same device took over, or its credentials changed.
    Replaced,
}

struct Entry {
    connection: u64,
    route: Route,
}

/// How hints reach a device's session.
enum Route {
    /// The device's own connection. Its signals' hint says "commands (or desired attributes)
    /// may be waiting"; a hint already waiting means "look again" too.
    /// `streams` and `mailbox` are there for agent connections, which can carry remote-support
    /// streams and take new commands handed over with their bus message.
    Direct {
        signals: signals::Signals,
        streams: Option<mpsc::Sender<Box<StreamRequest>>>,
        mailbox: Option<Arc<Mailbox>>,
    },
    /// Through the connection of the gateway that relays the device.
    Relayed(mpsc::Sender<Relayed>),
}

/// A hint for a sub-device, sent to its gateway's session: deliver, or the control message.
#[derive(Debug)]
pub struct Relayed {
    pub device_id: String,
    pub control: Option<Control>,
}

/// Live sessions by device id.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
    /// Sessions still running, including their last writes after unregistering; shutdown
    /// waits for this to reach zero before closing the database.
    running: AtomicU64,
    drained: tokio::sync::Notify,
}

/// Counts a running session until dropped.
pub struct Running(Arc<Registry>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// New commands handed to an agent session with the bus message that announced them, so a
/// fleet-wide command reaches thousands of sessions without each reading the database. Filled
/// by the dispatcher, emptied by the session when its `deliver` hint wakes it.
#[derive(Default)]
pub struct Mailbox(Mutex<Letters>);

/// What a [`Mailbox`] holds.
#[derive(Default)]
pub struct Letters {
    /// Something the mailbox does not carry may wait (deployments, desired attributes, commands
    /// beyond the mailbox's room): the session looks in the database.
    pub look: bool,
    pub commands: Vec<CommandEnvelope>,
}

impl Mailbox {
    /// Commands a session takes at most from its mailbox; beyond, it looks in the database
    /// (which hands out a window of this size too).
    const ROOM: usize = delivery::DELIVERY_WINDOW as usize;

    /// Takes everything, leaving the mailbox empty.
    pub fn take(&self) -> Letters {
        std::mem::take(&mut *self.lock())
    }

    fn post(&self, envelope: Option<&CommandEnvelope>) {
        let mut letters = self.lock();
        match envelope {
            Some(e) if letters.commands.len() < Self::ROOM => letters.commands.push(e.clone()),
            _ => letters.look = true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Letters> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's registration; dropping it does not unregister (the session does, on exit).
pub struct Registration {
    pub connection: u64,
    pub deliver: Hints,
    /// Commands handed over with their announcement (agent connections only).
    pub mailbox: Option<Arc<Mailbox>>,
    pub control: Controls,
    /// Requests to open remote-support streams (agent connections only).
    pub streams: StreamRequests,
}

/// Requests to open remote-support streams; none ever for a connection registered without
/// streams, which then holds no channel for them. Boxed in the channel: a channel allocates its
/// first block of 32 slots with it, and a request is large, so every agent connection paid
/// ≈ 6 KiB for requests that rarely come.
pub struct StreamRequests(Option<mpsc::Receiver<Box<StreamRequest>>>);

impl StreamRequests {
    /// The next request; `None` once the registry let go of the session.
    pub async fn recv(&mut self) -> Option<StreamRequest> {
        match &mut self.0 {
            Some(rx) => rx.recv().await.map(|request| *request),
            None => std::future::pending().await,
        }
    }
}

/// Why a stream could not be asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum NoStream {
    /// No live connection of the device on this node.
    Offline,
    /// The device is connected through a door without streams (MQTT, a gateway).
    NotAnAgent,
    /// Its connection has too many stream requests waiting; retry.
    Busy,
}

impl Registry {
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks a session as running until the returned guard is dropped.
    pub fn running(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// Waits until no session runs, or `limit` passes. True when drained.
    pub async fn drained(&self, limit: std::time::Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                if self.running.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Registers a session, replacing (and telling) an older one of the same device. An
    /// `agent` session can be asked to open remote-support streams and gets a [`Mailbox`].
    pub fn register(&self, device_id: &str, agent: bool) -> Registration {
        let connection = self.next.fetch_add(1, Ordering::Relaxed);
        let (signals, deliver, control) = signals::signals();
        let (streams_tx, streams_rx) = agent.then(|| mpsc::channel(8)).unzip();
        let mailbox = agent.then(|| Arc::new(Mailbox::default()));
        let entry =
            Entry { connection, route: Route::Direct { signals, streams: streams_tx, mailbox: mailbox.clone() } };
        let old = self.lock().insert(device_id.to_owned(), entry);
        if let Some(old) = old {
            old.tell(device_id, Control::Replaced);
        }
        metrics::gauge!("baton_agents_connected").set(self.len() as f64);
        Registration { connection, deliver, mailbox, control, streams: StreamRequests(streams_rx) }
    }

    /// Asks the device's live connection to open a stream; the answer comes on `request.reply`.
    pub fn open_stream(&self, device_id: &str, request: StreamRequest) -> Result<(), NoStream> {
        let sessions = self.lock();
        let entry = sessions.get(device_id).ok_or(NoStream::Offline)?;
        match &entry.route {
            Route::Direct { streams: Some(tx), .. } => tx.try_send(Box::new(request)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NoStream::Busy,
                mpsc::error::TrySendError::Closed(_) => NoStream::Offline,
            }),
            _ => Err(NoStream::NotAnAgent),
        }
    }

    /// Removes a session, unless a newer one of the device replaced it already.
    pub fn unregister(&self, device_id: &str, connection: u64) {
        let mut sessions = self.lock();
        if sessions.get(device_id).is_some_and(|e| e.connection == connection) {
            sessions.remove(device_id);
        }
        let n = sessions.len();
        drop(sessions);
        metrics::gauge!("baton_agents_connected").set(n as f64);
    }

    /// Registers a sub-device as reachable through its gateway's session (`connection` is the
    /// gateway's). Hints for it arrive on `gateway` as [`Relayed`].
    pub fn register_relayed(&self, device_id: &str, connection: u64, gateway: mpsc::Sender<Relayed>) {
        let entry = Entry { connection, route: Route::Relayed(gateway) };
        let old = self.lock().insert(device_id.to_owned(), entry);
        if let Some(old) = old.filter(|o| o.connection != connection) {
            old.tell(device_id, Control::Replaced);
        }
    }

    /// Removes every sub-device a gateway's session registered.
    pub fn unregister_relayed(&self, connection: u64) {
        self.lock().retain(|_, e| !(e.connection == connection && matches!(e.route, Route::Relayed(_))));
    }

    pub fn is_connected(&self, device_id: &str) -> bool {
        self.lock().contains_key(device_id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hints the device's session that something waits for it: `envelope` when it is a new
    /// command the session can send as it is, none when the session must look.
    fn deliver(&self, device_id: &str, envelope: Option<&CommandEnvelope>) {
        if let Some(entry) = self.lock().get(device_id) {
            match &entry.route {
                // A hint already waiting is this one too; the session will look anyway.
                Route::Direct { signals, mailbox, .. } => {
                    if let Some(mailbox) = mailbox {
                        mailbox.post(envelope);
                    }
                    signals.hint();
                }
                // A full gateway queue loses this hint; the gateway's periodic sweep finds it.
                Route::Relayed(gateway) => {
                    let _ = gateway.try_send(Relayed { device_id: device_id.to_owned(), control: None });
                }
            }
        }
    }

    fn control(&self, device_id: &str, control: Control) {
        if let Some(entry) = self.lock().get(device_id) {
            entry.tell(device_id, control);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Entry {
    fn tell(&self, device_id: &str, control: Control) {
        match &self.route {
            Route::Direct { signals, .. } => signals.tell(control),
            Route::Relayed(gateway) => {
                let _ = gateway.try_send(Relayed { device_id: device_id.to_owned(), control: Some(control) });
            }
        }
    }
}

/// Routes bus messages to sessions on this node, until the bus closes.
pub fn spawn_dispatcher(bus: &SharedBus, registry: Arc<Registry>) {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(message) => match message.as_ref() {
                    Message::CommandsQueued { device_ids, envelopes, .. } => {
                        for (i, id) in device_ids.iter().enumerate() {
                            registry.deliver(id, envelopes.get(i));
                        }
                    }
                    Message::DeploymentsReady { device_ids, .. } => {
                        for id in device_ids {
                            registry.deliver(id, None);
                        }
                    }
                    Message::DesiredChanged { device_id, .. } => registry.deliver(device_id, None),
                    Message::Decommissioned { device_id, wipe, .. } => {
                        registry.control(device_id, Control::Decommission { wipe: *wipe });
                    }
                    Message::CredentialsChanged { device_id, .. } => {
                        registry.control(device_id, Control::Replaced);
                    }
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Missed nudges: every session looks for waiting commands.
                    tracing::warn!(missed = n, "dispatcher fell behind; nudging every session");
                    let ids: Vec<String> = registry.lock().keys().cloned().collect();
                    for id in ids {
                        registry.deliver(&id, None);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}
