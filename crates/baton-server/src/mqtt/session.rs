//! One MQTT device's connection, from CONNACK to close: which subscriptions it may hold (kept
//! across reconnects for persistent sessions), presence and the will, keep-alive, the loop that
//! reads packets and wakes on hints, and a clear reason for every way it ends. What its publishes
//! do is in [`super::inbound`]; telemetry is acknowledged (PUBACK) only once stored, and a bad
//! message costs that message, never the connection of another device.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use baton_proto::{
    agent::{CommandProgress, CommandUpdate, Sample},
    mqtt::{
        Ack, ConnAck, Connect, Disconnect, Packet, Properties, Property, Publish, SubAck, Version,
        dialect::{self, FilterOwner, Inbound, Target},
        reason, topic,
    },
};
use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
    time::{Instant, sleep_until},
};

use super::wire::{Wire, WireError};
use crate::{connections::Control, connections::Relayed, state::AppState};
use baton_core::Error;
use baton_core::{
    attributes,
    commands::delivery,
    devices::{credentials::DeviceIdentity, presence, relayed::SubDevice},
    events,
};

/// How often `last_seen_at` is written for a device that is only pinging.
const SEEN_EVERY: Duration = Duration::from_secs(60);
/// Most QoS 1 messages in flight to one device (less if it says so).
const MAX_IN_FLIGHT: usize = 32;
/// Least time between two "message rejected" events of one connection.
pub(super) const REJECT_EVENT_EVERY: Duration = Duration::from_secs(10);
/// How often a gateway looks for commands of all its sub-devices (hints may be lost).
const GATEWAY_SWEEP: Duration = Duration::from_secs(30);
/// Most sub-devices one gateway connection relays.
pub(super) const MAX_SUB_DEVICES: usize = 10_000;
/// Most subscriptions one connection holds.
const MAX_SUBSCRIPTIONS: usize = 64;

/// Why a session ends.
pub(super) enum Ending {
    /// The client sent DISCONNECT (with `will`: it asked for its will anyway).
    Disconnected { will: bool },
    /// The connection broke or the client stopped reading.
    Gone,
    /// Ended by the server, telling MQTT 5 clients why.
    Server { reason: u8, text: String },
}

impl Ending {
    pub(super) fn server(reason: u8, text: impl Into<String>) -> Self {
        Self::Server { reason, text: text.into() }
    }

    pub(super) fn internal(e: impl Into<Error>) -> Self {
        let e = e.into();
        tracing::error!(error = %e, "MQTT session failed");
        Self::server(reason::UNSPECIFIED, "the server failed; reconnect later")
    }
}

/// What a QoS 1 message in flight to the device is.
pub(super) enum Outgoing {
    Command { device_id: String, command_id: String },
    Other,
}

pub(super) struct Session {
    pub(super) app: AppState,
    pub(super) device: DeviceIdentity,
    pub(super) version: Version,
    pub(super) connection: u64,
    pub(super) remote: String,
    pub(super) subscriptions: Vec<(String, u8)>,
    pub(super) persistent: bool,
    pub(super) in_flight: HashMap<u16, Outgoing>,
    pub(super) window: usize,
    pub(super) next_packet_id: u16,
    /// Commands sent on this connection, so a delivery pass does not send them twice.
    pub(super) sent: HashSet<String>,
    /// The device's desired attributes as last pushed (or found at connect).
    pub(super) desired_own: Option<Map<String, Value>>,
    /// What only gateways, ThingsBoard RPC and QoS 2 use; made when first needed.
    pub(super) extra: Option<Box<Extra>>,
    pub(super) tokens: f64,
    pub(super) refilled: Instant,
    /// Telemetry read and not yet stored, per device; stored before any acknowledgement goes out.
    pub(super) batch: Vec<(String, Vec<Sample>)>,
    /// The last time (ms) given to telemetry that came without one: each message gets a later
    /// one, so two messages in the same millisecond are two samples, not one stored twice.
    pub(super) stamped: i64,
    /// Devices whose commands and desired attributes should be looked at before waiting again.
    pub(super) to_deliver: HashSet<String>,
    /// Devices with commands held back because the in-flight window was full.
    pub(super) blocked: HashSet<String>,
    pub(super) rejected_at: Option<Instant>,
    pub(super) rejected_since: u64,
}

