//! Delivery: which commands a connected device gets when it connects (or when its session is
//! told to look), and the TTL sweep. State only moves forward (`QUEUED/SENT → ACKED →
//! SUCCEEDED|FAILED`); the devices' answers are applied in batches by the [`writer`](super::writer).

use baton_proto::{agent::CommandEnvelope, api::commands::CommandState};
use sqlx::{AssertSqlSafe, Row};

use super::{COLUMNS, from_row};
use crate::{
    Error,
    access::TenantScope,
    store::{Db, now_ms, sql::Sql},
};

/// How long after its expiry an acknowledged command may still report before it counts as lost.
const ACKED_GRACE_MS: i64 = 60 * 60 * 1000;
/// Most commands handed to a device at once; the rest follow as these finish.
pub const DELIVERY_WINDOW: i64 = 100;

/// Commands waiting for this device, oldest first; queued ones are marked SENT. Commands already
/// SENT or ACKED are included again: after a reconnect the device may not have received them,
/// or its answer may have been lost — it runs a command id at most once and answers a repeat
/// with the result it kept.
pub async fn pending(db: &Db, scope: &TenantScope, device_id: &str) -> Result<Vec<CommandEnvelope>, Error> {
    let now = now_ms();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM commands WHERE tenant_id = $1 AND device_id = $2 AND state IN ('QUEUED', 'SENT', 'ACKED') \
         AND expires_at > $3 ORDER BY created_at, id LIMIT $4"
    )))
    .bind(scope.id())
    .bind(device_id)
    .bind(now)
    .bind(DELIVERY_WINDOW)
    .fetch_all(db.reader())
    .await?;
    let commands = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let queued: Vec<&str> =
        commands.iter().filter(|c| c.state == CommandState::Queued).map(|c| c.id.as_str()).collect();
    if !queued.is_empty() {
        let mut sql = Sql::new("UPDATE commands SET state = 'SENT', sent_at = ");
        sql.bind(now).push(" WHERE state = 'QUEUED' AND device_id = ").bind(device_id).push(" AND id IN ");
        sql.bind_list(queued).query(db.backend()).execute(db.writer()).await?;
    }
    Ok(commands
        .into_iter()
        .map(|c| CommandEnvelope { id: c.id, command: c.command, expires_at: c.expires_at.timestamp_millis() })
        .collect())
}

/// Ids of a device's commands that were sent and are not finished.
pub async fn delivered(db: &Db, scope: &TenantScope, device_id: &str) -> Result<Vec<String>, Error> {
    let rows =
        sqlx::query("SELECT id FROM commands WHERE tenant_id = $1 AND device_id = $2 AND state IN ('SENT', 'ACKED')")
            .bind(scope.id())
            .bind(device_id)
            .fetch_all(db.reader())
            .await?;
    Ok(rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<_, _>>()?)
}

/// Sub-devices of a gateway that have commands waiting (a gateway's periodic look, in case a
/// delivery hint for one of them was lost).
pub async fn waiting_behind(db: &Db, scope: &TenantScope, gateway_id: &str) -> Result<Vec<String>, Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT c.device_id FROM commands c JOIN devices d ON d.id = c.device_id \
         WHERE d.tenant_id = $1 AND d.gateway_id = $2 AND c.state IN ('QUEUED', 'SENT', 'ACKED') AND c.expires_at > $3",
    )
    .bind(scope.id())
    .bind(gateway_id)
    .bind(now_ms())
    .fetch_all(db.reader())
    .await?;
    Ok(rows.iter().map(|r| r.try_get::<String, _>("device_id")).collect::<Result<_, _>>()?)
}

/// Marks commands past their TTL: waiting ones EXPIRED, acknowledged ones that never reported
/// FAILED. Returns how many changed.
pub async fn expire(db: &Db) -> Result<u64, Error> {
    let now = now_ms();
    let expired = sqlx::query("UPDATE commands SET state = 'EXPIRED', finished_at = $1 WHERE state IN ('QUEUED', 'SENT') AND expires_at <= $1")
        .bind(now)
        .execute(db.writer())
        .await?
        .rows_affected();
    let lost =
        serde_json::json!({"error": "the device did not report a result before the command expired"}).to_string();
    let failed = sqlx::query("UPDATE commands SET state = 'FAILED', finished_at = $1, result = $2 WHERE state = 'ACKED' AND expires_at <= $3")
        .bind(now)
        .bind(lost)
        .bind(now - ACKED_GRACE_MS)
        .execute(db.writer())
        .await?
        .rows_affected();
    Ok(expired + failed)
}

/// Cancels everything a device still had waiting (it was decommissioned).
pub async fn cancel_all_for(db: &Db, scope: &TenantScope, device_id: &str) -> Result<u64, Error> {
    super::cancel_open(db, scope, super::Unfinished::Device(device_id)).await
}
