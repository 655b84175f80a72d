//! Remote sessions served to people: the relay between a client's attach WebSocket (the
//! console's terminal, `baton terminal`, any API client) and the device's stream, with the
//! recording, the limits (idle, maximum length) and read-only watchers. Shared by the doors
//! that attach clients (API, console), so neither imports the other; the device's end of the
//! stream is the agent session's, reached through `connections`. [`open_stream`] asks a device
//! for any kind of stream (terminal, logs, files) and says why it could not; [`logs_body`]
//! relays live logs as an HTTP response's body, [`files`] file transfers between an HTTP body
//! and a device's file stream; [`screen`] pipes a screen's RFB, [`tunnel`] a tunnel's TCP
//! connections (`pipe` is their shared byte pipe), [`web`] a device's web page over a tunnel.

pub mod files;
mod logs;
mod open;
mod pipe;
mod relay;
pub mod screen;
pub mod tunnel;
pub mod web;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use baton_core::{artifacts::ArtifactStore, bus::SharedBus, store::Db};
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};

use crate::connections::Registry;

pub use logs::{LogsRelay, body as logs_body};
pub use open::{NotOpened, open_stream};
use relay::{send_text, tell_closed_frame};
pub use relay::{serve_owner, serve_watcher};

/// What a relay needs from the server (the door that attaches clients hands it over).
#[derive(Clone)]
pub struct Relay {
    pub db: Db,
    pub bus: SharedBus,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub connections: Arc<Registry>,
    pub live: Arc<LiveSessions>,
    /// A session with no byte either way for this long is closed.
    pub idle: Duration,
    /// A session is closed after this long.
    pub longest: Duration,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// Completes with a reason when a session must end from outside its pipe: `closed` (the API's
/// close) gives one, the longest a session may last passes, or the server stops.
async fn closing(app: &Relay, closed: impl std::future::Future<Output = Option<String>>) -> String {
    let mut shutdown = app.shutdown.clone();
    tokio::select! {
        Some(reason) = closed => reason,
        () = tokio::time::sleep(app.longest) => {
            format!("open for the longest a session may be ({} min)", app.longest.as_secs() / 60)
        }
        _ = shutdown.wait_for(|stopping| *stopping) => "the server is shutting down".to_owned(),
    }
}

/// How a session ended, for its watchers: the reason and exit code once known.
type Ended = Option<(String, Option<i32>)>;

/// Sessions relayed by this node, by session id.
#[derive(Default)]
pub struct LiveSessions {
    map: Mutex<HashMap<String, Live>>,
    tunnels: Mutex<HashMap<String, Arc<tunnel::Tunnel>>>,
    /// Tunnel sessions serving a device's web page, with their browser's cookie.
    pub web: web::Passes,
}

struct Live {
    tenant_id: String,
    /// A terminal's output, for its watchers; tunnels and screens have none to watch.
    output: Option<broadcast::Sender<Bytes>>,
    close: mpsc::Sender<String>,
    ended: watch::Receiver<Ended>,
}

/// What a watcher follows.
pub(crate) struct Watch {
    pub output: broadcast::Receiver<Bytes>,
    pub ended: watch::Receiver<Ended>,
}

impl LiveSessions {
    fn insert(&self, session_id: &str, live: Live) {
        self.lock().insert(session_id.to_owned(), live);
    }

    fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    fn watch(&self, tenant_id: &str, session_id: &str) -> Option<Watch> {
        let map = self.lock();
        let live = map.get(session_id).filter(|l| l.tenant_id == tenant_id)?;
        Some(Watch { output: live.output.as_ref()?.subscribe(), ended: live.ended.clone() })
    }

    /// Asks a session relayed here to close; `None` when it is not relayed on this node. The
    /// receiver reports once the session has ended and its end is stored.
    pub fn close(&self, tenant_id: &str, session_id: &str, reason: String) -> Option<watch::Receiver<Ended>> {
        let map = self.lock();
        let live = map.get(session_id).filter(|l| l.tenant_id == tenant_id)?;
        let _ = live.close.try_send(reason);
        Some(live.ended.clone())
    }

    fn insert_tunnel(&self, tunnel: Arc<tunnel::Tunnel>) {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner()).insert(tunnel.session_id.clone(), tunnel);
    }

    fn remove_tunnel(&self, session_id: &str) {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
    }

    /// The tenant's tunnel session `session_id`, if it is open on this node.
    pub fn tunnel(&self, tenant_id: &str, session_id: &str) -> Option<Arc<tunnel::Tunnel>> {
        let tunnels = self.tunnels.lock().unwrap_or_else(|p| p.into_inner());
        tunnels.get(session_id).filter(|t| t.tenant_id == tenant_id).cloned()
    }

    /// Sessions relayed on this node now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
