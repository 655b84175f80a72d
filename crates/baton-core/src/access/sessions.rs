//! Login sessions for the console and the CLI: a random secret (cookie or bearer) with a fixed
//! lifetime, plus a CSRF token that cookie-authenticated changes must echo.

use sqlx::Row;

use super::{Principal, Role, Subject, TenantScope, secrets};
use crate::{
    Error,
    store::{Db, new_id, now_ms},
};

/// A new session's secrets.
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

pub async fn create(db: &Db, scope: &TenantScope, user_id: &str, ttl_ms: i64) -> Result<NewSession, Error> {
    let now = now_ms();
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(db.writer()).await?;
    let session = NewSession {
        secret: secrets::generate(secrets::SESSION_PREFIX),
        csrf_token: secrets::generate(""),
        expires_at_ms: now + ttl_ms,
    };
    sqlx::query(
        "INSERT INTO sessions (id, tenant_id, user_id, secret_hash, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(scope.id())
    .bind(user_id)
    .bind(secrets::hash_token(&session.secret))
    .bind(&session.csrf_token)
    .bind(now)
    .bind(session.expires_at_ms)
    .execute(db.writer())
    .await?;
    Ok(session)
}

/// Ends the session with this secret, if any.
pub async fn delete(db: &Db, secret: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM sessions WHERE secret_hash = $1")
        .bind(secrets::hash_token(secret))
        .execute(db.writer())
        .await?;
    Ok(())
}

/// The caller behind a session secret, if the session is live.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<Principal>, Error> {
    let row = sqlx::query(
        "SELECT s.tenant_id, s.csrf_token, s.expires_at, u.id AS user_id, u.username, u.role, u.platform_admin, \
         n.name AS tenant_name, n.disabled FROM sessions s JOIN users u ON u.id = s.user_id \
         JOIN tenants n ON n.id = s.tenant_id WHERE s.secret_hash = $1",
    )
    .bind(secrets::hash_token(secret))
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<i64, _>("expires_at")? <= now_ms() || row.try_get::<i64, _>("disabled")? != 0 {
        return Ok(None);
    }
    Ok(Some(Principal {
        scope: TenantScope::internal(row.try_get::<String, _>("tenant_id")?),
        tenant_name: row.try_get("tenant_name")?,
        subject: Subject::User { id: row.try_get("user_id")?, username: row.try_get("username")? },
        role: Role::find(&row.try_get::<String, _>("role")?).unwrap_or(Role::NONE),
        platform_admin: row.try_get::<i64, _>("platform_admin")? != 0,
        csrf_token: Some(row.try_get("csrf_token")?),
        only: None,
    }))
}
