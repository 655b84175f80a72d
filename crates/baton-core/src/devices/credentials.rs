//! Device credentials: a random 256-bit secret per device, stored as SHA-256 (checking it on
//! every reconnect of a large fleet must be cheap; argon2 would not be). A secret comes from
//! enrollment (`enrollment::enroll`) or, for devices that never run the agent (MQTT), from an
//! operator through the API ([`issue`]).

use sqlx::Row;

use crate::{
    Error,
    access::{TenantScope, secrets},
    bus::{Message, SharedBus},
    events,
    store::{Db, is_id, now_ms},
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

/// Issues a new secret for a device and returns it: the only time it is seen. Connections
/// with the old secret close. The device counts as enrolled from now on; a pending device stays
/// pending (the secret opens nothing until it is approved). A decommissioned device is refused:
/// its identity is retired for good.
pub async fn issue(db: &Db, bus: &SharedBus, scope: &TenantScope, device_id: &str) -> Result<String, Error> {
    let not_found = || Error::NotFound(format!("device {device_id}"));
    if !is_id(device_id) {
        return Err(not_found());
    }
    let secret = secrets::generate(SECRET_PREFIX);
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    let status: String = sqlx::query("SELECT status FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(not_found)?
        .try_get("status")?;
    if status == DeviceStatus::Decommissioned.as_str() {
        return Err(Error::Conflict(format!(
            "device {device_id} is decommissioned and gets no new credentials; delete it and create it again"
        )));
    }
    sqlx::query(
        "UPDATE devices SET credential_hash = $1, enrolled_at = COALESCE(enrolled_at, $2), updated_at = $2 \
         WHERE tenant_id = $3 AND id = $4",
    )
    .bind(secrets::hash_token(&secret))
    .bind(now)
    .bind(scope.id())
    .bind(device_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    bus.publish(Message::CredentialsChanged { tenant: scope.id().to_owned(), device_id: device_id.to_owned() });
    let data = serde_json::json!({ "status": status });
    events::record(db, bus, scope, Some(device_id), events::kind::CREDENTIALS, data).await;
    Ok(secret)
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
    identity_from_row(&row, device_id).map(Some)
}

/// A device's identity from a row with `tenant_id`, `status`, `wipe_requested` and
/// `telemetry_interval_secs` (shared with certificate authentication).
pub(crate) fn identity_from_row(row: &sqlx::any::AnyRow, device_id: &str) -> Result<DeviceIdentity, Error> {
    let status: String = row.try_get("status")?;
    Ok(DeviceIdentity {
        scope: TenantScope::internal(row.try_get::<String, _>("tenant_id")?),
        device_id: device_id.to_owned(),
        status: DeviceStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("stored device status `{status}`"))?,
        wipe_requested: row.try_get::<i64, _>("wipe_requested")? != 0,
        telemetry_interval_secs: row
            .try_get::<Option<i64>, _>("telemetry_interval_secs")?
            .and_then(|s| u32::try_from(s).ok()),
    })
}

/// The device whose secret this is (MQTT logins in ThingsBoard's style send only the secret, as
/// the user name). `None` when no device has it.
pub async fn authenticate_secret(db: &Db, secret: &str) -> Result<Option<DeviceIdentity>, Error> {
    if secret.len() > 256 || !secret.starts_with(SECRET_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id FROM devices WHERE credential_hash = $1")
        .bind(secrets::hash_token(secret))
        .fetch_optional(db.reader())
        .await?;
    match row {
        Some(row) => authenticate(db, &row.try_get::<String, _>("id")?, secret).await,
        None => Ok(None),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
