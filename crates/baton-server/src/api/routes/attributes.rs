//! `/api/v1/devices/{id}/attributes`: what a device reports about itself and what operators
//! want it to have.

use axum::extract::State;
use baton_proto::api::attributes::{DesiredPatch, DeviceAttributes};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, perm},
};
use baton_core::attributes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(device_attributes)).routes(routes!(patch_desired_attributes))
}

/// A device's reported and desired attributes.
#[utoipa::path(get, path = "/api/v1/devices/{id}/attributes", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceAttributes)))]
async fn device_attributes(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceAttributes>, Error> {
    Ok(attributes::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Change the attributes operators want the device to have (a JSON merge patch: `null`
/// removes a key). A connected device gets them at once, others when they next connect.
#[utoipa::path(patch, path = "/api/v1/devices/{id}/attributes/desired", tag = "devices",
    params(("id" = String, Path)), request_body = DesiredPatch, responses((status = 200, body = DeviceAttributes)))]
async fn patch_desired_attributes(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(DesiredPatch(patch)): Json<DesiredPatch>,
) -> Result<Json<DeviceAttributes>, Error> {
    Ok(attributes::merge_desired(&app.db, &app.bus, auth.scope(), &id, &patch).await.map(Json)?)
}
