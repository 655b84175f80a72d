//! `/api/v1/devices`: the device registry.

use axum::{extract::State, http::StatusCode};
use baton_proto::{
    api::{
        Page,
        devices::{Device, DeviceCreate, DeviceCredential, DeviceQuery, DeviceUpdate},
        enrollment::DeviceImport,
    },
    inventory::Inventory,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::devices;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(decommission_device))
        .routes(routes!(approve_device))
        .routes(routes!(reject_device))
        .routes(routes!(device_inventory))
        .routes(routes!(issue_device_credential))
        .routes(routes!(import_devices))
}

/// `?wipe=true` on decommission.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DecommissionQuery {
    /// Also make the agent erase its state and identity.
    #[serde(default)]
    wipe: Option<bool>,
}

/// List devices with filters, order and cursor pagination.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = Page<Device>),
        (status = 404, description = "The group or gateway named in the query is not in the tenant")))]
async fn list_devices(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<Page<Device>>, Error> {
    Ok(devices::list::list(&app.db, auth.scope(), &query).await.map(Json)?)
}

/// Pre-register a device by serial, before it ever connects.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = DeviceCreate,
    responses((status = 201, body = Device)))]
async fn create_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Json(req): Json<DeviceCreate>,
) -> Result<(StatusCode, Json<Device>), Error> {
    let device = devices::create(&app.db, &app.bus, auth.scope(), req).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Device)))]
async fn get_device(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, Error> {
    Ok(devices::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Rename and relabel a device (labels merge; `null` removes one).
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    request_body = DeviceUpdate, responses((status = 200, body = Device)))]
async fn update_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<DeviceUpdate>,
) -> Result<Json<Device>, Error> {
    Ok(devices::update(&app.db, auth.scope(), &id, req).await.map(Json)?)
}

/// Delete a decommissioned device for good.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    devices::delete(&app.db, auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Retire a device: credentials revoked, waiting commands canceled, a live connection closed;
/// kept with its history. `wipe=true` also makes the agent erase its state and identity.
#[utoipa::path(post, path = "/api/v1/devices/{id}/decommission", tag = "devices",
    params(("id" = String, Path), DecommissionQuery), responses((status = 200, body = Device)))]
async fn decommission_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DecommissionQuery>,
) -> Result<Json<Device>, Error> {
    Ok(baton_core::lifecycle::decommission(&app.db, &app.bus, auth.scope(), &id, q.wipe.unwrap_or(false))
        .await
        .map(Json)?)
}

/// Let a pending device in.
#[utoipa::path(post, path = "/api/v1/devices/{id}/approve", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Device)))]
async fn approve_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, Error> {
    Ok(devices::approve(&app.db, &app.bus, auth.scope(), &id).await.map(Json)?)
}

/// Turn a pending device away (it is decommissioned).
#[utoipa::path(post, path = "/api/v1/devices/{id}/reject", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Device)))]
async fn reject_device(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, Error> {
    Ok(baton_core::lifecycle::reject(&app.db, &app.bus, auth.scope(), &id).await.map(Json)?)
}

/// What the device reported about itself; `null` before its first connection.
#[utoipa::path(get, path = "/api/v1/devices/{id}/inventory", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Option<Inventory>)))]
async fn device_inventory(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Option<Inventory>>, Error> {
    Ok(devices::presence::inventory(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Issue a new secret for the device, returned only in this answer; connections with the old
/// secret close. For devices that never enroll themselves, such as MQTT devices (username: the
/// device id, password: the secret; or the secret alone as username).
#[utoipa::path(post, path = "/api/v1/devices/{id}/credentials", tag = "devices", params(("id" = String, Path)),
    responses((status = 201, body = DeviceCredential)))]
async fn issue_device_credential(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeviceCredential>), Error> {
    let secret = devices::credentials::issue(&app.db, &app.bus, auth.scope(), &id).await?;
    Ok((StatusCode::CREATED, Json(DeviceCredential { device_id: id, secret })))
}

/// Pre-register many devices (e.g. from a CSV file of serial, name, groups, labels), all or nothing.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", request_body = DeviceImport,
    responses((status = 201, body = Vec<Device>)))]
async fn import_devices(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Json(req): Json<DeviceImport>,
) -> Result<(StatusCode, Json<Vec<Device>>), Error> {
    let devices = devices::import(&app.db, &app.bus, auth.scope(), req.devices).await?;
    Ok((StatusCode::CREATED, Json(devices)))
}
