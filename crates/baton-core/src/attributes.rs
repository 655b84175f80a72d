//! Device attributes: free-form JSON objects next to the registry's fixed fields.
//!
//! - `reported`: what the device says about itself (firmware settings, sensor configuration, …),
//!   written by its session with [`merge_reported`].
//! - `desired`: what operators want the device to have, written through the API with
//!   [`merge_desired`]; the bus tells the device's session, which pushes it to the device.
//!
//! Both change by a shallow JSON merge patch (`null` removes a key) in one writer transaction,
//! read-modify-write, so two patches never lose each other's keys. Both are bounded
//! ([`MAX_BYTES`], [`MAX_KEYS`], key names of [`MAX_KEY_CHARS`]): a patch that would break a
//! limit is refused whole and nothing is stored. This module owns the `attributes_reported` and
//! `attributes_desired` columns of `devices`.

use baton_proto::api::{attributes::DeviceAttributes, devices::DeviceStatus};
use serde_json::{Map, Value};
use sqlx::{Any, Row, Transaction};

use crate::{
    Error,
    access::TenantScope,
    bus::{Message, SharedBus},
    error::Violations,
    events,
    store::{Db, is_id, now_ms},
};

/// Largest stored attribute object (of each side), in bytes of JSON.
pub const MAX_BYTES: usize = 64 * 1024;
/// Most keys one side may hold.
pub const MAX_KEYS: usize = 256;
/// Longest key name, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// A device's reported and desired attributes.
pub async fn get(db: &Db, scope: &TenantScope, device_id: &str) -> Result<DeviceAttributes, Error> {
    if !is_id(device_id) {
        return Err(not_found(device_id));
    }
    let row = sqlx::query(
        "SELECT status, attributes_reported, attributes_desired FROM devices WHERE tenant_id = $1 AND id = $2",
    )
    .bind(scope.id())
    .bind(device_id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| not_found(device_id))?;
    Ok(Stored::from_row(&row)?.attributes)
}

/// Merges what the device reported about itself into its stored `reported` attributes.
pub async fn merge_reported(
    db: &Db,
    scope: &TenantScope,
    device_id: &str,
    patch: &Map<String, Value>,
) -> Result<(), Error> {
    check_keys(patch)?;
    let mut tx = db.writer().begin().await?;
    let mut stored = load(&mut tx, scope, device_id).await?;
    if merge(&mut stored.attributes.reported, patch).is_empty() {
        return Ok(());
    }
    let text = encode(Side::Reported, &stored.attributes.reported)?;
    save(&mut tx, scope, device_id, Side::Reported, &text).await?;
    tx.commit().await?;
    Ok(())
}

/// Merges an operator's patch into the device's `desired` attributes, tells its session (which
/// pushes them to the device) and records a `device.attributes` event naming the changed keys.
/// A decommissioned device's attributes no longer change.
pub async fn merge_desired(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    patch: &Map<String, Value>,
) -> Result<DeviceAttributes, Error> {
    check_keys(patch)?;
    let mut tx = db.writer().begin().await?;
    let mut stored = load(&mut tx, scope, device_id).await?;
    if stored.status == DeviceStatus::Decommissioned.as_str() {
        return Err(Error::Conflict(format!(
            "device {device_id} is decommissioned; its desired attributes can no longer change"
        )));
    }
    let changed = merge(&mut stored.attributes.desired, patch);
    if changed.is_empty() {
        return Ok(stored.attributes);
    }
    let text = encode(Side::Desired, &stored.attributes.desired)?;
    save(&mut tx, scope, device_id, Side::Desired, &text).await?;
    tx.commit().await?;
    bus.publish(Message::DesiredChanged { tenant: scope.id().to_owned(), device_id: device_id.to_owned() });
    let data = serde_json::json!({ "changed": changed });
    events::record(db, bus, scope, Some(device_id), events::kind::ATTRIBUTES, data).await;
    Ok(stored.attributes)
}

#[derive(Clone, Copy)]
enum Side {
    Reported,
    Desired,
}

impl Side {
    fn column(self) -> &'static str {
        match self {
            Self::Reported => "attributes_reported",
            Self::Desired => "attributes_desired",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Desired => "desired",
        }
    }
}

/// A device's status and attributes as stored.
struct Stored {
    status: String,
    attributes: DeviceAttributes,
}

impl Stored {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, Error> {
        let object = |column: &str| -> Result<Map<String, Value>, Error> {
            let text: Option<String> = row.try_get(column)?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
        };
        Ok(Self {
            status: row.try_get("status")?,
            attributes: DeviceAttributes {
                reported: object(Side::Reported.column())?,
                desired: object(Side::Desired.column())?,
            },
        })
    }
}