/// The parts of a session most connections never use: made on first use, so an idle sensor's
/// connection holds one pointer for them, not seven empty maps.
#[derive(Default)]
pub(super) struct Extra {
    /// ThingsBoard RPC request numbers sent on this connection, both ways.
    pub(super) rpc: HashMap<u32, (String, String)>,
    pub(super) rpc_of_command: HashMap<String, u32>,
    /// Desired attributes of the sub-devices as last pushed.
    pub(super) desired_seen: HashMap<String, Map<String, Value>>,
    /// Sub-devices this gateway connection relays, by id, and their ids by name.
    pub(super) subs: HashMap<String, SubDevice>,
    pub(super) sub_by_name: HashMap<String, String>,
    /// Hints for the sub-devices this connection relays; made when it announces its first one.
    pub(super) relay: Option<(mpsc::Sender<Relayed>, mpsc::Receiver<Relayed>)>,
    /// QoS 2 messages received and not yet released.
    pub(super) qos2: HashSet<u16>,
}

/// What a session's end needs of its CONNECT.
struct Kept {
    clean_start: bool,
    will: Option<Box<baton_proto::mqtt::Will>>,
}

/// A session started (CONNACK queued), and what it needs to run to its end.
pub(super) struct Started {
    session: Session,
    registration: crate::connections::Registration,
    keep_alive: Duration,
    kept: Kept,
}

/// Runs a started session to its end. Its start ([`start`], which the caller boxes) and its end
/// are boxed: while the device stays connected, its task holds only the session's waiting
/// state, not the CONNECT, the queries of the start or the writes of the end. (An async fn's
/// arguments stay in its future for its whole life: this one takes only what the session uses,
/// and the session itself boxed, so that handing it over does not leave a copy behind.)
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: AppState,
    wire: &mut Wire<S>,
    mut started: Box<Started>,
) {
    // Used in place, not unpacked: unpacked, the session would be held twice.
    let ending = started.session.serve(wire, started.registration, started.keep_alive).await;
    let Started { session, kept, .. } = *started;
    Box::pin(finish(app, wire, session, ending, kept)).await;
}

