//! Support bundles in the console (`remote:logs`): a device's latest bundles on its page with
//! their download links and a button that asks for a new one, and a request's page that follows
//! each device's bundle live (refreshed by the event stream, as the other pages are). The
//! archives download from the API's route, which takes the console's session cookie too.

use std::net::SocketAddr;

use askama::Template;
use axum::{
    extract::{ConnectInfo, Path, State},
    http::HeaderMap,
    response::Response,
};
use baton_proto::api::{
    bundles::{BundleQuery, BundleState, DeviceProgress, SupportBundle, parse_since},
    devices::DeviceStatus,
};
use serde::Deserialize;

use super::{
    form::Form,
    human,
    session::{Changing, Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{
    access::{Permission, TenantScope},
    bundles::{self, Target},
    remote::Actor,
};

/// Bundles a device's page lists.
const ON_DEVICE_PAGE: u32 = 5;

/// A bundle as the device's page lists it.
pub(super) struct Line {
    pub id: String,
    pub state: &'static str,
    pub at: String,
    pub by: String,
    pub size: String,
    pub error: String,
    pub stored: bool,
}

impl Line {
    fn of(b: SupportBundle) -> Self {
        Line {
            state: b.state.as_str(),
            at: b.created_at.to_rfc3339(),
            by: b.requested_by,
            size: b.size_bytes.map(human::bytes).unwrap_or_default(),
            error: b.error.unwrap_or_default(),
            stored: b.state == BundleState::Stored,
            id: b.id,
        }
    }

    /// Where the API serves the archive.
    pub fn download_url(&self) -> String {
        format!("/api/v1/support-bundles/{}/download", self.id)
    }
}

/// The device page's part: its latest bundles, and whether a new one may be asked for.
pub(super) struct OnDevice {
    pub lines: Vec<Line>,
    pub can_request: bool,
}

/// The latest bundles of a device, for those who may see them (`None` for the others).
pub(super) async fn of_device(
    app: &AppState,
    user: &User,
    device_id: &str,
    status: DeviceStatus,
) -> Result<Option<OnDevice>, Error> {
    if !user.principal.can(Permission::RemoteLogs) {
        return Ok(None);
    }
    let q =
        BundleQuery { device_id: Some(device_id.to_owned()), limit: Some(ON_DEVICE_PAGE), ..BundleQuery::default() };
    let page = bundles::list(&app.db, &user.principal.scope, &q).await?;
    let lines = page.items.into_iter().map(Line::of).collect();
    Ok(Some(OnDevice { lines, can_request: status == DeviceStatus::Active }))
}

#[derive(Deserialize)]
pub(super) struct RequestForm {
    #[serde(default)]
    since: String,
}

/// `POST /devices/{id}/bundles`: asks the device for a bundle and goes to the request's page.
pub(super) async fn request(
    Changing(user, _): Changing<perm::RemoteLogs>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RequestForm>,
) -> Result<Response, Error> {
    let since = if form.since.is_empty() { "1h" } else { form.since.as_str() };
    let since_secs =
        parse_since(since).ok_or_else(|| baton_core::Error::invalid("/since", "a window like `30m`, `1h` or `2d`"))?;
    let actor = Actor::of(&user.principal, Some(peer.ip().to_string()));
    let scope = &user.principal.scope;
    let requested = bundles::request(&app.db, &app.bus, scope, &Target::Device(id), since_secs, &actor).await?;
    Ok(super::groups::to(&headers, &format!("/bundles/{}", requested.request_id)))
}

/// A device's part of a request, as the page shows it.
struct DeviceLine {
    device_id: String,
    device: String,
    bundle_id: String,
    state: &'static str,
    /// What the bundle waits for, in words.
    detail: String,
    size: String,
    stored: bool,
}

impl DeviceLine {
    fn of(d: DeviceProgress) -> Self {
        let detail = match (d.state, d.command_state.as_str()) {
            (BundleState::Failed, _) => d.error.unwrap_or_default(),
            (BundleState::Requested, "QUEUED") => "waiting for the device to come online".into(),
            (BundleState::Requested, "SENT") => "sent to the device".into(),
            (BundleState::Requested, _) => "the device is collecting it".into(),
            (BundleState::Uploading, _) => "the device is uploading it".into(),
            (BundleState::Stored, _) => String::new(),
        };
        DeviceLine {
            state: d.state.as_str(),
            size: d.size_bytes.map(human::bytes).unwrap_or_default(),
            stored: d.state == BundleState::Stored,
            device_id: d.device_id,
            device: d.device_name,
            bundle_id: d.bundle_id,
            detail,
        }
    }

    fn download_url(&self) -> String {
        format!("/api/v1/support-bundles/{}/download", self.bundle_id)
    }
}

#[derive(Template)]
#[template(path = "bundle_request.html")]
struct RequestPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    id: String,
    by: String,
    at: String,
    window: String,
    total: u64,
    /// Counts per state: (state, count), in the order of the bundle's life.
    states: Vec<(&'static str, u64)>,
    finished: bool,
    devices: Vec<DeviceLine>,
}

/// `/bundles/{id}`: a request's progress per device, live.
pub(super) async fn request_page(
    Page(user, _): Page<perm::RemoteLogs>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let page = progress_page(&app, &user, &user.principal.scope, &id).await?;
    Ok(render(page))
}

async fn progress_page<'a>(
    app: &AppState,
    user: &'a User,
    scope: &TenantScope,
    id: &str,
) -> Result<RequestPage<'a>, Error> {
    let p = bundles::progress(&app.db, scope, id).await?;
    let states = BundleState::ALL.iter().filter_map(|s| p.states.get(s.as_str()).map(|n| (s.as_str(), *n))).collect();
    Ok(RequestPage {
        user: Some(user),
        csrf: Some(&user.csrf),
        nav: "devices",
        finished: p.finished(),
        id: p.request_id,
        by: p.requested_by,
        at: p.created_at.to_rfc3339(),
        window: human::about(p.since_secs),
        total: p.total,
        states,
        devices: p.devices.into_iter().map(DeviceLine::of).collect(),
    })
}
