//! A device's live logs: `GET /api/v1/devices/{id}/logs` answers with NDJSON, one `LogRecord`
//! a line, from the journal or a file the device's agent allows, as long as the device sends
//! them (with `follow`, until the client goes away). The relay is `remote`'s.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderValue, header},
    response::Response,
};
use baton_core::{
    remote::{Actor, logs},
    store::new_id,
};
use baton_proto::streams::{self, LogQuery, LogRecord, LogSource, StreamKind};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    remote::NotOpened,
    state::AppState,
    web::extract::{Authz, Path, Query, perm},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(device_logs))
}

/// What to show, as query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// `journal` (the default), `file` (with `path`), or `event_log` (not supported yet).
    source: Option<LogSource>,
    /// The file to read, for `source=file`: absolute, under the agent's `[remote] log_paths`.
    path: Option<String>,
    /// Journal units, comma-separated (e.g. `nginx.service,ssh.service`).
    unit: Option<String>,
    /// Journal entries of this syslog priority or more urgent: 0 emerg … 7 debug.
    #[param(minimum = 0, maximum = 7)]
    priority: Option<u8>,
    /// Only entries whose message matches this regular expression (case-insensitive unless it
    /// has capitals).
    grep: Option<String>,
    /// Journal entries of the last `90s`, `15m`, `1h`, `2d` (or plain seconds).
    since: Option<String>,
    /// How many of the latest entries to show first (default 100; with `since`, all of them).
    #[param(minimum = 0, maximum = 100000)]
    lines: Option<u32>,
    /// Keep the stream open and send new entries as they are written.
    follow: Option<bool>,
}

impl LogParams {
    fn into_query(self) -> Result<LogQuery, Error> {
        let units = self.unit.map_or_else(Vec::new, |u| {
            u.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
        });
        let since_secs = match self.since.as_deref() {
            Some(text) => Some(streams::duration_secs(text).ok_or_else(|| {
                baton_core::Error::invalid("since", "a duration like 90s, 15m, 1h or 2d, or seconds")
            })?),
            None => None,
        };
        let query = LogQuery {
            source: self.source.unwrap_or_default(),
            path: self.path,
            units,
            priority: self.priority,
            grep: self.grep,
            since_secs,
            lines: self.lines,
            follow: self.follow.unwrap_or(false),
        };
        logs::validate(&query)?;
        Ok(query)
    }
}

/// The device's logs, live: NDJSON, one record a line (`ts`, `source`, `unit`, `priority`,
/// `message`). Without `follow` the body ends after the latest entries; with it, it stays open
/// and new entries arrive as they are written, until the client goes away. The device must run
/// the agent with `[remote] logs = true`; a file must be under its `log_paths`.
#[utoipa::path(get, path = "/api/v1/devices/{id}/logs", tag = "remote",
    params(("id" = String, Path), LogParams),
    responses((status = 200, description = "Log records, one JSON object a line", body = LogRecord, content_type = "application/x-ndjson"),
        (status = 403, description = "Remote access is switched off for the tenant, or the device refused (logs off, a path outside its allow-list, …)"),
        (status = 404, description = "No such device in the tenant"),
        (status = 409, description = "The device is not active, offline, or not connected through the agent"),
        (status = 422, description = "A parameter is out of range (the problem names it)"),
        (status = 429, description = "The device is busy opening other streams; try again")))]
async fn device_logs(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Response, Error> {
    let query = params.into_query()?;
    logs::check(&app.db, auth.scope(), &id, &query).await?;
    let actor = Actor::of(&auth.principal, Some(peer.ip().to_string()));
    let kind = StreamKind::Logs(query.clone());
    let stream = match crate::remote::open_stream(&app.connections, &id, &new_id(), &actor.label, kind).await {
        Ok(stream) => stream,
        Err(NotOpened::Refused(reason)) => {
            return Err(baton_core::Error::Forbidden(format!("the device refused: {reason}")).into());
        }
        Err(not) => return Err(not.into()),
    };
    let relay = crate::remote::LogsRelay {
        db: app.db.clone(),
        bus: app.bus.clone(),
        connections: app.connections.clone(),
        scope: auth.scope().clone(),
        device_id: id,
        actor,
        query,
        shutdown: app.shutdown.subscribe(),
    };
    let mut response = Response::new(crate::remote::logs_body(relay, stream).await);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Tells a proxy such as nginx not to hold the lines back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
