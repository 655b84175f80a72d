//! The agent's life: enroll if needed, connect, serve a session, and on any loss reconnect with
//! jittered backoff — while a sampler keeps adding telemetry to the backlog, connected or not.
//! A session sends the backlog, runs commands (each id at most once), answers heartbeats, and
//! reports inventory changes; it ends on a lost connection, on shutdown, or when the server
//! says the device is decommissioned.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use baton_proto::{
    agent::{
        AgentMessage, CONNECT_PATH, CommandEnvelope, CommandProgress, CommandUpdate, DEVICE_ID_HEADER, MAX_FRAME_BYTES,
        PROTOCOL_VERSION, ServerMessage, close, decode_stream_frame, encode_stream_frame, feature, refusal,
    },
    api::{
        commands::{CommandResult, CommandSpec},
        problem::Problem,
    },
    deployment::ExecutionReport,
    inventory::Inventory,
};
use futures::{SinkExt, StreamExt};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{Instant, sleep, timeout},
};
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::WebSocketConfig},
};

use crate::{
    Agent, AgentError, Exit, Status,
    backlog::SharedBacklog,
    backoff::Backoff,
    certificate::{self, Presenter},
    config::clean_serial,
    enroll::{EnrollFailure, Enrolled, enroll},
    errors::innermost,
    executor::{Executor, Outcome},
    remote::{Outgoing, Streams},
    source::DeviceSource,
    storage::{Identity, Storage},
    updates::{UpdateSettings, Updates},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Source = Arc<Mutex<Box<dyn DeviceSource>>>;

/// Telemetry interval until the server says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the inventory is checked for changes.
const INVENTORY_EVERY: Duration = Duration::from_secs(300);
/// A session that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Results kept to answer a server that sends a finished command again.
const RESULTS_KEPT: usize = 256;
/// Telemetry batches sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 64;

/// How a session ended.
enum End {
    Lost(String),
    Shutdown,
    Decommissioned { wipe: bool },
}

/// Why a connection attempt was refused.
enum Refused {
    Unauthorized,
    Pending,
    RateLimited(u64),
    Network(String),
}

/// What lives across sessions.
struct Life {
    updates: Updates,
    /// Execution reports waiting to go out (they wait here while disconnected).
    reports: mpsc::Receiver<ExecutionReport>,
    storage: Storage,
    source: Source,
    backlog: SharedBacklog,
    executor: Executor,
    interval: watch::Sender<Duration>,
    inventory: watch::Receiver<Inventory>,
    results_tx: mpsc::Sender<CommandUpdate>,
    results_rx: mpsc::Receiver<CommandUpdate>,
    /// Updates a session could not send; sent first by the next one.
    unsent: VecDeque<CommandUpdate>,
    executed: HashSet<String>,
    /// Commands running now (their answer will come).
    running: HashSet<String>,
    recent: VecDeque<CommandUpdate>,
    stop: watch::Receiver<bool>,
    /// What remote support may do here (`[remote]`).
    remote: Arc<crate::config::RemoteConfig>,
    /// For support bundles: the HTTP client (with the device's certificate, if it has one),
    /// where archives are made, and the serial the device enrolled with.
    http: reqwest::Client,
    bundles_dir: std::path::PathBuf,
    serial: Option<String>,
}

pub async fn run(
    agent: Agent,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Exit, AgentError> {
    let Agent { config, storage, source, handlers, runner, installer, metrics_rx, status, .. } = agent;
    let exit = live(config, storage, source, handlers, runner, installer, metrics_rx, &status, shutdown).await;
    status.send_replace(match &exit {
        Ok(Exit::Decommissioned { .. }) | Err(AgentError::Decommissioned) => Status::Decommissioned,
        _ => Status::Stopped,
    });
    exit
}

#[allow(clippy::too_many_arguments)]
async fn live(
    config: crate::AgentConfig,
    storage: Storage,
    source: Box<dyn DeviceSource>,
    handlers: std::collections::HashMap<String, crate::executor::Handler>,
    runner: Option<crate::executor::Runner>,
    installer: Arc<dyn crate::updates::Installer>,
    metrics_rx: mpsc::Receiver<BTreeMap<String, f64>>,
    status: &watch::Sender<Status>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Exit, AgentError> {
    if storage.is_decommissioned() {
        return Err(AgentError::Decommissioned);
    }
    let server = config.server_url()?;
    let ca = config.ca_pem()?;
    let presenter = config.wants_certificate(&server).then(|| Arc::new(Presenter::default()));
    if let Some(presenter) = &presenter
        && let Some(held) = storage.certificate()?
        && let Err(e) = presenter.present(&held)
    {
        tracing::warn!(error = %e, "not presenting the stored certificate");
    }
    let (http, tls) = transport(ca, config.pin_ca, presenter.clone())?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    if let Some(presenter) = &presenter {
        tokio::spawn(keep_certificate(storage.clone(), presenter.clone(), http.clone(), stop.clone()));
    }
    let source: Source = Arc::new(Mutex::new(source));
    let backlog = SharedBacklog::load(storage.clone(), config.buffer_max_batches)?;
    let (interval, interval_rx) = watch::channel(DEFAULT_INTERVAL);
    let first_inventory = lock(&source).inventory();
    let (inventory_tx, inventory) = watch::channel(first_inventory);
    tokio::spawn(sample(source.clone(), backlog.clone(), interval_rx, metrics_rx, inventory_tx, stop.clone()));
    let (results_tx, results_rx) = mpsc::channel(1024);
    let executed = storage.executed()?.into_iter().collect();
    let recent = storage.results()?.into_iter().collect();
    let executor = Executor {
        reboot_command: config.reboot_command.clone(),
        max_output_bytes: config.max_output_bytes,
        handlers: Arc::new(handlers),
        runner,
    };
    let update_settings = UpdateSettings {
        trusted_keys: config.trusted_keys.clone(),
        agent_binary: config.agent_binary.clone(),
        pre_install: config.pre_install_command.clone(),
        post_install: config.post_install_command.clone(),
    };
    let (updates, reports) = Updates::new(storage.clone(), installer, http.clone(), update_settings)?;
    let mut life = Life {
        updates,
        reports,
        storage,
        source,
        backlog,
        executor,
        interval,
        inventory,
        results_tx,
        results_rx,
        unsent: VecDeque::new(),
        executed,
        running: HashSet::new(),
        recent,
        stop,
        remote: Arc::new(config.remote.clone()),
        http: http.clone(),
        bundles_dir: config.state_dir.join("bundles"),
        serial: config.serial.clone(),
    };
    let mut backoff = Backoff::new(Duration::from_secs(config.max_backoff_secs));
    // Set when the server refused our credentials: enroll again, keeping the old identity
    // until a new one is granted.
    let mut reenroll = false;
    loop {
        if *life.stop.borrow() {
            return Ok(Exit::Stopped);
        }
        let current = life.storage.identity()?;
        let identity = match current {
            Some(identity) if !reenroll => identity,
            current => {
                let token = config.enrollment_token.as_deref().ok_or_else(|| {
                    AgentError::Config(
                        "not enrolled: run `baton-agent enroll --server URL --token TOKEN`, or set `enrollment_token`"
                            .into(),
                    )
                })?;
                let serial = config.serial.clone().or_else(|| lock(&life.source).serial()).map(|s| clean_serial(&s));
                let serial = serial.filter(|s| !s.is_empty()).ok_or_else(|| {
                    AgentError::Config("no serial: this machine exposes none; set `serial` in the agent config".into())
                })?;
                let inventory = life.inventory.borrow().clone();
                status.send_replace(Status::Enrolling);
                match enroll(&http, &server, token, &serial, inventory, config.wants_certificate(&server)).await {
                    Ok(Enrolled { identity, status, update_keys, certificate }) => {
                        // The old identity is replaced only now that a new one exists.
                        if let Some(certificate) = &certificate {
                            life.storage.save_certificate(certificate)?;
                            if let Err(e) = presenter.as_ref().map_or(Ok(()), |p| p.present(certificate)) {
                                tracing::warn!(error = %e, "cannot present the new certificate");
                            }
                        }
                        life.storage.save_identity(&identity)?;
                        life.updates.pin(&update_keys);
                        reenroll = false;
                        tracing::info!(device_id = %identity.device_id, status = status.as_str(), "enrolled");
                        identity
                    }
                    Err(EnrollFailure::Fatal(AgentError::Decommissioned)) => {
                        life.storage.decommission(false)?;
                        return Err(AgentError::Decommissioned);
                    }
                    Err(EnrollFailure::Fatal(e)) => match current {
                        // Keep the identity we have (the refusal may pass, e.g. a tenant
                        // re-enabled) and try it again later.
                        Some(identity) => {
                            tracing::error!(error = %e, "enrolling again was refused; keeping the current identity");
                            reenroll = false;
                            if pause(&mut life.stop, backoff.next_delay()).await {
                                return Ok(Exit::Stopped);
                            }
                            identity
                        }
                        None => return Err(e),
                    },
                    Err(EnrollFailure::Retry(why, after)) => {
                        tracing::warn!(%why, "enrollment failed; retrying");
                        let delay = after.map(Backoff::retry_after).unwrap_or_else(|| backoff.next_delay());
                        if pause(&mut life.stop, delay).await {
                            return Ok(Exit::Stopped);
                        }
                        continue;
                    }
                }
            }
        };
        status.send_replace(Status::Connecting);
        let delay = match connect(&identity, tls.clone()).await {
            Ok(ws) => {
                let started = Instant::now();
                match session(ws, &identity, &mut life, status).await {
                    End::Shutdown => return Ok(Exit::Stopped),
                    End::Decommissioned { wipe } => {
                        tracing::warn!(wipe, "the server decommissioned this device; stopping");
                        life.storage.decommission(wipe)?;
                        return Ok(Exit::Decommissioned { wiped: wipe });
                    }
                    End::Lost(why) => {
                        status.send_replace(Status::Connecting);
                        tracing::warn!(%why, "connection lost; reconnecting");
                        if started.elapsed() >= STABLE_AFTER {
                            backoff.reset();
                        }
                        backoff.next_delay()
                    }
                }
            }
            Err(Refused::Unauthorized) if config.enrollment_token.is_some() => {
                tracing::warn!("the server does not know these credentials; enrolling again after a pause");
                reenroll = true;
                backoff.next_delay()
            }
            Err(Refused::Unauthorized) => {
                tracing::error!(
                    "the server refused this device's credentials; enroll it again with `baton-agent enroll`"
                );
                backoff.next_delay()
            }
            Err(Refused::Pending) => {
                status.send_replace(Status::Pending);
                tracing::info!("waiting for an administrator to approve this device");
                backoff.next_delay()
            }
            Err(Refused::RateLimited(secs)) => Backoff::retry_after(secs),
            Err(Refused::Network(why)) => {
                tracing::warn!(%why, "cannot connect; retrying");
                backoff.next_delay()
            }
        };
        if pause(&mut life.stop, delay).await {
            return Ok(Exit::Stopped);
        }
    }
}

/// Keeps the device's certificate current: gets one when the enrolled device has none (it
/// enrolled without one, or before certificates existed) and renews it when a third of its
/// lifetime is left, with a new key. Failures are retried after a growing pause.
async fn keep_certificate(
    storage: Storage,
    presenter: Arc<Presenter>,
    http: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) {
    const NOT_ENROLLED_CHECK: Duration = Duration::from_secs(10);
    const FIRST_RETRY: Duration = Duration::from_secs(5);
    let mut retry = FIRST_RETRY;
    loop {
        let due_in = |held: &crate::storage::HeldCertificate| {
            Duration::from_millis(u64::try_from(certificate::renew_at(held) - now_ms()).unwrap_or(0))
        };
        let wait = match (storage.identity(), storage.certificate()) {
            (Ok(Some(_)), Ok(Some(held))) => due_in(&held),
            (Ok(Some(_)), Ok(None)) => Duration::ZERO,
            _ => NOT_ENROLLED_CHECK,
        };
        if pause(&mut stop, wait).await {
            return;
        }
        let Ok(Some(identity)) = storage.identity() else { continue };
        // Enrolling again may have brought a fresh certificate meanwhile.
        if let Ok(Some(held)) = storage.certificate()
            && !due_in(&held).is_zero()
        {
            continue;
        }
        let renewed = certificate::renew(&http, &identity).await.and_then(|held| {
            storage.save_certificate(&held)?;
            presenter.present(&held)?;
            Ok(held)
        });
        match renewed {
            Ok(held) => {
                retry = FIRST_RETRY;
                let until = chrono::DateTime::from_timestamp_millis(held.not_after).unwrap_or_default();
                tracing::info!(%until, "client certificate renewed");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "cannot renew the client certificate");
                if pause(&mut stop, retry).await {
                    return;
                }
                retry = (retry * 2).min(Duration::from_secs(600));
            }
        }
    }
}

/// Sleeps for `delay` unless shutdown comes first (then true).
async fn pause(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = sleep(delay) => false,
        () = stopped(stop) => true,
    }
}

/// Takes samples on the interval (connected or not), queues the application's pushed metrics,
/// and watches the inventory for changes.
async fn sample(
    source: Source,
    backlog: SharedBacklog,
    mut interval: watch::Receiver<Duration>,
    mut pushed: mpsc::Receiver<BTreeMap<String, f64>>,
    inventory: watch::Sender<Inventory>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next_inventory = Instant::now() + INVENTORY_EVERY;
    loop {
        let every = *interval.borrow_and_update();
        tokio::select! {
            _ = sleep(every) => {
                let metrics = lock(&source).sample();
                if let Err(e) = backlog.push(now_ms(), metrics).await {
                    tracing::error!(error = %e, "cannot keep telemetry");
                }
                if Instant::now() >= next_inventory {
                    next_inventory = Instant::now() + INVENTORY_EVERY;
                    let current = lock(&source).inventory();
                    inventory.send_if_modified(|old| if *old != current { *old = current; true } else { false });
                }
            }
            Some(metrics) = pushed.recv() => {
                if let Err(e) = backlog.push(now_ms(), metrics).await {
                    tracing::error!(error = %e, "cannot keep pushed metrics");
                }
            }
            _ = interval.changed() => {}
            () = stopped(&mut stop) => return,
        }
    }
}

async fn connect(identity: &Identity, tls: Arc<rustls::ClientConfig>) -> Result<Ws, Refused> {
    let url = format!("{}{CONNECT_PATH}", identity.server.replacen("http", "ws", 1));
    let mut request = url.into_client_request().map_err(|e| Refused::Network(e.to_string()))?;
    let headers = request.headers_mut();
    // Without a secret the client certificate (presented by the TLS layer) speaks for the device.
    if !identity.secret.is_empty() {
        let bearer = format!("Bearer {}", identity.secret).parse().map_err(|_| Refused::Unauthorized)?;
        headers.insert("authorization", bearer);
    }
    headers.insert(DEVICE_ID_HEADER, identity.device_id.parse().map_err(|_| Refused::Unauthorized)?);
    // Small buffers (the library's default read buffer is 128 KiB): an agent exchanges little,
    // and a simulator runs thousands of these.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024);
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(Connector::Rustls(tls)));
    match timeout(Duration::from_secs(20), connecting).await {
        Err(_) => Err(Refused::Network("connecting timed out".into())),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let retry =
                response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let kind = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<Problem>(b).ok())
                .map(|p| p.kind.rsplit('/').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            Err(match (status, kind.as_str()) {
                (429, _) => Refused::RateLimited(retry.unwrap_or(5)),
                (_, refusal::PENDING_APPROVAL) => Refused::Pending,
                (401, _) | (_, refusal::UNAUTHORIZED) => Refused::Unauthorized,
                _ => Refused::Network(format!("the server answered {status}")),
            })
        }
        Ok(Err(e)) => Err(Refused::Network(innermost(&e))),
    }
}

