//! The MQTT front door: devices that will never run the agent (sensors, controllers, gateways
//! and firmware written for ThingsBoard) connect with unmodified MQTT 3.1.1 or 5 clients and
//! share everything agent devices have — registry, telemetry, presence, events, the durable
//! command outbox.
//!
//! Baton is the device endpoint here, not a broker: devices never talk to each other, every
//! message goes to or comes from the server, so each connection is a session over its own
//! namespace of topics (`baton_proto::mqtt::dialect`). The packet codec is ours
//! (`baton_proto::mqtt`), small enough to fuzz and cheap per connection.
//!
//! - [`wire`]: bytes in and out of a connection.
//! - [`auth`]: who the client is; [`provision`]: devices provisioning themselves.
//! - [`session`]: one device's connection: subscriptions, presence, keep-alive, its end.
//! - [`inbound`]: what the device's publishes do.
//! - [`outbound`]: commands and desired attributes going out, in the device's dialect.
//! - [`gateway`]: ThingsBoard's gateway API and the sub-devices it relays.

mod auth;
mod gateway;
mod inbound;
mod outbound;
mod provision;
mod session;
mod updates;
mod wire;

use std::{net::SocketAddr, time::Duration};

use baton_proto::mqtt::{ConnAck, Connect, DecodeError, Packet, Properties, Property, Version, reason};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

use crate::{
    connections::{
        admission::{self, NotAdmitted},
        gate::Admitted,
    },
    state::AppState,
    tls::ClientCertificate,
};
use baton_core::Error;
use baton_core::config::Settings;
use wire::{Wire, WireError};

/// The bound MQTT listeners, before they serve.
pub struct Listeners {
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

impl Listeners {
    /// Binds what the settings ask for: plain MQTT, and MQTT over TLS when a certificate is set.
    pub async fn bind(settings: &Settings) -> Result<Self, Error> {
        if !settings.mqtt_enabled {
            return Ok(Self { plain: None, tls: None });
        }
        let bind = |addr: SocketAddr, key: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                Error::Config(format!("cannot listen for MQTT on {addr}: {e} (set {key}, or mqtt_enabled = false)"))
            })
        };
        let plain = Some(bind(settings.mqtt_addr, "mqtt_addr").await?);
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let config = crate::tls::server_config(cert, key)?;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                Some((bind(settings.mqtt_tls_addr, "mqtt_tls_addr").await?, acceptor))
            }
            _ => None,
        };
        Ok(Self { plain, tls })
    }

    /// Where plain MQTT listens, if it does.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where MQTT over TLS listens, if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Accepts connections until the server shuts down.
    pub fn spawn(self, app: AppState) {
        if let Some(listener) = self.plain {
            tokio::spawn(accept(app.clone(), listener, None));
        }
        if let Some((listener, acceptor)) = self.tls {
            tokio::spawn(accept(app, listener, Some(acceptor)));
        }
    }
}

async fn accept(app: AppState, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut stop = app.shutdown.subscribe();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = admission::accept(&listener, "mqtt") => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        tokio::spawn(admit(app.clone(), stream, peer, tls.clone()));
    }
}

/// Takes a connection through the PROXY header (from a listed balancer), the connection gate
/// and the TLS handshake, each bounded by the header timeout, then serves it.
async fn admit(app: AppState, mut stream: TcpStream, from: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) {
    let patience = app.settings.header_timeout();
    let admitted = admission::admit(&app.gate, &app.proxies, &mut stream, from, patience).await;
    let (peer, admitted) = match admitted {
        Ok(admitted) => admitted,
        Err(NotAdmitted::NoClient) => return,
        Err(NotAdmitted::Refused(refusal, peer)) => {
            tracing::debug!(%peer, %refusal, "MQTT connection refused");
            metrics::counter!("baton_mqtt_connections_refused_total", "reason" => "connections").increment(1);
            return;
        }
    };
    match tls {
        None => serve(app.clone(), stream, peer, None, &admitted, patience).await,
        // Boxed: a TLS session's state is larger, and every plain connection's task would
        // otherwise hold room for it.
        Some(acceptor) => Box::pin(serve_tls(app, stream, peer, acceptor, &admitted, patience)).await,
    }
}

async fn serve_tls(
    app: AppState,
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    admitted: &Admitted,
    patience: Duration,
) {
    if let Ok(Ok(stream)) = timeout(patience, acceptor.accept(stream)).await {
        let certificate = ClientCertificate::of(stream.get_ref().1);
        serve(app, stream, peer, certificate, admitted, patience).await;
    }
}

