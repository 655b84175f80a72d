//! The integer keys of the series table: a device's and a metric name's, from their dictionary
//! tables (`telemetry_devices`, `telemetry_metrics`). The writer is the only task that adds
//! keys, so it caches them and a stored point costs no lookup. A new key is committed on its
//! own, before the points that use it: a key cached from a transaction that then rolled back
//! could be handed out again for another name.

use std::collections::HashMap;

use sqlx::Row;

use crate::{Error, store::Db};

/// The keys seen so far (a few per device; one per metric name in use).
#[derive(Default)]
pub(super) struct Keys {
    devices: HashMap<String, i64>,
    metrics: HashMap<String, i64>,
}

impl Keys {
    /// The key of a device's series, added if it has none yet.
    pub(super) async fn device(&mut self, db: &Db, device_id: &str) -> Result<i64, Error> {
        self.key(db, Dictionary::Devices, device_id).await
    }

    /// The key of a metric name, added if it has none yet.
    pub(super) async fn metric(&mut self, db: &Db, name: &str) -> Result<i64, Error> {
        self.key(db, Dictionary::Metrics, name).await
    }

    async fn key(&mut self, db: &Db, dictionary: Dictionary, name: &str) -> Result<i64, Error> {
        let cache = match dictionary {
            Dictionary::Devices => &mut self.devices,
            Dictionary::Metrics => &mut self.metrics,
        };
        if let Some(key) = cache.get(name) {
            return Ok(*key);
        }
        let key = key_of(db, dictionary, name).await?;
        cache.insert(name.to_owned(), key);
        Ok(key)
    }
}

#[derive(Clone, Copy)]
enum Dictionary {
    Devices,
    Metrics,
}

/// Adds `name` to the dictionary unless present (another server of a PostgreSQL cluster may
/// add it at the same moment: the conflict is harmless) and reads its key.
async fn key_of(db: &Db, dictionary: Dictionary, name: &str) -> Result<i64, Error> {
    let (insert, select) = match dictionary {
        Dictionary::Devices => (
            "INSERT INTO telemetry_devices (device_id) VALUES ($1) ON CONFLICT (device_id) DO NOTHING",
            "SELECT id FROM telemetry_devices WHERE device_id = $1",
        ),
        Dictionary::Metrics => (
            "INSERT INTO telemetry_metrics (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            "SELECT id FROM telemetry_metrics WHERE name = $1",
        ),
    };
    sqlx::query(insert).bind(name).execute(db.writer()).await?;
    Ok(sqlx::query(select).bind(name).fetch_one(db.writer()).await?.try_get("id")?)
}
