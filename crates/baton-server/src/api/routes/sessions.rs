//! Remote sessions: `/api/v1/devices/{id}/sessions` (open a terminal, a tunnel or the screen;
//! list, get, close, watch), `/api/v1/sessions/{id}/attach` (the WebSocket a client attaches
//! with, authenticated by the session's one-time token), `/api/v1/sessions/{id}/connect` (one
//! TCP connection through a tunnel session), `/api/v1/recordings` and each session's recording (asciicast v2),
//! and the tenant's `/api/v1/remote-policy`. The relay itself is `remote`'s.

use std::{net::SocketAddr, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    Page,
    access::PageQuery,
    remote::{RemotePolicy, RemoteSession, SessionCreate, SessionKind, SessionState, SessionTicket},
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::{
        extract::{Authz, Json, Path, Query, perm},
        problem::problem,
    },
};
use baton_core::remote::{self, Actor, policy};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_session, list_sessions))
        .routes(routes!(get_session))
        .routes(routes!(close_session))
        .routes(routes!(watch_session))
        .routes(routes!(attach))
        .routes(routes!(connect))
        .routes(routes!(list_recordings))
        .routes(routes!(recording))
        .routes(routes!(get_policy, put_policy))
}

/// Open a remote session on the device — a terminal (`remote:terminal`), a tunnel to a TCP
/// port (`remote:tunnel`), or its screen (`remote:screen-view`, or `remote:screen-control` with
/// `control`): the answer carries a token (valid 60 s, once) to attach with at `attach_path`.
/// The device's agent must allow it (`[remote] terminal = true`, `tunnel_ports`, `screen`).
#[utoipa::path(post, path = "/api/v1/devices/{id}/sessions", tag = "remote", params(("id" = String, Path)),
    request_body = SessionCreate,
    responses((status = 201, body = SessionTicket),
        (status = 403, description = "Remote access is switched off for the tenant, or the caller lacks the kind's permission"),
        (status = 409, description = "The device is not active, or a session limit is reached")))]
async fn open_session(
    auth: Authz<perm::RemoteSession>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<SessionCreate>,
) -> Result<(StatusCode, Json<SessionTicket>), Error> {
    auth.require(remote::permission_for(&req))?;
    let actor = Actor::of(&auth.principal, Some(peer.ip().to_string()));
    let (ticket, _) =
        remote::create(&app.db, auth.scope(), &id, &req, &actor, remote::Limits::of(&app.settings)).await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// The device's remote sessions, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/sessions", tag = "remote", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<RemoteSession>)))]
async fn list_sessions(
    auth: Authz<perm::RemoteWatch>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<RemoteSession>>, Error> {
    Ok(Json(remote::list(&app.db, auth.scope(), &id, q.limit, q.cursor.as_deref()).await?))
}

/// One remote session.
#[utoipa::path(get, path = "/api/v1/devices/{id}/sessions/{session}", tag = "remote",
    params(("id" = String, Path), ("session" = String, Path)), responses((status = 200, body = RemoteSession)))]
async fn get_session(
    auth: Authz<perm::RemoteWatch>,
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Json<RemoteSession>, Error> {
    Ok(Json(remote::get(&app.db, auth.scope(), &id, &session).await?))
}

/// Close a session: its client and watchers are told who closed it, the shell on the device
/// ends. Closing a closed session changes nothing.
#[utoipa::path(post, path = "/api/v1/devices/{id}/sessions/{session}/close", tag = "remote",
    params(("id" = String, Path), ("session" = String, Path)), responses((status = 200, body = RemoteSession)))]
