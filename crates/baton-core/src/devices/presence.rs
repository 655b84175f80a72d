//! Presence and what devices report about themselves: online/offline from the connection,
//! last seen, the remote address, and the inventory (which also fills the registry's OS,
//! architecture, model and agent version).

use baton_proto::{api::events::Event, inventory::Inventory};
use sqlx::{Any, Transaction};

use crate::{
    Error,
    access::TenantScope,
    store::{Db, now_ms},
};

/// Largest stored inventory, in bytes of JSON.
pub const MAX_INVENTORY_BYTES: usize = 256 * 1024;

/// Marks a device connected and stores the inventory it sent in its hello. A new telemetry
/// epoch (the agent's backlog started over) restarts the stored batch numbering.
pub async fn connected(
    db: &Db,
    bus: &crate::bus::SharedBus,
    scope: &TenantScope,
    id: &str,
    remote: &str,
    inventory: &Inventory,
    telemetry_epoch: Option<u64>,
) -> Result<(), Error> {
    let mut tx = db.writer().begin().await?;
    let event = connected_within(&mut tx, scope, id, remote, inventory, telemetry_epoch).await?;
    tx.commit().await?;
    crate::events::publish(bus, scope, event);
    Ok(())
}

/// What [`connected`] writes, in `tx`; the `device.online` event to publish once committed.
pub async fn connected_within(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    id: &str,
    remote: &str,
    inventory: &Inventory,
    telemetry_epoch: Option<u64>,
) -> Result<Event, Error> {
    if let Some(epoch) = telemetry_epoch.and_then(|e| i64::try_from(e).ok()) {
        sqlx::query(
            "UPDATE devices SET telemetry_epoch = $1, telemetry_seq = NULL WHERE tenant_id = $2 AND id = $3 \
             AND (telemetry_epoch IS NULL OR telemetry_epoch <> $1)",
        )
        .bind(epoch)
        .bind(scope.id())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "UPDATE devices SET online = 1, last_seen_at = $1, remote_addr = $2, transport = 'agent' WHERE tenant_id = $3 AND id = $4",
    )
        .bind(now_ms())
        .bind(remote)
        .bind(scope.id())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    store_inventory(tx, id, inventory).await?;
    // The `device.online` event in the same commit: a fleet connecting at once shares the
    // single writer, and a commit per event was half of what each connection cost it.
    let data = serde_json::json!({"remote_addr": remote});
    crate::events::within(tx, scope, Some(id), crate::events::kind::ONLINE, data).await
}

/// Marks a device connected over a transport that sends no hello (MQTT devices, and the
/// sub-devices a gateway relays).
pub async fn online(db: &Db, scope: &TenantScope, id: &str, remote: &str, transport: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE devices SET online = 1, last_seen_at = $1, remote_addr = $2, transport = $3 WHERE tenant_id = $4 AND id = $5",
    )
    .bind(now_ms())
    .bind(remote)
    .bind(transport)
    .bind(scope.id())
    .bind(id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Marks these devices offline (the sub-devices of a gateway that went away), in statements of
/// at most 500 ids.
pub async fn offline_many(db: &Db, scope: &TenantScope, ids: &[String]) -> Result<(), Error> {
    for chunk in ids.chunks(500) {
        let mut sql = crate::store::sql::Sql::new("UPDATE devices SET online = 0, last_seen_at = ");
        sql.bind(now_ms()).push(" WHERE tenant_id = ").bind(scope.id()).push(" AND id IN ");
        sql.bind_list(chunk.iter().map(String::as_str)).query(db.backend()).execute(db.writer()).await?;
    }
    Ok(())
}

/// Marks a device disconnected.
pub async fn disconnected(db: &Db, scope: &TenantScope, id: &str) -> Result<(), Error> {
    mark_offline(db.writer(), scope, id).await
}

/// What [`disconnected`] writes, in `tx`.
pub async fn disconnected_within(tx: &mut Transaction<'_, Any>, scope: &TenantScope, id: &str) -> Result<(), Error> {
    mark_offline(&mut **tx, scope, id).await
}

async fn mark_offline<'e>(
    to: impl sqlx::Executor<'e, Database = Any>,
    scope: &TenantScope,
    id: &str,
) -> Result<(), Error> {
    sqlx::query("UPDATE devices SET online = 0, last_seen_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(now_ms())
        .bind(scope.id())
        .bind(id)
        .execute(to)
        .await?;
    Ok(())
}

/// Every device offline: at start, no connection exists yet. (With several server nodes this
/// moves to per-node connection ownership; see ARCHITECTURE.md.)
pub async fn reset_all(db: &Db) -> Result<u64, Error> {
    Ok(sqlx::query("UPDATE devices SET online = 0 WHERE online = 1").execute(db.writer()).await?.rows_affected())
}

/// Stores the inventory and copies its registry fields onto the device row. Returns whether it
/// differed from the stored one.
pub async fn store_inventory(tx: &mut Transaction<'_, Any>, id: &str, inventory: &Inventory) -> Result<bool, Error> {
    let json = serde_json::to_string(inventory).map_err(anyhow::Error::from)?;
    if json.len() > MAX_INVENTORY_BYTES {
        return Err(Error::invalid("/inventory", format!("must be at most {MAX_INVENTORY_BYTES} bytes of JSON")));
    }
    let text =
        |v: &Option<String>| v.as_deref().map(|s| s.chars().filter(|c| !c.is_control()).take(128).collect::<String>());
    let changed = sqlx::query(
        "UPDATE devices SET inventory = $1, os_family = COALESCE($2, os_family), os_version = COALESCE($3, os_version), \
         architecture = COALESCE($4, architecture), agent_version = COALESCE($5, agent_version), \
         manufacturer = COALESCE(manufacturer, $6), model = COALESCE(model, $7) \
         WHERE id = $8 AND (inventory IS NULL OR inventory <> $1)",
    )
    .bind(json)
    .bind(text(&inventory.os_family))
    .bind(text(&inventory.os_version))
    .bind(text(&inventory.architecture))
    .bind(text(&inventory.agent_version))
    .bind(text(&inventory.manufacturer))
    .bind(text(&inventory.model))
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// The stored inventory of a device (already scoped by the caller).
pub async fn inventory(db: &Db, scope: &TenantScope, id: &str) -> Result<Option<Inventory>, Error> {
    use sqlx::Row;
    crate::devices::get(db, scope, id).await?;
    let row = sqlx::query("SELECT inventory FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .fetch_one(db.reader())
        .await?;
    let json: Option<String> = row.try_get("inventory")?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}
