//! One agent connection, from hello to close: presence, inventory, telemetry (acknowledged once
//! stored), command delivery and reports, heartbeats both ways, and a clear close reason for
//! every way it can end. A misbehaving agent only ever closes its own connection.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use baton_proto::{
    agent::{self, AgentMessage, CommandProgress, CommandUpdate, PROTOCOL_VERSION, ServerMessage, close},
    api::commands::{CommandResult, CommandSpec},
};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};

use super::streams::{Out, Streams};
use crate::connections::{Control, Letters, Registration, setup::SetupPlace};
use crate::state::AppState;
use baton_core::Error;
use baton_core::{
    bundles,
    commands::delivery,
    devices::{credentials::DeviceIdentity, presence},
    events, rollouts, telemetry,
};

/// Time an agent has to say hello after the upgrade.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `last_seen_at` is written for a device that is only sending heartbeats.
const SEEN_EVERY: Duration = Duration::from_secs(60);
/// How long one frame may take to go out; an agent that stops reading is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a session ended, as the close frame says it.
struct Ending {
    code: u16,
    reason: String,
}

impl Ending {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// Serves a device that is decommissioned: tell it, close. Its credentials open nothing else.
pub async fn refuse_decommissioned(mut socket: WebSocket, wipe: bool) {
    let _ = send(&mut socket, &ServerMessage::Decommissioned { wipe }).await;
    let reason = "the device is decommissioned; stop connecting";
    let _ = close_with(&mut socket, Ending::new(close::DECOMMISSIONED, reason)).await;
}

/// Runs an accepted connection to its end; its setup `place` is given back once the device is
/// recorded online. Its start (the hello, presence) and its end are boxed: while the agent
/// stays connected, its task holds only the session and its waiting state.
pub async fn run(app: AppState, mut socket: WebSocket, device: DeviceIdentity, peer: SocketAddr, place: SetupPlace) {
    let _running = app.connections.running();
    let Some((mut session, registration)) = Box::pin(start(&app, &mut socket, device, peer, place)).await else {
        return;
    };
    let connection = registration.connection;
    let ending = session.serve(&mut socket, registration).await;
    Box::pin(finish(app, socket, session, ending, connection)).await;
}

/// The hello, the registration and presence; `None` when the connection was refused (told why).
async fn start(
    app: &AppState,
    socket: &mut WebSocket,
    device: DeviceIdentity,
    peer: SocketAddr,
    place: SetupPlace,
) -> Option<(Session, Registration)> {
    let hello = match timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) if text.len() > agent::MAX_FRAME_BYTES => {
            let _ = close_with(socket, too_large()).await;
            return None;
        }
        Ok(Some(Ok(WsMessage::Text(text)))) => serde_json::from_str::<AgentMessage>(&text),
        Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) => return None,
        Err(_) => {
            let _ = close_with(socket, Ending::new(close::PROTOCOL_VIOLATION, "no hello within 10 s")).await;
            return None;
        }
        Ok(other) => {
            let ending = ending_for_bad_frame(other, "the first frame must be a `hello` text frame");
            let _ = close_with(socket, ending).await;
            return None;
        }
    };
    let (agent_version, inventory, backlog_epoch, features) = match hello {
        Ok(AgentMessage::Hello { protocol, agent_version, inventory, backlog_epoch, features })
            if protocol == PROTOCOL_VERSION =>
        {
            (agent_version, inventory, backlog_epoch, features)
        }
        Ok(AgentMessage::Hello { protocol, .. }) => {
            let reason = format!("protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}");
            let _ = close_with(socket, Ending::new(close::PROTOCOL_VIOLATION, reason)).await;
            return None;
        }
        Ok(_) => {
            let _ = close_with(socket, Ending::new(close::PROTOCOL_VIOLATION, "the first frame must be `hello`")).await;
            return None;
        }
        Err(e) => {
            let _ = close_with(socket, Ending::new(close::INVALID_FRAME, format!("invalid frame: {e}"))).await;
            return None;
        }
    };
    let scope = device.scope.clone();
    let id = device.device_id.clone();
    // Registered before presence is written: an older session of the same device that ends
    // now sees this one and leaves the device online.
    let registration = app.connections.register(&id, true);
    let connection = registration.connection;
    // Here and below, the awaits an idle connection is never in are boxed: the connection's
    // task is then only as large as its waiting state, for as long as the device stays.
    let connected = Box::pin(async {
        let mut inventory = *inventory;
        inventory.agent_version.get_or_insert(agent_version);
        let remote = peer.ip().to_string();
        app.setup_writer.online(&scope, &id, &remote, inventory, backlog_epoch).await
    })
    .await;
    if let Err(e) = connected {
        let reason = match e {
            Error::Invalid { detail, .. } => detail,
            other => {
                tracing::error!(error = %other, device_id = %id, "could not record the connection");
                "the server could not record the connection; retry later".into()
            }
        };
        app.connections.unregister(&id, connection);
        let _ = close_with(socket, Ending::new(close::PROTOCOL_VIOLATION, reason)).await;
        return None;
    }
    drop(place);
    tracing::info!(device_id = %id, %peer, "agent connected");

    let deployments = features.iter().any(|f| f == agent::feature::DEPLOYMENTS);
    let bundles = features.iter().any(|f| f == agent::feature::BUNDLES);
    let streams = Streams::new(&features);
    drop(features);
    let session = Session {
        app: app.clone(),
        device,
        sent: HashSet::new(),
        deployments,
        bundles,
        deployed: HashSet::new(),
        streams,
    };
    Some((session, registration))
}

