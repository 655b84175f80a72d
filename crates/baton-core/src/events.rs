//! The event log: what happened to devices (enrolled, approved, online, offline,
//! decommissioned, command finished, …), stored, listed newest first, and published on the bus
//! for live views.

use baton_proto::api::{
    Page,
    events::{Event, EventQuery},
};
use sqlx::{Any, Row, Transaction, any::AnyRow};

use crate::{
    Error,
    access::TenantScope,
    bus::{Message, SharedBus},
    pagination::{self, Cursor},
    store::{Backend, Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

pub mod kind {
    /// Pre-registered through the API or the console.
    pub const CREATED: &str = "device.created";
    /// Pre-registered in bulk (a serial import); `data.imported` counts them.
    pub const IMPORTED: &str = "devices.imported";
    pub const ENROLLED: &str = "device.enrolled";
    pub const APPROVED: &str = "device.approved";
    pub const REJECTED: &str = "device.rejected";
    pub const ONLINE: &str = "device.online";
    pub const OFFLINE: &str = "device.offline";
    pub const INVENTORY: &str = "device.inventory";
    pub const DECOMMISSIONED: &str = "device.decommissioned";
    /// Operators changed the desired attributes; `data.changed` names the keys.
    pub const ATTRIBUTES: &str = "device.attributes";
    /// A new device secret was issued through the API; the old one stopped working.
    pub const CREDENTIALS: &str = "device.credentials";
    /// A client certificate was signed for the device (enrollment, renewal or an operator);
    /// `data` has its fingerprint and expiry.
    pub const CERTIFICATE_ISSUED: &str = "device.certificate_issued";
    /// An operator revoked one of the device's certificates (decommissioning revokes them all,
    /// recorded with `device.decommissioned`).
    pub const CERTIFICATE_REVOKED: &str = "device.certificate_revoked";
    /// A device sent something that was dropped (bad payload, a topic outside its namespace,
    /// over its message rate); `data` says what and why. At most one every few seconds per
    /// connection, counting the ones in between.
    pub const MESSAGE_REJECTED: &str = "device.message_rejected";
    pub const COMMAND_FINISHED: &str = "command.finished";
}

/// Records an event in the caller's transaction, so it costs no commit of its own; the caller
/// [`publish`]es it after the commit. Unlike [`record`], a failure fails the transaction.
pub async fn within(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    device_id: Option<&str>,
    kind: &str,
    data: serde_json::Value,
) -> Result<Event, Error> {
    let event = new(device_id, kind, data);
    insert_all(tx, &[(scope.id().to_owned(), event.clone())]).await?;
    Ok(event)
}

/// Publishes an event recorded with [`within`] (after its commit).
pub fn publish(bus: &SharedBus, scope: &TenantScope, event: Event) {
    bus.publish(Message::Event { tenant: scope.id().to_owned(), event });
}

fn new(device_id: Option<&str>, kind: &str, data: serde_json::Value) -> Event {
    Event { id: new_id(), device_id: device_id.map(str::to_owned), kind: kind.to_owned(), data, at: from_ms(now_ms()) }
}

/// Records an event and publishes it. A failure to record is logged, not returned: the event
/// log must never make the thing it describes fail.
pub async fn record(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: Option<&str>,
    kind: &str,
    data: serde_json::Value,
) {
    let event = new(device_id, kind, data);
    let stored =
        sqlx::query("INSERT INTO events (id, tenant_id, device_id, kind, data, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&event.id)
            .bind(scope.id())
            .bind(device_id)
            .bind(kind)
            .bind(event.data.to_string())
            .bind(event.at.timestamp_millis())
            .execute(db.writer())
            .await;
    match stored {
        Ok(_) => bus.publish(Message::Event { tenant: scope.id().to_owned(), event }),
        Err(e) => tracing::warn!(error = %e, kind, "could not record event"),
    }
}

/// Stores many events in `tx`, thousands per statement (writers that batch their changes
/// record their events in the same transaction). Publish them after the commit.
pub(crate) async fn insert_all(tx: &mut Transaction<'_, Any>, events: &[(String, Event)]) -> Result<(), Error> {
    // One JSON value per statement ([id, tenant, device or null, kind, data, at] each): a
    // fleet-wide command's 10,000 `command.finished` events cost one statement.
    let insert = match Backend::of(tx) {
        Backend::Sqlite => INSERT_SQLITE,
        Backend::Postgres => INSERT_POSTGRES,
    };
    for chunk in events.chunks(5_000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(tenant, e)| (&e.id, tenant, &e.device_id, &e.kind, e.data.to_string(), e.at.timestamp_millis()))
            .collect();
        let rows = serde_json::to_string(&rows).map_err(anyhow::Error::from)?;
        sqlx::query(insert).bind(rows).execute(&mut **tx).await?;
    }
    Ok(())
}

const INSERT_SQLITE: &str = "INSERT INTO events (id, tenant_id, device_id, kind, data, at) \
    SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4, e.value ->> 5 \
    FROM json_each($1) AS e";
const INSERT_POSTGRES: &str = "INSERT INTO events (id, tenant_id, device_id, kind, data, at) \
    SELECT e ->> 0, e ->> 1, e ->> 2, e ->> 3, e ->> 4, (e ->> 5)::BIGINT FROM json_array_elements($1::JSON) AS e";

/// Events, newest first.
pub async fn list(db: &Db, scope: &TenantScope, q: &EventQuery) -> Result<Page<Event>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new("SELECT id, device_id, kind, data, at FROM events WHERE tenant_id = ");
    sql.bind(scope.id());
    if let Some(device) = &q.device {
        if !is_id(device) {
            return Err(Error::invalid("device", "is not a device id"));
        }
        sql.push(" AND device_id = ").bind(device.as_str());
    }
    if let Some(kind) = &q.kind {
        check_kind(kind)?;
        match kind.strip_suffix('.') {
            Some(prefix) => sql.push(" AND kind LIKE ").bind(format!("{prefix}.%")),
            None => sql.push(" AND kind = ").bind(kind.as_str()),
        };
    }
    if let Some(c) = q.cursor.as_deref().map(|c| Cursor::decode(c, "-at")).transpose()? {
        let at = c.int.ok_or_else(|| Error::invalid("cursor", "is not a cursor from this list"))?;
        sql.push(" AND (at < ").bind(at).push(" OR (at = ").bind(at).push(" AND id < ").bind(c.id).push("))");
    }
    sql.push(" ORDER BY at DESC, id DESC LIMIT ").bind(limit + 1);
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |e| Cursor {
        order: "-at".into(),
        text: None,
        int: Some(e.at.timestamp_millis()),
        id: e.id.clone(),
    }))
}

/// Whether an event matches a `kind` filter (exact, or a prefix ending in `.`).
pub fn kind_matches(filter: &str, kind: &str) -> bool {
    match filter.strip_suffix('.') {
        Some(prefix) => kind.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
        None => filter == kind,
    }
}

pub fn check_kind(kind: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&kind.len()) && kind.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
    if ok { Ok(()) } else { Err(Error::invalid("kind", "is not an event kind, like `device.online` or `device.`")) }
}

fn from_row(row: &AnyRow) -> Result<Event, Error> {
    let data: String = row.try_get("data")?;
    Ok(Event {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        kind: row.try_get("kind")?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        at: from_ms(row.try_get("at")?),
    })
}
