//! Groups: named, nestable sets of devices. A device may be in any number of groups; a group's
//! members may be listed directly or including its subgroups. Moving a group under one of its
//! own descendants is refused, so the tree never has a cycle.

use baton_proto::api::{
    Page,
    groups::{Group, GroupCreate, GroupQuery, GroupUpdate},
    rollouts::MaintenanceWindow,
};
use sqlx::{Any, AssertSqlSafe, Row, Transaction, any::AnyRow};

use crate::{
    Error,
    access::TenantScope,
    error::Violations,
    pagination::{self, Cursor},
    store::{Backend, Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

/// Deepest nesting allowed; keeps recursive queries and the console's tree bounded.
pub const MAX_DEPTH: usize = 16;
/// Most devices one bulk membership call may name.
pub const MAX_BULK: usize = 10_000;

const COLUMNS: &str = "g.id, g.name, g.description, g.parent_id, g.maintenance_windows, g.created_at, g.updated_at, \
    (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS device_count";

pub async fn create(db: &Db, scope: &TenantScope, req: GroupCreate) -> Result<Group, Error> {
    let mut v = Violations::default();
    v.check("/name", validate_name(&req.name));
    v.check("/description", validate_description(req.description.as_deref()));
    if let Some(p) = &req.parent_id
        && !is_id(p)
    {
        v.add("/parent_id", "is not a group id");
    }
    crate::windows::check(&mut v, "/maintenance_windows", &req.maintenance_windows);
    v.finish()?;
    let id = new_id();
    let now = now_ms();
    let mut tx = structure_lock(db, scope).await?;
    if let Some(parent) = &req.parent_id {
        let depth = ancestors(&mut tx, scope, parent).await.map_err(|_| parent_missing(parent))?.len() + 1;
        if depth > MAX_DEPTH {
            return Err(Error::invalid("/parent_id", format!("groups nest at most {MAX_DEPTH} deep")));
        }
    }
    sqlx::query(
        "INSERT INTO device_groups (id, tenant_id, name, description, parent_id, created_at, updated_at, search_key, \
         maintenance_windows) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(req.name.trim())
    .bind(req.description.as_deref())
    .bind(req.parent_id.as_deref())
    .bind(now)
    .bind(req.name.trim().to_lowercase())
    .bind(windows_json(&req.maintenance_windows))
    .execute(&mut *tx)
    .await
    .map_err(Error::conflict_on_unique(format!("a group named `{}` already exists", req.name.trim())))?;
    tx.commit().await?;
    get(db, scope, &id).await
}

/// A write transaction in which the tenant's group tree cannot change under us: on SQLite the
/// single writer connection already serialises writes; on PostgreSQL the tenant row is locked.
/// Checks (cycles, depth, children) and the change they guard run inside it.
async fn structure_lock<'a>(db: &'a Db, scope: &TenantScope) -> Result<Transaction<'a, Any>, Error> {
    let mut tx = db.writer().begin().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(scope.id())
            .fetch_optional(&mut *tx)
            .await?;
    }
    Ok(tx)
}