/// The session's end: its streams, the close frame, presence.
async fn finish(app: AppState, mut socket: WebSocket, mut session: Session, ending: Ending, connection: u64) {
    let (id, scope) = (session.device.device_id.clone(), session.device.scope.clone());
    // Streams end with the connection; when the server stops, people are told that, not why
    // the device's connection ended, whichever the relay hears of first.
    let why = if *app.shutdown.borrow() {
        "the server is shutting down".to_owned()
    } else {
        format!("the device's connection ended: {}", ending.reason)
    };
    session.streams.end(&why);
    let replaced = ending.code == close::REPLACED;
    let _ = close_with(&mut socket, ending).await;

    app.connections.unregister(&id, connection);
    if !replaced && !app.connections.is_connected(&id) {
        Box::pin(async {
            if let Err(e) = app.setup_writer.offline(&scope, &id).await {
                tracing::warn!(error = %e, device_id = %id, "could not record the disconnection");
            }
        })
        .await;
    }
    tracing::info!(device_id = %id, "agent disconnected");
}

struct Session {
    app: AppState,
    device: DeviceIdentity,
    /// Commands sent on this connection, so a delivery pass does not send them twice.
    sent: HashSet<String>,
    /// Whether the agent carries out deployments (it said so in `hello`).
    deployments: bool,
    /// Whether the agent makes support bundles (it said so in `hello`); an older agent's
    /// bundle commands fail here instead of reaching an agent that cannot read them.
    bundles: bool,
    /// Deployments (execution, attempt, install now) sent on this connection.
    deployed: HashSet<(String, u32, bool)>,
    /// Remote-support streams on this connection.
    streams: Streams,
}