/// CONNACK, and everything before it: the will's topic, the stored subscriptions, presence.
/// `None` when the connection was refused.
pub(super) async fn start<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: &AppState,
    wire: &mut Wire<S>,
    connect: Connect,
    device: DeviceIdentity,
    peer: SocketAddr,
) -> Option<Started> {
    let app = app.clone();
    let id = device.device_id.clone();
    let scope = device.scope.clone();
    if let Some(will) = &connect.will
        && !will_allowed(&will.topic, &id)
    {
        let text = "the will must go to one of the device's own topics, e.g. baton/v1/me/status";
        super::refuse(wire, reason::NOT_AUTHORIZED, text).await;
        return None;
    }
    let max_keep_alive = u16::try_from(app.settings.mqtt_max_keepalive_secs).unwrap_or(u16::MAX);
    let keep_alive = if connect.keep_alive == 0 || connect.keep_alive > max_keep_alive {
        max_keep_alive
    } else {
        connect.keep_alive
    };
    let persistent = match connect.version {
        Version::V311 => !connect.clean_start,
        Version::V5 => connect.properties.session_expiry_interval().unwrap_or(0) > 0,
    };
    let stored = match load_subscriptions(&app, &device).await {
        Ok(stored) if connect.clean_start && !stored.is_empty() => {
            save_subscriptions(&app, &device, &[]).await.map(|_| Vec::new())
        }
        Ok(_) if connect.clean_start => Ok(Vec::new()),
        other => other,
    };
    let Ok(subscriptions) = stored else {
        super::refuse(wire, reason::SERVER_UNAVAILABLE, "the server could not load the session; retry").await;
        return None;
    };
    let desired = match attributes::get(&app.db, &scope, &id).await {
        Ok(a) => a.desired,
        Err(_) => Map::new(),
    };

    let registration = app.connections.register(&id, false);
    let remote = peer.ip().to_string();
    if let Err(e) = presence::online(&app.db, &scope, &id, &remote, "mqtt").await {
        tracing::error!(error = %e, device_id = %id, "could not record the connection");
        app.connections.unregister(&id, registration.connection);
        super::refuse(wire, reason::SERVER_UNAVAILABLE, "the server could not record the connection; retry").await;
        return None;
    }
    let mut properties = Properties::default();
    if connect.version == Version::V5 {
        let max_in = u32::try_from(app.settings.mqtt_max_packet_bytes).unwrap_or(u32::MAX);
        for p in [
            Property::MaximumPacketSize(max_in),
            Property::ReceiveMaximum(64),
            Property::MaximumQos(1),
            Property::RetainAvailable(0),
            Property::SharedSubscriptionAvailable(0),
            Property::SubscriptionIdentifierAvailable(0),
            Property::WildcardSubscriptionAvailable(1),
        ] {
            properties.push(p);
        }
        if keep_alive != connect.keep_alive {
            properties.push(Property::ServerKeepAlive(keep_alive));
        }
        if connect.client_id.is_empty() {
            properties.push(Property::AssignedClientIdentifier(id.clone()));
        }
    }
    let session_present = !connect.clean_start && !subscriptions.is_empty();
    wire.queue(&Packet::ConnAck(ConnAck { session_present, reason: reason::SUCCESS, properties }));
    let protocol = if connect.version == Version::V5 { "5" } else { "3.1.1" };
    let data = json!({"remote_addr": remote, "transport": "mqtt", "protocol": protocol});
    events::record(&app.db, &app.bus, &scope, Some(&id), events::kind::ONLINE, data).await;
    metrics::gauge!("baton_mqtt_connections").increment(1.0);
    tracing::info!(device_id = %id, %peer, protocol, "MQTT device connected");

    let window = usize::from(connect.properties.receive_maximum().unwrap_or(u16::MAX)).min(MAX_IN_FLIGHT);
    // Only what the end needs is kept: a connection holds no copy of its login while it lasts.
    let Connect { version, clean_start, will, .. } = connect;
    let session = Session {
        app: app.clone(),
        device,
        version,
        connection: registration.connection,
        remote,
        subscriptions,
        persistent,
        in_flight: HashMap::new(),
        window,
        next_packet_id: 0,
        sent: HashSet::new(),
        desired_own: Some(desired),
        extra: None,
        tokens: f64::from(app.settings.mqtt_message_burst),
        refilled: Instant::now(),
        batch: Vec::new(),
        stamped: 0,
        to_deliver: HashSet::from([id.clone()]),
        blocked: HashSet::new(),
        rejected_at: None,
        rejected_since: 0,
    };
    let keep_alive = Duration::from_millis(u64::from(keep_alive) * 1500);
    Some(Started { session, registration, keep_alive, kept: Kept { clean_start, will: will.map(Box::new) } })
}

/// The session's end: the DISCONNECT for MQTT 5, the subscriptions of a clean session, the
/// relayed sub-devices, presence, and the will.
async fn finish<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: AppState,
    wire: &mut Wire<S>,
    session: Session,
    ending: Ending,
    kept: Kept,
) {
    let mut session = session;
    let Kept { clean_start, will } = kept;
    let (id, scope, version) = (session.device.device_id.clone(), session.device.scope.clone(), session.version);
    let replaced = matches!(&ending, Ending::Server { reason: reason::SESSION_TAKEN_OVER, .. });
    let (clean, why) = match &ending {
        Ending::Disconnected { will } => (!will, "disconnected".to_owned()),
        Ending::Gone => (false, "the connection was lost".to_owned()),
        Ending::Server { text, .. } => (false, text.clone()),
    };
    if let Ending::Server { reason, text } = &ending {
        if version == Version::V5 {
            wire.finish(Some(&Packet::Disconnect(Disconnect::with_reason(*reason, text.clone())))).await;
        } else {
            wire.finish(None).await;
        }
    }
    if !session.persistent && !clean_start && !replaced {
        let _ = Box::pin(save_subscriptions(&app, &session.device, &[])).await;
    }
    Box::pin(session.end_relays()).await;
    app.connections.unregister(&id, session.connection);
    metrics::gauge!("baton_mqtt_connections").decrement(1.0);
    if !replaced && !app.connections.is_connected(&id) {
        if let Err(e) = Box::pin(presence::disconnected(&app.db, &scope, &id)).await {
            tracing::warn!(error = %e, device_id = %id, "could not record the disconnection");
        }
        let mut data = json!({"transport": "mqtt", "clean": clean, "reason": why});
        if let Some(will) = will.as_ref().filter(|_| !clean) {
            data["will"] = json!({"topic": will.topic, "payload": String::from_utf8_lossy(&will.payload)});
        }
        Box::pin(events::record(&app.db, &app.bus, &scope, Some(&id), events::kind::OFFLINE, data)).await;
    }
    tracing::info!(device_id = %id, reason = why, "MQTT device disconnected");
}

