//! Embedded, append-only migrations: each engine's folder is compiled into the binary and applied
//! in order at start. An applied migration whose text has since changed stops the start, because
//! editing history would leave existing databases different from new ones.

use sha2::{Digest, Sha256};
use sqlx::{Executor, Row};

use super::{Backend, Db};
use crate::Error;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

const SQLITE: &[Migration] = migrations!("sqlite": 1 "0001_foundation", 2 "0002_search_keys", 3 "0003_device_lifecycle", 4 "0004_telemetry_epoch", 5 "0005_mqtt", 6 "0006_telemetry_covering", 7 "0007_artifacts", 8 "0008_rollouts", 9 "0009_maintenance_windows", 10 "0010_rollout_rules", 11 "0011_key_endorsements", 12 "0012_device_certificates", 13 "0013_remote_sessions", 14 "0014_support_bundles", 15 "0015_tunnels_and_screens", 16 "0016_artifact_serving", 17 "0017_telemetry_series");
const POSTGRES: &[Migration] = migrations!("postgres": 1 "0001_foundation", 2 "0002_search_keys", 3 "0003_device_lifecycle", 4 "0004_telemetry_epoch", 5 "0005_mqtt", 6 "0006_telemetry_covering", 7 "0007_artifacts", 8 "0008_rollouts", 9 "0009_maintenance_windows", 10 "0010_rollout_rules", 11 "0011_key_endorsements", 12 "0012_device_certificates", 13 "0013_remote_sessions", 14 "0014_support_bundles", 15 "0015_tunnels_and_screens", 16 "0016_artifact_serving", 17 "0017_telemetry_series");

pub(super) async fn run(db: &Db) -> Result<(), Error> {
    let migrations = match db.backend() {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let pool = db.writer();
    pool.execute(
        "CREATE TABLE IF NOT EXISTS baton_migrations (version BIGINT PRIMARY KEY, \
         name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied = sqlx::query("SELECT version, name, checksum FROM baton_migrations").fetch_all(pool).await?;
    for m in migrations {
        let checksum = hex(&Sha256::digest(m.sql.as_bytes()));
        let done = applied.iter().find(|r| r.try_get::<i64, _>("version").ok() == Some(m.version));
        if let Some(row) = done {
            let stored: String = row.try_get("checksum")?;
            if stored != checksum {
                return Err(Error::Config(format!(
                    "migration {} ({}) was changed after it was applied; migrations are append-only",
                    m.version, m.name
                )));
            }
            continue;
        }
        let mut tx = pool.begin().await?;
        tx.execute(m.sql).await?;
        sqlx::query("INSERT INTO baton_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(m.version)
            .bind(m.name)
            .bind(checksum)
            .bind(super::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
