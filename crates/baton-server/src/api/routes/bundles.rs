//! `/api/v1/support-bundles`: asking devices for support bundles (one device, a group or a
//! label selector), listing them, a request's progress per device, and downloading an archive.
//! Bundles are logs, so every route needs `remote:logs`. What a request does is
//! `baton_core::bundles`'.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use baton_proto::api::{
    Page,
    bundles::{
        BundleCreate, BundleProgress, BundleQuery, BundleRequested, DEFAULT_SINCE_SECS, SupportBundle, parse_since,
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::{
    bundles::{self, Target},
    devices,
    remote::Actor,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_bundles, list_bundles))
        .routes(routes!(request_progress))
        .routes(routes!(get_bundle))
        .routes(routes!(download_bundle))
}

/// Ask for support bundles: name one of `device_id`, `group_id` (with its subgroups) or
/// `selector`, and the window of logs as `since` (`30m`, `1h`, `2d`) or `since_secs` (default
/// one hour). Each device gets a bundle and a command (it makes the bundle when it is online);
/// the answer lists the first 500 bundles (list the rest by `request_id`).
#[utoipa::path(post, path = "/api/v1/support-bundles", tag = "remote", request_body = BundleCreate,
    responses((status = 201, body = BundleRequested),
        (status = 409, description = "The device is not active, or connects over MQTT (bundles need the agent)")))]
async fn request_bundles(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<BundleCreate>,
) -> Result<(StatusCode, Json<BundleRequested>), Error> {
    let target = match (req.device_id, req.group_id, req.selector) {
        (Some(d), None, None) => Target::Device(d),
        (None, Some(g), None) => Target::Group(g),
        (None, None, Some(s)) => Target::Selector(s),
        _ => {
            return Err(
                baton_core::Error::invalid("/", "name exactly one of `device_id`, `group_id` or `selector`").into()
            );
        }
    };
    let since_secs = match (req.since.as_deref(), req.since_secs) {
        (Some(_), Some(_)) => {
            return Err(baton_core::Error::invalid("/since", "give `since` or `since_secs`, not both").into());
        }
        (Some(text), None) => parse_since(text)
            .ok_or_else(|| baton_core::Error::invalid("/since", "a window like `90s`, `30m`, `1h` or `2d`"))?,
        (None, secs) => secs.unwrap_or(DEFAULT_SINCE_SECS),
    };
    let actor = Actor::of(&auth.principal, Some(peer.ip().to_string()));
    let requested = bundles::request(&app.db, &app.bus, auth.scope(), &target, since_secs, &actor).await?;
    Ok((StatusCode::CREATED, Json(requested)))
}

/// Support bundles, newest first; of one device or one request.
#[utoipa::path(get, path = "/api/v1/support-bundles", tag = "remote", params(BundleQuery),
    responses((status = 200, body = Page<SupportBundle>)))]
async fn list_bundles(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    Query(q): Query<BundleQuery>,
) -> Result<Json<Page<SupportBundle>>, Error> {
    Ok(Json(bundles::list(&app.db, auth.scope(), &q).await?))
}

/// A request's progress: bundles per state, and each device's bundle with the state of the
/// command that carries it (`QUEUED` while the device is offline).
#[utoipa::path(get, path = "/api/v1/support-bundles/requests/{id}", tag = "remote", params(("id" = String, Path)),
    responses((status = 200, body = BundleProgress)))]
async fn request_progress(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BundleProgress>, Error> {
    Ok(Json(bundles::progress(&app.db, auth.scope(), &id).await?))
}

/// One support bundle.
#[utoipa::path(get, path = "/api/v1/support-bundles/{id}", tag = "remote", params(("id" = String, Path)),
    responses((status = 200, body = SupportBundle)))]
async fn get_bundle(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SupportBundle>, Error> {
    Ok(Json(bundles::get(&app.db, auth.scope(), &id).await?))
}

/// A stored bundle's archive (`tar.gz`), named after its device and when it was made.
#[utoipa::path(get, path = "/api/v1/support-bundles/{id}/download", tag = "remote", params(("id" = String, Path)),
    responses((status = 200, description = "The archive (application/gzip)", content_type = "application/gzip"),
        (status = 409, description = "The bundle is not stored (yet, or it failed)")))]
async fn download_bundle(
    auth: Authz<perm::RemoteLogs>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (bundle, key) = bundles::archive(&app.db, auth.scope(), &id).await?;
    let device = devices::get(&app.db, auth.scope(), &bundle.device_id).await?;
    let size = bundle.size_bytes.unwrap_or(0);
    let stream =
        app.artifacts.read(&key, 0, size).await.map_err(|e| anyhow::anyhow!("reading support bundle {key}: {e}"))?;
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file_name(&device.name, &bundle))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha) = &bundle.sha256
        && let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}

/// `bundle-<device name>-<YYYYMMDD-HHMMSS>.tar.gz`, the name kept to characters safe in a header
/// and on any file system.
fn file_name(device_name: &str, bundle: &SupportBundle) -> String {
    let name: String = device_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .take(64)
        .collect();
    let at = bundle.stored_at.unwrap_or(bundle.created_at).format("%Y%m%d-%H%M%S");
    format!("bundle-{name}-{at}.tar.gz")
}
