//! The tenant's remote-access policy: a switch that turns every remote session off, and whether
//! keystrokes are recorded (they can hold passwords, so off by default). A tenant without a row
//! has the defaults.

use baton_proto::api::remote::RemotePolicy;
use sqlx::Row;

use crate::{
    Error,
    access::TenantScope,
    store::{Db, now_ms},
};

pub async fn get(db: &Db, scope: &TenantScope) -> Result<RemotePolicy, Error> {
    let row = sqlx::query("SELECT enabled, record_input FROM remote_policies WHERE tenant_id = $1")
        .bind(scope.id())
        .fetch_optional(db.reader())
        .await?;
    match row {
        Some(row) => Ok(RemotePolicy {
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            record_input: row.try_get::<i64, _>("record_input")? != 0,
        }),
        None => Ok(RemotePolicy::default()),
    }
}

/// Replaces the policy. Sessions already open keep running; the switch stops new ones.
pub async fn put(db: &Db, scope: &TenantScope, policy: &RemotePolicy) -> Result<RemotePolicy, Error> {
    sqlx::query(
        "INSERT INTO remote_policies (tenant_id, enabled, record_input, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled, record_input = excluded.record_input, \
         updated_at = excluded.updated_at",
    )
    .bind(scope.id())
    .bind(i64::from(policy.enabled))
    .bind(i64::from(policy.record_input))
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    get(db, scope).await
}
