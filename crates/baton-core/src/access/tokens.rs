//! API tokens: random secrets shown once, stored as SHA-256, revocable, with an optional expiry
//! and a last-used time.

use baton_proto::api::{
    Page,
    access::{ApiToken, TokenCreate, TokenCreated},
};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{Permission, Principal, Role, Subject, TenantScope, secrets};
use crate::{
    Error, pagination,
    store::{Db, from_ms, new_id, now_ms},
};

/// How stale `last_used_at` may get before a request refreshes it (saves a write per request).
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

const COLUMNS: &str = "id, name, role, permissions, created_by, created_at, last_used_at, expires_at, revoked_at";

pub async fn create(db: &Db, scope: &TenantScope, by: &Principal, req: TokenCreate) -> Result<TokenCreated, Error> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid("/name", "must be 1 to 100 characters, without control characters"));
    }
    let role_name = req.role.as_deref().unwrap_or(by.role.name);
    let role = Role::find(role_name).ok_or_else(|| Error::invalid("/role", format!("unknown role `{role_name}`")))?;
    if !by.role.covers(&role) || (req.permissions.is_none() && !by.holds_all(&role)) {
        return Err(Error::Forbidden(format!(
            "your role `{}` cannot create a token with role `{}`",
            by.role.name, role.name
        )));
    }
    let only = narrowed(by, &role, req.permissions.as_deref())?;
    let expires_at = match req.expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(Error::invalid("/expires_in_days", "must be between 1 and 3650"));
        }
        Some(days) => Some(now_ms() + i64::from(days) * 86_400_000),
        None => None,
    };
    // Tokens never carry platform administration (least privilege); only the bootstrap token does.
    let platform_admin = false;
    let secret = secrets::generate(secrets::TOKEN_PREFIX);
    let by_label = by.subject_label();
    let token =
        Insert { name, role: role.name, permissions: only.as_deref(), platform_admin, created_by: Some(&by_label) };
    let token = insert(db, scope, &token, &secret, expires_at).await?;
    Ok(TokenCreated { token, secret })
}

/// The permissions a new token is narrowed to, space-separated for storage: each must be a
/// permission of the token's role that the creator holds too.
fn narrowed(by: &Principal, role: &Role, asked: Option<&[String]>) -> Result<Option<String>, Error> {
    let Some(asked) = asked else { return Ok(None) };
    if asked.is_empty() || asked.len() > 64 {
        return Err(Error::invalid("/permissions", "name 1 to 64 permissions, or leave it out for all of the role's"));
    }
    let mut names = Vec::with_capacity(asked.len());
    for (i, name) in asked.iter().enumerate() {
        let pointer = format!("/permissions/{i}");
        let permission =
            Permission::parse(name).ok_or_else(|| Error::invalid(&pointer, format!("unknown permission `{name}`")))?;
        if !role.grants(permission) || !by.can(permission) {
            return Err(Error::Forbidden(format!(
                "`{name}` is not a permission of role `{}` that you hold; a token holds at most its role's and yours",
                role.name
            )));
        }
        if !names.contains(&permission.as_str()) {
            names.push(permission.as_str());
        }
    }
    Ok(Some(names.join(" ")))
}

/// Reads a token's stored narrowing; unknown names (a permission since removed) grant nothing.
fn parse_only(stored: Option<String>) -> Option<Vec<Permission>> {
    stored.map(|s| s.split_whitespace().filter_map(Permission::parse).collect())
}

/// Stores a token whose secret was chosen outside (`BATON_BOOTSTRAP_TOKEN`), once.
pub async fn ensure_bootstrap(db: &Db, scope: &TenantScope, secret: &str) -> Result<(), Error> {
    if secret.len() < 16 || secret.starts_with(secrets::SESSION_PREFIX) || secret.chars().any(char::is_whitespace) {
        return Err(Error::Config(format!(
            "BATON_BOOTSTRAP_TOKEN must be at least 16 characters, without spaces, and not start with `{}`",
            secrets::SESSION_PREFIX
        )));
    }
    let hash = secrets::hash_token(secret);
    // A changed bootstrap token replaces the old one: a leaked value is retired by changing it.
    let retired = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE created_by = 'bootstrap' AND secret_hash <> $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&hash)
    .execute(db.writer())
    .await?
    .rows_affected();
    if retired > 0 {
        tracing::info!(retired, "revoked the previous bootstrap token");
    }
    let exists =
        sqlx::query("SELECT 1 FROM api_tokens WHERE secret_hash = $1").bind(&hash).fetch_optional(db.reader()).await?;
    if exists.is_none() {
        let token = Insert {
            name: "bootstrap",
            role: "admin",
            permissions: None,
            platform_admin: true,
            created_by: Some("bootstrap"),
        };
        insert(db, scope, &token, secret, None).await?;
        tracing::info!("created the bootstrap API token from BATON_BOOTSTRAP_TOKEN");
    }
    Ok(())
}

