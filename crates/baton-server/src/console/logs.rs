//! A device's live log page (`remote:logs`). Loading it asks the device nothing: its script
//! (`assets/logs.js`) reads the API's NDJSON stream (`/api/v1/devices/{id}/logs`, the session
//! cookie authenticates a GET) with the filters of the form, and shows the lines as they come,
//! with pause (lines wait, counted), a filter on what is shown, and a download of it.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use baton_proto::api::devices::DeviceStatus;

use super::session::{Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::devices;

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    device_id: String,
    device_name: String,
    /// Why no log can be read, when that is known before trying.
    unavailable: Option<String>,
}

/// `/devices/{id}/logs`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn page(
    Page(user, _): Page<perm::RemoteLogs>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let device = devices::get(&app.db, &user.principal.scope, &id).await?;
    let unavailable = (device.status != DeviceStatus::Active)
        .then(|| format!("The device is {}: live logs need an active device.", device.status.as_str()));
    Ok(render(LogsPage {
        user: Some(&user),
        csrf: Some(&user.csrf),
        nav: "devices",
        device_id: device.id,
        device_name: device.name,
        unavailable,
    }))
}
