//! How long a query waits for a connection, measured the only way the pools allow: a probe
//! takes a connection from each pool a few times a second and records how long that took, as
//! any statement arriving at that moment would have waited. `baton_db_pool_wait_seconds{pool}`
//! is the distribution; `baton_db_pool_waits_over_1s_total{pool}` counts the waits the fleet
//! benchmark holds to zero (the sampled ones: a wait between two probes is not seen).

use std::time::{Duration, Instant};

use sqlx::AnyPool;

use super::Db;

/// Time between two probes of one pool.
const EVERY: Duration = Duration::from_millis(100);

/// Probes the reader and the writer pool until the pools close.
pub fn spawn_probe(db: &Db) {
    tokio::spawn(probe(db.writer().clone(), "writer"));
    if db.backend() == super::Backend::Sqlite {
        tokio::spawn(probe(db.reader().clone(), "reader"));
    }
}

async fn probe(pool: AnyPool, name: &'static str) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        ticker.tick().await;
        let started = Instant::now();
        // Held for no time at all: returned to the pool when dropped.
        if pool.acquire().await.is_err() {
            continue;
        }
        let waited = started.elapsed();
        metrics::histogram!("baton_db_pool_wait_seconds", "pool" => name).record(waited.as_secs_f64());
        if waited > Duration::from_secs(1) {
            metrics::counter!("baton_db_pool_waits_over_1s_total", "pool" => name).increment(1);
        }
    }
}
