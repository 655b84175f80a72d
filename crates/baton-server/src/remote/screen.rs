//! Screen sessions: the client's WebSocket (noVNC in the console) piped to the device's screen
//! stream, RFB both ways from the first byte (no text frames: noVNC reads every frame as RFB).
//! The agent enforces view-only; the session ends with its client, the device, a close from the
//! API, the longest session allowed, or the server's stop, and says why in the close frame.

use baton_core::remote::{self, Attach, Traffic};
use baton_proto::streams::StreamKind;
use tokio::sync::{mpsc, watch};

use super::{
    Live, Relay, open_stream,
    pipe::{Piped, pipe},
    tell_closed_frame,
};

/// Serves a screen session's client, from asking the device to the stored end.
pub async fn serve(app: Relay, attach: Attach, mut socket: axum::extract::ws::WebSocket) {
    let _running = app.connections.running();
    let session = &attach.session;
    let (ended_tx, ended_rx) = watch::channel(None);
    let kind = StreamKind::Screen { control: session.control };
    let piped = match open_stream(&app.connections, &session.device_id, &session.id, &attach.actor.label, kind).await {
        Err(not) => Piped { reason: not.reason(), client_open: true, ..Piped::default() },
        Ok(stream) => {
            if let Err(e) = remote::opened(&app.db, &app.bus, &attach).await {
                tracing::error!(error = %e, "cannot record an opened session");
                stream.to_device.close("the server failed").await;
                Piped {
                    reason: "the server could not record the session".into(),
                    client_open: true,
                    ..Piped::default()
                }
            } else {
                let (close_tx, mut close_rx) = mpsc::channel(1);
                let live =
                    Live { tenant_id: attach.scope.id().to_owned(), output: None, close: close_tx, ended: ended_rx };
                app.live.insert(&session.id, live);
                let closing = super::closing(&app, async move { close_rx.recv().await });
                let piped = pipe(&mut socket, stream, app.idle, closing).await;
                app.live.remove(&session.id);
                piped
            }
        }
    };
    let traffic =
        Traffic { connections: 1, bytes_to_device: piped.bytes_to_device, bytes_from_device: piped.bytes_from_device };
    let ending = remote::Ending { reason: piped.reason.clone(), traffic: Some(traffic), ..Default::default() };
    if let Err(e) = remote::closed(&app.db, &app.bus, &attach.scope, session, &attach.actor, &ending).await {
        tracing::error!(error = %e, session_id = %session.id, "cannot record the end of a session");
    }
    let _ = ended_tx.send(Some((piped.reason.clone(), None)));
    if piped.client_open {
        tell_closed_frame(&mut socket, &piped.reason).await;
    }
    tracing::info!(session_id = %session.id, reason = %piped.reason, "screen session ended");
}
