//! Executions on the device's side of the wire: what a connected agent is sent (each execution
//! it is working on, with claims signed afresh for it), what its reports change, and which
//! execution a device may download an artifact for. Reports only move an execution forward
//! within its attempt; a report for an old attempt or a final execution changes nothing, so a
//! device that repeats itself after a reconnect never counts twice.

use baton_proto::{
    api::{
        artifacts::Storage,
        rollouts::{ExecutionState, FailureClass},
    },
    deployment::{DeployedArtifact, Deployment, ExecutionClaims, ExecutionReport, install_line},
};
use sqlx::Row;

use super::{Engine, Spec, plan};
use crate::{
    Error,
    access::TenantScope,
    artifacts::{self, Located, signing},
    bus::{Message, SharedBus},
    store::{Db, is_id, sql::Sql},
};

/// How long signed claims are good for. The agent refuses them after this, so a deployment
/// captured off the wire cannot be replayed later; a device that needs longer is sent fresh ones.
pub const CLAIMS_TTL_MS: i64 = 60 * 60 * 1000;

/// Where a device downloads an artifact stored by the server, for one execution.
pub fn download_path(execution_id: &str) -> String {
    format!("/api/v1/agent/executions/{execution_id}/artifact")
}

/// The executions this device is working on, as deployments to send it.
pub async fn pending(db: &Db, engine: &Engine, scope: &TenantScope, device_id: &str) -> Result<Vec<Deployment>, Error> {
    let mut sql = Sql::new(
        "SELECT e.id, e.attempt, e.action, e.artifact_id, r.spec FROM rollout_executions e \
         JOIN rollouts r ON r.id = e.rollout_id WHERE e.tenant_id = ",
    );
    sql.bind(scope.id()).push(" AND e.device_id = ").bind(device_id).push(" AND e.state IN ");
    let working: Vec<&str> = ExecutionState::ALL.iter().filter(|s| s.is_in_flight()).map(|s| s.as_str()).collect();
    sql.bind_list(working).push(" AND r.state IN ('RUNNING', 'PAUSED', 'ROLLING_BACK') ORDER BY e.id");
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let keys = signing::current(db, scope).await?;
    let key_endorsements = signing::endorsements(db, scope, &keys).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let spec = Spec::from_json(&row.try_get::<String, _>("spec")?)?;
        let rollback = row.try_get::<String, _>("action")? == "rollback";
        let artifact = artifacts::get(db, scope, &row.try_get::<String, _>("artifact_id")?).await?;
        let windows = match &spec.windows {
            Some(w) => w.clone(),
            None => crate::windows::of_device(db, scope, device_id).await?,
        };
        // Rolling back is not held for a window: it undoes a failure.
        let install_now = rollback || crate::windows::open_at(&windows, engine.now());
        let claims = ExecutionClaims {
            execution_id: id.clone(),
            device_id: device_id.to_owned(),
            name: artifact.name.clone(),
            version: artifact.version.clone(),
            sha256: artifact.sha256.clone(),
            size: artifact.size,
            allow_downgrade: spec.allow_downgrade || rollback,
            install: install_line(&spec.install),
            install_now,
            expires_at: engine.now() + CLAIMS_TTL_MS,
        }
        .statement();
        let Some(claims_signature) = signing::sign(db, scope, claims.as_bytes()).await? else {
            tracing::warn!(execution_id = %id, "no server-held signing key to sign execution claims; make one");
            continue;
        };
        let url = match artifact.storage {
            Storage::External => artifact.url.clone().unwrap_or_default(),
            Storage::Stored => download_path(&id),
        };
        out.push(Deployment {
            execution_id: id,
            attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(1),
            artifact: DeployedArtifact {
                name: artifact.name,
                version: artifact.version,
                kind: artifact.kind,
                size: artifact.size,
                sha256: artifact.sha256,
                signature: artifact.signature,
                url,
                compatibility: artifact.compatibility,
                depends: artifact.depends,
            },
            install: spec.install,
            install_now,
            claims,
            claims_signature,
            keys: keys.clone(),
            key_endorsements: key_endorsements.clone(),
        });
    }
    Ok(out)
}

