//! Back-pressure for device setups: enrolling, and an agent connection's first steps (checking
//! its credentials, recording it online). A fleet that starts at once asks for ten thousand of
//! these in a second; served all together, every one of them waits on the database pools for
//! seconds. A few at a time go through; the others wait briefly for a place and are then told
//! to come back (`429` with `Retry-After`, which the agent honours), so those let in are served
//! quickly and the database's queues stay short.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Setups served at once: enough to keep the reader pool and the single writer busy, few
/// enough that none of them waits long for a connection.
const AT_ONCE: usize = 256;
/// How long a setup waits for a place before it is told to come back. Long enough that a storm
/// is served in turn rather than sent away (the agent's retries add their own backoff), short
/// enough that a client is not left hanging.
const PATIENCE: Duration = Duration::from_secs(5);
/// What the refused are told, in seconds (the agent adds its own jitter).
pub const RETRY_AFTER_SECS: u64 = 1;

/// The places for setups in progress, shared by every listener (a clone is the same places).
#[derive(Clone)]
pub struct SetupLimit {
    places: Arc<Semaphore>,
}

/// A setup's place, given back when dropped.
pub struct SetupPlace {
    _permit: OwnedSemaphorePermit,
}

/// On a request whose connection waited for its setup's place before the request reached the
/// router (`app::front`): the handler takes that place instead of waiting again.
#[derive(Clone)]
pub struct WaitedPlace(Arc<Mutex<Option<SetupPlace>>>);

impl WaitedPlace {
    pub fn new(place: SetupPlace) -> Self {
        Self(Arc::new(Mutex::new(Some(place))))
    }
}

impl Default for SetupLimit {
    fn default() -> Self {
        Self { places: Arc::new(Semaphore::new(AT_ONCE)) }
    }
}

impl SetupLimit {
    /// The place the request `waited` for, else a place as [`enter`](Self::enter) gives one.
    pub async fn enter_unless_waited(&self, waited: Option<&WaitedPlace>) -> Option<SetupPlace> {
        let taken = waited.and_then(|w| w.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        match taken {
            Some(place) => Some(place),
            None => self.enter().await,
        }
    }

    /// A place, or `None` when none came free in time (answer with [`RETRY_AFTER_SECS`]).
    pub async fn enter(&self) -> Option<SetupPlace> {
        match tokio::time::timeout(PATIENCE, self.places.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(SetupPlace { _permit: permit }),
            _ => {
                metrics::counter!("baton_device_setups_deferred_total").increment(1);
                None
            }
        }
    }
}
