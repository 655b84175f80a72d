//! Support bundles: an operator asks one device, a group or a label selector for an archive of
//! its logs, inventory and diagnostics. [`request`] records one bundle per device and queues,
//! in the same transaction, the command that carries it (`support-bundle`, through the
//! commands outbox: a device offline now makes its bundle when it returns). The device's agent
//! uploads the archive through the agents' door to [`receive`], which streams it into the
//! artifact store (so S3 works) under the server's size limit; a command that fails or expires
//! fails its bundle ([`settle`]). Bundles are pruned after the retention period.
//!
//! A bundle moves `requested → uploading → stored`, or to `failed` from either, and never
//! back. This module owns the `support_bundles` table.

mod receive;

pub use receive::{Received, Upload, failed, prune, receive, settle};

use std::collections::BTreeMap;

use baton_proto::api::{
    Page,
    bundles::{
        BundleProgress, BundleQuery, BundleRequested, BundleState, DeviceProgress, MAX_SINCE_SECS, SupportBundle,
    },
    commands::{CommandResult, CommandSpec, CommandState},
    devices::DeviceStatus,
};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use crate::{
    Error,
    access::TenantScope,
    bus::SharedBus,
    commands::{self, NewBatch, Outgoing},
    devices, events, pagination,
    remote::Actor,
    store::{Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

/// Event kinds of support bundles; `data` names the bundle, who asked and sizes.
pub mod kind {
    /// An operator asked for bundles; `data.devices` counts them, `data.since_secs` the window.
    pub const REQUESTED: &str = "remote.bundle_requested";
    /// A device's bundle arrived; `data.size_bytes` and `data.sha256` describe it.
    pub const STORED: &str = "remote.bundle_stored";
    /// A device's bundle failed; `data.error` says why.
    pub const FAILED: &str = "remote.bundle_failed";
}

/// Which devices a request asks.
#[derive(Debug, Clone)]
pub enum Target {
    Device(String),
    /// A group id; its subgroups' devices too.
    Group(String),
    /// A label selector, e.g. `site=berlin,tier!=test`.
    Selector(String),
}

/// Bundles a request answers with; the rest are listed by request id.
const ANSWERED: u32 = pagination::MAX_LIMIT;
/// Devices a request's progress lists one by one (the counts cover all).
const PROGRESS_DEVICES: i64 = 1000;

pub(crate) const COLUMNS: &str = "b.id, b.request_id, b.device_id, b.command_id, b.state, b.requested_by, \
    b.source_addr, b.since_secs, b.created_at, b.stored_at, b.size_bytes, b.sha256, b.error";

/// Asks every active agent device of `target` for a bundle of the last `since_secs`: one
/// bundle and one command per device, stored together, then delivered.
pub async fn request(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    target: &Target,
    since_secs: u64,
    actor: &Actor,
) -> Result<BundleRequested, Error> {
    if !(1..=MAX_SINCE_SECS).contains(&since_secs) {
        return Err(Error::invalid("/since_secs", format!("must be between 1 and {MAX_SINCE_SECS} (30 days)")));
    }
    if !crate::remote::policy::get(db, scope).await?.enabled {
        return Err(Error::Forbidden(
            "remote access is switched off for this tenant, support bundles included; an administrator can turn it on (PUT /api/v1/remote-policy)".into(),
        ));
    }
    let devices = targets(db, scope, target).await?;
    let request_id = new_id();
    let spec = CommandSpec::SupportBundle { bundle_id: String::new(), since_secs };
    let outgoing: Vec<(String, Outgoing)> = devices
        .iter()
        .map(|device| {
            let bundle_id = new_id();
            let spec = CommandSpec::SupportBundle { bundle_id: bundle_id.clone(), since_secs };
            (bundle_id, Outgoing { id: new_id(), device_id: device.clone(), spec })
        })
        .collect();
    let batch = NewBatch {
        id: &request_id,
        spec: &spec,
        created_by: &actor.label,
        idempotency_key: None,
        ttl_secs: commands::DEFAULT_TTL_SECS,
    };
    let commands: Vec<Outgoing> = outgoing.iter().map(|(_, c)| c.clone()).collect();
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    commands::enqueue(&mut tx, scope, &batch, &commands).await?;
    for chunk in outgoing.chunks(200) {
        let mut sql = Sql::new(
            "INSERT INTO support_bundles (id, tenant_id, device_id, request_id, command_id, state, requested_by, \
             source_addr, since_secs, created_at) VALUES ",
        );
        for (i, (bundle_id, c)) in chunk.iter().enumerate() {
            sql.push(if i > 0 { ", (" } else { "(" }).bind(bundle_id.as_str()).push(", ").bind(scope.id());
            sql.push(", ").bind(c.device_id.as_str()).push(", ").bind(request_id.as_str()).push(", ");
            sql.bind(c.id.as_str()).push(", 'requested', ").bind(actor.label.as_str()).push(", ");
            match &actor.source_addr {
                Some(addr) => sql.bind(addr.as_str()),
                None => sql.push("NULL"),
            };
            sql.push(", ").bind(i64::try_from(since_secs).unwrap_or(i64::MAX)).push(", ").bind(now).push(")");
        }
        sql.query_on(&tx).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    commands::announce(bus, scope, devices.clone(), Vec::new());
    let one = (devices.len() == 1).then(|| devices[0].as_str());
    let data = serde_json::json!({
        "request_id": request_id, "actor": actor.label, "source_addr": actor.source_addr,
        "devices": devices.len(), "since_secs": since_secs,
    });
    events::record(db, bus, scope, one, kind::REQUESTED, data).await;
    let q = BundleQuery { request_id: Some(request_id.clone()), limit: Some(ANSWERED), ..BundleQuery::default() };
    Ok(BundleRequested { request_id, bundles: list(db, scope, &q).await?.items })
}

/// The active devices a request reaches. A device named alone must be active and not an MQTT
/// device (those cannot make bundles); a group or selector skips both kinds.
async fn targets(db: &Db, scope: &TenantScope, target: &Target) -> Result<Vec<String>, Error> {
    let (group, labels) = match target {
        Target::Device(id) => {
            let device = devices::get(db, scope, id)
                .await
                .map_err(|_| Error::invalid("/device_id", format!("device {id} not found")))?;
            if device.status != DeviceStatus::Active {
                return Err(Error::Conflict(format!(
                    "device {id} is {}; support bundles come from active devices",
                    device.status.as_str()
                )));
            }
            if device.transport.as_deref() == Some("mqtt") {
                return Err(Error::Conflict(format!(
                    "device {id} connects over MQTT; support bundles need the Baton agent"
                )));
            }
            return Ok(vec![id.clone()]);
        }
        Target::Group(id) => (Some(id.as_str()), None),
        Target::Selector(s) => (None, Some(s.as_str())),
    };
    let ids =
        devices::list::active_ids(db, scope, group, labels, commands::MAX_TARGETS).await.map_err(|e| match e {
            Error::Invalid { errors, .. } if errors.first().is_some_and(|f| f.field == "group") => {
                Error::invalid("/group_id", "is not a group id")
            }
            Error::Invalid { errors, .. } if errors.first().is_some_and(|f| f.field == "labels") => {
                let why = errors.into_iter().next().map(|f| f.message).unwrap_or_default();
                Error::invalid("/selector", why)
            }
            other => other,
        })?;
    let mqtt = mqtt_devices(db, scope, &ids).await?;
    let ids: Vec<String> = ids.into_iter().filter(|id| !mqtt.contains(id)).collect();
    if ids.is_empty() {
        let field = if group.is_some() { "/group_id" } else { "/selector" };
        return Err(Error::invalid(field, "no active device running the Baton agent matches"));
    }
    Ok(ids)
}

/// Which of `ids` connect over MQTT.
async fn mqtt_devices(db: &Db, scope: &TenantScope, ids: &[String]) -> Result<Vec<String>, Error> {
    let mut mqtt = Vec::new();
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("SELECT id FROM devices WHERE transport = 'mqtt' AND tenant_id = ");
        sql.bind(scope.id()).push(" AND id IN ").bind_list(chunk.iter().map(String::as_str));
        for row in sql.query(db.backend()).fetch_all(db.reader()).await? {
            mqtt.push(row.try_get("id")?);
        }
    }
    Ok(mqtt)
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<SupportBundle, Error> {
    let not_found = || Error::NotFound(format!("support bundle {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM support_bundles b WHERE b.tenant_id = $1 AND b.id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(not_found)
}

/// A stored bundle and the key of its archive in the artifact store.
pub async fn archive(db: &Db, scope: &TenantScope, id: &str) -> Result<(SupportBundle, String), Error> {
    let bundle = get(db, scope, id).await?;
    let key = sqlx::query("SELECT store_key FROM support_bundles WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .fetch_one(db.reader())
        .await?
        .try_get::<Option<String>, _>("store_key")?;
    match key {
        Some(key) if bundle.state == BundleState::Stored => Ok((bundle, key)),
        _ => Err(Error::Conflict(format!(
            "support bundle {id} is {}{}; only a stored bundle can be downloaded",
            bundle.state.as_str(),
            bundle.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        ))),
    }
}

/// Bundles, newest first; of one device or one request when asked.
pub async fn list(db: &Db, scope: &TenantScope, q: &BundleQuery) -> Result<Page<SupportBundle>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM support_bundles b WHERE b.tenant_id = "));
    sql.bind(scope.id());
    for (field, value, column) in
        [("device_id", &q.device_id, "b.device_id"), ("request_id", &q.request_id, "b.request_id")]
    {
        if let Some(value) = value {
            if !is_id(value) {
                return Err(Error::invalid(field, "is not an id"));
            }
            sql.push(&format!(" AND {column} = ")).bind(value.as_str());
        }
    }
    pagination::newest_first(&mut sql, q.cursor.as_deref(), limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |b| pagination::newest_cursor(b.created_at, &b.id)))
}

/// A request's progress: counts per state and each device's bundle with its command's state.
/// A bundle whose command ended without it counts as failed at once, before [`settle`] records it.
pub async fn progress(db: &Db, scope: &TenantScope, request_id: &str) -> Result<BundleProgress, Error> {
    let not_found = || Error::NotFound(format!("support bundle request {request_id}"));
    if !is_id(request_id) {
        return Err(not_found());
    }
    let rows = sqlx::query(
        "SELECT b.id, b.device_id, d.name, b.state, b.size_bytes, b.error, b.requested_by, b.created_at, \
         b.since_secs, c.state AS command_state, c.result FROM support_bundles b \
         JOIN devices d ON d.id = b.device_id JOIN commands c ON c.id = b.command_id \
         WHERE b.tenant_id = $1 AND b.request_id = $2 ORDER BY d.name, b.id",
    )
    .bind(scope.id())
    .bind(request_id)
    .fetch_all(db.reader())
    .await?;
    let first = rows.first().ok_or_else(not_found)?;
    let mut progress = BundleProgress {
        request_id: request_id.to_owned(),
        requested_by: first.try_get("requested_by")?,
        created_at: from_ms(first.try_get("created_at")?),
        since_secs: u64::try_from(first.try_get::<i64, _>("since_secs")?).unwrap_or(0),
        total: rows.len() as u64,
        states: BTreeMap::new(),
        devices: Vec::new(),
    };
    for row in &rows {
        let device = device_progress(row)?;
        *progress.states.entry(device.state.as_str().to_owned()).or_default() += 1;
        if progress.devices.len() < PROGRESS_DEVICES as usize {
            progress.devices.push(device);
        }
    }
    Ok(progress)
}

fn device_progress(row: &AnyRow) -> Result<DeviceProgress, Error> {
    let state = parse_state(&row.try_get::<String, _>("state")?)?;
    let command: String = row.try_get("command_state")?;
    let command_state = CommandState::parse(&command).ok_or_else(|| anyhow::anyhow!("command state `{command}`"))?;
    let result: Option<CommandResult> =
        row.try_get::<Option<String>, _>("result")?.and_then(|r| serde_json::from_str(&r).ok());
    let mut error: Option<String> = row.try_get("error")?;
    let state = match lost(state, command_state, result.as_ref()) {
        Some(why) => {
            error = Some(why);
            BundleState::Failed
        }
        None => state,
    };
    Ok(DeviceProgress {
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("name")?,
        bundle_id: row.try_get("id")?,
        state,
        command_state,
        size_bytes: row.try_get::<Option<i64>, _>("size_bytes")?.and_then(|n| u64::try_from(n).ok()),
        error,
    })
}

/// Why a bundle not yet final will never arrive, when its command ended.
pub(crate) fn lost(state: BundleState, command: CommandState, result: Option<&CommandResult>) -> Option<String> {
    if state.is_final() || !command.is_final() {
        return None;
    }
    let said = result.and_then(|r| r.error.clone()).filter(|e| !e.is_empty());
    Some(match command {
        CommandState::Expired => "the device did not come back before the request expired".to_owned(),
        CommandState::Canceled => "the request was canceled".to_owned(),
        CommandState::Succeeded => "the device reported success but no archive arrived".to_owned(),
        _ => said.unwrap_or_else(|| "the device could not make the bundle".to_owned()),
    })
}

fn parse_state(s: &str) -> Result<BundleState, Error> {
    Ok(BundleState::parse(s).ok_or_else(|| anyhow::anyhow!("stored bundle state `{s}`"))?)
}

pub(crate) fn from_row(row: &AnyRow) -> Result<SupportBundle, Error> {
    let count = |c: &str| -> Result<Option<u64>, Error> {
        Ok(row.try_get::<Option<i64>, _>(c)?.and_then(|n| u64::try_from(n).ok()))
    };
    Ok(SupportBundle {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        device_id: row.try_get("device_id")?,
        command_id: row.try_get("command_id")?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        requested_by: row.try_get("requested_by")?,
        source_addr: row.try_get("source_addr")?,
        since_secs: count("since_secs")?.unwrap_or(0),
        created_at: from_ms(row.try_get("created_at")?),
        stored_at: row.try_get::<Option<i64>, _>("stored_at")?.map(from_ms),
        size_bytes: count("size_bytes")?,
        sha256: row.try_get("sha256")?,
        error: row.try_get("error")?,
    })
}