impl Session {
    async fn serve(&mut self, socket: &mut WebSocket, mut registration: Registration) -> Ending {
        let heartbeat = Duration::from_secs(u64::from(self.app.settings.heartbeat_secs));
        let interval_secs = self.device.telemetry_interval_secs.unwrap_or(self.app.settings.telemetry_interval_secs);
        let welcome = ServerMessage::Welcome {
            device_id: self.device.device_id.clone(),
            telemetry_interval_secs: interval_secs,
            heartbeat_secs: self.app.settings.heartbeat_secs,
        };
        if send(socket, &welcome).await.is_err() {
            return Ending::new(close::GOING_AWAY, "send failed");
        }
        if let Err(e) = Box::pin(self.deliver(socket)).await {
            return e;
        }
        let mut ticker = interval(heartbeat);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut heard, mut written) = (Instant::now(), Instant::now());
        let stop = crate::state::stopping(self.app.shutdown.subscribe());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => {
                    return Ending::new(close::GOING_AWAY, "the server is shutting down; reconnect");
                }
                frame = socket.recv() => {
                    heard = Instant::now();
                    match frame {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Err(ending) = Box::pin(self.handle(socket, &text)).await {
                                return ending;
                            }
                        }
                        Some(Ok(WsMessage::Binary(data))) => match agent::decode_stream_frame(&data) {
                            Some((stream, _)) => match self.streams.data(stream, data.slice(4..)) {
                                Ok(Some(out)) => {
                                    if let Err(e) = Box::pin(send_out(socket, out)).await {
                                        return e;
                                    }
                                }
                                Ok(None) => {}
                                Err(why) => return Ending::new(close::PROTOCOL_VIOLATION, why),
                            },
                            None => return ending_for_bad_frame(Some(Ok(WsMessage::Binary(data))), ""),
                        },
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                        Some(Ok(WsMessage::Close(_))) | None => return Ending::new(1000, "closed by the agent"),
                        other => return ending_for_bad_frame(other, "frame not understood"),
                    }
                    if written.elapsed() >= SEEN_EVERY {
                        written = Instant::now();
                        Box::pin(self.app.commands.seen(&self.device.device_id)).await;
                    }
                }
                control = registration.control.recv() => match control {
                    Some(Control::Decommission { wipe }) => {
                        let _ = send(socket, &ServerMessage::Decommissioned { wipe }).await;
                        return Ending::new(close::DECOMMISSIONED, "the device was decommissioned; stop connecting");
                    }
                    Some(Control::Replaced) | None => {
                        return Ending::new(close::REPLACED, "another connection of this device replaced this one");
                    }
                },
                Some(request) = registration.streams.recv() => {
                    if let Some(out) = self.streams.request(request)
                        && let Err(e) = Box::pin(send_out(socket, out)).await
                    {
                        return e;
                    }
                }
                Some(input) = self.streams.input() => {
                    if let Some(out) = self.streams.from_door(input)
                        && let Err(e) = Box::pin(send_out(socket, out)).await
                    {
                        return e;
                    }
                }
                Some(()) = registration.deliver.recv() => {
                    let letters = registration.mailbox.as_ref().map(|m| m.take());
                    if let Err(e) = Box::pin(self.handed(socket, letters)).await {
                        return e;
                    }
                }
                _ = ticker.tick() => {
                    if heard.elapsed() > heartbeat * 3 {
                        return Ending::new(close::HEARTBEAT_TIMEOUT, "nothing heard from the agent within three heartbeats");
                    }
                    if send(socket, &ServerMessage::Heartbeat).await.is_err() {
                        return Ending::new(close::GOING_AWAY, "send failed");
                    }
                }
            }
        }
    }

    /// Handles one text frame from the agent.
    async fn handle(&mut self, socket: &mut WebSocket, text: &str) -> Result<(), Ending> {
        if text.len() > agent::MAX_FRAME_BYTES {
            return Err(too_large());
        }
        let message: AgentMessage =
            serde_json::from_str(text).map_err(|e| Ending::new(close::INVALID_FRAME, format!("invalid frame: {e}")))?;
        let (db, scope, id) = (&self.app.db, &self.device.scope, self.device.device_id.as_str());
        match message {
            AgentMessage::Hello { .. } => {
                return Err(Ending::new(close::PROTOCOL_VIOLATION, "`hello` was already sent"));
            }
            AgentMessage::Heartbeat => {}
            AgentMessage::Inventory { inventory } => {
                let mut tx = db.writer().begin().await.map_err(internal)?;
                let changed = presence::store_inventory(&mut tx, id, &inventory).await.map_err(invalid_or_internal)?;
                tx.commit().await.map_err(internal)?;
                if changed {
                    events::record(db, &self.app.bus, scope, Some(id), events::kind::INVENTORY, serde_json::json!({}))
                        .await;
                }
            }
            AgentMessage::Telemetry(mut batch) => {
                let dropped = telemetry::sanitize(&mut batch.samples)
                    .map_err(|m| Ending::new(close::INVALID_FRAME, format!("invalid telemetry: {m}")))?;
                if dropped > 0 {
                    metrics::counter!("baton_telemetry_values_dropped_total").increment(dropped as u64);
                    tracing::debug!(device_id = id, dropped, "dropped implausible telemetry values");
                }
                self.app.telemetry.store(scope, id, Some(batch.seq), batch.samples).await.map_err(internal)?;
                send(socket, &ServerMessage::TelemetryAck { seq: batch.seq }).await?;
            }
            AgentMessage::ExecutionReport(report) => {
                let (execution, attempt) = (report.execution_id.clone(), report.attempt);
                if report.state == baton_proto::api::rollouts::ExecutionState::AwaitingWindow {
                    // A window may have opened while it downloaded: let the next pass say so.
                    self.deployed.remove(&(execution.clone(), attempt, true));
                }
                let finished = rollouts::delivery::report(db, &self.app.bus, &self.app.rollouts, scope, id, report)
                    .await
                    .map_err(internal)?;
                if finished {
                    self.deployed.retain(|(e, a, _)| !(*e == execution && *a == attempt));
                }
            }
            message @ (AgentMessage::StreamOpened { .. }
            | AgentMessage::StreamRefused { .. }
            | AgentMessage::StreamClosed { .. }
            | AgentMessage::StreamCredit { .. }) => {
                if let Some(out) = self.streams.from_agent(message) {
                    send_out(socket, out).await?;
                }
            }
            AgentMessage::CommandUpdate(update) => {
                let command_id = update.command_id.clone();
                let finished = self.app.commands.report(scope, id, update).await.map_err(internal)?;
                if let Some(finished) = finished {
                    if finished.support_bundle {
                        bundles::settle(db, &self.app.bus, Some(&command_id)).await.map_err(internal)?;
                    }
                    // Only a full window left commands behind in the database.
                    let window_was_full = self.sent.len() >= delivery::DELIVERY_WINDOW as usize;
                    self.sent.remove(&command_id);
                    if window_was_full {
                        self.deliver(socket).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends what the session was woken for: the commands handed over in its mailbox, without
    /// reading the database (they are marked SENT in the writer's next batch), then whatever
    /// else waits when the hint said to look (`None`: a session without a mailbox always looks).
    async fn handed(&mut self, socket: &mut WebSocket, letters: Option<Letters>) -> Result<(), Ending> {
        let Some(letters) = letters else { return self.deliver(socket).await };
        let sent = self.send_commands(socket, letters.commands).await?;
        self.app.commands.sent(sent).await;
        if letters.look { self.deliver(socket).await } else { Ok(()) }
    }

    /// Sends waiting commands this connection has not sent yet.
    async fn deliver(&mut self, socket: &mut WebSocket) -> Result<(), Ending> {
        let pending =
            delivery::pending(&self.app.db, &self.device.scope, &self.device.device_id).await.map_err(internal)?;
        self.send_commands(socket, pending).await?;
        if self.deployments {
            let (db, rollouts) = (&self.app.db, &self.app.rollouts);
            let pending = rollouts::delivery::pending(db, rollouts, &self.device.scope, &self.device.device_id)
                .await
                .map_err(internal)?;
            for deployment in pending {
                let key = (deployment.execution_id.clone(), deployment.attempt, deployment.install_now);
                if self.deployed.insert(key) {
                    send(socket, &ServerMessage::Deployment(Box::new(deployment))).await?;
                }
            }
        }
        Ok(())
    }
}

impl Session {
    /// Sends the commands this connection has not sent yet; returns their ids.
    async fn send_commands(
        &mut self,
        socket: &mut WebSocket,
        commands: Vec<agent::CommandEnvelope>,
    ) -> Result<Vec<String>, Ending> {
        let mut sent = Vec::with_capacity(commands.len());
        for envelope in commands {
            if !self.bundles && matches!(envelope.command, CommandSpec::SupportBundle { .. }) {
                self.cannot_bundle(&envelope.id).await?;
                continue;
            }
            if self.sent.insert(envelope.id.clone()) {
                sent.push(envelope.id.clone());
                send(socket, &ServerMessage::Command(envelope)).await?;
            }
        }
        Ok(sent)
    }

    /// Fails a support-bundle command for an agent that did not announce bundles.
    async fn cannot_bundle(&self, command_id: &str) -> Result<(), Ending> {
        let (db, bus) = (&self.app.db, &self.app.bus);
        let error = "this device's agent cannot make support bundles; update it to a newer baton-agent";
        let update = CommandUpdate {
            command_id: command_id.to_owned(),
            state: CommandProgress::Failed,
            result: Some(CommandResult { error: Some(error.into()), ..CommandResult::default() }),
        };
        self.app.commands.report(&self.device.scope, &self.device.device_id, update).await.map_err(internal)?;
        bundles::settle(db, bus, Some(command_id)).await.map_err(internal)?;
        Ok(())
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), Ending> {
    let text = serde_json::to_string(message).map_err(|e| internal(anyhow::Error::from(e)))?;
    match timeout(SEND_TIMEOUT, socket.send(WsMessage::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::new(close::GOING_AWAY, "the connection broke")),
        Err(_) => Err(Ending::new(close::GOING_AWAY, "the agent stopped reading")),
    }
}

async fn send_out(socket: &mut WebSocket, out: Out) -> Result<(), Ending> {
    let frame = match out {
        Out::Text(message) => return send(socket, &message).await,
        Out::Binary(frame) => WsMessage::Binary(frame.into()),
    };
    match timeout(SEND_TIMEOUT, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::new(close::GOING_AWAY, "the connection broke")),
        Err(_) => Err(Ending::new(close::GOING_AWAY, "the agent stopped reading")),
    }
}

async fn close_with(socket: &mut WebSocket, ending: Ending) -> Result<(), axum::Error> {
    // Close reasons are limited to 123 bytes by the protocol.
    let mut reason = ending.reason;
    while reason.len() > 123 {
        reason.pop();
    }
    socket.send(WsMessage::Close(Some(CloseFrame { code: ending.code, reason: reason.into() }))).await
}

fn ending_for_bad_frame(frame: Option<Result<WsMessage, axum::Error>>, otherwise: &str) -> Ending {
    match frame {
        Some(Ok(WsMessage::Binary(_))) => {
            Ending::new(close::INVALID_FRAME, "a binary frame needs a 4-byte stream number")
        }
        Some(Err(e)) => ending_for_broken_frame(e),
        _ => Ending::new(close::PROTOCOL_VIOLATION, otherwise),
    }
}

/// The close RFC 6455 asks for when the WebSocket layer could not read a frame: 1009 for one
/// over the size limit, 1007 for text that is not UTF-8, 1002 for a frame that breaks the
/// protocol (unmasked, RSV bits set, a control frame over 125 bytes, …).
fn ending_for_broken_frame(e: axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let e = e.into_inner();
    match e.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => too_large(),
        Some(WsError::Utf8(_)) => Ending::new(close::INVALID_FRAME, "a text frame that is not UTF-8"),
        Some(WsError::Protocol(p)) => Ending::new(close::WS_PROTOCOL_ERROR, format!("protocol error: {p}")),
        _ => Ending::new(close::WS_PROTOCOL_ERROR, format!("unreadable frame: {e}")),
    }
}

fn too_large() -> Ending {
    Ending::new(close::TOO_LARGE, format!("frames are limited to {} bytes", agent::MAX_FRAME_BYTES))
}

fn internal(e: impl Into<Error>) -> Ending {
    let e = e.into();
    tracing::error!(error = %e, "agent session failed");
    Ending::new(1011, "the server failed; reconnect later")
}

fn invalid_or_internal(e: Error) -> Ending {
    match e {
        Error::Invalid { detail, .. } => Ending::new(close::INVALID_FRAME, detail),
        other => internal(other),
    }
}