/// One connection, from hello to its end.
async fn session(mut ws: Ws, identity: &Identity, life: &mut Life, status: &watch::Sender<Status>) -> End {
    let inventory = Box::new(life.inventory.borrow_and_update().clone());
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: crate::AGENT_VERSION.into(),
        inventory,
        backlog_epoch: Some(life.backlog.epoch().await),
        features: [
            feature::DEPLOYMENTS,
            feature::STREAMS,
            feature::LOGS,
            feature::FILES,
            feature::BUNDLES,
            feature::TUNNELS,
            feature::SCREEN,
        ]
        .map(String::from)
        .to_vec(),
    };
    // Remote-support streams live as long as this connection (dropping them closes them).
    let mut streams = Streams::new(life.remote.clone());
    if let Err(e) = send(&mut ws, &hello).await {
        return e;
    }
    let heartbeat = match timeout(Duration::from_secs(15), welcome(&mut ws)).await {
        Ok(Ok((interval, heartbeat))) => {
            life.interval.send_if_modified(|old| replace_if_changed(old, interval));
            heartbeat
        }
        Ok(Err(end)) => return end,
        Err(_) => return End::Lost("no welcome from the server".into()),
    };
    tracing::info!(device_id = %identity.device_id, "connected");
    status.send_replace(Status::Connected);
    for report in life.updates.connected() {
        if let Err(e) = send(&mut ws, &AgentMessage::ExecutionReport(report)).await {
            return e;
        }
    }
    while let Some(update) = life.unsent.pop_front() {
        if let Err(e) = send(&mut ws, &AgentMessage::CommandUpdate(update.clone())).await {
            life.unsent.push_front(update);
            return e;
        }
    }
    let mut last_sent = None;
    let mut in_flight = 0usize;
    let mut ticker = tokio::time::interval(heartbeat);
    let mut heard = Instant::now();
    loop {
        // New telemetry (and, on connect, the backlog) goes out first — a bounded window of
        // unacknowledged batches, so a long backlog never floods a connection.
        for batch in life.backlog.since(last_sent, IN_FLIGHT.saturating_sub(in_flight)).await {
            last_sent = Some(batch.seq);
            in_flight += 1;
            if let Err(e) = send(&mut ws, &AgentMessage::Telemetry(batch)).await {
                return e;
            }
        }
        let added = life.backlog.added.clone();
        let event = tokio::select! {
            frame = ws.next() => Event::Frame(frame),
            _ = added.notified() => Event::Telemetry,
            Some(update) = life.results_rx.recv() => Event::Result(update),
            Some(report) = life.reports.recv() => Event::Report(report),
            Some(out) = streams.outgoing.recv() => Event::Stream(out),
            Ok(()) = life.inventory.changed() => Event::Inventory,
            _ = ticker.tick() => Event::Tick,
            () = stopped(&mut life.stop) => Event::Stop,
        };
        match event {
            Event::Frame(frame) => {
                heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::StreamOpen(open)) => {
                            if let Some(answer) = streams.open(*open)
                                && let Err(e) = send(&mut ws, &answer).await
                            {
                                return e;
                            }
                        }
                        Ok(ServerMessage::StreamResize { stream, cols, rows }) => streams.resize(stream, cols, rows),
                        Ok(ServerMessage::StreamCredit { stream, bytes }) => streams.credit(stream, bytes),
                        Ok(ServerMessage::StreamClose { stream, reason }) => streams.close(stream, reason),
                        Ok(message) => {
                            if matches!(message, ServerMessage::TelemetryAck { .. }) {
                                in_flight = in_flight.saturating_sub(1);
                            }
                            if let Some(end) = handle(&mut ws, message, identity, life).await {
                                return end;
                            }
                        }
                        Err(e) => return End::Lost(format!("frame not understood: {e}")),
                    },
                    Some(Ok(Message::Binary(data))) => {
                        // The stream's bytes stay in the frame's buffer (no copy): past the number.
                        if let Some((stream, _)) = decode_stream_frame(&data)
                            && let Some(answer) = streams.data(stream, data.slice(4..))
                            && let Err(e) = send(&mut ws, &answer).await
                        {
                            return e;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return closed(frame),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Lost(innermost(&e)),
                    None => return End::Lost("the server closed the connection".into()),
                }
            }
            Event::Telemetry => {}
            Event::Stream(out) => {
                streams.sending(&out);
                let sent = match out {
                    Outgoing::Message(message) => send(&mut ws, &message).await,
                    Outgoing::Data(stream, bytes) => ws
                        .send(Message::Binary(encode_stream_frame(stream, &bytes).into()))
                        .await
                        .map_err(|e| End::Lost(innermost(&e))),
                };
                if let Err(e) = sent {
                    return e;
                }
            }
            Event::Result(update) => {
                life.running.remove(&update.command_id);
                remember(life, &update);
                if let Err(e) = send(&mut ws, &AgentMessage::CommandUpdate(update.clone())).await {
                    life.unsent.push_back(update);
                    return e;
                }
            }
            Event::Report(report) => {
                if let Err(e) = send(&mut ws, &AgentMessage::ExecutionReport(report)).await {
                    return e;
                }
            }
            Event::Inventory => {
                let inventory = Box::new(life.inventory.borrow_and_update().clone());
                if let Err(e) = send(&mut ws, &AgentMessage::Inventory { inventory }).await {
                    return e;
                }
            }
            Event::Tick => {
                if heard.elapsed() > heartbeat * 3 {
                    return End::Lost("nothing heard from the server within three heartbeats".into());
                }
                if let Err(e) = send(&mut ws, &AgentMessage::Heartbeat).await {
                    return e;
                }
            }
            Event::Stop => {
                let _ = ws.close(None).await;
                return End::Shutdown;
            }
        }
    }
}