/// A will may only go to the device's own status or telemetry topics.
fn will_allowed(will_topic: &str, device_id: &str) -> bool {
    match dialect::inbound(will_topic) {
        Some(Inbound::Status(t) | Inbound::Telemetry(t) | Inbound::Attributes(t)) => {
            t == Target::Me || t == Target::Id(device_id)
        }
        _ => false,
    }
}

/// What woke the session up.
enum Wake {
    Read(Result<(), WireError>),
    Deliver,
    Control(Option<Control>),
    Relayed(Relayed),
    /// The keep-alive's deadline, or a gateway's sweep.
    Deadline,
    Stop,
}

impl Session {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        mut registration: crate::connections::Registration,
        keep_alive: Duration,
    ) -> Ending {
        let mut heard = Instant::now();
        let mut written = Instant::now();
        // A deadline, not an `Interval` (which boxes its timer): only gateways sweep.
        let mut sweep_at = Instant::now() + GATEWAY_SWEEP;
        let mut stop = self.app.shutdown.subscribe();
        loop {
            loop {
                match wire.next_buffered(true) {
                    Ok(Some(packet)) => {
                        heard = Instant::now();
                        // Boxed, like every rarely taken await below: an idle session's task then
                        // holds only the small waiting state, not the largest packet handler's.
                        if let Err(ending) = Box::pin(self.handle(wire, packet)).await {
                            return ending;
                        }
                    }
                    Ok(None) => break,
                    Err(WireError::Decode(e)) => {
                        metrics::counter!("baton_mqtt_malformed_packets_total").increment(1);
                        let code = match e {
                            baton_proto::mqtt::DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
                            baton_proto::mqtt::DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
                            _ => reason::MALFORMED_PACKET,
                        };
                        return Ending::server(code, e.to_string());
                    }
                    Err(_) => return Ending::Gone,
                }
            }
            if let Err(ending) = self.store_batch().await {
                return ending;
            }
            if !self.to_deliver.is_empty()
                && let Err(ending) = Box::pin(self.deliver_pending(wire)).await
            {
                return ending;
            }
            if wire.flush().await.is_err() {
                return Ending::Gone;
            }
            if written.elapsed() >= SEEN_EVERY && heard > written {
                written = Instant::now();
                Box::pin(self.app.commands.seen(&self.device.device_id)).await;
            }
            let next_deadline = if self.relays_any() { (heard + keep_alive).min(sweep_at) } else { heard + keep_alive };
            let wake = tokio::select! {
                read = wire.fill() => Wake::Read(read),
                Some(()) = registration.deliver.recv() => Wake::Deliver,
                control = registration.control.recv() => Wake::Control(control),
                Some(relayed) = relayed(&mut self.extra) => Wake::Relayed(relayed),
                // One timer for both deadlines: a timer is among the largest parts of the
                // waiting state every idle connection holds.
                () = sleep_until(next_deadline) => Wake::Deadline,
                _ = stop.wait_for(|s| *s) => Wake::Stop,
            };
            match wake {
                Wake::Read(Ok(())) => {}
                Wake::Read(Err(_)) => return Ending::Gone,
                Wake::Deliver => {
                    self.to_deliver.insert(self.device.device_id.clone());
                }
                Wake::Control(Some(Control::Decommission { .. })) => {
                    return Ending::server(reason::NOT_AUTHORIZED, "the device was decommissioned; stop connecting");
                }
                Wake::Control(Some(Control::Replaced) | None) => {
                    return Ending::server(reason::SESSION_TAKEN_OVER, "another connection of this device took over");
                }
                Wake::Relayed(Relayed { device_id, control: None }) => {
                    self.to_deliver.insert(device_id);
                }
                Wake::Relayed(Relayed { device_id, control: Some(_) }) => {
                    // Decommissioned or taken over elsewhere: this gateway no longer relays it.
                    self.forget_sub(&device_id);
                }
                Wake::Deadline if Instant::now() >= heard + keep_alive => {
                    return Ending::server(reason::KEEP_ALIVE_TIMEOUT, "nothing heard within 1.5 keep-alive periods");
                }
                Wake::Deadline if self.relays_any() && Instant::now() >= sweep_at => {
                    sweep_at = Instant::now() + GATEWAY_SWEEP;
                    let (db, scope) = (&self.app.db, &self.device.scope);
                    match Box::pin(delivery::waiting_behind(db, scope, &self.device.device_id)).await {
                        Ok(ids) => {
                            let relayed: Vec<String> = ids.into_iter().filter(|id| self.relays(id)).collect();
                            self.to_deliver.extend(relayed);
                        }
                        Err(e) => return Ending::internal(e),
                    }
                }
                Wake::Deadline => {}
                Wake::Stop => return Ending::server(reason::SERVER_SHUTTING_DOWN, "the server is shutting down"),
            }
        }
    }

    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        packet: Packet,
    ) -> Result<(), Ending> {
        match packet {
            Packet::Publish(p) => self.on_publish(wire, p).await?,
            Packet::PubAck(a) => {
                if let Some(Outgoing::Command { device_id, command_id }) = self.in_flight.remove(&a.packet_id) {
                    let update = CommandUpdate { command_id, state: CommandProgress::Acked, result: None };
                    self.report(&device_id, update).await?;
                }
                // Room in the window: what was held back may go now.
                let blocked: Vec<String> = self.blocked.drain().collect();
                self.to_deliver.extend(blocked);
            }
            Packet::PubRel(a) => {
                if let Some(extra) = self.extra.as_deref_mut() {
                    extra.qos2.remove(&a.packet_id);
                }
                wire.queue(&Packet::PubComp(Ack::new(a.packet_id, 0)));
            }
            Packet::PubRec(a) => {
                // Baton never sends QoS 2; release whatever the client thinks it got.
                wire.queue(&Packet::PubRel(Ack::new(a.packet_id, reason::PACKET_ID_NOT_FOUND)));
            }
            Packet::PubComp(_) => {}
            Packet::Subscribe(s) => self.on_subscribe(wire, s).await?,
            Packet::Unsubscribe(u) => {
                let codes = u
                    .filters
                    .iter()
                    .map(|f| {
                        let before = self.subscriptions.len();
                        self.subscriptions.retain(|(filter, _)| filter != f);
                        if self.subscriptions.len() < before {
                            reason::SUCCESS
                        } else {
                            reason::NO_SUBSCRIPTION_EXISTED
                        }
                    })
                    .collect();
                if self.persistent {
                    save_subscriptions(&self.app, &self.device, &self.subscriptions).await.map_err(Ending::internal)?;
                }
                wire.queue(&Packet::UnsubAck(SubAck {
                    packet_id: u.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
            }
            Packet::PingReq => {
                wire.queue(&Packet::PingResp);
            }
            Packet::Disconnect(d) => {
                return Err(Ending::Disconnected { will: d.reason == reason::DISCONNECT_WITH_WILL });
            }
            Packet::Auth(_) => {
                return Err(Ending::server(reason::PROTOCOL_ERROR, "enhanced authentication is not supported"));
            }
            other => {
                return Err(Ending::server(reason::PROTOCOL_ERROR, format!("a client does not send {}", other.name())));
            }
        }
        Ok(())
    }

    async fn on_subscribe<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        s: baton_proto::mqtt::Subscribe,
    ) -> Result<(), Ending> {
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        for sub in &s.subscriptions {
            let code = if !topic::valid_filter(&sub.filter) {
                reason::TOPIC_FILTER_INVALID
            } else if sub.filter.starts_with("$share/") {
                reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
            } else if !self.may_read(&sub.filter).await.map_err(Ending::internal)? {
                metrics::counter!("baton_mqtt_subscriptions_denied_total").increment(1);
                reason::NOT_AUTHORIZED
            } else if self.subscriptions.len() >= MAX_SUBSCRIPTIONS
                && !self.subscriptions.iter().any(|(f, _)| *f == sub.filter)
            {
                reason::QUOTA_EXCEEDED
            } else {
                let qos = sub.qos.min(1);
                self.subscriptions.retain(|(f, _)| *f != sub.filter);
                self.subscriptions.push((sub.filter.clone(), qos));
                qos
            };
            codes.push(code);
        }
        if self.persistent {
            save_subscriptions(&self.app, &self.device, &self.subscriptions).await.map_err(Ending::internal)?;
        }
        wire.queue(&Packet::SubAck(SubAck { packet_id: s.packet_id, codes, properties: Properties::default() }));
        // Configuration subscribed to in Baton's dialect is sent at once, as its current state.
        let id = self.device.device_id.clone();
        let config = dialect::native(&id, true, "config");
        if s.subscriptions.iter().any(|sub| config.iter().any(|t| topic::matches(&sub.filter, t))) {
            self.desired_own = None;
        }
        self.to_deliver.insert(id);
        Ok(())
    }

    /// Whether the device may subscribe to a (valid) filter: only within its own namespace.
    async fn may_read(&self, filter: &str) -> Result<bool, Error> {
        Ok(match dialect::filter_owner(filter) {
            FilterOwner::Me | FilterOwner::Gateway => true,
            FilterOwner::Device(id) if id == self.device.device_id || self.relays(id) => true,
            FilterOwner::Device(id) => {
                baton_core::devices::relayed::relayed_by(&self.app.db, &self.device.scope, &self.device.device_id, id)
                    .await?
                    .is_some()
            }
            FilterOwner::Nobody => false,
        })
    }

    /// The session's rarely used parts, made now if they were not yet.
    pub(super) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_default()
    }

    /// Whether this connection relays the sub-device `id`.
    pub(super) fn relays(&self, id: &str) -> bool {
        self.extra.as_ref().is_some_and(|e| e.subs.contains_key(id))
    }

    /// The name of the sub-device `id`, if this connection relays it.
    pub(super) fn sub_name(&self, id: &str) -> Option<String> {
        self.extra.as_ref().and_then(|e| e.subs.get(id)).map(|s| s.name.clone())
    }

    /// Whether this connection relays any sub-device.
    pub(super) fn relays_any(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.subs.is_empty())
    }

    /// The highest QoS of the subscriptions matching `topic`, if any does.
    pub(super) fn subscribed(&self, topic: &str) -> Option<u8> {
        self.subscriptions.iter().filter(|(f, _)| topic::matches(f, topic)).map(|(_, q)| *q).max()
    }

    pub(super) fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id != 0 && !self.in_flight.contains_key(&self.next_packet_id) {
                return self.next_packet_id;
            }
        }
    }

    /// Sends `payload` on the first of `topics` the device subscribed to; true if sent.
    pub(super) fn publish_if_subscribed<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        topics: &[String],
        payload: String,
    ) -> bool {
        let Some((topic, qos)) = topics.iter().find_map(|t| self.subscribed(t).map(|q| (t.clone(), q))) else {
            return false;
        };
        let packet_id = (qos > 0).then(|| self.next_packet_id());
        if let Some(id) = packet_id {
            self.in_flight.insert(id, Outgoing::Other);
        }
        let publish = Publish::new(topic, qos, packet_id, payload.into_bytes());
        wire.queue(&Packet::Publish(publish))
    }
}

/// The next hint for a relayed sub-device; never, for a connection that relays none.
async fn relayed(extra: &mut Option<Box<Extra>>) -> Option<Relayed> {
    match extra.as_deref_mut().and_then(|e| e.relay.as_mut()) {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn load_subscriptions(app: &AppState, device: &DeviceIdentity) -> Result<Vec<(String, u8)>, Error> {
    use sqlx::Row;
    let row = sqlx::query("SELECT mqtt_subscriptions FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(device.scope.id())
        .bind(&device.device_id)
        .fetch_optional(app.db.reader())
        .await?;
    let stored: Option<String> = match row {
        Some(row) => row.try_get("mqtt_subscriptions")?,
        None => None,
    };
    Ok(stored.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
}

async fn save_subscriptions(app: &AppState, device: &DeviceIdentity, subs: &[(String, u8)]) -> Result<(), Error> {
    let json = if subs.is_empty() { None } else { Some(serde_json::to_string(subs).map_err(anyhow::Error::from)?) };
    sqlx::query("UPDATE devices SET mqtt_subscriptions = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(json)
        .bind(device.scope.id())
        .bind(&device.device_id)
        .execute(app.db.writer())
        .await?;
    Ok(())
}
