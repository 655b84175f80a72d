//! The telemetry writer: one task that stores batches from all devices together, many rows per
//! statement and many batches per transaction, and acknowledges each batch only after its
//! transaction committed — so an acknowledged sample is durable, and a fleet's small batches
//! cost a few large writes instead of many small ones.

use std::collections::HashMap;

use baton_proto::{agent::Sample, api::telemetry::TelemetryEvent};
use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Error,
    access::TenantScope,
    bus::{Message, SharedBus},
    store::{Db, from_ms, now_ms},
};

use super::{
    bulk,
    keys::Keys,
    latest::{Latest, Names},
};

/// Points gathered into one transaction before it is committed.
const POINTS_PER_TRANSACTION: usize = 20_000;
/// Below this many points, the writer lets ready sessions add theirs before writing.
const SMALL_TRANSACTION: usize = 1_000;
/// Batches waiting for the writer before devices are slowed down (back-pressure).
const QUEUE: usize = 4_096;

struct Job {
    scope: TenantScope,
    device_id: String,
    /// The agent's batch number; a batch at or below the stored one is a resend. MQTT devices
    /// have none: a QoS 1 redelivery is stored once because its points' keys (device, metric,
    /// time) are stored already.
    seq: Option<u64>,
    samples: Vec<Sample>,
    done: oneshot::Sender<Result<(), String>>,
}

impl Job {
    fn points(&self) -> usize {
        self.samples.iter().map(|s| s.metrics.len()).sum()
    }
}

/// The handle sessions use to store batches.
#[derive(Clone)]
pub struct TelemetryWriter {
    tx: mpsc::Sender<Job>,
}

impl TelemetryWriter {
    /// Starts the writer task.
    pub fn spawn(db: Db, bus: SharedBus) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, bus, rx));
        Self { tx }
    }

    /// Stores a checked batch; returns once it is committed (or found to be stored already).
    pub async fn store(
        &self,
        scope: &TenantScope,
        device_id: &str,
        seq: Option<u64>,
        samples: Vec<Sample>,
    ) -> Result<(), Error> {
        let (done, stored) = oneshot::channel();
        let job = Job { scope: scope.clone(), device_id: device_id.to_owned(), seq, samples, done };
        self.tx.send(job).await.map_err(|_| anyhow::anyhow!("the telemetry writer stopped"))?;
        stored
            .await
            .map_err(|_| anyhow::anyhow!("the telemetry writer stopped"))?
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))
    }
}

/// The newest values of each device, as stored: kept here so a batch costs one UPDATE of its
/// device instead of a read and a write. Only this task writes them.
#[derive(Default)]
struct LatestCache {
    devices: HashMap<String, Latest>,
    names: Names,
}

