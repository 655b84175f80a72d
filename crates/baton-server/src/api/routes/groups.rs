//! `/api/v1/groups`: nestable groups of devices and their members.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Changed, Page,
    devices::{Device, DeviceQuery},
    groups::{Group, GroupCreate, GroupMembers, GroupQuery, GroupUpdate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::{devices, groups};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(list_members))
        .routes(routes!(add_members))
        .routes(routes!(remove_members))
}

/// List groups, optionally the children of one.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(GroupQuery),
    responses((status = 200, body = Page<Group>)))]
async fn list_groups(
    auth: Authz<perm::GroupsRead>,
    State(app): State<AppState>,
    Query(query): Query<GroupQuery>,
) -> Result<Json<Page<Group>>, Error> {
    Ok(groups::list(&app.db, auth.scope(), &query).await.map(Json)?)
}

/// Create a group, optionally inside another.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = GroupCreate,
    responses((status = 201, body = Group)))]
async fn create_group(
    auth: Authz<perm::GroupsWrite>,
    State(app): State<AppState>,
    Json(req): Json<GroupCreate>,
) -> Result<(StatusCode, Json<Group>), Error> {
    let group = groups::create(&app.db, auth.scope(), req).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// One group.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = String, Path)),
    responses((status = 200, body = Group)))]
async fn get_group(
    auth: Authz<perm::GroupsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Group>, Error> {
    Ok(groups::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Rename, describe or move a group (moves that would make a cycle are refused).
#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = String, Path)),
    request_body = GroupUpdate, responses((status = 200, body = Group)))]
async fn update_group(
    auth: Authz<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<GroupUpdate>,
) -> Result<Json<Group>, Error> {
    Ok(groups::update(&app.db, auth.scope(), &id, req).await.map(Json)?)
}

/// Delete a group without subgroups; its devices stay.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_group(
    auth: Authz<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    groups::delete(&app.db, auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The group's devices, including those of its subgroups unless `recursive=false`.
/// Takes the same filters as the device list.
#[utoipa::path(get, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = String, Path), DeviceQuery), responses((status = 200, body = Page<Device>)))]
async fn list_members(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(mut query): Query<DeviceQuery>,
) -> Result<Json<Page<Device>>, Error> {
    groups::get(&app.db, auth.scope(), &id).await?;
    if query.group.is_some() {
        return Err(baton_core::Error::invalid("group", "the group is in the path").into());
    }
    query.group = Some(id);
    Ok(devices::list::list(&app.db, auth.scope(), &query).await.map(Json)?)
}

/// Add devices to the group, all or nothing.
#[utoipa::path(post, path = "/api/v1/groups/{id}/members/add", tag = "groups", params(("id" = String, Path)),
    request_body = GroupMembers, responses((status = 200, body = Changed)))]
async fn add_members(
    auth: Authz<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<GroupMembers>,
) -> Result<Json<Changed>, Error> {
    let changed = groups::add_members(&app.db, auth.scope(), &id, &req.device_ids).await?;
    Ok(Json(Changed { changed }))
}

/// Remove devices from the group.
#[utoipa::path(post, path = "/api/v1/groups/{id}/members/remove", tag = "groups", params(("id" = String, Path)),
    request_body = GroupMembers, responses((status = 200, body = Changed)))]
async fn remove_members(
    auth: Authz<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<GroupMembers>,
) -> Result<Json<Changed>, Error> {
    let changed = groups::remove_members(&app.db, auth.scope(), &id, &req.device_ids).await?;
    Ok(Json(Changed { changed }))
}
