//! Delivery: which commands a connected device gets, and what its answers do. State only moves
//! forward (`QUEUED/SENT → ACKED → SUCCEEDED|FAILED`); answers for commands that were canceled,
//! expired or belong to another device change nothing.

use baton_proto::{
    agent::{CommandEnvelope, CommandProgress, CommandUpdate},
    api::commands::{CommandSpec, CommandState},
};
use sqlx::{AssertSqlSafe, Row};

use super::{COLUMNS, MAX_RESULT_BYTES, from_row};
use crate::{
    Error,
    access::TenantScope,
    bus::SharedBus,
    events,
    store::{Db, now_ms, sql::Sql},
};

/// How long after its expiry an acknowledged command may still report before it counts as lost.
const ACKED_GRACE_MS: i64 = 60 * 60 * 1000;
/// Most commands handed to a device at once; the rest follow as these finish.
const DELIVERY_WINDOW: i64 = 100;

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
        sql.bind_list(queued).query().execute(db.writer()).await?;
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

/// Applies a device's report about one of its commands. Returns whether the command finished.
pub async fn report(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    update: CommandUpdate,
) -> Result<bool, Error> {
    let row = sqlx::query("SELECT state, spec FROM commands WHERE tenant_id = $1 AND device_id = $2 AND id = $3")
        .bind(scope.id())
        .bind(device_id)
        .bind(&update.command_id)
        .fetch_optional(db.reader())
        .await?;
    let Some(row) = row else {
        tracing::debug!(device_id, command = %update.command_id, "report for a command of another device or none");
        return Ok(false);
    };
    let state = CommandState::parse(&row.try_get::<String, _>("state")?).unwrap_or(CommandState::Canceled);
    if state.is_final() {
        return Ok(false);
    }
    let now = now_ms();
    match update.state {
        CommandProgress::Acked => {
            sqlx::query(
                "UPDATE commands SET state = 'ACKED', acked_at = $1 WHERE id = $2 AND state IN ('QUEUED', 'SENT')",
            )
            .bind(now)
            .bind(&update.command_id)
            .execute(db.writer())
            .await?;
            Ok(false)
        }
        CommandProgress::Succeeded | CommandProgress::Failed => {
            let final_state = if update.state == CommandProgress::Succeeded { "SUCCEEDED" } else { "FAILED" };
            let mut result = serde_json::to_string(&update.result.unwrap_or_default()).map_err(anyhow::Error::from)?;
            if result.len() > MAX_RESULT_BYTES {
                result = serde_json::json!({"error": "the result was larger than the server keeps", "truncated": true})
                    .to_string();
            }
            let changed = sqlx::query(
                "UPDATE commands SET state = $1, result = $2, finished_at = $3, acked_at = COALESCE(acked_at, $3) \
                 WHERE id = $4 AND state IN ('QUEUED', 'SENT', 'ACKED')",
            )
            .bind(final_state)
            .bind(result)
            .bind(now)
            .bind(&update.command_id)
            .execute(db.writer())
            .await?
            .rows_affected();
            if changed > 0 && update.state == CommandProgress::Succeeded {
                remember_interval(db, device_id, &row.try_get::<String, _>("spec")?).await?;
            }
            if changed > 0 {
                metrics::counter!("baton_commands_finished_total", "state" => final_state).increment(1);
                let data = serde_json::json!({"command_id": update.command_id, "state": final_state});
                events::record(db, bus, scope, Some(device_id), events::kind::COMMAND_FINISHED, data).await;
            }
            Ok(changed > 0)
        }
    }
}

/// A telemetry interval the device accepted is kept, so it is used again after a reconnect.
async fn remember_interval(db: &Db, device_id: &str, spec: &str) -> Result<(), Error> {
    if let Ok(CommandSpec::SetTelemetryInterval { seconds }) = serde_json::from_str(spec) {
        sqlx::query("UPDATE devices SET telemetry_interval_secs = $1 WHERE id = $2")
            .bind(i64::from(seconds))
            .bind(device_id)
            .execute(db.writer())
            .await?;
    }
    Ok(())
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