async fn run(db: Db, bus: SharedBus, mut rx: mpsc::Receiver<Job>) {
    let mut cache = LatestCache::default();
    let mut keys = Keys::default();
    while let Some(first) = rx.recv().await {
        let jobs = gather(&mut rx, first).await;
        let points = jobs.iter().map(Job::points).sum::<usize>();
        let outcome = write(&db, &mut cache, &mut keys, &jobs).await;
        match &outcome {
            Ok(stored) => {
                metrics::counter!("baton_telemetry_points_stored_total").increment(*stored);
                metrics::counter!("baton_telemetry_points_duplicate_total")
                    .increment((points as u64).saturating_sub(*stored));
            }
            Err(e) => tracing::error!(error = %e, batches = jobs.len(), "storing telemetry failed"),
        }
        for job in jobs {
            if outcome.is_ok()
                && let Some(last) = job.samples.iter().max_by_key(|s| s.ts)
            {
                let event = TelemetryEvent {
                    device_id: job.device_id.clone(),
                    ts: from_ms(last.ts),
                    metrics: last.metrics.clone(),
                };
                bus.publish(Message::Telemetry { tenant: job.scope.id().to_owned(), event });
            }
            let _ = job.done.send(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
        }
    }
}

/// One transaction's batches: whatever is waiting, up to [`POINTS_PER_TRANSACTION`]. The batch
/// grows by itself under load (what arrives while a commit is synced waits for the next one);
/// a small one lets the sessions that are ready run once before it is written, so a burst is
/// not split into a commit per message.
async fn gather(rx: &mut mpsc::Receiver<Job>, first: Job) -> Vec<Job> {
    let mut points = first.points();
    let mut jobs = vec![first];
    let mut yielded = false;
    while points < POINTS_PER_TRANSACTION {
        match rx.try_recv() {
            Ok(job) => {
                points += job.points();
                jobs.push(job);
            }
            Err(_) if !yielded && points < SMALL_TRANSACTION => {
                yielded = true;
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    jobs
}

/// Stores the batches in one transaction; returns how many points were new (a point already
/// stored with the same device, metric and time is not stored again).
async fn write(db: &Db, cache: &mut LatestCache, keys: &mut Keys, jobs: &[Job]) -> Result<u64, Error> {
    // Keys first: adding one commits on its own (see `keys`).
    let mut rows = Vec::with_capacity(jobs.len());
    for job in jobs {
        let device = keys.device(db, &job.device_id).await?;
        let mut points = Vec::with_capacity(job.points());
        for sample in &job.samples {
            for (metric, value) in &sample.metrics {
                points.push((device, keys.metric(db, metric).await?, sample.ts, *value));
            }
        }
        rows.push(points);
    }
    let mut tx = db.writer().begin().await?;
    let mut fresh = Vec::with_capacity(jobs.len());
    // The latest values as this transaction leaves them, so several batches of one device in one
    // transaction build on each other; committed into the cache at the end.
    let mut staged: HashMap<String, Latest> = HashMap::new();
    // Devices whose latest values still need writing: those whose batches carry no number
    // (MQTT), written together at the end, however many batches each sent.
    let mut unwritten = std::collections::BTreeSet::new();
    for (job, points) in jobs.iter().zip(rows) {
        let latest = match staged.get(&job.device_id).or_else(|| cache.devices.get(&job.device_id)) {
            Some(known) => known.merged(&job.samples, &mut cache.names),
            None => {
                stored_latest(&mut tx, &job.device_id, &mut cache.names).await?.merged(&job.samples, &mut cache.names)
            }
        };
        let at = latest.at;
        match job.seq {
            Some(seq) => {
                // The numbering check (a resent batch changes nothing) and the latest values in
                // one statement.
                let newer = sqlx::query(
                    "UPDATE devices SET telemetry_seq = $1, latest_telemetry = $2, latest_at = $3, last_seen_at = $4 \
                     WHERE id = $5 AND (telemetry_seq IS NULL OR telemetry_seq < $1)",
                )
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(serde_json::to_string(&latest).map_err(anyhow::Error::from)?)
                .bind((at > 0).then_some(at))
                .bind(now_ms())
                .bind(&job.device_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if newer > 0 {
                    fresh.extend(points);
                    staged.insert(job.device_id.clone(), latest);
                }
            }
            None => {
                fresh.extend(points);
                staged.insert(job.device_id.clone(), latest);
                unwritten.insert(job.device_id.as_str());
            }
        }
    }
    let mut latest = Vec::with_capacity(unwritten.len());
    for device_id in unwritten {
        let Some(values) = staged.get(device_id) else { continue };
        let at = values.at;
        latest.push((device_id, serde_json::to_string(values).map_err(anyhow::Error::from)?, (at > 0).then_some(at)));
    }
    bulk::update_latest(&mut tx, db.backend(), &latest, now_ms()).await?;
    let stored = bulk::insert(&mut tx, db.backend(), &fresh).await?;
    tx.commit().await?;
    // Only what was committed enters the cache.
    cache.devices.extend(staged);
    Ok(stored)
}

/// A device's latest values as stored (for a device not in the cache yet).
async fn stored_latest(tx: &mut Transaction<'_, Any>, device_id: &str, names: &mut Names) -> Result<Latest, Error> {
    let row = sqlx::query("SELECT latest_telemetry, latest_at FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => Latest::stored(
            row.try_get::<Option<i64>, _>("latest_at")?.unwrap_or(0),
            row.try_get::<Option<String>, _>("latest_telemetry")?
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            names,
        ),
        None => Latest::default(),
    })
}
