//! What the doors share: the state every HTTP handler, console page, agent session and MQTT
//! session can reach. It lives here, beside the doors rather than inside one, so no door has to
//! import another to get it. Engines get a narrower [`crate::engines::Context`].

use std::sync::Arc;

use baton_core::{
    access::login_limit::LoginLimiter,
    artifacts::{ArtifactStore, serving::ServingMeter},
    bus::SharedBus,
    commands::writer::CommandWriter,
    config::Settings,
    rollouts,
    setups::SetupWriter,
    store::Db,
    telemetry::writer::TelemetryWriter,
};
use tokio::sync::watch;

use crate::connections::{
    Registry, gate::ConnectionGate, proxy::TrustedProxies, rate::ConnectLimiter, setup::SetupLimit,
};

/// What every door's handler can reach.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub db: Db,
    pub settings: Settings,
    /// Counts login attempts per address and account; see `access::login_limit`.
    pub login_limiter: LoginLimiter,
    /// Paces device connections and enrollments per address; see `connections::rate`.
    pub connect_limiter: ConnectLimiter,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub bus: SharedBus,
    /// Live device connections on this node, whatever their door (agent WebSocket or MQTT).
    pub connections: Arc<Registry>,
    /// Open connections per address and in total, over every listener.
    pub gate: Arc<ConnectionGate>,
    /// Places for device setups (enrollments, agent connections' first steps); see
    /// `connections::setup`.
    pub setups: SetupLimit,
    /// Writes enrollments and agents' presence many per transaction; see `baton_core::setups`.
    pub setup_writer: SetupWriter,
    /// Load balancers whose connections start with a PROXY header.
    pub proxies: TrustedProxies,
    pub telemetry: TelemetryWriter,
    /// Applies command state changes in batches; see `commands::writer`.
    pub commands: CommandWriter,
    /// Remote sessions relayed by this node; see `remote`.
    pub remote: Arc<crate::remote::LiveSessions>,
    /// Where artifact bytes live; see `artifacts::store`.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Counts the artifact bytes this node serves, for rollout estimates; see `artifacts::serving`.
    pub serving: Arc<ServingMeter>,
    /// The rollout engine's clock and wake-up; see `engines::rollouts`.
    pub rollouts: rollouts::Engine,
    /// Flips to true when the server starts shutting down, so long-lived connections (agent
    /// sessions, event streams) end instead of holding the graceful shutdown open.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    /// What the remote-session relays need from the server.
    pub fn relay(&self) -> crate::remote::Relay {
        crate::remote::Relay {
            db: self.db.clone(),
            bus: self.bus.clone(),
            artifacts: self.artifacts.clone(),
            connections: self.connections.clone(),
            live: self.remote.clone(),
            idle: std::time::Duration::from_secs(u64::from(self.settings.remote_idle_timeout_secs)),
            longest: std::time::Duration::from_secs(u64::from(self.settings.remote_max_session_secs)),
            shutdown: self.shutdown.subscribe(),
        }
    }
}

/// Completes once the server starts shutting down (or the sender is gone).
pub async fn stopping(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
