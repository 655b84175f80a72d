//! A device's screen page: `/devices/{id}/screen` to view it (`remote:screen-view`),
//! `/devices/{id}/screen/control` to control it (`remote:screen-control`). Loading it changes
//! nothing: its script (`assets/screen.js`) opens the session with a POST to the API (the
//! session cookie and its CSRF header, as every change from a page) and shows the attach
//! WebSocket's RFB with noVNC, scaled to fit, view-only unless controlling. Why the session
//! ended is shown in the server's words (the WebSocket's close reason).

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use baton_proto::api::devices::DeviceStatus;

use super::session::{Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, devices};

#[derive(Template)]
#[template(path = "screen.html")]
struct ScreenPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    device_id: String,
    device_name: String,
    /// Keyboard and mouse reach the device.
    control: bool,
    /// The other mode, when this person may switch to it.
    can_switch: bool,
    /// Why no session can open, when that is known before trying.
    unavailable: Option<String>,
}

/// `/devices/{id}/screen`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn view(
    Page(user, _): Page<perm::RemoteScreenView>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    screen_page(&app, &user, &id, false).await
}

/// `/devices/{id}/screen/control`.
pub(super) async fn control(
    Page(user, _): Page<perm::RemoteScreenControl>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    screen_page(&app, &user, &id, true).await
}

async fn screen_page(app: &AppState, user: &User, id: &str, control: bool) -> Result<Response, Error> {
    let device = devices::get(&app.db, &user.principal.scope, id).await?;
    let unavailable = (device.status != DeviceStatus::Active)
        .then(|| format!("The device is {}: remote sessions need an active device.", device.status.as_str()));
    let other = if control { Permission::RemoteScreenView } else { Permission::RemoteScreenControl };
    Ok(render(ScreenPage {
        user: Some(user),
        csrf: Some(&user.csrf),
        nav: "devices",
        device_id: device.id,
        device_name: device.name,
        control,
        can_switch: user.principal.can(other) && unavailable.is_none(),
        unavailable,
    }))
}