fn parent_missing(parent: &str) -> Error {
    Error::invalid("/parent_id", format!("group {parent} not found"))
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<Group, Error> {
    let not_found = || Error::NotFound(format!("group {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM device_groups g WHERE g.tenant_id = $1 AND g.id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(not_found)
}

pub async fn list(db: &Db, scope: &TenantScope, q: &GroupQuery) -> Result<Page<Group>, Error> {
    let limit = pagination::limit(q.limit)?;
    let after = q.cursor.as_deref().map(|c| Cursor::decode(c, "name")).transpose()?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM device_groups g WHERE g.tenant_id = "));
    sql.bind(scope.id());
    match q.parent.as_deref() {
        Some("root") => {
            sql.push(" AND g.parent_id IS NULL");
        }
        Some(p) if is_id(p) => {
            sql.push(" AND g.parent_id = ").bind(p);
        }
        Some(_) => return Err(Error::invalid("parent", "is neither a group id nor `root`")),
        None => {}
    }
    if let Some(text) = q.q.as_deref().filter(|t| !t.is_empty()) {
        let text = crate::store::search::text_filter("q", text)?;
        sql.push(" AND g.search_key LIKE ").bind(crate::store::search::contains_pattern(&text)).push(" ESCAPE '\\'");
    }
    if let Some(c) = &after {
        let name = c.text.clone().unwrap_or_default();
        sql.push(" AND (g.name > ").bind(name.as_str()).push(" OR (g.name = ").bind(name);
        sql.push(" AND g.id > ").bind(c.id.as_str()).push("))");
    }
    sql.push(" ORDER BY g.name, g.id LIMIT ").bind(limit + 1);
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |g| Cursor {
        order: "name".into(),
        text: Some(g.name.clone()),
        int: None,
        id: g.id.clone(),
    }))
}

pub async fn update(db: &Db, scope: &TenantScope, id: &str, req: GroupUpdate) -> Result<Group, Error> {
    let mut v = Violations::default();
    if let Some(name) = &req.name {
        v.check("/name", validate_name(name));
    }
    v.check("/description", validate_description(req.description.as_deref()));
    if let Some(Some(p)) = &req.parent_id
        && !is_id(p)
    {
        v.add("/parent_id", "is not a group id");
    }
    if let Some(windows) = &req.maintenance_windows {
        crate::windows::check(&mut v, "/maintenance_windows", windows);
    }
    v.finish()?;
    get(db, scope, id).await?;
    let mut tx = structure_lock(db, scope).await?;
    if let Some(Some(parent)) = &req.parent_id {
        let chain = ancestors(&mut tx, scope, parent).await.map_err(|_| parent_missing(parent))?;
        if parent == id || chain.iter().any(|a| a == id) {
            return Err(Error::Conflict(format!(
                "moving group {id} under {parent} would make a cycle: {parent} is inside {id}"
            )));
        }
        if chain.len() + subtree_height(&mut tx, scope, id).await? > MAX_DEPTH {
            return Err(Error::invalid("/parent_id", format!("groups nest at most {MAX_DEPTH} deep")));
        }
    }
    let mut sql = Sql::new("UPDATE device_groups SET updated_at = ");
    sql.bind(now_ms());
    if let Some(name) = &req.name {
        sql.push(", name = ").bind(name.trim()).push(", search_key = ").bind(name.trim().to_lowercase());
    }
    match req.description.as_deref().map(str::trim) {
        // An empty description clears it, as if the group had been created without one.
        Some("") => {
            sql.push(", description = NULL");
        }
        Some(description) => {
            sql.push(", description = ").bind(description);
        }
        None => {}
    }
    if let Some(windows) = &req.maintenance_windows {
        match windows_json(windows) {
            Some(json) => sql.push(", maintenance_windows = ").bind(json),
            None => sql.push(", maintenance_windows = NULL"),
        };
    }
    match &req.parent_id {
        Some(Some(parent)) => {
            sql.push(", parent_id = ").bind(parent.as_str());
        }
        Some(None) => {
            sql.push(", parent_id = NULL");
        }
        None => {}
    }
    sql.push(" WHERE tenant_id = ").bind(scope.id()).push(" AND id = ").bind(id);
    sql.query_on(&tx).execute(&mut *tx).await.map_err(Error::conflict_on_unique(format!(
        "a group named `{}` already exists",
        req.name.unwrap_or_default()
    )))?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// The group named exactly `name` (names are unique within a tenant).
pub async fn find_by_name(db: &Db, scope: &TenantScope, name: &str) -> Result<Option<Group>, Error> {
    let row = sqlx::query("SELECT id FROM device_groups WHERE tenant_id = $1 AND name = $2")
        .bind(scope.id())
        .bind(name)
        .fetch_optional(db.reader())
        .await?;
    match row {
        Some(row) => Ok(Some(get(db, scope, &row.try_get::<String, _>("id")?).await?)),
        None => Ok(None),
    }
}

/// Deletes a group and its memberships (the devices stay). A group with subgroups is kept:
/// move or delete them first.
pub async fn delete(db: &Db, scope: &TenantScope, id: &str) -> Result<(), Error> {
    get(db, scope, id).await?;
    let mut tx = structure_lock(db, scope).await?;
    let child = sqlx::query("SELECT name FROM device_groups WHERE tenant_id = $1 AND parent_id = $2 LIMIT 1")
        .bind(scope.id())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(child) = child {
        let name: String = child.try_get("name")?;
        return Err(Error::Conflict(format!("group {id} has subgroups (such as `{name}`); move or delete them first")));
    }
    sqlx::query("DELETE FROM device_groups WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Adds devices to a group, all or nothing; devices already in it are left as they are.
/// Returns how many were added.
pub async fn add_members(db: &Db, scope: &TenantScope, id: &str, device_ids: &[String]) -> Result<u64, Error> {
    check_bulk(device_ids)?;
    get(db, scope, id).await?;
    let mut tx = db.writer().begin().await?;
    let missing = missing_devices(&mut tx, scope, device_ids).await?;
    if !missing.is_empty() {
        let mut v = Violations::default();
        for (i, d) in missing {
            v.add(format!("/device_ids/{i}"), format!("device {d} not found"));
        }
        v.finish()?;
    }
    let now = now_ms();
    let mut added = 0;
    for device in device_ids {
        added += add_member(&mut tx, scope, id, device, now).await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// Removes devices from a group; ids not in the group are ignored. Returns how many left.
pub async fn remove_members(db: &Db, scope: &TenantScope, id: &str, device_ids: &[String]) -> Result<u64, Error> {
    check_bulk(device_ids)?;
    get(db, scope, id).await?;
    let mut tx = db.writer().begin().await?;
    let mut removed = 0;
    for device in device_ids {
        removed += sqlx::query("DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND device_id = $3")
            .bind(scope.id())
            .bind(id)
            .bind(device)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(removed)
}

fn check_bulk(device_ids: &[String]) -> Result<(), Error> {
    let mut v = Violations::default();
    if device_ids.is_empty() || device_ids.len() > MAX_BULK {
        v.add("/device_ids", format!("must name 1 to {MAX_BULK} devices"));
    }
    for (i, d) in device_ids.iter().enumerate() {
        if !is_id(d) {
            v.add(format!("/device_ids/{i}"), "is not a device id");
        }
    }
    v.finish()
}

async fn missing_devices(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    ids: &[String],
) -> Result<Vec<(usize, String)>, Error> {
    let mut missing = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let found = sqlx::query("SELECT 1 FROM devices WHERE tenant_id = $1 AND id = $2")
            .bind(scope.id())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            missing.push((i, id.clone()));
        }
    }
    Ok(missing)
}

/// Puts one device in one group inside a transaction; 1 if it was not there yet.
pub(crate) async fn add_member(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    group: &str,
    device: &str,
    now: i64,
) -> Result<u64, Error> {
    Ok(sqlx::query(
        "INSERT INTO group_members (tenant_id, group_id, device_id, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (group_id, device_id) DO NOTHING",
    )
    .bind(scope.id())
    .bind(group)
    .bind(device)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub(crate) async fn exists_in(tx: &mut Transaction<'_, Any>, scope: &TenantScope, id: &str) -> Result<bool, Error> {
    Ok(sqlx::query("SELECT 1 FROM device_groups WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// The ids from `id` up to the root, `id` first. NotFound when `id` is not in the tenant.
async fn ancestors(tx: &mut Transaction<'_, Any>, scope: &TenantScope, id: &str) -> Result<Vec<String>, Error> {
    let mut chain = Vec::new();
    let mut current = Some(id.to_owned());
    while let Some(g) = current {
        if chain.contains(&g) || chain.len() > MAX_DEPTH * 2 {
            break; // a stored cycle cannot happen through this module, but never loop forever
        }
        let row = sqlx::query("SELECT parent_id FROM device_groups WHERE tenant_id = $1 AND id = $2")
            .bind(scope.id())
            .bind(&g)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {g}")))?;
        chain.push(g);
        current = row.try_get("parent_id")?;
    }
    Ok(chain)
}

/// Levels in the subtree under `id`, counting `id` itself as 1.
async fn subtree_height(tx: &mut Transaction<'_, Any>, scope: &TenantScope, id: &str) -> Result<usize, Error> {
    let (mut level, mut height) = (vec![id.to_owned()], 0);
    while !level.is_empty() && height <= MAX_DEPTH {
        height += 1;
        let mut sql = Sql::new("SELECT id FROM device_groups WHERE tenant_id = ");
        sql.bind(scope.id()).push(" AND parent_id IN ").bind_list(level.iter().map(String::as_str));
        level =
            sql.query_on(tx).fetch_all(&mut **tx).await?.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    }
    Ok(height)
}

fn validate_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err("must be 1 to 128 characters, without control characters".into());
    }
    Ok(())
}

fn validate_description(description: Option<&str>) -> Result<(), String> {
    match description {
        Some(d) if d.chars().count() > 1024 || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            Err("must be at most 1024 characters, without control characters".into())
        }
        _ => Ok(()),
    }
}

/// Windows as stored: JSON, or NULL for none.
fn windows_json(windows: &[MaintenanceWindow]) -> Option<String> {
    (!windows.is_empty()).then(|| serde_json::to_string(windows).unwrap_or_default())
}

fn from_row(row: &AnyRow) -> Result<Group, Error> {
    let windows: Option<String> = row.try_get("maintenance_windows")?;
    Ok(Group {
        maintenance_windows: windows.and_then(|w| serde_json::from_str(&w).ok()).unwrap_or_default(),
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        parent_id: row.try_get("parent_id")?,
        device_count: u64::try_from(row.try_get::<i64, _>("device_count")?).unwrap_or(0),
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}
