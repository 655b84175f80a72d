//! Listing devices: filters (status, online, OS, group with or without subgroups, gateway,
//! label selector, text), an order, and keyset cursors that stay stable while devices are added.

use baton_proto::{
    api::{
        Page,
        devices::{Device, DeviceQuery, DeviceSort, DeviceStatus},
    },
    labels::{Requirement, Selector},
};
use sqlx::Row;

use super::{COLUMNS, hydrate};
use crate::{
    Error,
    access::TenantScope,
    pagination::{self, Cursor},
    store::{Backend, Db, sql::Sql},
};

/// A checked device query.
struct Plan {
    status: Option<DeviceStatus>,
    online: Option<bool>,
    os: Option<String>,
    group: Option<(String, bool)>,
    gateway: Option<String>,
    selector: Selector,
    text: Option<String>,
    sort: DeviceSort,
    descending: bool,
    limit: i64,
    after: Option<Cursor>,
}

pub async fn list(db: &Db, scope: &TenantScope, query: &DeviceQuery) -> Result<Page<Device>, Error> {
    let plan = plan(query)?;
    if let Some((group, _)) = &plan.group {
        crate::groups::get(db, scope, group).await?;
    }
    let sql = build(scope, &plan, db.backend());
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let order = order_name(plan.sort, plan.descending);
    // The cursor is taken from the rows as stored, before hydrating.
    let keys: Vec<Cursor> = rows
        .iter()
        .map(|r| -> Result<Cursor, Error> {
            let id: String = r.try_get("id")?;
            Ok(match plan.sort {
                DeviceSort::Name | DeviceSort::Serial => {
                    Cursor { order: order.clone(), text: Some(r.try_get("sort_key")?), int: None, id }
                }
                DeviceSort::CreatedAt | DeviceSort::LastSeenAt => {
                    Cursor { order: order.clone(), text: None, int: Some(r.try_get("sort_key")?), id }
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let devices = hydrate(db, rows).await?;
    let page = pagination::finish(devices.into_iter().zip(keys).collect(), plan.limit, |(_, k)| k.clone());
    Ok(Page { items: page.items.into_iter().map(|(d, _)| d).collect(), next_cursor: page.next_cursor })
}

fn plan(q: &DeviceQuery) -> Result<Plan, Error> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            DeviceStatus::parse(s)
                .ok_or_else(|| Error::invalid("status", format!("`{s}` is not pending, active or decommissioned")))
        })
        .transpose()?;
    let selector = match q.labels.as_deref() {
        Some(text) => Selector::parse(text).map_err(|e| Error::invalid("labels", e.to_string()))?,
        None => Selector::default(),
    };
    let (descending, sort_name) = match q.sort.as_deref() {
        Some(s) => s.strip_prefix('-').map_or((false, s), |rest| (true, rest)),
        None => (false, "name"),
    };
    let sort = [DeviceSort::Name, DeviceSort::Serial, DeviceSort::CreatedAt, DeviceSort::LastSeenAt]
        .into_iter()
        .find(|s| s.as_str() == sort_name)
        .ok_or_else(|| {
            Error::invalid("sort", format!("`{sort_name}` is not name, serial, created_at or last_seen_at"))
        })?;
    if let Some(g) = &q.group
        && !crate::store::is_id(g)
    {
        return Err(Error::invalid("group", "is not a group id"));
    }
    if let Some(g) = &q.gateway_id
        && !crate::store::is_id(g)
    {
        return Err(Error::invalid("gateway_id", "is not a device id"));
    }
    if q.recursive.is_some() && q.group.is_none() {
        return Err(Error::invalid("recursive", "only applies together with `group`"));
    }
    let order = order_name(sort, descending);
    Ok(Plan {
        status,
        online: q.online,
        os: q.os.as_deref().map(|o| crate::store::search::text_filter("os", o)).transpose()?,
        group: q.group.clone().map(|g| (g, q.recursive.unwrap_or(true))),
        gateway: q.gateway_id.clone(),
        selector,
        text: q
            .q
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| crate::store::search::text_filter("q", t))
            .transpose()?,
        sort,
        descending,
        limit: pagination::limit(q.limit)?,
        after: q.cursor.as_deref().map(|c| decode_cursor(c, &order, sort)).transpose()?,
    })
}

/// A cursor for this order whose key has the type the order sorts by.
fn decode_cursor(text: &str, order: &str, sort: DeviceSort) -> Result<Cursor, Error> {
    let cursor = Cursor::decode(text, order)?;
    let typed = match sort {
        DeviceSort::Name | DeviceSort::Serial => cursor.text.is_some() && cursor.int.is_none(),
        DeviceSort::CreatedAt | DeviceSort::LastSeenAt => cursor.int.is_some() && cursor.text.is_none(),
    };
    if !typed || !crate::store::is_id(&cursor.id) {
        return Err(Error::invalid("cursor", "is not a cursor from this list; start again without it"));
    }
    Ok(cursor)
}

fn order_name(sort: DeviceSort, descending: bool) -> String {
    format!("{}{}", if descending { "-" } else { "" }, sort.as_str())
}

/// The sort key. Text sorts bytewise on both engines (`COLLATE "C"` on PostgreSQL, SQLite's
/// default), so the same data pages the same way everywhere.
fn sort_expr(sort: DeviceSort, backend: Backend) -> &'static str {
    match (sort, backend) {
        (DeviceSort::Name, Backend::Sqlite) => "d.name",
        (DeviceSort::Name, Backend::Postgres) => "d.name COLLATE \"C\"",
        (DeviceSort::Serial, Backend::Sqlite) => "COALESCE(d.serial, '')",
        (DeviceSort::Serial, Backend::Postgres) => "COALESCE(d.serial, '') COLLATE \"C\"",
        (DeviceSort::CreatedAt, _) => "d.created_at",
        (DeviceSort::LastSeenAt, _) => "COALESCE(d.last_seen_at, 0)",
    }
}

