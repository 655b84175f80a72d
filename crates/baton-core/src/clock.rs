//! The server's idea of now, for what waits on time by rule — rollout bake times, retry backoff,
//! maintenance windows, execution claims' expiry. Production uses the system clock; tests hand
//! the server a [`ManualClock`] and move it, so nothing waits on a real timer.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the system's now.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(crate::store::now_ms())))
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