/// What woke a session up.
enum Event {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Telemetry,
    Result(CommandUpdate),
    Report(ExecutionReport),
    Stream(Outgoing),
    Inventory,
    Tick,
    Stop,
}

/// Completes when shutdown is asked for (or nobody can ask any more).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for `welcome`: the telemetry interval and heartbeat period.
async fn welcome(ws: &mut Ws) -> Result<(Duration, Duration), End> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Welcome { telemetry_interval_secs, heartbeat_secs, .. }) => {
                    let secs = |s: u32| Duration::from_secs(u64::from(s.max(1)));
                    return Ok((secs(telemetry_interval_secs), secs(heartbeat_secs)));
                }
                Ok(ServerMessage::Decommissioned { wipe }) => return Err(End::Decommissioned { wipe }),
                Ok(_) => {}
                Err(e) => return Err(End::Lost(format!("frame not understood: {e}"))),
            },
            Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(End::Lost(innermost(&e))),
            None => return Err(End::Lost("the server closed the connection".into())),
        }
    }
}

/// Handles one message from the server; `Some` ends the session.
async fn handle(ws: &mut Ws, message: ServerMessage, identity: &Identity, life: &mut Life) -> Option<End> {
    match message {
        ServerMessage::TelemetryAck { seq } => {
            if let Err(e) = life.backlog.ack(seq).await {
                tracing::error!(error = %e, "cannot drop acknowledged telemetry");
            }
            None
        }
        ServerMessage::Decommissioned { wipe } => Some(End::Decommissioned { wipe }),
        ServerMessage::Command(envelope) => command(ws, envelope, identity, life).await.err(),
        ServerMessage::Deployment(deployment) => {
            let inventory = life.inventory.borrow().clone();
            let answer = life.updates.take(*deployment, identity, inventory)?;
            send(ws, &AgentMessage::ExecutionReport(answer)).await.err()
        }
        // An execution is canceled only before it installs; the server ignores reports of a
        // canceled execution, so one already downloading simply finishes its download.
        ServerMessage::CancelExecution { .. } | ServerMessage::Heartbeat | ServerMessage::Welcome { .. } => None,
        // The session loop serves streams before this is reached.
        ServerMessage::StreamOpen(_)
        | ServerMessage::StreamResize { .. }
        | ServerMessage::StreamClose { .. }
        | ServerMessage::StreamCredit { .. } => None,
    }
}

