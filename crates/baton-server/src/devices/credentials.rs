//! Device credentials: a random 256-bit secret per device, stored as SHA-256 (checking it on
//! every reconnect of a large fleet must be cheap; argon2 would not be).

use sqlx::Row;

use crate::{
    Error,
    access::{TenantScope, secrets},
    store::{Db, is_id},
};
use baton_proto::api::devices::DeviceStatus;

/// Device secrets start with this, so leaked ones are recognisable.
pub const SECRET_PREFIX: &str = "bd_";

/// A device that proved its identity.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub scope: TenantScope,
    pub device_id: String,
    pub status: DeviceStatus,
    pub wipe_requested: bool,
    pub telemetry_interval_secs: Option<u32>,
}

/// The device behind an id and secret, whatever its status (the caller decides what a pending
/// or decommissioned device may do). `None` when the id is unknown or the secret wrong.
pub async fn authenticate(db: &Db, device_id: &str, secret: &str) -> Result<Option<DeviceIdentity>, Error> {
    if !is_id(device_id) || secret.len() > 256 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT d.tenant_id, d.status, d.credential_hash, d.wipe_requested, d.telemetry_interval_secs, n.disabled \
         FROM devices d JOIN tenants n ON n.id = d.tenant_id WHERE d.id = $1",
    )
    .bind(device_id)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let stored: Option<String> = row.try_get("credential_hash")?;
    let matches = stored.is_some_and(|h| constant_time_eq(h.as_bytes(), secrets::hash_token(secret).as_bytes()));
    if !matches || row.try_get::<i64, _>("disabled")? != 0 {
        return Ok(None);
    }
    let status: String = row.try_get("status")?;
    Ok(Some(DeviceIdentity {
        scope: TenantScope::internal(row.try_get::<String, _>("tenant_id")?),
        device_id: device_id.to_owned(),
        status: DeviceStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("stored device status `{status}`"))?,
        wipe_requested: row.try_get::<i64, _>("wipe_requested")? != 0,
        telemetry_interval_secs: row
            .try_get::<Option<i64>, _>("telemetry_interval_secs")?
            .and_then(|s| u32::try_from(s).ok()),
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
