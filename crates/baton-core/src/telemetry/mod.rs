//! Telemetry: samples from devices, checked, stored in batches by the [`writer`], queried as
//! bucketed time series, kept as latest values on the device, streamed live over the bus, and
//! pruned after the retention period.

mod bulk;
mod keys;
mod latest;
pub mod writer;

use std::collections::BTreeMap;

use baton_proto::{
    agent::Sample,
    api::telemetry::{Aggregate, Latest, Point, Series, TelemetryQuery},
};
use futures::TryStreamExt;
use sqlx::Row;

use crate::{
    Error,
    access::TenantScope,
    store::{Db, from_ms, now_ms},
};

/// Most samples in one batch, and values in one batch altogether.
pub const MAX_SAMPLES: usize = 1_000;
pub const MAX_POINTS: usize = 20_000;
/// Longest metric name, in bytes.
pub const MAX_NAME: usize = 128;
/// Most buckets one query may return.
pub const MAX_BUCKETS: i64 = 10_000;

/// Keeps the believable part of a batch from outside: samples at plausible times, metrics with
/// valid names and finite values. Returns how many values were dropped. A batch too large to
/// be a batch is an error (the connection closes); a batch with some bad values is not, so one
/// bad sensor never stalls a device's telemetry.
pub fn sanitize(samples: &mut Vec<Sample>) -> Result<usize, String> {
    if samples.len() > MAX_SAMPLES {
        return Err(format!("a batch holds at most {MAX_SAMPLES} samples"));
    }
    let points: usize = samples.iter().map(|s| s.metrics.len()).sum();
    if points > MAX_POINTS {
        return Err(format!("a batch holds at most {MAX_POINTS} values"));
    }
    let now = now_ms();
    let mut dropped = 0;
    samples.retain_mut(|s| {
        // Devices with bad clocks exist; a year back or a day ahead is still believable.
        if s.ts < now - 366 * 86_400_000 || s.ts > now + 86_400_000 {
            dropped += s.metrics.len();
            return false;
        }
        let before = s.metrics.len();
        s.metrics.retain(|name, value| validate_name(name).is_ok() && value.is_finite());
        dropped += before - s.metrics.len();
        !s.metrics.is_empty()
    });
    Ok(dropped)
}

pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!("metric names are 1 to {MAX_NAME} bytes without control characters"));
    }
    Ok(())
}

/// A metric of a device as a bucketed series.
pub async fn series(db: &Db, scope: &TenantScope, device_id: &str, q: &TelemetryQuery) -> Result<Series, Error> {
    crate::devices::get(db, scope, device_id).await?;
    validate_name(&q.metric).map_err(|m| Error::invalid("metric", m))?;
    let to = q.to.map_or_else(now_ms, |t| t.timestamp_millis());
    let from = q.from.map_or(to - 3_600_000, |t| t.timestamp_millis());
    let bucket_secs = q.bucket_secs.unwrap_or(60);
    if bucket_secs == 0 {
        return Err(Error::invalid("bucket_secs", "must be at least 1"));
    }
    let bucket = i64::from(bucket_secs) * 1000;
    if from >= to {
        return Err(Error::invalid("from", "must be before `to`"));
    }
    if (to - from) / bucket > MAX_BUCKETS {
        return Err(Error::invalid(
            "bucket_secs",
            format!("the range holds more than {MAX_BUCKETS} buckets; widen the buckets"),
        ));
    }
    let agg = q.agg.unwrap_or_default();
    let points = if agg == Aggregate::Last {
        last_per_bucket(db, device_id, &q.metric, from, to, bucket).await?
    } else {
        aggregated(db, device_id, &q.metric, agg, (from, to, bucket)).await?
    };
    Ok(Series { metric: q.metric.clone(), agg, bucket_secs, points })
}

/// The condition that picks one series by device id (`$1`) and metric name (`$2`): the keys
/// are looked up once, then the rows are one range of the table's primary key.
const SERIES: &str = "device = (SELECT id FROM telemetry_devices WHERE device_id = $1) \
     AND metric = (SELECT id FROM telemetry_metrics WHERE name = $2)";

/// Averages, minima or maxima per bucket, computed by the database from the index alone.
async fn aggregated(
    db: &Db,
    device_id: &str,
    metric: &str,
    agg: Aggregate,
    (from, to, bucket): (i64, i64, i64),
) -> Result<Vec<Point>, Error> {
    let function = match agg {
        Aggregate::Avg => "AVG",
        Aggregate::Min => "MIN",
        Aggregate::Max => "MAX",
        Aggregate::Last => unreachable!("`last` is bucketed in Rust"),
    };
    let sql = format!(
        "SELECT (ts - $3) / $5 AS bucket, {function}(value) AS value, COUNT(*) AS n FROM telemetry \
         WHERE {SERIES} AND ts >= $3 AND ts < $4 GROUP BY bucket ORDER BY bucket"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(device_id)
        .bind(metric)
        .bind(from)
        .bind(to)
        .bind(bucket)
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            let index: i64 = row.try_get("bucket")?;
            let count: i64 = row.try_get("n")?;
            Ok(Point {
                ts: from_ms(from + index * bucket),
                value: row.try_get("value")?,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .collect()
}

/// The newest sample of each bucket: no portable SQL form, so the rows stream through here in
/// time order, keeping one entry per bucket in memory.
async fn last_per_bucket(
    db: &Db,
    device_id: &str,
    metric: &str,
    from: i64,
    to: i64,
    bucket: i64,
) -> Result<Vec<Point>, Error> {
    let sql = format!("SELECT ts, value FROM telemetry WHERE {SERIES} AND ts >= $3 AND ts < $4 ORDER BY ts");
    let mut rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(device_id).bind(metric).bind(from).bind(to).fetch(db.reader());
    let mut buckets: BTreeMap<i64, (f64, u64)> = BTreeMap::new();
    while let Some(row) = rows.try_next().await? {
        let ts: i64 = row.try_get("ts")?;
        let start = from + (ts - from) / bucket * bucket;
        let entry = buckets.entry(start).or_insert((0.0, 0));
        *entry = (row.try_get("value")?, entry.1 + 1);
    }
    Ok(buckets.into_iter().map(|(ts, (value, count))| Point { ts: from_ms(ts), value, count }).collect())
}

/// The newest value of every metric of a device.
pub async fn latest(db: &Db, scope: &TenantScope, device_id: &str) -> Result<Latest, Error> {
    crate::devices::get(db, scope, device_id).await?;
    let row = sqlx::query("SELECT latest_telemetry, latest_at FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(device_id)
        .fetch_one(db.reader())
        .await?;
    let json: Option<String> = row.try_get("latest_telemetry")?;
    Ok(Latest {
        device_id: device_id.to_owned(),
        at: row.try_get::<Option<i64>, _>("latest_at")?.map(from_ms),
        metrics: json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
    })
}

/// Deletes samples older than `retention_days`; returns how many. The table has no index by
/// time alone (it would cost every stored point a second write); naming every device and metric
/// key lets the database seek to the old end of each series instead of visiting every row.
pub async fn prune(db: &Db, retention_days: u32) -> Result<u64, Error> {
    let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
    Ok(sqlx::query(
        "DELETE FROM telemetry WHERE device IN (SELECT id FROM telemetry_devices) \
         AND metric IN (SELECT id FROM telemetry_metrics) AND ts < $1",
    )
    .bind(cutoff)
    .execute(db.writer())
    .await?
    .rows_affected())
}
