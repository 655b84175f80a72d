//! Background jobs: expiring commands past their TTL (and failing the support bundles they
//! carried), pruning telemetry, session recordings and support bundles past their retention,
//! and closing remote sessions nobody attached to.
//! Each runs on a fixed interval for the life of the server; a failed run is logged and the
//! next one tries again.

use std::time::Duration;

use baton_core::{bundles, commands::delivery, remote, telemetry};

use super::Context;

/// How often old telemetry is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub fn spawn(app: &Context) {
    let state = app.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(u64::from(state.settings.command_expiry_check_secs));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match delivery::expire(&state.db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(commands = n, "commands expired"),
                Err(e) => tracing::warn!(error = %e, "expiring commands failed"),
            }
            match bundles::settle(&state.db, &state.bus, None).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(bundles = n, "support bundles failed with their commands"),
                Err(e) => tracing::warn!(error = %e, "settling support bundles failed"),
            }
            if let Err(e) = remote::close_unattached(&state.db).await {
                tracing::warn!(error = %e, "closing unattached remote sessions failed");
            }
        }
    });
    let state = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            match telemetry::prune(&state.db, state.settings.telemetry_retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(samples = n, "pruned telemetry past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning telemetry failed"),
            }
            let retention = state.settings.remote_recording_retention_days;
            match remote::recordings::prune(&state.db, state.artifacts.as_ref(), retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(recordings = n, "pruned session recordings past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning session recordings failed"),
            }
            let retention = state.settings.support_bundle_retention_days;
            match bundles::prune(&state.db, state.artifacts.as_ref(), retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(bundles = n, "pruned support bundles past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning support bundles failed"),
            }
        }
    });
}
