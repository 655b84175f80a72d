//! A device's terminal page (`remote:terminal`). Loading it changes nothing: its script
//! (`assets/terminal.js`, xterm.js) sizes the terminal to the window, then opens the session
//! with a POST to the API (`/api/v1/devices/{id}/sessions`, the session cookie and its CSRF
//! header, as every change from a page) and attaches to the ticket's WebSocket. Why a session
//! ended is shown in the server's words, and the terminal stops taking input. The watch page
//! (`remote:watch`) joins someone's open session read-only the same way, with a watch ticket.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use baton_proto::api::{
    devices::{Device, DeviceStatus},
    remote::SessionState,
};

use super::session::{Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, devices, remote};

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    device_id: String,
    device_name: String,
    /// Why no session can open, when that is known before trying.
    unavailable: Option<String>,
    /// Whether the page may offer the recording once the session ends.
    can_replay: bool,
    /// The open session this page watches (read-only), instead of opening one.
    watch: Option<String>,
}

/// `/devices/{id}/terminal`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn page(
    Page(user, _): Page<perm::RemoteTerminal>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let device = devices::get(&app.db, &user.principal.scope, &id).await?;
    let unavailable = (device.status != DeviceStatus::Active)
        .then(|| format!("The device is {}: remote sessions need an active device.", device.status.as_str()));
    Ok(terminal_page(&user, device, unavailable, None))
}

/// `/devices/{id}/sessions/{session}/watch`: someone's open session, read-only.
pub(super) async fn watch(
    Page(user, _): Page<perm::RemoteWatch>,
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, Error> {
    let device = devices::get(&app.db, &user.principal.scope, &id).await?;
    let found = remote::get(&app.db, &user.principal.scope, &id, &session).await?;
    let unavailable = (found.state != SessionState::Open)
        .then(|| format!("This session is {}: only an open session can be watched.", found.state.as_str()));
    Ok(terminal_page(&user, device, unavailable, Some(found.id)))
}

fn terminal_page(user: &User, device: Device, unavailable: Option<String>, watch: Option<String>) -> Response {
    render(TerminalPage {
        user: Some(user),
        csrf: Some(&user.csrf),
        nav: "devices",
        device_id: device.id,
        device_name: device.name,
        unavailable,
        can_replay: user.principal.can(Permission::RemoteRecordings),
        watch,
    })
}
