//! The device registry: every managed device, whatever its OS or how it connects.
//!
//! This module owns the `devices`, `device_labels` tables and a device's side of
//! `group_members`. Listing with filters and cursors lives in [`list`].

pub mod credentials;
pub mod list;
pub mod presence;
pub mod relayed;
pub mod summary;

pub use presence::store_inventory;

use std::collections::BTreeMap;

use baton_proto::{
    api::devices::{Connectivity, Device, DeviceCreate, DeviceStatus, DeviceUpdate},
    labels,
};
use sqlx::{Any, AssertSqlSafe, Row, Transaction, any::AnyRow};

use crate::{
    Error,
    access::TenantScope,
    bus::SharedBus,
    error::Violations,
    events,
    store::{Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

pub(crate) const COLUMNS: &str = "d.id, d.name, d.serial, d.manufacturer, d.model, d.os_family, d.os_version, \
    d.architecture, d.agent_version, d.status, d.online, d.last_seen_at, d.remote_addr, d.transport, d.gateway_id, \
    d.created_at, d.updated_at";

/// Longest device name and free-text attribute.
const MAX_TEXT: usize = 128;

/// Pre-registers a device by serial.
pub async fn create(db: &Db, bus: &SharedBus, scope: &TenantScope, req: DeviceCreate) -> Result<Device, Error> {
    check_create(&req, "")?;
    let mut tx = db.writer().begin().await?;
    let id = insert_created(&mut tx, scope, &req, "").await?;
    tx.commit().await?;
    let data = serde_json::json!({"serial": req.serial});
    events::record(db, bus, scope, Some(&id), events::kind::CREATED, data).await;
    get(db, scope, &id).await
}

/// Pre-registers many devices (a CSV import), all or nothing; errors name the row.
pub async fn import(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    devices: Vec<DeviceCreate>,
) -> Result<Vec<Device>, Error> {
    if devices.is_empty() || devices.len() > MAX_IMPORT {
        return Err(Error::invalid("/devices", format!("import 1 to {MAX_IMPORT} devices at a time")));
    }
    let mut v = Violations::default();
    for (i, req) in devices.iter().enumerate() {
        if let Err(Error::Invalid { errors, .. }) = check_create(req, &format!("/devices/{i}")) {
            errors.into_iter().for_each(|e| v.add(e.field, e.message));
        }
    }
    v.finish()?;
    let mut tx = db.writer().begin().await?;
    let mut ids = Vec::with_capacity(devices.len());
    for (i, req) in devices.iter().enumerate() {
        ids.push(insert_created(&mut tx, scope, req, &format!("/devices/{i}")).await?);
    }
    tx.commit().await?;
    // One event for the import, not one per device: an import may hold thousands.
    let data = serde_json::json!({"imported": ids.len()});
    events::record(db, bus, scope, None, events::kind::IMPORTED, data).await;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(get(db, scope, &id).await?);
    }
    Ok(out)
}

/// Most devices one import may hold.
pub const MAX_IMPORT: usize = 10_000;

fn check_create(req: &DeviceCreate, at: &str) -> Result<(), Error> {
    let mut v = Violations::default();
    v.check(&format!("{at}/serial"), validate_serial(&req.serial));
    let name = req.name.as_deref().unwrap_or(&req.serial).trim();
    v.check(&format!("{at}/name"), validate_text(name, true));
    v.check(&format!("{at}/manufacturer"), req.manufacturer.as_deref().map_or(Ok(()), |t| validate_text(t, false)));
    v.check(&format!("{at}/model"), req.model.as_deref().map_or(Ok(()), |t| validate_text(t, false)));
    for (key, value) in &req.labels {
        v.check(&format!("{at}/labels/{key}"), labels::validate_key(key));
        v.check(&format!("{at}/labels/{key}"), labels::validate_value(value));
    }
    if req.labels.len() > labels::MAX_LABELS {
        v.add(format!("{at}/labels"), format!("at most {} labels", labels::MAX_LABELS));
    }
    for (i, g) in req.groups.iter().enumerate() {
        if !is_id(g) {
            v.add(format!("{at}/groups/{i}"), "is not a group id");
        }
    }
    v.finish()
}

/// Inserts a checked, pre-registered device with its labels and groups.
async fn insert_created(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    req: &DeviceCreate,
    at: &str,
) -> Result<String, Error> {
    let name = req.name.as_deref().unwrap_or(&req.serial).trim();
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO devices (id, tenant_id, name, serial, manufacturer, model, status, online, created_at, updated_at, search_key) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active', 0, $7, $7, $8)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(name)
    .bind(&req.serial)
    .bind(req.manufacturer.as_deref())
    .bind(req.model.as_deref())
    .bind(now)
    .bind(search_key(name, Some(&req.serial)))
    .execute(&mut **tx)
    .await
    .map_err(|e| match Error::conflict_on_unique(format!("a device with serial `{}` already exists", req.serial))(e) {
        Error::Conflict(m) if !at.is_empty() => Error::invalid(&format!("{at}/serial"), m),
        other => other,
    })?;
    for (key, value) in &req.labels {
        set_label(tx, scope, &id, key, value).await?;
    }
    for (i, group) in req.groups.iter().enumerate() {
        if !crate::groups::exists_in(tx, scope, group).await? {
            return Err(Error::invalid(&format!("{at}/groups/{i}"), format!("group {group} not found")));
        }
        crate::groups::add_member(tx, scope, group, &id, now).await?;
    }
    Ok(id)
}

/// Inserts a device that arrived through enrollment (no pre-registration).
pub(crate) async fn insert_enrolled(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    serial: &str,
    name: &str,
    status: DeviceStatus,
) -> Result<String, Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO devices (id, tenant_id, name, serial, status, online, created_at, updated_at, search_key) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(name)
    .bind(serial)
    .bind(status.as_str())
    .bind(now_ms())
    .bind(search_key(name, Some(serial)))
    .execute(&mut **tx)
    .await
    .map_err(Error::conflict_on_unique(format!(
        "a device with serial `{serial}` is enrolling at the same time; retry"
    )))?;
    Ok(id)
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<Device, Error> {
    let not_found = || Error::NotFound(format!("device {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    let row =
        sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM devices d WHERE d.tenant_id = $1 AND d.id = $2")))
            .bind(scope.id())
            .bind(id)
            .fetch_optional(db.reader())
            .await?
            .ok_or_else(not_found)?;
    let mut devices = hydrate(db, vec![row]).await?;
    devices.pop().ok_or_else(not_found)
}

/// Renames and relabels (merge patch: a `null` label value removes the label).
pub async fn update(db: &Db, scope: &TenantScope, id: &str, req: DeviceUpdate) -> Result<Device, Error> {
    let mut v = Violations::default();
    let name = req.name.as_deref().map(str::trim);
    if let Some(name) = name {
        v.check("/name", validate_text(name, true));
    }
    check_labels(&mut v, req.labels.iter().map(|(k, v)| (k, v.as_ref())));
    v.finish()?;
    get(db, scope, id).await?;

    let mut tx = db.writer().begin().await?;
    if let Some(name) = name {
        let serial = get(db, scope, id).await?.serial;
        sqlx::query("UPDATE devices SET name = $1, search_key = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(name)
            .bind(search_key(name, serial.as_deref()))
            .bind(scope.id())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    for (key, value) in &req.labels {
        match value {
            Some(value) => set_label(&mut tx, scope, id, key, value).await?,
            None => {
                sqlx::query("DELETE FROM device_labels WHERE tenant_id = $1 AND device_id = $2 AND key = $3")
                    .bind(scope.id())
                    .bind(id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM device_labels WHERE tenant_id = $1 AND device_id = $2")
        .bind(scope.id())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if count > labels::MAX_LABELS as i64 {
        return Err(Error::invalid("/labels", format!("a device carries at most {} labels", labels::MAX_LABELS)));
    }
    touch(&mut tx, scope, id).await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Marks a device decommissioned (with `wipe`, the agent erases itself when told); the rest of
/// retiring it — its waiting commands, the live connection, the event — is `lifecycle::decommission`.
pub async fn mark_decommissioned(db: &Db, scope: &TenantScope, id: &str, wipe: bool) -> Result<(), Error> {
    let now = now_ms();
    sqlx::query(
        "UPDATE devices SET status = 'decommissioned', online = 0, wipe_requested = $1, \
         decommissioned_at = COALESCE(decommissioned_at, $2), updated_at = $2 WHERE tenant_id = $3 AND id = $4",
    )
    .bind(i64::from(wipe))
    .bind(now)
    .bind(scope.id())
    .bind(id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Lets a pending device in.
pub async fn approve(db: &Db, bus: &SharedBus, scope: &TenantScope, id: &str) -> Result<Device, Error> {
    let changed = sqlx::query(
        "UPDATE devices SET status = 'active', updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND status = 'pending'",
    )
    .bind(now_ms())
    .bind(scope.id())
    .bind(id)
    .execute(db.writer())
    .await?
    .rows_affected();
    let device = get(db, scope, id).await?;
    if changed == 0 {
        return Err(Error::Conflict(format!("device {id} is {}, not pending", device.status.as_str())));
    }
    events::record(db, bus, scope, Some(id), events::kind::APPROVED, serde_json::json!({})).await;
    Ok(device)
}

/// Deletes a device for good; only a decommissioned one, so nothing live disappears by mistake.
/// Its telemetry goes with it; its events stay in the log.
pub async fn delete(db: &Db, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let device = get(db, scope, id).await?;
    if device.status != DeviceStatus::Decommissioned {
        return Err(Error::Conflict(format!(
            "device {id} is {}; decommission it before deleting it",
            device.status.as_str()
        )));
    }
    let mut tx = db.writer().begin().await?;
    // Points are stored under the device's series key (telemetry/keys.rs). The key itself stays:
    // the telemetry writer may hold it, and a device id is never given twice. Written here, not
    // called there, since telemetry looks devices up and modules do not cycle.
    sqlx::query("DELETE FROM telemetry WHERE device = (SELECT id FROM telemetry_devices WHERE device_id = $1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM rollout_executions WHERE tenant_id = $1 AND device_id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM device_software WHERE device_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn set_label(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    id: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO device_labels (tenant_id, device_id, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(scope.id())
    .bind(id)
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn touch(tx: &mut Transaction<'_, Any>, scope: &TenantScope, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE devices SET updated_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now_ms())
        .bind(scope.id())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn check_labels<'a>(v: &mut Violations, labels: impl Iterator<Item = (&'a String, Option<&'a String>)>) {
    for (key, value) in labels {
        v.check(&format!("/labels/{key}"), labels::validate_key(key));
        if let Some(value) = value {
            v.check(&format!("/labels/{key}"), labels::validate_value(value));
        }
    }
}

/// What text search matches: name and serial, lowercased the same way on every engine.
pub(crate) fn search_key(name: &str, serial: Option<&str>) -> String {
    format!("{} {}", name, serial.unwrap_or_default()).to_lowercase()
}

pub(crate) fn validate_serial(serial: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&serial.len())
        && serial.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if ok { Ok(()) } else { Err("must be 1 to 64 letters, digits, `.`, `_`, `-`, `:` or `/`".into()) }
}

pub(crate) fn validate_text(text: &str, required: bool) -> Result<(), String> {
    if required && text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(format!("must be at most {MAX_TEXT} characters, without control characters"));
    }
    Ok(())
}

/// The ids of the devices whose serial or name is exactly `text` (at most a few: enough to tell
/// one from several).
pub async fn find_exact(db: &Db, scope: &TenantScope, text: &str) -> Result<Vec<String>, Error> {
    let rows = sqlx::query("SELECT id FROM devices WHERE tenant_id = $1 AND (serial = $2 OR name = $2) LIMIT 3")
        .bind(scope.id())
        .bind(text)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(|r| r.try_get("id").map_err(Error::from)).collect()
}

/// The names of the given devices of the tenant, by id (ids not found are left out).
pub async fn names(db: &Db, scope: &TenantScope, ids: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut names = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("SELECT id, name FROM devices WHERE tenant_id = ");
        sql.bind(scope.id()).push(" AND id IN ").bind_list(chunk.iter().map(String::as_str));
        for row in sql.query(db.backend()).fetch_all(db.reader()).await? {
            names.insert(row.try_get("id")?, row.try_get("name")?);
        }
    }
    Ok(names)
}

/// Turns device rows (read with the tenant in the query) into wire devices, loading their labels
/// and groups in two queries.
pub(crate) async fn hydrate(db: &Db, rows: Vec<AnyRow>) -> Result<Vec<Device>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in in_list("SELECT device_id, key, value FROM device_labels", &ids)
        .query(db.backend())
        .fetch_all(db.reader())
        .await?
    {
        labels.entry(row.try_get("device_id")?).or_default().insert(row.try_get("key")?, row.try_get("value")?);
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sql = in_list("SELECT device_id, group_id FROM group_members", &ids);
    sql.push(" ORDER BY group_id");
    for row in sql.query(db.backend()).fetch_all(db.reader()).await? {
        groups.entry(row.try_get("device_id")?).or_default().push(row.try_get("group_id")?);
    }
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            to_wire(row, labels.remove(&id).unwrap_or_default(), groups.remove(&id).unwrap_or_default())
        })
        .collect()
}

/// Rows of a per-device table for devices just read from the tenant's `devices` rows. The ids
/// alone select them (device ids are unique across tenants, and these came from a query scoped to
/// the tenant); a `tenant_id` term here led SQLite to read every label of the tenant through the
/// `(tenant_id, key, value)` index instead of the few rows of these devices (40 ms instead of
/// 0.4 ms for a page of 50 among 10,000 devices).
fn in_list(select: &str, ids: &[String]) -> Sql {
    let mut sql = Sql::new(select);
    sql.push(" WHERE device_id IN ").bind_list(ids.iter().map(String::as_str));
    sql
}

fn to_wire(row: &AnyRow, labels: BTreeMap<String, String>, groups: Vec<String>) -> Result<Device, Error> {
    let status: String = row.try_get("status")?;
    Ok(Device {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        serial: row.try_get("serial")?,
        manufacturer: row.try_get("manufacturer")?,
        model: row.try_get("model")?,
        os_family: row.try_get("os_family")?,
        os_version: row.try_get("os_version")?,
        architecture: row.try_get("architecture")?,
        agent_version: row.try_get("agent_version")?,
        labels,
        groups,
        status: DeviceStatus::parse(&status).ok_or_else(|| anyhow::anyhow!("stored device status `{status}`"))?,
        connectivity: Connectivity {
            online: row.try_get::<i64, _>("online")? != 0,
            last_seen_at: row.try_get::<Option<i64>, _>("last_seen_at")?.map(from_ms),
            remote_addr: row.try_get("remote_addr")?,
        },
        transport: row.try_get("transport")?,
        gateway_id: row.try_get("gateway_id")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}