/// Takes a command: acknowledges it and runs it, at most once per id.
async fn command(ws: &mut Ws, envelope: CommandEnvelope, identity: &Identity, life: &mut Life) -> Result<(), End> {
    let id = envelope.id.clone();
    if life.executed.contains(&id) {
        // The server sent it again (a reconnect): repeat the answer, never the command.
        // A reboot with no answer kept is one that rebooted the device: it worked.
        let kept = life.recent.iter().find(|u| u.command_id == id).cloned();
        let answer = match (kept, &envelope.command) {
            (Some(kept), _) => kept,
            (None, _) if life.running.contains(&id) => return Ok(()),
            (None, CommandSpec::Reboot) => update(&id, Outcome::ok(CommandResult::default())),
            (None, _) => {
                update(&id, Outcome::failed("the agent restarted while this command ran; it was not run again"))
            }
        };
        return send(ws, &AgentMessage::CommandUpdate(answer)).await;
    }
    life.executed.insert(id.clone());
    if let Err(e) = life.storage.mark_executed(&id) {
        tracing::error!(error = %e, "cannot record a command as run; refusing it");
        return send(ws, &AgentMessage::CommandUpdate(update(&id, Outcome::failed(e.to_string())))).await;
    }
    if envelope.expires_at <= now_ms() {
        return send(ws, &AgentMessage::CommandUpdate(update(&id, Outcome::failed("expired before it could start"))))
            .await;
    }
    // Marked as run, the command runs even when its acknowledgement cannot get out (the
    // connection broke just now): the server sends it again on the next connection, and must
    // then find it running or answered — never "not run again" for a command that never ran.
    let acked = send(
        ws,
        &AgentMessage::CommandUpdate(CommandUpdate {
            command_id: id.clone(),
            state: CommandProgress::Acked,
            result: None,
        }),
    )
    .await;
    let started = start(ws, envelope, id, identity, life).await;
    acked.and(started)
}

