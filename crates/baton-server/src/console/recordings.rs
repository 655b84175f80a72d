//! Session recordings in the console (`remote:recordings`): the tenant's, newest first and
//! paged (or one device's, `?device=`), the latest few on a device's page, and a recording's
//! page, which replays it in the browser (`assets/player.js`) and offers it for download. The
//! bytes come from the API's recording route, which takes the console's session cookie too, so
//! the console has no second route for them.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use baton_proto::api::remote::RemoteSession;
use serde::Deserialize;

use super::{
    human,
    session::{Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::TenantScope, devices, remote};

/// Recordings one page lists.
const PAGE: u32 = 25;
/// Recordings a device's page shows.
pub(super) const ON_DEVICE_PAGE: u32 = 5;

/// A recorded session as the lists and the replay page show it.
pub(super) struct Line {
    pub session_id: String,
    pub device_id: String,
    pub device: String,
    pub opened_by: String,
    pub source_addr: String,
    pub at: String,
    pub length: String,
    pub size: String,
    pub reason: String,
    pub exit_code: Option<i32>,
    pub input_recorded: bool,
}

impl Line {
    fn of(s: RemoteSession, device: String) -> Option<Self> {
        let rec = s.recording?;
        Some(Line {
            session_id: s.id,
            device_id: s.device_id,
            device,
            opened_by: s.opened_by,
            source_addr: s.source_addr.unwrap_or_else(|| "–".into()),
            at: rec.started_at.to_rfc3339(),
            length: human::clock(rec.duration_ms),
            size: human::bytes(rec.size_bytes),
            reason: s.close_reason.unwrap_or_default(),
            exit_code: s.exit_code,
            input_recorded: rec.input_recorded,
        })
    }

    /// Where the API serves its bytes (the replay fetches them, the download link names them).
    pub fn cast_url(&self) -> String {
        format!("/api/v1/devices/{}/sessions/{}/recording", self.device_id, self.session_id)
    }
}

/// Recorded sessions, each with its device's name: a device's (`device`) or the tenant's.
async fn lines(
    app: &AppState,
    scope: &TenantScope,
    device: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<Line>, Option<String>), Error> {
    let page = remote::recorded(&app.db, scope, device, Some(limit), cursor).await?;
    let ids: Vec<String> = page.items.iter().map(|s| s.device_id.clone()).collect();
    let names = devices::names(&app.db, scope, &ids).await?;
    let lines = page
        .items
        .into_iter()
        .filter_map(|s| {
            let name = names.get(&s.device_id).cloned().unwrap_or_else(|| s.device_id.clone());
            Line::of(s, name)
        })
        .collect();
    Ok((lines, page.next_cursor))
}

/// The latest recordings of a device, for its page.
pub(super) async fn of_device(app: &AppState, scope: &TenantScope, device_id: &str) -> Result<Vec<Line>, Error> {
    Ok(lines(app, scope, Some(device_id), ON_DEVICE_PAGE, None).await?.0)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Filter {
    device: String,
    cursor: String,
}

#[derive(Template)]
#[template(path = "recordings.html")]
struct RecordingsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    /// The device the list is narrowed to: id and name.
    device: Option<(String, String)>,
    recordings: Vec<Line>,
    next_url: Option<String>,
}

/// `/recordings`: the tenant's recorded sessions; `?device=` narrows them to one device.
pub(super) async fn page(
    Page(user, _): Page<perm::RemoteRecordings>,
    State(app): State<AppState>,
    Query(filter): Query<Filter>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    let device = match filter.device.as_str() {
        "" => None,
        id => Some((id.to_owned(), devices::get(&app.db, scope, id).await?.name)),
    };
    let cursor = Some(filter.cursor.as_str()).filter(|c| !c.is_empty());
    let (recordings, next) = lines(&app, scope, device.as_ref().map(|d| d.0.as_str()), PAGE, cursor).await?;
    let next_url = next.map(|c| match &device {
        Some((id, _)) => format!("/recordings?device={id}&cursor={c}"),
        None => format!("/recordings?cursor={c}"),
    });
    let csrf = user.csrf.clone();
    Ok(render(RecordingsPage { user: Some(&user), csrf: Some(&csrf), nav: "recordings", device, recordings, next_url }))
}

#[derive(Template)]
#[template(path = "replay.html")]
struct ReplayPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    r: Line,
}

/// `/devices/{id}/recordings/{session}`: one recording, replayed in the page.
pub(super) async fn replay(
    Page(user, _): Page<perm::RemoteRecordings>,
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    let found = remote::get(&app.db, scope, &id, &session).await?;
    let name = devices::get(&app.db, scope, &id).await?.name;
    let r = Line::of(found, name)
        .ok_or_else(|| baton_core::Error::NotFound(format!("recording of session {session}: it has none (yet)")))?;
    let csrf = user.csrf.clone();
    Ok(render(ReplayPage { user: Some(&user), csrf: Some(&csrf), nav: "recordings", r }))
}
