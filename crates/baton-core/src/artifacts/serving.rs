//! How fast this server serves artifact bytes when many devices download at once: measured from
//! real downloads and kept in the database (`artifact_serving`), so a rollout's estimate can say
//! when the server, not the devices' links, is what a large rollout waits for.
//!
//! Every download the server streams is counted by a [`ServingMeter`]. Each [`WINDOW`] in which
//! at least [`BUSY`] downloads ran from start to end is a measure of the aggregate rate; the best
//! such measure is kept (a busy window can be limited by the devices' links, never sped up beyond
//! the server, so the highest is the closest to what the server can do). A measure older than
//! [`STALE_DAYS`] gives way to the next one, so a slower machine or a new setup shows up. Until
//! there is one, estimates use [`DEFAULT_BYTES_PER_SEC`], to be checked with `baton bench ota`.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::Stream;
use sqlx::Row;

use super::store::ByteStream;
use crate::{
    Error,
    store::{Db, now_ms},
};

/// The aggregate rate assumed until one is measured, calibrated on the reference machine (2
/// cores, 1,000 downloads at once from the page cache, sent with `sendfile`): `baton bench ota`
/// measured 3.1–3.3 GB/s there (BENCHMARKS.md); a little under it, so a first estimate errs
/// long, not short.
pub const DEFAULT_BYTES_PER_SEC: u64 = 3_000_000_000;
/// The span of one measure.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Downloads that must run through a window for it to measure the server rather than a few links.
pub const BUSY: usize = 16;
/// Age after which a measure is replaced by the next, whatever it says.
pub const STALE_DAYS: i64 = 30;

/// Counts the bytes of every download this server streams; see the module's doc.
pub struct ServingMeter {
    db: Db,
    bytes: AtomicU64,
    active: AtomicUsize,
    window: Mutex<Window>,
}

/// The window being measured.
struct Window {
    started: Instant,
    bytes_at_start: u64,
    /// Downloads that started after the window did (they did not run through it).
    joined: usize,
    active_at_start: usize,
}

impl ServingMeter {
    pub fn new(db: Db) -> Arc<Self> {
        let window = Window { started: Instant::now(), bytes_at_start: 0, joined: 0, active_at_start: 0 };
        Arc::new(ServingMeter { db, bytes: AtomicU64::new(0), active: AtomicUsize::new(0), window: Mutex::new(window) })
    }

    /// `stream`, counted while it is served.
    pub fn count(self: &Arc<Self>, stream: ByteStream) -> ByteStream {
        Box::pin(Counted { stream, serving: self.begin() })
    }

    /// One download begins: count its bytes with [`Serving::sent`]; it ends when that is dropped.
    /// (For bytes the kernel sends from the file itself, with no stream to count them in.)
    pub fn begin(self: &Arc<Self>) -> Serving {
        self.active.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = self.window.lock() {
            w.joined += 1;
        }
        Serving { meter: self.clone() }
    }

    /// Closes the window once it is [`WINDOW`] long, and keeps its rate if it was busy.
    fn tick(&self) {
        let Ok(mut w) = self.window.try_lock() else { return };
        let elapsed = w.started.elapsed();
        if elapsed < WINDOW {
            return;
        }
        let (bytes, active) = (self.bytes.load(Ordering::Relaxed), self.active.load(Ordering::Relaxed));
        // Downloads present at the start that are still running ran through the whole window.
        let through = w.active_at_start.min(active.saturating_sub(w.joined));
        let rate = ((bytes - w.bytes_at_start) as f64 / elapsed.as_secs_f64()) as u64;
        *w = Window { started: Instant::now(), bytes_at_start: bytes, joined: 0, active_at_start: active };
        drop(w);
        if through >= BUSY {
            let db = self.db.clone();
            tokio::spawn(async move {
                if let Err(e) = keep(&db, rate, through).await {
                    tracing::warn!(error = %e, "cannot keep the measured artifact serving rate");
                }
            });
        }
    }
}

/// One download being served, counted by its meter until dropped.
pub struct Serving {
    meter: Arc<ServingMeter>,
}

impl Serving {
    /// `n` more bytes of this download went out.
    pub fn sent(&self, n: u64) {
        self.meter.bytes.fetch_add(n, Ordering::Relaxed);
        self.meter.tick();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.meter.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A download's stream, counting its bytes into the meter.
struct Counted {
    stream: ByteStream,
    serving: Serving,
}

impl Stream for Counted {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.stream.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.serving.sent(chunk.len() as u64);
        }
        next
    }
}

/// Keeps `rate` if it beats the kept one, or that one is stale.
async fn keep(db: &Db, rate: u64, downloads: usize) -> Result<(), Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO artifact_serving (id, bytes_per_sec, downloads, measured_at) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET bytes_per_sec = excluded.bytes_per_sec, downloads = excluded.downloads, \
         measured_at = excluded.measured_at \
         WHERE excluded.bytes_per_sec > artifact_serving.bytes_per_sec OR artifact_serving.measured_at < $4",
    )
    .bind(i64::try_from(rate).unwrap_or(i64::MAX))
    .bind(i64::try_from(downloads).unwrap_or(i64::MAX))
    .bind(now)
    .bind(now - STALE_DAYS * 24 * 3600 * 1000)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// The kept measure, bytes per second, unless it is stale.
pub async fn measured(db: &Db) -> Result<Option<u64>, Error> {
    let row = sqlx::query("SELECT bytes_per_sec FROM artifact_serving WHERE id = 1 AND measured_at >= $1")
        .bind(now_ms() - STALE_DAYS * 24 * 3600 * 1000)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("bytes_per_sec")).transpose()?.and_then(|v| u64::try_from(v).ok()))
}
