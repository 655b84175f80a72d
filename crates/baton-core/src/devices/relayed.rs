//! Sub-devices: sensors and controllers without a connection of their own, announced by a
//! gateway (by name, as ThingsBoard's gateway API does) that relays their data and commands.
//! A sub-device is a device like any other — registry, groups, labels, telemetry, commands —
//! with `gateway_id` naming its gateway. Its name is its serial, unique in the tenant.

use sqlx::Row;

use super::{DeviceStatus, insert_enrolled};
use crate::{
    Error,
    access::TenantScope,
    store::{Db, now_ms},
};

/// A sub-device as its gateway's session knows it.
#[derive(Debug, Clone)]
pub struct SubDevice {
    pub id: String,
    pub name: String,
}

/// Finds or creates the sub-device `name` of a gateway. A device of the same name that has
/// credentials of its own, or is decommissioned, is not taken over; one that another gateway
/// relayed moves to this gateway (a sensor moved between gateways).
pub async fn announce(db: &Db, scope: &TenantScope, gateway_id: &str, name: &str) -> Result<SubDevice, Error> {
    validate_name(name).map_err(|m| Error::invalid("/device", m))?;
    let mut tx = db.writer().begin().await?;
    let row =
        sqlx::query("SELECT id, status, gateway_id, credential_hash FROM devices WHERE tenant_id = $1 AND serial = $2")
            .bind(scope.id())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let id = match row {
        Some(row) => {
            let id: String = row.try_get("id")?;
            let status = DeviceStatus::parse(&row.try_get::<String, _>("status")?);
            if id == gateway_id || row.try_get::<Option<String>, _>("credential_hash")?.is_some() {
                return Err(Error::Conflict(format!("device `{name}` connects by itself; a gateway cannot relay it")));
            }
            if status == Some(DeviceStatus::Decommissioned) {
                return Err(Error::Forbidden(format!("device `{name}` is decommissioned")));
            }
            if row.try_get::<Option<String>, _>("gateway_id")?.as_deref() != Some(gateway_id) {
                sqlx::query("UPDATE devices SET gateway_id = $1, transport = 'mqtt', updated_at = $2 WHERE id = $3")
                    .bind(gateway_id)
                    .bind(now_ms())
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            id
        }
        None => {
            let id = insert_enrolled(&mut tx, scope, name, name, DeviceStatus::Active).await?;
            sqlx::query("UPDATE devices SET gateway_id = $1, transport = 'mqtt', enrolled_at = $2 WHERE id = $3")
                .bind(gateway_id)
                .bind(now_ms())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            id
        }
    };
    tx.commit().await?;
    Ok(SubDevice { id, name: name.to_owned() })
}

/// A sub-device's name as gateways send it. ThingsBoard's device names allow what a serial typed
/// by hand does not ("Sensor A"), so the rule is looser than `validate_serial`: 1 to 64 bytes, no
/// control characters, no surrounding spaces.
fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len()) && !name.chars().any(char::is_control) && name.trim() == name;
    if ok { Ok(()) } else { Err("must be 1 to 64 bytes, without control characters or surrounding spaces".into()) }
}

/// The sub-device with this id, if this gateway relays it and it is not decommissioned.
pub async fn relayed_by(db: &Db, scope: &TenantScope, gateway_id: &str, id: &str) -> Result<Option<SubDevice>, Error> {
    let row = sqlx::query(
        "SELECT serial FROM devices WHERE tenant_id = $1 AND id = $2 AND gateway_id = $3 AND status <> 'decommissioned'",
    )
    .bind(scope.id())
    .bind(id)
    .bind(gateway_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(match row {
        Some(row) => Some(SubDevice {
            id: id.to_owned(),
            name: row.try_get::<Option<String>, _>("serial")?.unwrap_or_else(|| id.to_owned()),
        }),
        None => None,
    })
}
