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

/// The columns an inventory sets, its values at `$1` to `$7` (the JSON, then the six registry
/// fields it fills, as `InventoryFields::bind` binds them).
macro_rules! inventory_set {
    () => {
        "inventory = $1, os_family = COALESCE($2, os_family), os_version = COALESCE($3, os_version), \
         architecture = COALESCE($4, architecture), agent_version = COALESCE($5, agent_version), \
         manufacturer = COALESCE(manufacturer, $6), model = COALESCE(model, $7)"
    };
}

/// The columns an enrollment sets, its values at `$8` (the credential's hash) and `$9` (now).
macro_rules! enrolled_set {
    () => {
        "credential_hash = $8, enrolled_at = COALESCE(enrolled_at, $9), updated_at = $9, telemetry_seq = NULL"
    };
}

/// The columns a hello's connection sets, its values at `$8` (now) and `$9` (remote address).
macro_rules! online_set {
    () => {
        "online = 1, last_seen_at = $8, remote_addr = $9, transport = 'agent'"
    };
}

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
/// Presence, the telemetry epoch and the inventory are one statement on the device's row: a
/// fleet connecting at once shares the writers, and each round trip is paid ten thousand times.
pub async fn connected_within(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    id: &str,
    remote: &str,
    inventory: &Inventory,
    telemetry_epoch: Option<u64>,
) -> Result<Event, Error> {
    let fields = InventoryFields::of(inventory)?;
    let epoch = telemetry_epoch.and_then(|e| i64::try_from(e).ok());
    let query = match epoch {
        // A new epoch (the agent's backlog started over) restarts the stored batch numbering.
        Some(_) => sqlx::query(concat!(
            "UPDATE devices SET telemetry_seq = CASE WHEN telemetry_epoch IS NULL OR telemetry_epoch <> $12 \
             THEN NULL ELSE telemetry_seq END, telemetry_epoch = $12, ",
            online_set!(),
            ", ",
            inventory_set!(),
            " WHERE tenant_id = $10 AND id = $11"
        )),
        None => sqlx::query(concat!(
            "UPDATE devices SET ",
            online_set!(),
            ", ",
            inventory_set!(),
            " WHERE tenant_id = $10 AND id = $11"
        )),
    };
    let query = fields.bind(query).bind(now_ms()).bind(remote).bind(scope.id()).bind(id);
    let query = match epoch {
        Some(epoch) => query.bind(epoch),
        None => query,
    };
    query.execute(&mut **tx).await?;
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
    let fields = InventoryFields::of(inventory)?;
    let sql =
        concat!("UPDATE devices SET ", inventory_set!(), " WHERE id = $8 AND (inventory IS NULL OR inventory <> $1)");
    let changed = fields.bind(sqlx::query(sql)).bind(id).execute(&mut **tx).await?.rows_affected();
    Ok(changed > 0)
}

/// What an enrollment writes on the device's row, in one statement: its new credential, and
/// the inventory it sent, if it sent one.
pub(crate) async fn enrolled_within(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    credential_hash: String,
    now: i64,
    inventory: Option<&Inventory>,
) -> Result<(), Error> {
    let query = match inventory {
        Some(inventory) => InventoryFields::of(inventory)?.bind(sqlx::query(concat!(
            "UPDATE devices SET ",
            enrolled_set!(),
            ", ",
            inventory_set!(),
            " WHERE id = $10"
        ))),
        None => sqlx::query(
            "UPDATE devices SET credential_hash = $1, enrolled_at = COALESCE(enrolled_at, $2), updated_at = $2, \
             telemetry_seq = NULL WHERE id = $3",
        ),
    };
    query.bind(credential_hash).bind(now).bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// An inventory as the values `inventory_set!` names.
struct InventoryFields {
    json: String,
    text: [Option<String>; 6],
}

impl InventoryFields {
    fn of(inventory: &Inventory) -> Result<Self, Error> {
        let json = serde_json::to_string(inventory).map_err(anyhow::Error::from)?;
        if json.len() > MAX_INVENTORY_BYTES {
            return Err(Error::invalid("/inventory", format!("must be at most {MAX_INVENTORY_BYTES} bytes of JSON")));
        }
        let text = |v: &Option<String>| {
            v.as_deref().map(|s| s.chars().filter(|c| !c.is_control()).take(128).collect::<String>())
        };
        let i = inventory;
        let text =
            [&i.os_family, &i.os_version, &i.architecture, &i.agent_version, &i.manufacturer, &i.model].map(text);
        Ok(Self { json, text })
    }

    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        self.text.into_iter().fold(query.bind(self.json), |q, t| q.bind(t))
    }
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
