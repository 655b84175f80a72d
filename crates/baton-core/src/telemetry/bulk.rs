//! One statement stores thousands of points: they travel as a single JSON parameter
//! (`[[device, metric, ts, value], …]`) that the database expands itself (`json_each` on
//! SQLite, `json_array_elements` on PostgreSQL). The statement's text never changes, so it is
//! prepared once per connection; sqlx's `Any` driver then converts one argument instead of four
//! per point, which is where a multi-row `VALUES` insert spends its time (BENCHMARKS.md, "MQTT
//! front door"). A point whose key is stored already is skipped, not an error. The devices'
//! latest values go the same way: one UPDATE for all the devices of a transaction.

use sqlx::{Any, Transaction};

use crate::{Error, store::Backend};

/// A stored point: the device's key, the metric's key, the time (ms) and the value.
pub(super) type Row = (i64, i64, i64, f64);

/// Points per statement: a parameter of ≈ 200 KB.
const ROWS_PER_STATEMENT: usize = 5_000;

const SQLITE: &str = "INSERT INTO telemetry (device, metric, ts, value) \
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1) WHERE true \
    ON CONFLICT DO NOTHING";
const POSTGRES: &str = "INSERT INTO telemetry (device, metric, ts, value) \
    SELECT (p ->> 0)::BIGINT, (p ->> 1)::BIGINT, (p ->> 2)::BIGINT, (p ->> 3)::DOUBLE PRECISION \
    FROM json_array_elements($1::JSON) AS p \
    ON CONFLICT DO NOTHING";

/// Inserts the points; returns how many were new.
pub(super) async fn insert(tx: &mut Transaction<'_, Any>, backend: Backend, rows: &[Row]) -> Result<u64, Error> {
    let sql = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut stored = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        // Finite values only (the writer's input is sanitized), so every number is JSON.
        let json = serde_json::to_string(chunk).map_err(anyhow::Error::from)?;
        stored += sqlx::query(sql).bind(json).execute(&mut **tx).await?.rows_affected();
    }
    Ok(stored)
}

const SQLITE_LATEST: &str = "UPDATE devices SET latest_telemetry = u.value ->> 1, latest_at = u.value ->> 2, \
    last_seen_at = $2 FROM json_each($1) AS u WHERE devices.id = u.value ->> 0";
const POSTGRES_LATEST: &str = "UPDATE devices SET latest_telemetry = u.e ->> 1, latest_at = (u.e ->> 2)::BIGINT, \
    last_seen_at = $2 FROM json_array_elements($1::JSON) AS u(e) WHERE devices.id = u.e ->> 0";

/// Sets the latest values of devices: (device id, the values as JSON text, their time).
pub(super) async fn update_latest(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    latest: &[(&str, String, Option<i64>)],
    seen_at: i64,
) -> Result<(), Error> {
    let sql = match backend {
        Backend::Sqlite => SQLITE_LATEST,
        Backend::Postgres => POSTGRES_LATEST,
    };
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        let json = serde_json::to_string(chunk).map_err(anyhow::Error::from)?;
        sqlx::query(sql).bind(json).bind(seen_at).execute(&mut **tx).await?;
    }
    Ok(())
}
