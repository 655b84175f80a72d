//! The fleet at a glance, for the console's overview: how many devices, online, offline and
//! waiting for approval, and how they split by operating system and agent version. Counted
//! by the database (grouped queries), never by loading the fleet.

use sqlx::Row;

use crate::{Error, access::TenantScope, store::Db};

/// Counts of a tenant's devices (decommissioned ones are not counted): `total` = `online` +
/// `offline` (active devices, connected or not) + `pending` (waiting for approval).
pub struct Summary {
    pub total: i64,
    pub online: i64,
    pub offline: i64,
    pub pending: i64,
    /// `(os family, devices)`, largest first; devices that never said appear as `unknown`.
    pub by_os: Vec<(String, i64)>,
    /// `(agent version, devices)`, largest first; MQTT devices appear as `none (MQTT)`.
    pub by_agent: Vec<(String, i64)>,
}

pub async fn summarize(db: &Db, scope: &TenantScope) -> Result<Summary, Error> {
    // CAST: PostgreSQL sums BIGINTs into NUMERIC, which the portable driver cannot read.
    let row = sqlx::query(
        "SELECT COUNT(*) AS total, \
         CAST(COALESCE(SUM(CASE WHEN status = 'active' AND online <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS online, \
         CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending \
         FROM devices WHERE tenant_id = $1 AND status <> 'decommissioned'",
    )
    .bind(scope.id())
    .fetch_one(db.reader())
    .await?;
    let (total, online, pending): (i64, i64, i64) =
        (row.try_get("total")?, row.try_get("online")?, row.try_get("pending")?);
    Ok(Summary {
        total,
        online,
        offline: total - online - pending,
        pending,
        by_os: grouped(db, scope, "COALESCE(os_family, 'unknown')").await?,
        by_agent: grouped(
            db,
            scope,
            "COALESCE(agent_version, CASE WHEN transport = 'mqtt' THEN 'none (MQTT)' ELSE 'unknown' END)",
        )
        .await?,
    })
}

/// Devices counted by one expression (a fixed one from this module, never input).
async fn grouped(db: &Db, scope: &TenantScope, expression: &'static str) -> Result<Vec<(String, i64)>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {expression} AS name, COUNT(*) AS n FROM devices WHERE tenant_id = $1 AND status <> 'decommissioned' \
         GROUP BY {expression} ORDER BY n DESC, name LIMIT 20"
    )))
    .bind(scope.id())
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("n")?))).collect()
}