/// Runs a command taken and marked as run: quick ones here, answered at once (or kept for the
/// next connection), the rest on a task of their own whose answer comes back through `results`.
async fn start(
    ws: &mut Ws,
    envelope: CommandEnvelope,
    id: String,
    identity: &Identity,
    life: &mut Life,
) -> Result<(), End> {
    match envelope.command {
        CommandSpec::SetTelemetryInterval { seconds } => {
            let every = Duration::from_secs(u64::from(seconds.max(1)));
            life.interval.send_if_modified(|old| replace_if_changed(old, every));
            let done = update(&id, Outcome::ok(CommandResult::default()));
            remember(life, &done);
            send_or_keep(ws, life, done).await
        }
        CommandSpec::RefreshInventory => {
            let inventory = lock(&life.source).inventory();
            // The next connection's hello carries the inventory, should this not get out.
            let sent = send(ws, &AgentMessage::Inventory { inventory: Box::new(inventory) }).await;
            let done = update(&id, Outcome::ok(CommandResult::default()));
            remember(life, &done);
            sent.and(send_or_keep(ws, life, done).await)
        }
        CommandSpec::SupportBundle { bundle_id, since_secs } => {
            let context = crate::bundle::Context {
                remote: life.remote.clone(),
                dir: life.bundles_dir.clone(),
                identity: identity.clone(),
                serial: life.serial.clone().or_else(|| life.inventory.borrow().serial.clone()),
                inventory: life.inventory.borrow().clone(),
                http: life.http.clone(),
            };
            let results = life.results_tx.clone();
            life.running.insert(id.clone());
            tokio::spawn(async move {
                let outcome = crate::bundle::run(context, &bundle_id, since_secs).await;
                let _ = results.send(update(&id, outcome)).await;
            });
            Ok(())
        }
        spec => {
            let (executor, results) = (life.executor.clone(), life.results_tx.clone());
            life.running.insert(id.clone());
            tokio::spawn(async move {
                let outcome = executor.run(&spec).await;
                let _ = results.send(update(&id, outcome)).await;
            });
            Ok(())
        }
    }
}