/// Serves one connection: CONNECT, login, then the device's session (or provisioning).
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: AppState,
    stream: S,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    admitted: &Admitted,
    patience: Duration,
) {
    let mut wire = Wire::new(stream, app.settings.mqtt_max_packet_bytes);
    // Boxed, like the session's own one-off awaits: while the device stays connected, the
    // connection's task holds the session and its waiting state, not the CONNECT, the login
    // or the start's queries (an async fn keeps every local it ever held across an await).
    let opened = Box::pin(open(&app, &mut wire, peer, certificate, admitted, patience)).await;
    if let Some((started, _running)) = opened {
        session::run(app, &mut wire, started).await;
    }
}

/// CONNECT, the login, and the session's start (CONNACK queued); a provisioning connection is
/// served to its end here. `None` when there is no device session to run. The running guard
/// comes along: shutdown waits for the session. The session comes boxed: moved from here into
/// the session's run, it would otherwise be held twice in the connection's task.
async fn open<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: &AppState,
    wire: &mut Wire<S>,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    admitted: &Admitted,
    patience: Duration,
) -> Option<(Box<session::Started>, crate::connections::Running)> {
    let (connect, login, running) = log_in(app, wire, peer, certificate, admitted, patience).await?;
    match login {
        auth::Login::Provision => {
            wire.queue(&Packet::ConnAck(ConnAck {
                session_present: false,
                reason: reason::SUCCESS,
                properties: Properties::default(),
            }));
            if wire.flush().await.is_ok() {
                provision::serve(app, wire, peer).await;
            }
            None
        }
        auth::Login::Device(device) => {
            let started = session::start(app, wire, connect, device, peer).await?;
            Some((Box::new(started), running))
        }
    }
}

/// CONNECT and the login: the client's CONNECT, who it is, and the running session's guard
/// (from here on the connection may write; shutdown waits for it). `None` when the connection
/// ended or was refused (told why, when it can be).
async fn log_in<S: AsyncRead + AsyncWrite + Unpin + Send>(
    app: &AppState,
    wire: &mut Wire<S>,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    admitted: &Admitted,
    patience: Duration,
) -> Option<(Connect, auth::Login, crate::connections::Running)> {
    let first = tokio::select! {
        read = timeout(patience, wire.read(false)) => read,
        // A newer connection took this one's place before it said CONNECT.
        () = admitted.pushed_out() => return None,
    };
    let connect = match first {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Err(WireError::Decode(DecodeError::UnsupportedVersion(_)))) => {
            // The 3.1.1 refusal is the one every version can read.
            let _ = wire.stream.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            metrics::counter!("baton_mqtt_connections_refused_total", "reason" => "version").increment(1);
            return None;
        }
        Ok(Err(WireError::Decode(e))) => {
            tracing::debug!(%peer, error = %e, "closing an MQTT connection that sent a bad packet");
            metrics::counter!("baton_mqtt_malformed_packets_total").increment(1);
            return None;
        }
        _ => return None,
    };
    admitted.proven();
    let running = app.connections.running();
    wire.version = connect.version;
    if let Some(max) = connect.properties.maximum_packet_size() {
        wire.max_out = usize::try_from(max).unwrap_or(usize::MAX);
    }
    if let Err(wait) = app.connect_limiter.check(peer.ip()) {
        let text = format!("too many connections from this address; retry in {wait} s");
        refuse(wire, reason::CONNECTION_RATE_EXCEEDED, &text).await;
        return None;
    }
    if connect.client_id.is_empty() && !connect.clean_start && connect.version == Version::V311 {
        refuse(wire, reason::CLIENT_ID_NOT_VALID, "an empty client id needs a clean session").await;
        return None;
    }
    match auth::login(app, &connect, certificate.as_ref()).await {
        Err(refusal) => {
            tracing::debug!(%peer, reason = refusal.text, "MQTT login refused");
            refuse(wire, refusal.reason, &refusal.text).await;
            None
        }
        Ok(login) => Some((connect, login, running)),
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<S>, code: u8, text: &str) {
    let reason_label = format!("{code:#04x}");
    metrics::counter!("baton_mqtt_connections_refused_total", "reason" => reason_label).increment(1);
    let mut properties = Properties::default();
    properties.push(Property::ReasonString(text.to_owned()));
    wire.finish(Some(&Packet::ConnAck(ConnAck { session_present: false, reason: code, properties }))).await;
}