async fn close_session(
    auth: Authz<perm::RemoteSession>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Json<RemoteSession>, Error> {
    let found = remote::get(&app.db, auth.scope(), &id, &session).await?;
    auth.require(remote::permission_for(&remote::request_of(&found)))?;
    if found.state == SessionState::Closed {
        return Ok(Json(found));
    }
    let reason = format!("closed by {}", auth.principal.subject_label());
    match app.remote.close(auth.scope().id(), &session, reason.clone()) {
        Some(mut ended) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), ended.wait_for(Option::is_some)).await;
        }
        // Not relayed here: pending, or left by a stopped relay.
        None => {
            let actor = Actor::of(&auth.principal, Some(peer.ip().to_string()));
            let ending = remote::Ending { reason, ..Default::default() };
            remote::closed(&app.db, &app.bus, auth.scope(), &found, &actor, &ending).await?;
        }
    }
    Ok(Json(remote::get(&app.db, auth.scope(), &id, &session).await?))
}

/// A read-only token to watch an open session: the watcher sees the output from now on and
/// cannot type.
#[utoipa::path(post, path = "/api/v1/devices/{id}/sessions/{session}/watch", tag = "remote",
    params(("id" = String, Path), ("session" = String, Path)),
    responses((status = 201, body = SessionTicket), (status = 409, description = "The session is not open")))]
async fn watch_session(
    auth: Authz<perm::RemoteWatch>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, session)): Path<(String, String)>,
) -> Result<(StatusCode, Json<SessionTicket>), Error> {
    let actor = Actor::of(&auth.principal, Some(peer.ip().to_string()));
    Ok((StatusCode::CREATED, Json(remote::watch(&app.db, auth.scope(), &id, &session, &actor).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AttachQuery {
    /// The session's one-time token (from opening or watching it).
    token: String,
}

/// Attach to a session (WebSocket). Binary frames carry the terminal's bytes both ways; text
/// frames carry `{"type":"resize","cols":…,"rows":…}` from the client and `opened` / `closed`
/// (with the reason and exit code) from the server. The token in the query authenticates and
/// works once: a browser cannot set headers on a WebSocket.
#[utoipa::path(get, path = "/api/v1/sessions/{session}/attach", tag = "remote", security(()),
    params(("session" = String, Path), AttachQuery),
    responses((status = 101, description = "Switching to the session's WebSocket"),
        (status = 400, description = "Not a WebSocket request"),
        (status = 401, description = "The token is unknown, used or expired")))]
async fn attach(
    State(app): State<AppState>,
    Path(session): Path<String>,
    Query(q): Query<AttachQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        // Small buffers: an idle session must cost little; a chunk is at most 16 KiB anyway.
        Ok(u) => {
            u.max_message_size(64 * 1024).max_frame_size(64 * 1024).read_buffer_size(4 * 1024).write_buffer_size(0)
        }
        Err(e) => {
            return problem(StatusCode::BAD_REQUEST, "not-a-websocket", format!("{e}: attach with a WebSocket client"));
        }
    };
    let attached = match remote::redeem(&app.db, &session, &q.token).await {
        Ok(a) => a,
        Err(e) => return Error::from(e).into_response(),
    };
    let relay = relay(&app);
    match attached.session.kind {
        _ if attached.read_only => {
            upgrade.on_upgrade(move |socket| crate::remote::serve_watcher(relay, attached, socket))
        }
        SessionKind::Terminal => upgrade.on_upgrade(move |socket| crate::remote::serve_owner(relay, attached, socket)),
        SessionKind::Screen => upgrade.on_upgrade(move |socket| crate::remote::screen::serve(relay, attached, socket)),
        SessionKind::Tunnel => {
            upgrade.on_upgrade(move |socket| crate::remote::tunnel::serve_control(relay, attached, socket))
        }
    }
}

/// One TCP connection through an open tunnel session (WebSocket), as its opener: binary frames
/// are the connection's bytes both ways, an empty one ends the sender's direction. It ends with
/// the session; the close frame says why.
#[utoipa::path(get, path = "/api/v1/sessions/{session}/connect", tag = "remote",
    params(("session" = String, Path)),
    responses((status = 101, description = "Switching to the connection's WebSocket"),
        (status = 400, description = "Not a WebSocket request")))]
