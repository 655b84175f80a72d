//! Server-Sent Events from the bus: a stream per subscriber that keeps the messages its filter
//! picks, says `lagged` when it fell behind, keeps the connection alive, and ends when the
//! server shuts down (so a graceful shutdown never waits on a watcher).

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{broadcast, watch};

use baton_core::bus::Message;

/// A stream of the bus messages `pick` turns into events.
pub fn from_bus(
    rx: broadcast::Receiver<Arc<Message>>,
    shutdown: watch::Receiver<bool>,
    pick: impl Fn(&Message) -> Option<Event> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stop = Box::pin(crate::state::stopping(shutdown));
    let stream = futures::stream::unfold((rx, stop, pick), |(mut rx, mut stop, pick)| async move {
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Ok(m) => {
                        if let Some(event) = pick(&m) {
                            return Some((Ok(event), (rx, stop, pick)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let event = Event::default().event("lagged").data(n.to_string());
                        return Some((Ok(event), (rx, stop, pick)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = &mut stop => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// An SSE event named `name` carrying `value` as JSON.
pub fn json_event(name: &str, value: &impl serde::Serialize) -> Option<Event> {
    Event::default().event(name).json_data(value).ok()
}
