//! A device's files page (`remote:files`): a path, a way to describe it, download it (a link to
//! the API's `GET …/files`, which the browser streams to disk; a directory comes as tar) and
//! upload a file to it (`assets/files.js`: SHA-256 in the browser, then a `PUT` to the API with
//! the session cookie and CSRF header, showing its progress, resuming what an interrupted upload
//! of the same file left). Loading it changes nothing.

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
#[template(path = "files.html")]
struct FilesPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    device_id: String,
    device_name: String,
    /// Why nothing can be transferred, when that is known before trying.
    unavailable: Option<String>,
}

/// `/devices/{id}/files`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn page(
    Page(user, _): Page<perm::RemoteFiles>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let device = devices::get(&app.db, &user.principal.scope, &id).await?;
    let unavailable = (device.status != DeviceStatus::Active)
        .then(|| format!("The device is {}: file transfer needs an active device.", device.status.as_str()));
    Ok(render(FilesPage {
        user: Some(&user),
        csrf: Some(&user.csrf),
        nav: "devices",
        device_id: device.id,
        device_name: device.name,
        unavailable,
    }))
}