fn build(scope: &TenantScope, p: &Plan, backend: Backend) -> Sql {
    let mut sql = Sql::default();
    if let Some((group, true)) = &p.group {
        sql.push("WITH RECURSIVE subtree(id) AS (SELECT id FROM device_groups WHERE tenant_id = ")
            .bind(scope.id())
            .push(" AND id = ")
            .bind(group.as_str())
            .push(" UNION SELECT g.id FROM device_groups g JOIN subtree s ON g.parent_id = s.id) ");
    }
    let key = sort_expr(p.sort, backend);
    sql.push(&format!("SELECT {COLUMNS}, {key} AS sort_key FROM devices d WHERE d.tenant_id = ")).bind(scope.id());
    if let Some(status) = p.status {
        sql.push(" AND d.status = ").bind(status.as_str());
    }
    if let Some(online) = p.online {
        sql.push(" AND d.online = ").bind(i64::from(online));
    }
    if let Some(os) = &p.os {
        sql.push(" AND LOWER(d.os_family) = ").bind(os.as_str());
    }
    if let Some(gateway) = &p.gateway {
        sql.push(" AND d.gateway_id = ").bind(gateway.as_str());
    }
    match &p.group {
        Some((_, true)) => {
            sql.push(" AND d.id IN (SELECT m.device_id FROM group_members m JOIN subtree s ON m.group_id = s.id)");
        }
        Some((group, false)) => {
            sql.push(" AND d.id IN (SELECT device_id FROM group_members WHERE group_id = ")
                .bind(group.as_str())
                .push(")");
        }
        None => {}
    }
    for r in &p.selector.requirements {
        push_requirement(&mut sql, r);
    }
    if let Some(text) = &p.text {
        sql.push(" AND d.search_key LIKE ").bind(crate::store::search::contains_pattern(text)).push(" ESCAPE '\\'");
    }
    let (cmp, dir) = if p.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(after) = &p.after {
        sql.push(&format!(" AND ({key} {cmp} "));
        bind_key(&mut sql, after);
        sql.push(&format!(" OR ({key} = "));
        bind_key(&mut sql, after);
        sql.push(&format!(" AND d.id {cmp} ")).bind(after.id.as_str()).push("))");
    }
    sql.push(&format!(" ORDER BY {key} {dir}, d.id {dir} LIMIT ")).bind(p.limit + 1);
    sql
}

fn bind_key(sql: &mut Sql, c: &Cursor) {
    match (&c.text, c.int) {
        (Some(t), _) => sql.bind(t.as_str()),
        (None, Some(i)) => sql.bind(i),
        (None, None) => sql.bind(""),
    };
}

fn push_requirement(sql: &mut Sql, r: &Requirement) {
    let has = |sql: &mut Sql, negate: bool, key: &str| {
        let not = if negate { "NOT " } else { "" };
        sql.push(&format!(" AND {not}EXISTS (SELECT 1 FROM device_labels l WHERE l.device_id = d.id AND l.key = "))
            .bind(key);
    };
    let values = |sql: &mut Sql, values: &[String]| {
        sql.push(" AND l.value IN ").bind_list(values.iter().map(String::as_str)).push(")");
    };
    match r {
        Requirement::Exists(k) => {
            has(sql, false, k);
            sql.push(")");
        }
        Requirement::NotExists(k) => {
            has(sql, true, k);
            sql.push(")");
        }
        Requirement::Equals(k, v) => {
            has(sql, false, k);
            sql.push(" AND l.value = ").bind(v.as_str()).push(")");
        }
        Requirement::NotEquals(k, v) => {
            has(sql, true, k);
            sql.push(" AND l.value = ").bind(v.as_str()).push(")");
        }
        Requirement::In(k, vs) => {
            has(sql, false, k);
            values(sql, vs);
        }
        Requirement::NotIn(k, vs) => {
            has(sql, true, k);
            values(sql, vs);
        }
    }
}

/// Ids of the active devices in a group (with subgroups) and/or matching a selector, at most
/// `max` of them: how commands and rollouts pick their devices.
pub async fn active_ids(
    db: &Db,
    scope: &TenantScope,
    group: Option<&str>,
    labels: Option<&str>,
    max: usize,
) -> Result<Vec<String>, Error> {
    let query = DeviceQuery {
        status: Some("active".into()),
        group: group.map(str::to_owned),
        labels: labels.map(str::to_owned),
        ..DeviceQuery::default()
    };
    let mut plan = plan(&query)?;
    plan.limit = i64::try_from(max).unwrap_or(i64::MAX) - 1;
    if let Some((group, _)) = &plan.group {
        crate::groups::get(db, scope, group).await?;
    }
    let rows = build(scope, &plan, db.backend()).query(db.backend()).fetch_all(db.reader()).await?;
    rows.iter().map(|r| r.try_get::<String, _>("id").map_err(Error::from)).collect()
}
