//! The groups page: the tenant's groups as their nested tree (create, delete), and one group's
//! page: where it sits, its subgroups, its members with or without those of its subgroups
//! (paged on the server), adding devices by name or serial and removing them, renaming and
//! moving the group.

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Redirect, Response},
};
use baton_proto::api::{
    devices::DeviceQuery,
    groups::{Group, GroupCreate, GroupQuery, GroupUpdate},
};
use serde::Deserialize;

use super::form::Form;
use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, devices, groups, pagination::MAX_LIMIT};

/// Most groups the tree shows; a tenant with more is told to search the API.
const MAX_TREE: usize = 5_000;

/// A group in the tree, indented by its depth.
struct Node {
    id: String,
    name: String,
    depth: usize,
    devices: u64,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    tree: Vec<Node>,
    truncated: bool,
    can_edit: bool,
}

/// Every group of the tenant, a page of the API's list at a time.
async fn all_groups(app: &AppState, user: &User) -> Result<(Vec<Group>, bool), Error> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let query = GroupQuery { limit: Some(MAX_LIMIT), cursor, ..GroupQuery::default() };
        let page = groups::list(&app.db, &user.principal.scope, &query).await?;
        all.extend(page.items);
        if all.len() >= MAX_TREE {
            return Ok((all, true));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((all, false)),
        }
    }
}

/// The groups in tree order: each followed by its children, by name.
fn tree(groups: Vec<Group>) -> Vec<Node> {
    let ids: std::collections::HashSet<String> = groups.iter().map(|g| g.id.clone()).collect();
    let mut children: BTreeMap<Option<String>, Vec<Group>> = BTreeMap::new();
    for g in groups {
        // A parent beyond the shown part of a truncated list: shown at the top.
        let parent = g.parent_id.clone().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(g);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(Group, usize)> =
        children.remove(&None).unwrap_or_default().into_iter().rev().map(|g| (g, 0)).collect();
    while let Some((g, depth)) = stack.pop() {
        if let Some(kids) = children.remove(&Some(g.id.clone())) {
            stack.extend(kids.into_iter().rev().map(|k| (k, depth + 1)));
        }
        out.push(Node { id: g.id, name: g.name, depth, devices: g.device_count });
    }
    out
}

/// `/groups`.
pub(super) async fn page(
    Page(user, _): Page<perm::GroupsRead>,
    State(app): State<AppState>,
) -> Result<Response, Error> {
    let (groups, truncated) = all_groups(&app, &user).await?;
    let csrf = user.csrf.clone();
    Ok(render(GroupsPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "groups",
        tree: tree(groups),
        truncated,
        can_edit: user.principal.can(Permission::GroupsWrite),
    }))
}

#[derive(Deserialize)]
pub(super) struct CreateForm {
    name: String,
    #[serde(default)]
    parent: String,
    #[serde(default)]
    description: String,
}