fn update(id: &str, outcome: Outcome) -> CommandUpdate {
    let state = if outcome.succeeded { CommandProgress::Succeeded } else { CommandProgress::Failed };
    CommandUpdate { command_id: id.to_owned(), state, result: Some(outcome.result) }
}

/// Keeps a final result (on disk too), to answer a server that asks again after a reconnect
/// or a restart.
fn remember(life: &mut Life, update: &CommandUpdate) {
    life.recent.push_back(update.clone());
    while life.recent.len() > RESULTS_KEPT {
        life.recent.pop_front();
    }
    let kept: Vec<CommandUpdate> = life.recent.iter().cloned().collect();
    if let Err(e) = life.storage.save_results(&kept) {
        tracing::warn!(error = %e, "cannot keep a command result");
    }
}

/// Sends a final answer; if the connection breaks, it goes out first on the next one.
async fn send_or_keep(ws: &mut Ws, life: &mut Life, done: CommandUpdate) -> Result<(), End> {
    let result = send(ws, &AgentMessage::CommandUpdate(done.clone())).await;
    if result.is_err() {
        life.unsent.push_back(done);
    }
    result
}

fn closed(frame: Option<tungstenite::protocol::CloseFrame>) -> End {
    match frame {
        Some(f) if u16::from(f.code) == close::DECOMMISSIONED => End::Decommissioned { wipe: false },
        Some(f) => End::Lost(format!("closed by the server ({}): {}", u16::from(f.code), f.reason)),
        None => End::Lost("closed by the server".into()),
    }
}