/// Applies a device's report. Returns whether the execution is now final.
pub async fn report(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    device_id: &str,
    report: ExecutionReport,
) -> Result<bool, Error> {
    if !is_id(&report.execution_id) {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT e.state, e.attempt, e.rollout_id, a.name, r.spec FROM rollout_executions e \
         JOIN rollouts r ON r.id = e.rollout_id JOIN artifacts a ON a.id = e.artifact_id \
         WHERE e.tenant_id = $1 AND e.device_id = $2 AND e.id = $3",
    )
    .bind(scope.id())
    .bind(device_id)
    .bind(&report.execution_id)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(false) };
    let name: String = row.try_get("name")?;
    // What the device has is a fact, whatever became of the execution.
    if let Some(version) = report.installed_version.as_deref() {
        record_installed(db, device_id, &name, version, engine.now()).await?;
    }
    let current: String = row.try_get("state")?;
    let current = ExecutionState::parse(&current).unwrap_or(ExecutionState::Queued);
    let attempt = u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(1);
    let new = report.state;
    let forward = new.is_final() || new > current;
    if current.is_final() || report.attempt != attempt || !forward || new == ExecutionState::Queued {
        return Ok(false);
    }
    let rollout_id: String = row.try_get("rollout_id")?;
    let spec = Spec::from_json(&row.try_get::<String, _>("spec")?)?;
    let now = engine.now();
    let detail = report.detail.as_deref().map(|d| d.chars().take(2000).collect::<String>());
    let class = match (new, report.failure_class) {
        (ExecutionState::Failed, None) => Some(FailureClass::Install),
        (_, class) => class,
    };
    let retry = new == ExecutionState::Failed
        && class.is_some_and(FailureClass::is_retryable)
        && attempt < spec.retry.max_attempts;
    // Compare-and-set on the state read above, so a cancel or a gate that moved the execution
    // meanwhile wins over a report that was already on its way.
    let mut tx = db.writer().begin().await?;
    let changed = if retry {
        let wait = plan::backoff_ms(attempt + 1, spec.retry.backoff_secs, spec.retry.max_backoff_secs, rand::random());
        sqlx::query(
            "UPDATE rollout_executions SET state = 'QUEUED', attempt = attempt + 1, retry_at = $4, failure_class = $5, \
             detail = $6, installed_version = COALESCE($7, installed_version), updated_at = $8 \
             WHERE tenant_id = $1 AND device_id = $2 AND id = $3 AND attempt = $9 AND state = $10",
        )
        .bind(scope.id())
        .bind(device_id)
        .bind(&report.execution_id)
        .bind(now + wait)
        .bind(class.map(FailureClass::as_str))
        .bind(detail.map(|d| format!("attempt {attempt} failed: {d}")))
        .bind(report.installed_version.as_deref())
        .bind(now)
        .bind(i64::from(attempt))
        .bind(current.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE rollout_executions SET state = $4, failure_class = $5, detail = COALESCE($6, detail), \
             installed_version = COALESCE($7, installed_version), bytes_per_sec = COALESCE($8, bytes_per_sec), \
             updated_at = $9 WHERE tenant_id = $1 AND device_id = $2 AND id = $3 AND attempt = $10 AND state = $11",
        )
        .bind(scope.id())
        .bind(device_id)
        .bind(&report.execution_id)
        .bind(new.as_str())
        .bind(class.map(FailureClass::as_str))
        .bind(detail)
        .bind(report.installed_version.as_deref())
        .bind(report.bytes_per_sec.and_then(|b| i64::try_from(b).ok()))
        .bind(now)
        .bind(i64::from(attempt))
        .bind(current.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
    };
    // The execution moved meanwhile (canceled, or another report): this report is stale.
    if changed == 0 {
        return Ok(false);
    }
    tx.commit().await?;
    let final_now = new.is_final() && !retry;
    if final_now || retry {
        bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id });
        engine.wake();
    }
    Ok(final_now)
}

/// The execution a device is working on now (the newest, if several) with its artifact: for
/// devices that fetch by asking rather than by URL.
pub async fn in_flight(db: &Db, scope: &TenantScope, device_id: &str) -> Result<Option<(String, u32, Located)>, Error> {
    let mut sql = Sql::new(
        "SELECT e.id, e.attempt, e.artifact_id FROM rollout_executions e JOIN rollouts r ON r.id = e.rollout_id \
         WHERE e.tenant_id = ",
    );
    sql.bind(scope.id()).push(" AND e.device_id = ").bind(device_id).push(" AND e.state IN ");
    let working: Vec<&str> = ExecutionState::ALL.iter().filter(|s| s.is_in_flight()).map(|s| s.as_str()).collect();
    sql.bind_list(working).push(" AND r.state IN ('RUNNING', 'PAUSED', 'ROLLING_BACK') ORDER BY e.id DESC LIMIT 1");
    let Some(row) = sql.query(db.backend()).fetch_optional(db.reader()).await? else { return Ok(None) };
    let located = artifacts::locate(db, scope, &row.try_get::<String, _>("artifact_id")?).await?;
    let attempt = u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(1);
    Ok(Some((row.try_get("id")?, attempt, located)))
}

/// Records the version of `name` a device reports having.
async fn record_installed(db: &Db, device_id: &str, name: &str, version: &str, now: i64) -> Result<(), Error> {
    if version.is_empty() || version.len() > 128 || version.chars().any(char::is_control) {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO device_software (device_id, name, version, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (device_id, name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(device_id)
    .bind(name)
    .bind(version)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// The artifact a device may download for one of its executions that is not final.
pub async fn artifact_for(db: &Db, scope: &TenantScope, device_id: &str, execution_id: &str) -> Result<Located, Error> {
    let not_found = || Error::NotFound(format!("execution {execution_id}"));
    if !is_id(execution_id) {
        return Err(not_found());
    }
    let row = sqlx::query(
        "SELECT artifact_id, state FROM rollout_executions WHERE tenant_id = $1 AND device_id = $2 AND id = $3",
    )
    .bind(scope.id())
    .bind(device_id)
    .bind(execution_id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(not_found)?;
    let state: String = row.try_get("state")?;
    if ExecutionState::parse(&state).is_none_or(ExecutionState::is_final) {
        return Err(Error::Conflict(format!("execution {execution_id} is {state}; nothing to download")));
    }
    artifacts::locate(db, scope, &row.try_get::<String, _>("artifact_id")?).await
}
