//! The message bus: how one part of the server tells others that something happened (a command
//! was queued, a device was decommissioned, telemetry arrived, an event was recorded) without
//! knowing who listens. Today it is in-process ([`LocalBus`]); the scale-out issue adds a NATS
//! implementation of the same trait, so agent sessions on one node hear about commands queued
//! through another.

use std::sync::Arc;

use baton_proto::{
    agent::CommandEnvelope,
    api::{events::Event, telemetry::TelemetryEvent},
};
use tokio::sync::broadcast;

/// Something that happened, addressed to a tenant.
#[derive(Debug, Clone)]
pub enum Message {
    /// Commands were queued for these devices: deliver if connected. `envelopes`, when not
    /// empty, are the commands themselves (one per device, in the same order), so a session
    /// can send them without reading them back; otherwise sessions look in the database.
    CommandsQueued { tenant: String, device_ids: Vec<String>, envelopes: Vec<CommandEnvelope> },
    /// The device was decommissioned: close its connection (wiping it if asked).
    Decommissioned { tenant: String, device_id: String, wipe: bool },
    /// The device enrolled again: connections with its old secret must close.
    CredentialsChanged { tenant: String, device_id: String },
    /// Operators changed the attributes they want the device to have: push them if connected.
    DesiredChanged { tenant: String, device_id: String },
    /// Deployments are ready for these devices: deliver if connected.
    DeploymentsReady { tenant: String, device_ids: Vec<String> },
    /// A rollout moved (state, wave, an execution): for live views.
    RolloutChanged { tenant: String, rollout_id: String },
    /// Telemetry was stored.
    Telemetry { tenant: String, event: TelemetryEvent },
    /// An event was recorded in the log.
    Event { tenant: String, event: Event },
}

/// Publish and subscribe. Delivery is best effort: a subscriber that falls behind skips
/// messages (and is told so by the receiver); durable state lives in the database.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, message: Message);
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>>;
}

pub type SharedBus = Arc<dyn Bus>;

/// The single-node bus: a broadcast channel.
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Message>>,
}

impl LocalBus {
    /// Messages a slow subscriber may fall behind by before it skips some.
    const CAPACITY: usize = 16_384;

    pub fn shared() -> SharedBus {
        let (tx, _) = broadcast::channel(Self::CAPACITY);
        Arc::new(Self { tx })
    }
}

impl Bus for LocalBus {
    fn publish(&self, message: Message) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(message));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }
}
