//! Tenants: isolated customers of one installation. Platform administrators create, list and
//! disable them. First start bootstraps tenant `default` with an administrator.

use baton_proto::api::{
    Page,
    access::UserCreate,
    tenants::{Tenant, TenantCreate, TenantUpdate},
};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use crate::{
    Error,
    access::{TenantScope, tokens, users},
    pagination::{self, Cursor},
    store::{Db, from_ms, new_id, now_ms},
};

/// The tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

const COLUMNS: &str = "id, name, display_name, disabled, created_at";

/// Creates a tenant and, when asked, its first administrator: both or neither.
pub async fn create(db: &Db, req: &TenantCreate) -> Result<Tenant, Error> {
    validate_name(&req.name)?;
    validate_display_name(req.display_name.as_deref())?;
    let admin = match &req.admin {
        Some(admin) => {
            if admin.role.as_deref().is_some_and(|role| role != "admin") {
                return Err(Error::invalid("/admin/role", "the tenant's first administrator is an `admin`"));
            }
            let admin = UserCreate { role: Some("admin".into()), ..admin.clone() };
            users::validate(&admin).map_err(prefix_admin_fields)?;
            let hash = users::hash_off_thread(&admin.password).await?;
            Some((admin.username, hash))
        }
        None => None,
    };
    let id = new_id();
    let mut tx = db.writer().begin().await?;
    sqlx::query("INSERT INTO tenants (id, name, display_name, disabled, created_at) VALUES ($1, $2, $3, 0, $4)")
        .bind(&id)
        .bind(&req.name)
        .bind(req.display_name.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(Error::conflict_on_unique(format!("tenant `{}` already exists", req.name)))?;
    if let Some((username, hash)) = admin {
        users::insert(&mut tx, &TenantScope::internal(&id), &username, &hash, "admin", false).await?;
    }
    tx.commit().await?;
    get(db, &id).await
}

fn validate_display_name(name: Option<&str>) -> Result<(), Error> {
    match name {
        Some(n) if n.chars().count() > 128 || n.chars().any(char::is_control) => {
            Err(Error::invalid("/display_name", "must be at most 128 characters, without control characters"))
        }
        _ => Ok(()),
    }
}

fn prefix_admin_fields(e: Error) -> Error {
    match e {
        Error::Invalid { detail, mut errors } => {
            errors.iter_mut().for_each(|f| f.field = format!("/admin{}", f.field));
            Error::Invalid { detail, errors }
        }
        other => other,
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    let ok = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err(Error::invalid("/name", "must be 1 to 63 lowercase letters, digits and inner `-`")) }
}

pub async fn get(db: &Db, id: &str) -> Result<Tenant, Error> {
    if !crate::store::is_id(id) {
        return Err(Error::NotFound(format!("tenant {id}")));
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM tenants WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("tenant {id}")))
}

pub async fn find_by_name(db: &Db, name: &str) -> Result<Option<Tenant>, Error> {
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM tenants WHERE name = $1")))
        .bind(name)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn list(db: &Db, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<Tenant>, Error> {
    let limit = pagination::limit(limit)?;
    let after = cursor.map(|c| Cursor::decode(c, "name")).transpose()?;
    let (after_name, after_id) = after.map(|c| (c.text.unwrap_or_default(), c.id)).unwrap_or_default();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE (name > $1 OR (name = $1 AND id > $2)) ORDER BY name, id LIMIT $3"
    )))
    .bind(after_name)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |t| Cursor {
        order: "name".into(),
        text: Some(t.name.clone()),
        int: None,
        id: t.id.clone(),
    }))
}

/// Renames or disables a tenant. A disabled tenant's users and tokens are refused at once.
/// The caller's own tenant cannot be disabled, so nobody locks themselves out.
pub async fn update(db: &Db, id: &str, caller: &TenantScope, req: &TenantUpdate) -> Result<Tenant, Error> {
    validate_display_name(req.display_name.as_deref())?;
    get(db, id).await?;
    if req.disabled == Some(true) && caller.id() == id {
        return Err(Error::Conflict("you cannot disable the tenant you are signed in to".into()));
    }
    sqlx::query(
        "UPDATE tenants SET display_name = COALESCE($1, display_name), disabled = COALESCE($2, disabled) WHERE id = $3",
    )
    .bind(req.display_name.as_deref())
    .bind(req.disabled.map(i64::from))
    .bind(id)
    .execute(db.writer())
    .await?;
    get(db, id).await
}

/// What first start did, for the operator to see.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// Set when an admin was created with a generated password: printed once, never stored.
    pub generated_password: Option<String>,
    pub created_admin: bool,
}

/// Ensures tenant `default` with an `admin` user (a platform administrator) and, when a
/// bootstrap token is configured, an admin API token with exactly that secret.
pub async fn bootstrap(
    db: &Db,
    admin_password: Option<&str>,
    bootstrap_token: Option<&str>,
) -> Result<Bootstrap, Error> {
    let mut report = Bootstrap::default();
    let tenant = match find_by_name(db, DEFAULT_TENANT).await? {
        Some(t) => t,
        None => {
            let req = TenantCreate { name: DEFAULT_TENANT.into(), display_name: Some("Default".into()), admin: None };
            create(db, &req).await?
        }
    };
    let scope = TenantScope::internal(&tenant.id);
    let has_users = sqlx::query("SELECT 1 FROM users WHERE tenant_id = $1 LIMIT 1")
        .bind(scope.id())
        .fetch_optional(db.reader())
        .await?
        .is_some();
    if !has_users {
        let password = match admin_password {
            Some(p) => p.to_owned(),
            None => {
                let p = crate::access::secrets::generate("");
                report.generated_password = Some(p.clone());
                p
            }
        };
        let req = UserCreate { username: "admin".into(), password, role: Some("admin".into()) };
        users::create(db, &scope, None, &req, true).await.map_err(|e| match e {
            Error::Invalid { detail, .. } => Error::Config(format!("BATON_ADMIN_PASSWORD: {detail}")),
            other => other,
        })?;
        report.created_admin = true;
    }
    if let Some(token) = bootstrap_token {
        tokens::ensure_bootstrap(db, &scope, token).await?;
    }
    Ok(report)
}

fn from_row(row: &AnyRow) -> Result<Tenant, Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