async fn send(ws: &mut Ws, message: &AgentMessage) -> Result<(), End> {
    let text = serde_json::to_string(message).map_err(|e| End::Lost(e.to_string()))?;
    ws.send(Message::Text(text.into())).await.map_err(|e| End::Lost(innermost(&e)))
}

fn replace_if_changed(old: &mut Duration, new: Duration) -> bool {
    if *old == new {
        false
    } else {
        *old = new;
        true
    }
}

fn lock(source: &Source) -> std::sync::MutexGuard<'_, Box<dyn DeviceSource>> {
    source.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The HTTP client and TLS configuration for a CA, built once per process and shared: building
/// them reads and parses certificate stores, which thousands of simulated agents must not repeat.
/// A device that presents its own client certificate gets its own.
fn transport(
    ca: Option<Vec<u8>>,
    pin: bool,
    presenter: Option<Arc<Presenter>>,
) -> Result<(reqwest::Client, Arc<rustls::ClientConfig>), AgentError> {
    if let Some(presenter) = presenter {
        let tls = tls_config(ca.as_deref(), pin, Some(presenter))?;
        let http = client_builder()
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| AgentError::Config(e.to_string()))?;
        return Ok((http, tls));
    }
    type Cache = std::collections::HashMap<(Option<Vec<u8>>, bool), (reqwest::Client, Arc<rustls::ClientConfig>)>;
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let key = (ca, pin);
    if let Some(found) = cache.get(&key) {
        return Ok(found.clone());
    }
    let built = (http_client(key.0.as_deref(), pin)?, tls_config(key.0.as_deref(), pin, None)?);
    cache.insert(key, built.clone());
    Ok(built)
}

/// TLS for the WebSocket: the web's roots plus the configured CA, or only the CA when pinned.
fn tls_config(
    ca_pem: Option<&[u8]>,
    pin: bool,
    presenter: Option<Arc<Presenter>>,
) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    if !pin {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = ca_pem {
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| AgentError::Config(format!("CA certificate: {e}")))?;
            roots.add(cert).map_err(|e| AgentError::Config(format!("CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match presenter {
        Some(presenter) => config.with_client_cert_resolver(presenter),
        None => config.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// HTTP for enrollment, trusting the same CA (only it, when pinned).
fn http_client(ca_pem: Option<&[u8]>, pin: bool) -> Result<reqwest::Client, AgentError> {
    let mut builder = client_builder();
    if let Some(pem) = ca_pem {
        let cert =
            reqwest::Certificate::from_pem(pem).map_err(|e| AgentError::Config(format!("CA certificate: {e}")))?;
        builder = if pin { builder.tls_certs_only([cert]) } else { builder.add_root_certificate(cert) };
    }
    builder.build().map_err(|e| AgentError::Config(e.to_string()))
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("baton-agent/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(30))
}
