//! Users of a tenant: people who log in with a username and an argon2-hashed password.

use baton_proto::api::{
    Page,
    access::{User, UserCreate},
};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{Principal, Role, TenantScope, secrets};
use crate::{
    Error,
    error::Violations,
    pagination::{self, Cursor},
    store::{Db, from_ms, new_id, now_ms},
};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

const COLUMNS: &str = "id, username, role, platform_admin, created_at";

/// Creates a user. `by` is `None` for server-internal creation (bootstrap, new tenants).
pub async fn create(
    db: &Db,
    scope: &TenantScope,
    by: Option<&Principal>,
    req: &UserCreate,
    platform_admin: bool,
) -> Result<User, Error> {
    let role = validate(req)?;
    if let Some(by) = by
        && !(by.role.covers(&role) && by.holds_all(&role))
    {
        return Err(Error::Forbidden(format!(
            "your role `{}` cannot create a user with role `{}`",
            by.role.name, role.name
        )));
    }
    let hash = hash_off_thread(&req.password).await?;
    let mut tx = db.writer().begin().await?;
    let id = insert(&mut tx, scope, &req.username, &hash, role.name, platform_admin).await?;
    tx.commit().await?;
    get(db, scope, &id).await
}

/// Checks a new user's fields; returns the role.
pub fn validate(req: &UserCreate) -> Result<Role, Error> {
    let role_name = req.role.as_deref().unwrap_or("viewer");
    let mut v = Violations::default();
    v.check("/username", validate_username(&req.username));
    if req.password.chars().count() < MIN_PASSWORD_LEN {
        v.add("/password", format!("must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if req.password.chars().count() > 1024 {
        v.add("/password", "must be at most 1024 characters");
    }
    let role = Role::find(role_name);
    if role.is_none() {
        v.add("/role", format!("unknown role `{role_name}`; use admin, operator or viewer"));
    }
    v.finish()?;
    Ok(role.unwrap_or(Role::NONE))
}

/// Argon2 takes tens of milliseconds on purpose: not on the async workers.
pub async fn hash_off_thread(password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .map_err(Error::Internal)
}

/// Inserts a checked user inside a transaction; returns its id.
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &TenantScope,
    username: &str,
    password_hash: &str,
    role: &str,
    platform_admin: bool,
) -> Result<String, Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, tenant_id, username, password_hash, role, platform_admin, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .bind(i64::from(platform_admin))
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(Error::conflict_on_unique(format!("user `{username}` already exists")))?;
    Ok(id)
}

/// Whether a login's username could exist at all (so junk is not counted or looked up).
pub fn plausible_username(name: &str) -> bool {
    validate_username(name).is_ok()
}

fn validate_username(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok { Ok(()) } else { Err("must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`".into()) }
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<User, Error> {
    if !crate::store::is_id(id) {
        return Err(Error::NotFound(format!("user {id}")));
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("user {id}")))
}

pub async fn list(db: &Db, scope: &TenantScope, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<User>, Error> {
    let limit = pagination::limit(limit)?;
    let after = cursor.map(|c| Cursor::decode(c, "username")).transpose()?;
    let (after_name, after_id) = after.map(|c| (c.text.unwrap_or_default(), c.id)).unwrap_or_default();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND (username > $2 OR (username = $2 AND id > $3)) \
         ORDER BY username, id LIMIT $4"
    )))
    .bind(scope.id())
    .bind(after_name)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |u| Cursor {
        order: "username".into(),
        text: Some(u.username.clone()),
        int: None,
        id: u.id.clone(),
    }))
}

/// Deletes a user and ends their sessions. Nobody deletes themselves.
pub async fn delete(db: &Db, scope: &TenantScope, by: &Principal, id: &str) -> Result<(), Error> {
    if matches!(&by.subject, super::Subject::User { id: me, .. } if me == id) {
        return Err(Error::Conflict("you cannot delete your own user".into()));
    }
    let target = get(db, scope, id).await?;
    if target.platform_admin && !by.platform_admin {
        return Err(Error::Forbidden("only a platform administrator may delete a platform administrator".into()));
    }
    let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(db.writer())
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("user {id}")));
    }
    Ok(())
}

/// The user and tenant id for a login, if the password matches and the tenant is enabled.
/// Takes as long for an unknown user as for a wrong password.
pub async fn verify_login(
    db: &Db,
    tenant: &str,
    username: &str,
    password: &str,
) -> Result<Option<(TenantScope, String)>, Error> {
    let row = sqlx::query(
        "SELECT u.id, u.tenant_id, u.password_hash, n.disabled FROM users u JOIN tenants n ON n.id = u.tenant_id \
         WHERE n.name = $1 AND u.username = $2",
    )
    .bind(tenant)
    .bind(username)
    .fetch_optional(db.reader())
    .await?;
    let stored = match &row {
        Some(r) => r.try_get::<String, _>("password_hash")?,
        None => secrets::dummy_password_hash().to_owned(),
    };
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || secrets::verify_password(&password, &stored))
        .await
        .map_err(|e| anyhow::anyhow!("password check: {e}"))?;
    match row {
        Some(r) if matches && r.try_get::<i64, _>("disabled")? == 0 => {
            Ok(Some((TenantScope::internal(r.try_get::<String, _>("tenant_id")?), r.try_get("id")?)))
        }
        _ => Ok(None),
    }
}

fn from_row(row: &AnyRow) -> Result<User, Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: row.try_get("role")?,
        platform_admin: row.try_get::<i64, _>("platform_admin")? != 0,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