/// `POST /groups`: creates a group and opens it.
pub(super) async fn create(
    Changing(user, _): Changing<perm::GroupsWrite>,
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Result<Response, Error> {
    let req = GroupCreate {
        name: form.name.trim().to_owned(),
        description: Some(form.description.trim().to_owned()).filter(|d| !d.is_empty()),
        parent_id: Some(form.parent).filter(|p| !p.is_empty()),
        ..GroupCreate::default()
    };
    let group = groups::create(&app.db, &user.principal.scope, req).await?;
    Ok(to(&headers, &format!("/groups/{}", group.id)))
}

/// Sends the browser elsewhere: htmx is told with `HX-Location` (a redirect would be followed
/// inside its request), a plain form with a redirect.
pub(super) fn to(headers: &HeaderMap, url: &str) -> Response {
    if headers.contains_key("hx-request") {
        ([("hx-location", url)], axum::http::StatusCode::NO_CONTENT).into_response()
    } else {
        Redirect::to(url).into_response()
    }
}

/// A member as the group's page lists it.
struct Member {
    id: String,
    name: String,
    serial: String,
    online: bool,
    direct: bool,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    group: Group,
    /// From the top of the tree down to the group's parent.
    path: Vec<(String, String)>,
    subgroups: Vec<(String, String, u64)>,
    /// Where it could move: every group but itself and its descendants.
    parents: Vec<(String, String)>,
    members: Vec<Member>,
    recursive: bool,
    next_url: Option<String>,
    can_edit: bool,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MembersView {
    /// `false`: only the devices directly in the group.
    recursive: Option<bool>,
    cursor: String,
}

/// `/groups/{id}`.
pub(super) async fn group_page(
    Page(user, _): Page<perm::GroupsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(view): Query<MembersView>,
) -> Result<Response, Error> {
    show(&app, &user, &id, &view, None).await
}

async fn show(
    app: &AppState,
    user: &User,
    id: &str,
    view: &MembersView,
    notice: Option<String>,
) -> Result<Response, Error> {
    user.need(Permission::GroupsRead)?;
    user.need(Permission::DevicesRead)?;
    let scope = &user.principal.scope;
    let group = groups::get(&app.db, scope, id).await?;
    let (all, _) = all_groups(app, user).await?;
    let by_id: BTreeMap<&str, &Group> = all.iter().map(|g| (g.id.as_str(), g)).collect();
    let mut path = Vec::new();
    let mut at = group.parent_id.as_deref();
    while let Some(p) = at.and_then(|p| by_id.get(p)) {
        path.insert(0, (p.id.clone(), p.name.clone()));
        at = p.parent_id.as_deref();
        if path.len() > groups::MAX_DEPTH {
            break;
        }
    }
    let mut subgroups: Vec<_> = all
        .iter()
        .filter(|g| g.parent_id.as_deref() == Some(id))
        .map(|g| (g.id.clone(), g.name.clone(), g.device_count))
        .collect();
    subgroups.sort_by(|a, b| a.1.cmp(&b.1));
    let below = |candidate: &Group| {
        let mut at = Some(candidate);
        let mut steps = 0;
        while let Some(g) = at {
            if g.id == id {
                return true;
            }
            at = g.parent_id.as_deref().and_then(|p| by_id.get(p).copied());
            steps += 1;
            if steps > groups::MAX_DEPTH + 1 {
                break;
            }
        }
        false
    };
    let parents = all.iter().filter(|g| !below(g)).map(|g| (g.id.clone(), g.name.clone())).collect();
    let recursive = view.recursive.unwrap_or(true);
    let query = DeviceQuery {
        group: Some(id.to_owned()),
        recursive: Some(recursive),
        cursor: Some(view.cursor.clone()).filter(|c| !c.is_empty()),
        limit: Some(50),
        ..DeviceQuery::default()
    };
    let page = devices::list::list(&app.db, scope, &query).await?;
    let members = page
        .items
        .into_iter()
        .map(|d| Member {
            direct: d.groups.iter().any(|g| g == id),
            id: d.id,
            name: d.name,
            serial: d.serial.unwrap_or_default(),
            online: d.connectivity.online,
        })
        .collect();
    let next_url = page.next_cursor.map(|c| format!("/groups/{id}?recursive={recursive}&cursor={c}"));
    let csrf = user.csrf.clone();
    Ok(render(GroupPage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "groups",
        path,
        subgroups,
        parents,
        members,
        recursive,
        next_url,
        can_edit: user.principal.can(Permission::GroupsWrite),
        notice,
        group,
    }))
}

#[derive(Deserialize)]
pub(super) struct EditForm {
    name: String,
    #[serde(default)]
    parent: String,
    #[serde(default)]
    description: String,
}

/// `POST /groups/{id}`: renames, describes or moves the group (an empty parent: to the top).
pub(super) async fn edit(
    Changing(user, _): Changing<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Result<Response, Error> {
    let req = GroupUpdate {
        name: Some(form.name.trim().to_owned()),
        description: Some(form.description),
        parent_id: Some(Some(form.parent).filter(|p| !p.is_empty())),
        ..GroupUpdate::default()
    };
    groups::update(&app.db, &user.principal.scope, &id, req).await?;
    show(&app, &user, &id, &MembersView::default(), Some("Saved.".into())).await
}

/// `POST /groups/{id}/delete`: back to the tree.
pub(super) async fn delete(
    Changing(user, _): Changing<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    groups::delete(&app.db, &user.principal.scope, &id).await?;
    Ok(to(&headers, "/groups"))
}

#[derive(Deserialize)]
pub(super) struct MembersForm {
    /// Names, serials or ids, one per line (or separated by commas).
    #[serde(default)]
    add: String,
    /// One device id.
    #[serde(default)]
    remove: String,
}

/// `POST /groups/{id}/members`: adds the devices named (each name, serial or id must match
/// exactly one device, or nothing is added) or removes one.
pub(super) async fn members(
    Changing(user, _): Changing<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<MembersForm>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    groups::get(&app.db, scope, &id).await?;
    let notice = if !form.remove.is_empty() {
        groups::remove_members(&app.db, scope, &id, std::slice::from_ref(&form.remove)).await?;
        "Removed.".to_owned()
    } else {
        let names: Vec<&str> =
            form.add.split(['\n', ',']).map(str::trim).filter(|s| !s.is_empty()).take(groups::MAX_BULK + 1).collect();
        if names.is_empty() {
            return Err(baton_core::Error::invalid("/add", "name at least one device, by name, serial or id").into());
        }
        if names.len() > 500 {
            return Err(baton_core::Error::invalid(
                "/add",
                "at most 500 devices at once here; use the devices page or the API",
            )
            .into());
        }
        let mut ids = Vec::new();
        for name in names {
            ids.push(resolve(&app, &user, name).await?);
        }
        let added = groups::add_members(&app.db, scope, &id, &ids).await?;
        format!("Added {added} device{}.", if added == 1 { "" } else { "s" })
    };
    show(&app, &user, &id, &MembersView::default(), Some(notice)).await
}

/// The one device a name, serial or id means.
async fn resolve(app: &AppState, user: &User, name: &str) -> Result<String, Error> {
    let scope = &user.principal.scope;
    if let Ok(d) = devices::get(&app.db, scope, name).await {
        return Ok(d.id);
    }
    match devices::find_exact(&app.db, scope, name).await?.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(baton_core::Error::invalid("/add", format!("no device is named `{name}` or has that serial")).into()),
        _ => Err(baton_core::Error::invalid(
            "/add",
            format!("several devices are named `{name}`; give its serial or id"),
        )
        .into()),
    }
}