fn not_found(device_id: &str) -> Error {
    Error::NotFound(format!("device {device_id}"))
}

/// Reads through the transaction: on SQLite the writer pool is one connection, so a read from
/// another pool here would see a snapshot the write could then overwrite.
async fn load(tx: &mut Transaction<'_, Any>, scope: &TenantScope, device_id: &str) -> Result<Stored, Error> {
    if !is_id(device_id) {
        return Err(not_found(device_id));
    }
    let row = sqlx::query(
        "SELECT status, attributes_reported, attributes_desired FROM devices WHERE tenant_id = $1 AND id = $2",
    )
    .bind(scope.id())
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| not_found(device_id))?;
    Stored::from_row(&row)
}

async fn save(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    device_id: &str,
    side: Side,
    text: &str,
) -> Result<(), Error> {
    // Operators' changes are registry changes; a device's own reports are not.
    match side {
        Side::Desired => {
            sqlx::query("UPDATE devices SET attributes_desired = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(text)
                .bind(now_ms())
                .bind(scope.id())
                .bind(device_id)
                .execute(&mut **tx)
                .await?
        }
        Side::Reported => {
            sqlx::query("UPDATE devices SET attributes_reported = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(text)
                .bind(scope.id())
                .bind(device_id)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(())
}

/// Key names: 1 to [`MAX_KEY_CHARS`] characters without control characters. A key that is
/// being removed is checked too: it could not have been stored.
fn check_keys(patch: &Map<String, Value>) -> Result<(), Error> {
    let mut v = Violations::default();
    for key in patch.keys() {
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS || key.chars().any(char::is_control) {
            let shown: String = key.chars().take(32).flat_map(char::escape_default).collect();
            v.add(
                format!("/{}", shown.replace('~', "~0").replace('/', "~1")),
                format!("attribute names must be 1 to {MAX_KEY_CHARS} characters, without control characters"),
            );
        }
    }
    v.finish()
}

/// Applies a shallow merge patch; returns the keys whose value changed.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, value) in patch {
        let before = match value {
            Value::Null => target.remove(key),
            value => target.insert(key.clone(), value.clone()),
        };
        let after = (!value.is_null()).then_some(value);
        if before.as_ref() != after {
            changed.push(key.clone());
        }
    }
    changed
}

/// The stored text of one side, once it is within the limits.
fn encode(side: Side, attributes: &Map<String, Value>) -> Result<String, Error> {
    if attributes.len() > MAX_KEYS {
        return Err(Error::invalid(
            side.name(),
            format!("would hold {} attributes; at most {MAX_KEYS}", attributes.len()),
        ));
    }
    let text = serde_json::to_string(attributes).map_err(anyhow::Error::from)?;
    if text.len() > MAX_BYTES {
        return Err(Error::invalid(
            side.name(),
            format!("would be {} bytes of JSON; at most {} KiB", text.len(), MAX_BYTES / 1024),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn a_patch_sets_replaces_and_removes_keys_and_names_what_changed() {
        let mut stored = object(json!({"a": 1, "b": {"x": 1}, "c": "same"}));
        let changed = merge(&mut stored, &object(json!({"a": null, "b": {"y": 2}, "c": "same", "d": [1], "e": null})));
        assert_eq!(stored, object(json!({"b": {"y": 2}, "c": "same", "d": [1]})));
        assert_eq!(changed, ["a", "b", "d"]);
    }

    #[test]
    fn attribute_names_must_be_short_and_printable() {
        assert!(check_keys(&object(json!({"fine": 1, "also.fine/too": null}))).is_ok());
        for bad in [String::new(), "x".repeat(MAX_KEY_CHARS + 1), "tab\there".into()] {
            let patch: Map<String, Value> = [(bad.clone(), json!(1))].into_iter().collect();
            assert!(matches!(check_keys(&patch), Err(Error::Invalid { .. })), "{bad:?} is refused");
        }
        assert!(check_keys(&[("é".repeat(MAX_KEY_CHARS), json!(1))].into_iter().collect()).is_ok());
    }

    #[test]
    fn too_many_keys_or_too_many_bytes_are_refused() {
        let many: Map<String, Value> = (0..=MAX_KEYS).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(matches!(encode(Side::Desired, &many), Err(Error::Invalid { .. })));
        let big = object(json!({"blob": "x".repeat(MAX_BYTES)}));
        assert!(matches!(encode(Side::Reported, &big), Err(Error::Invalid { .. })));
        let at_limit: Map<String, Value> = (0..MAX_KEYS).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(encode(Side::Desired, &at_limit).is_ok());
    }
}
