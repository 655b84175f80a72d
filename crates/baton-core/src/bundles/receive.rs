//! A bundle's arrival and its other ends: the device's upload streamed into the artifact store
//! under the server's size limit and checked against the SHA-256 the device declared
//! ([`receive`]); a bundle failing ([`failed`]), also when its command ended without it
//! ([`settle`]); and bundles past their retention deleted with their archives ([`prune`]).

use baton_proto::api::{
    bundles::{BundleState, SupportBundle},
    commands::{CommandResult, CommandState},
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row};
use tokio::io::AsyncWriteExt;

use super::{COLUMNS, from_row, kind, lost};
use crate::{
    Error,
    access::TenantScope,
    artifacts::ArtifactStore,
    bus::SharedBus,
    events,
    store::{Db, now_ms},
};

/// What a refused upload still reads of its body before answering, so a client still sending
/// sees the answer rather than a closed connection; past this the connection is closed.
const DRAIN_BYTES: u64 = 64 << 20;

/// An upload as the device sent it.
pub struct Upload<'a> {
    pub device_id: &'a str,
    pub bundle_id: &'a str,
    /// The SHA-256 the device computed (hex), checked against the bytes.
    pub sha256: Option<&'a str>,
    /// The length the request declared, when it did.
    pub declared_len: Option<u64>,
    /// The server's limit (`support_bundle_max_bytes`).
    pub max_bytes: u64,
}

/// How an upload ended when it was not an error.
#[derive(Debug)]
pub enum Received {
    Stored(Box<SupportBundle>),
    /// Over the server's limit: nothing was stored and the bundle failed saying so.
    TooLarge {
        limit: u64,
    },
}

/// Receives a device's bundle: streamed to the store's staging area, hashed, and moved into the
/// store only when whole, within the limit and matching the declared hash.
pub async fn receive<S, E>(
    db: &Db,
    bus: &SharedBus,
    store: &dyn ArtifactStore,
    scope: &TenantScope,
    up: Upload<'_>,
    mut body: S,
) -> Result<Received, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(sha) = up.sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::invalid("x-checksum-sha256", "must be 64 hexadecimal digits (the archive's SHA-256)"));
    }
    let bundle = receivable(db, scope, up.device_id, up.bundle_id).await?;
    let too_large = |seen: u64| {
        format!(
            "the bundle is {seen} bytes or more, over the server's limit of {} bytes (support_bundle_max_bytes); \
             lower the agent's bundle_max_bytes or raise the server's limit",
            up.max_bytes
        )
    };
    if let Some(len) = up.declared_len.filter(|n| *n > up.max_bytes) {
        failed(db, bus, scope, up.device_id, &bundle.id, &too_large(len)).await?;
        drain(&mut body).await;
        return Ok(Received::TooLarge { limit: up.max_bytes });
    }
    sqlx::query("UPDATE support_bundles SET state = 'uploading' WHERE id = $1 AND state IN ('requested', 'uploading')")
        .bind(&bundle.id)
        .execute(db.writer())
        .await?;
    let staged = tempfile::NamedTempFile::new_in(store.staging()).map_err(io_error)?;
    let mut file = tokio::fs::File::create(staged.path()).await.map_err(io_error)?;
    let (mut size, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::invalid("body", format!("the upload was cut off: {e}")))?;
        size += chunk.len() as u64;
        if size > up.max_bytes {
            failed(db, bus, scope, up.device_id, &bundle.id, &too_large(size)).await?;
            drain(&mut body).await;
            return Ok(Received::TooLarge { limit: up.max_bytes });
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    if size == 0 {
        return Err(Error::invalid("body", "the upload is empty; send the archive's bytes as the body"));
    }
    file.sync_all().await.map_err(io_error)?;
    drop(file);
    let sha256: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Some(expected) = up.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(Error::invalid("body", format!("the bytes received hash to {sha256}, not {expected}; send again")));
    }
    // A key of its own per upload: a retried upload racing the first never deletes the object
    // the other one stored.
    let key = format!("bundles/{}/{}/{}", scope.id(), bundle.id, crate::store::new_id());
    let staged = staged.into_temp_path();
    store.put(&key, &staged).await.map_err(io_error)?;
    let changed = sqlx::query(
        "UPDATE support_bundles SET state = 'stored', stored_at = $1, size_bytes = $2, sha256 = $3, store_key = $4 \
         WHERE id = $5 AND state IN ('requested', 'uploading')",
    )
    .bind(now_ms())
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(&sha256)
    .bind(&key)
    .bind(&bundle.id)
    .execute(db.writer())
    .await?
    .rows_affected();
    if changed == 0 {
        let _ = store.delete(&key).await;
        return Err(Error::Conflict(format!("support bundle {} ended while it was uploaded", bundle.id)));
    }
    metrics::counter!("baton_support_bundle_bytes_total").increment(size);
    let data = serde_json::json!({
        "bundle_id": bundle.id, "request_id": bundle.request_id, "requested_by": bundle.requested_by,
        "size_bytes": size, "sha256": sha256,
    });
    events::record(db, bus, scope, Some(up.device_id), kind::STORED, data).await;
    Ok(Received::Stored(Box::new(super::get(db, scope, &bundle.id).await?)))
}

