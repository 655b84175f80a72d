//! Engines: the server's own work that no request starts — moving rollouts by their gates
//! ([`rollouts`]), importing artifacts from a watched directory or bucket prefix
//! ([`artifact_watch`]), and periodic upkeep ([`jobs`]: command expiry, telemetry retention).
//! Each gets a narrow [`Context`] (database, bus, clock, artifact store, settings, shutdown),
//! never the doors' state, and imports no door. Each runs as one task per server today; with
//! several nodes, each will hold a lease so one node runs it.

pub mod artifact_watch;
pub mod jobs;
pub mod rollouts;

use std::sync::Arc;

use baton_core::{artifacts::ArtifactStore, bus::SharedBus, config::Settings, rollouts::Engine, store::Db};
use tokio::sync::watch;

/// What an engine may reach.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub bus: SharedBus,
    /// The rollout engine's clock and wake-up.
    pub rollouts: Engine,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub settings: Arc<Settings>,
    /// Turns true when the server shuts down; engines stop then.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts every engine.
pub fn spawn_all(cx: &Context) {
    jobs::spawn(cx);
    rollouts::spawn(cx);
    artifact_watch::spawn(cx);
}