/// A token's stored description.
struct Insert<'a> {
    name: &'a str,
    role: &'a str,
    permissions: Option<&'a str>,
    platform_admin: bool,
    created_by: Option<&'a str>,
}

async fn insert(
    db: &Db,
    scope: &TenantScope,
    token: &Insert<'_>,
    secret: &str,
    expires_at: Option<i64>,
) -> Result<ApiToken, Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO api_tokens (id, tenant_id, name, role, permissions, platform_admin, secret_hash, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(token.name)
    .bind(token.role)
    .bind(token.permissions)
    .bind(i64::from(token.platform_admin))
    .bind(secrets::hash_token(secret))
    .bind(token.created_by)
    .bind(now_ms())
    .bind(expires_at)
    .execute(db.writer())
    .await?;
    get(db, scope, &id).await
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<ApiToken, Error> {
    if !crate::store::is_id(id) {
        return Err(Error::NotFound(format!("token {id}")));
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_tokens WHERE tenant_id = $1 AND id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("token {id}")))
}

pub async fn list(
    db: &Db,
    scope: &TenantScope,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<ApiToken>, Error> {
    let limit = pagination::limit(limit)?;
    let (after_ts, after_id) = pagination::after_created(cursor)?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE tenant_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4"
    )))
    .bind(scope.id())
    .bind(after_ts)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |t| pagination::created_cursor(t.created_at, &t.id)))
}

/// Revokes a token; it is refused from now on. Revoking twice is harmless.
pub async fn revoke(db: &Db, scope: &TenantScope, by: &Principal, id: &str) -> Result<ApiToken, Error> {
    get(db, scope, id).await?;
    let platform: Option<i64> = sqlx::query("SELECT platform_admin FROM api_tokens WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| r.try_get("platform_admin"))
        .transpose()?;
    if platform == Some(1) && !by.platform_admin {
        return Err(Error::Forbidden(
            "only a platform administrator may revoke a platform administrator's token".into(),
        ));
    }
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(scope.id())
        .bind(id)
        .execute(db.writer())
        .await?;
    get(db, scope, id).await
}

/// The caller behind an API token secret, if it is valid now.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<Principal>, Error> {
    let row = sqlx::query(
        "SELECT t.id, t.tenant_id, t.name, t.role, t.permissions, t.platform_admin, t.expires_at, t.revoked_at, t.last_used_at, \
         n.name AS tenant_name, n.disabled FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id \
         WHERE t.secret_hash = $1",
    )
    .bind(secrets::hash_token(secret))
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let now = now_ms();
    let expired = row.try_get::<Option<i64>, _>("expires_at")?.is_some_and(|e| e <= now);
    let revoked = row.try_get::<Option<i64>, _>("revoked_at")?.is_some();
    if expired || revoked || row.try_get::<i64, _>("disabled")? != 0 {
        return Ok(None);
    }
    let id: String = row.try_get("id")?;
    if row.try_get::<Option<i64>, _>("last_used_at")?.is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS) {
        let touched = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(db.writer())
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "could not record token use");
        }
    }
    Ok(Some(Principal {
        scope: TenantScope::internal(row.try_get::<String, _>("tenant_id")?),
        tenant_name: row.try_get("tenant_name")?,
        subject: Subject::Token { id, name: row.try_get("name")? },
        role: Role::find(&row.try_get::<String, _>("role")?).unwrap_or(Role::NONE),
        platform_admin: row.try_get::<i64, _>("platform_admin")? != 0,
        csrf_token: None,
        only: parse_only(row.try_get("permissions")?),
    }))
}

fn from_row(row: &AnyRow) -> Result<ApiToken, Error> {
    let ts = |c: &str| -> Result<_, Error> { Ok(row.try_get::<Option<i64>, _>(c)?.map(from_ms)) };
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        permissions: row
            .try_get::<Option<String>, _>("permissions")?
            .map(|s| s.split_whitespace().map(str::to_owned).collect()),
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
        last_used_at: ts("last_used_at")?,
        expires_at: ts("expires_at")?,
        revoked_at: ts("revoked_at")?,
    })
}