/// The device's bundle, if it may still arrive.
async fn receivable(db: &Db, scope: &TenantScope, device_id: &str, id: &str) -> Result<SupportBundle, Error> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM support_bundles b WHERE b.tenant_id = $1 AND b.device_id = $2 AND b.id = $3"
    )))
    .bind(scope.id())
    .bind(device_id)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::NotFound(format!("support bundle {id} of this device")))?;
    let bundle = from_row(&row)?;
    match bundle.state {
        BundleState::Stored => Err(Error::Conflict(format!("support bundle {id} is already stored"))),
        BundleState::Failed => Err(Error::Conflict(format!(
            "support bundle {id} failed ({}); ask for a new one",
            bundle.error.as_deref().unwrap_or("no reason given")
        ))),
        BundleState::Requested | BundleState::Uploading => Ok(bundle),
    }
}

/// Fails a bundle that has not arrived, saying why; returns whether it changed.
pub async fn failed(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    id: &str,
    error: &str,
) -> Result<bool, Error> {
    let changed = sqlx::query(
        "UPDATE support_bundles SET state = 'failed', error = $1 \
         WHERE tenant_id = $2 AND id = $3 AND state IN ('requested', 'uploading')",
    )
    .bind(error)
    .bind(scope.id())
    .bind(id)
    .execute(db.writer())
    .await?
    .rows_affected();
    if changed > 0 {
        let data = serde_json::json!({"bundle_id": id, "error": error});
        events::record(db, bus, scope, Some(device_id), kind::FAILED, data).await;
    }
    Ok(changed > 0)
}

/// Fails the bundles whose command ended without them (it failed, expired or was canceled), in
/// every tenant, or only the bundle of `command_id`; returns how many.
pub async fn settle(db: &Db, bus: &SharedBus, command_id: Option<&str>) -> Result<u64, Error> {
    let mut sql = String::from(
        "SELECT b.id, b.tenant_id, b.device_id, b.state, c.state AS command_state, c.result FROM support_bundles b \
         JOIN commands c ON c.id = b.command_id WHERE b.state IN ('requested', 'uploading') \
         AND c.state IN ('SUCCEEDED', 'FAILED', 'EXPIRED', 'CANCELED')",
    );
    sql.push_str(if command_id.is_some() { " AND b.command_id = $1" } else { " AND '' = $1" });
    let rows = sqlx::query(AssertSqlSafe(format!("{sql} LIMIT 1000")))
        .bind(command_id.unwrap_or(""))
        .fetch_all(db.reader())
        .await?;
    let mut settled = 0;
    for row in rows {
        let state = BundleState::parse(&row.try_get::<String, _>("state")?).unwrap_or(BundleState::Requested);
        let command = CommandState::parse(&row.try_get::<String, _>("command_state")?).unwrap_or(CommandState::Failed);
        let result: Option<CommandResult> =
            row.try_get::<Option<String>, _>("result")?.and_then(|r| serde_json::from_str(&r).ok());
        let Some(why) = lost(state, command, result.as_ref()) else { continue };
        let scope = TenantScope::internal(row.try_get::<String, _>("tenant_id")?);
        let (id, device): (String, String) = (row.try_get("id")?, row.try_get("device_id")?);
        if failed(db, bus, &scope, &device, &id, &why).await? {
            settled += 1;
        }
    }
    Ok(settled)
}

/// Deletes bundles that ended more than `retention_days` ago, with their archives, in every
/// tenant; returns how many.
pub async fn prune(db: &Db, store: &dyn ArtifactStore, retention_days: u32) -> Result<u64, Error> {
    let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
    let rows = sqlx::query(
        "SELECT id, store_key FROM support_bundles WHERE state IN ('stored', 'failed') \
         AND COALESCE(stored_at, created_at) < $1 LIMIT 1000",
    )
    .bind(cutoff)
    .fetch_all(db.reader())
    .await?;
    let mut pruned = 0;
    for row in rows {
        let (id, key): (String, Option<String>) = (row.try_get("id")?, row.try_get("store_key")?);
        if let Some(key) = key {
            store.delete(&key).await.map_err(|e| anyhow::anyhow!("deleting support bundle {key}: {e}"))?;
        }
        sqlx::query("DELETE FROM support_bundles WHERE id = $1").bind(&id).execute(db.writer()).await?;
        pruned += 1;
    }
    Ok(pruned)
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_BYTES`].
async fn drain<S, E>(body: &mut S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len() as u64;
        if seen > DRAIN_BYTES {
            break;
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(anyhow::anyhow!("support bundle store: {e}"))
}
