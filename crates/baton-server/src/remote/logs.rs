//! A device's live logs relayed to one HTTP client as the body of its response (NDJSON, one
//! `LogRecord` a line, as the device wrote them). Credit goes back to the device only for
//! what was handed to the body, so a client that stops reading stops the device's reading at
//! one window. The stream ends when the device ends it, the client goes away (the body is
//! dropped), or the server shuts down; its end is an event with how much was read.

use std::{convert::Infallible, time::Instant};

use axum::body::Body;
use baton_core::{
    access::TenantScope,
    bus::SharedBus,
    remote::{
        Actor,
        logs::{self, Tally},
    },
    store::Db,
};
use baton_proto::streams::LogQuery;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::connections::{DeviceStream, Registry, streams::StreamOutput};

/// Who reads which logs of which device, for the events and the stream's end.
pub struct LogsRelay {
    pub db: Db,
    pub bus: SharedBus,
    pub connections: std::sync::Arc<Registry>,
    pub scope: TenantScope,
    pub device_id: String,
    pub actor: Actor,
    pub query: LogQuery,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// The response body for an open log stream: records the opening now, relays in the
/// background, records the end.
pub async fn body(relay: LogsRelay, stream: DeviceStream) -> Body {
    logs::opened(&relay.db, &relay.bus, &relay.scope, &relay.device_id, &relay.actor, &relay.query).await;
    // One chunk waits in the channel: what the body has not taken yet holds up the device.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(pump(relay, stream, tx));
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(chunk), rx))
    });
    Body::from_stream(chunks)
}

async fn pump(relay: LogsRelay, stream: DeviceStream, tx: mpsc::Sender<Bytes>) {
    let _running = relay.connections.running();
    let started = Instant::now();
    let DeviceStream { to_device, mut from_device, .. } = stream;
    let mut shutdown = relay.shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stop);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let left = || format!("closed by {} (the client went away)", relay.actor.label);
    let reason = loop {
        tokio::select! {
            out = from_device.recv() => match out {
                Some(StreamOutput::Data(chunk)) => {
                    let n = chunk.len();
                    let newlines = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    tokio::select! {
                        sent = tx.send(chunk) => if sent.is_err() { break left() },
                        () = &mut stop => break "the server is shutting down".to_owned(),
                    }
                    (lines, bytes) = (lines + newlines, bytes + n as u64);
                    if to_device.consumed(n).await.is_err() {
                        break "the device's connection ended".to_owned();
                    }
                }
                Some(StreamOutput::Closed { reason, .. }) => break reason,
                None => break "the device's connection ended".to_owned(),
            },
            () = tx.closed() => break left(),
            () = &mut stop => break "the server is shutting down".to_owned(),
        }
    };
    to_device.close(reason.clone()).await;
    drop(tx);
    let tally = Tally { lines, bytes, duration: started.elapsed(), reason };
    tracing::info!(device_id = %relay.device_id, lines, bytes, reason = %tally.reason, "log stream ended");
    logs::closed(&relay.db, &relay.bus, &relay.scope, &relay.device_id, &relay.actor, &relay.query, &tally).await;
}