async fn connect(
    auth: Authz<perm::RemoteTunnel>,
    State(app): State<AppState>,
    Path(session): Path<String>,
    headers: axum::http::HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A page's script can open a WebSocket with the browser's cookie from another origin of the
    // same site (a device's web page on a sibling domain): tunnel connections take a token only.
    if !headers.contains_key(header::AUTHORIZATION) {
        let detail =
            "connect with `Authorization: Bearer <token>`; a console session's cookie does not open tunnel connections";
        return Error::from(baton_core::Error::Unauthorized(detail.into())).into_response();
    }
    let upgrade = match upgrade {
        // Bulk bytes, frames of at most 64 KiB; a read buffer of one chunk (tungstenite zeroes the
        // whole buffer, so its default 128 KiB would be resident for every idle connection).
        Ok(u) => u.max_message_size(64 * 1024).max_frame_size(64 * 1024).read_buffer_size(16 * 1024),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "not-a-websocket",
                format!("{e}: connect with a WebSocket client"),
            );
        }
    };
    let relay = relay(&app);
    let (tenant, caller) = (auth.scope().id().to_owned(), auth.principal.subject_id());
    upgrade.on_upgrade(move |socket| crate::remote::tunnel::serve_connection(relay, tenant, caller, session, socket))
}

/// What the relays need from the server.
fn relay(app: &AppState) -> crate::remote::Relay {
    app.relay()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RecordingsQuery {
    /// Only this device's.
    device_id: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Sessions with a recording in the tenant (or of one device), newest first.
#[utoipa::path(get, path = "/api/v1/recordings", tag = "remote", params(RecordingsQuery),
    responses((status = 200, body = Page<RemoteSession>)))]
async fn list_recordings(
    auth: Authz<perm::RemoteRecordings>,
    State(app): State<AppState>,
    Query(q): Query<RecordingsQuery>,
) -> Result<Json<Page<RemoteSession>>, Error> {
    let page = remote::recorded(&app.db, auth.scope(), q.device_id.as_deref(), q.limit, q.cursor.as_deref()).await?;
    Ok(Json(page))
}

/// The session's recording, asciicast v2: `asciinema play` replays it, `asciinema cat` prints
/// its output.
#[utoipa::path(get, path = "/api/v1/devices/{id}/sessions/{session}/recording", tag = "remote",
    params(("id" = String, Path), ("session" = String, Path)),
    responses((status = 200, description = "The recording (application/x-asciicast)", content_type = "application/x-asciicast")))]
async fn recording(
    auth: Authz<perm::RemoteRecordings>,
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, Error> {
    let (key, size) = remote::recording_key(&app.db, auth.scope(), &id, &session).await?;
    let stream =
        app.artifacts.read(&key, 0, size).await.map_err(|e| anyhow::anyhow!("reading recording {key}: {e}"))?;
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-asciicast"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"session-{session}.cast\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The tenant's remote-access policy.
#[utoipa::path(get, path = "/api/v1/remote-policy", tag = "remote", responses((status = 200, body = RemotePolicy)))]
async fn get_policy(auth: Authz<perm::DevicesRead>, State(app): State<AppState>) -> Result<Json<RemotePolicy>, Error> {
    Ok(Json(policy::get(&app.db, auth.scope()).await?))
}

/// Switch remote access on or off for the whole tenant, and choose whether keystrokes are
/// recorded (they can hold passwords typed at prompts). Open sessions keep running.
#[utoipa::path(put, path = "/api/v1/remote-policy", tag = "remote", request_body = RemotePolicy,
    responses((status = 200, body = RemotePolicy)))]
async fn put_policy(
    auth: Authz<perm::RemotePolicy>,
    State(app): State<AppState>,
    Json(req): Json<RemotePolicy>,
) -> Result<Json<RemotePolicy>, Error> {
    Ok(Json(policy::put(&app.db, auth.scope(), &req).await?))
}
