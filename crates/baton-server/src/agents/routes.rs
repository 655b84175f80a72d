//! The device side of the HTTP edge: `POST /api/v1/enroll` (authenticated by an enrollment
//! token in the body), the agent WebSocket `GET /api/v1/agent/connect`, artifact downloads and
//! certificate renewal (authenticated by the device's client certificate over mutual TLS, or
//! its id and secret). Enrollment, connections and renewals are paced per client address.

use std::net::SocketAddr;

use axum::{
    Extension,
    extract::{ConnectInfo, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::{
    agent::{DEVICE_ID_HEADER, MAX_FRAME_BYTES, refusal},
    api::{
        certificates::{CertificateRequest, IssuedCertificate},
        devices::DeviceStatus,
        enrollment::{EnrollRequest, EnrollResponse},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error, agents::session, connections::setup, state::AppState, tls::ClientCertificate, web::extract::Json,
    web::problem::problem,
};
use baton_core::{
    certificates::{self, SigningRequest},
    devices::credentials,
    rollouts,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(connect))
        .routes(routes!(execution_artifact))
        .routes(routes!(renew_certificate))
}

/// The artifact of one of the device's executions, with the device's own credentials (as for the
/// connection). `Range` is honoured, so an interrupted download resumes. An artifact in an S3
/// bucket is answered with a redirect to a short-lived presigned URL (unless turned off), so its
/// bytes go from the bucket to the device; the device checks them against the hash all the same.
#[utoipa::path(get, path = "/api/v1/agent/executions/{id}/artifact", tag = "agent", security(("device" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "the asked range"),
        (status = 307, description = "Fetch the bytes from this presigned URL (artifacts kept in S3)"),
        (status = 401, description = "Unknown device or wrong secret"), (status = 404, description = "No such execution for this device")))]
async fn execution_artifact(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    certificate: Option<Extension<ClientCertificate>>,
    offered: Option<Extension<crate::web::ranged::SendfileOffered>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let device = device_from(&app, &headers, certificate.as_deref())
        .await?
        .filter(|d| d.status == DeviceStatus::Active)
        .ok_or_else(|| baton_core::Error::Unauthorized("unknown device or wrong secret".into()))?;
    let found = rollouts::delivery::artifact_for(&app.db, &device.scope, &device.device_id, &id).await?;
    if let Some(url) = baton_core::artifacts::direct_url(app.artifacts.as_ref(), &found).await? {
        return Ok(axum::response::Redirect::temporary(&url).into_response());
    }
    crate::web::ranged::serve(&app, &found, &headers, offered.map(|Extension(o)| o)).await
}

/// The device behind the connection's client certificate, or else the one whose id and secret
/// the headers carry. A certificate of one device with another's id in the headers is no one.
pub(super) async fn device_from(
    app: &AppState,
    headers: &HeaderMap,
    certificate: Option<&ClientCertificate>,
) -> Result<Option<credentials::DeviceIdentity>, Error> {
    let device_id = headers.get(DEVICE_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(certificate) = certificate
        && let Some(device) = certificates::authenticate(&app.db, &certificate.0).await?
    {
        return Ok((device_id.is_empty() || device_id == device.device_id).then_some(device));
    }
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    if device_id.is_empty() || secret.is_empty() {
        return Ok(None);
    }
    Ok(credentials::authenticate(&app.db, device_id, secret).await?)
}

/// Enroll a device with an enrollment token; returns its id and secret (shown once).
#[utoipa::path(post, path = "/api/v1/enroll", tag = "agent", request_body = EnrollRequest, security(()),
    responses((status = 201, body = EnrollResponse), (status = 401, description = "The enrollment token is unknown, revoked, expired or used up"),
        (status = 403, description = "The serial was decommissioned"), (status = 429, description = "Too many attempts from this address, or too many devices enrolling at once: retry after `Retry-After`")))]
async fn enroll(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    waited: Option<Extension<setup::WaitedPlace>>,
    Json(req): Json<EnrollRequest>,
) -> Result<Response, Error> {
    app.connect_limiter.check(peer.ip()).map_err(baton_core::Error::RateLimited)?;
    let _place = app
        .setups
        .enter_unless_waited(waited.as_deref())
        .await
        .ok_or(baton_core::Error::RateLimited(setup::RETRY_AFTER_SECS))?;
    let enrolled = app.setup_writer.enroll(req, None, app.settings.device_certificate_lifetime()).await?;
    // A device enrolls once and then opens its WebSocket: the connection it enrolled on would
    // only sit idle in its client's pool, holding the server's buffers through a storm.
    Ok((StatusCode::CREATED, [(header::CONNECTION, "close")], Json(enrolled)).into_response())
}

/// The agent's WebSocket. Send `Authorization: Bearer <device secret>` and `x-baton-device-id`.
/// Refusals before the upgrade are problems whose `type` ends in `unauthorized`,
/// `pending-approval` or `rate-limited`; a decommissioned device is told after the upgrade.
#[utoipa::path(get, path = "/api/v1/agent/connect", tag = "agent", security(("device" = [])),
    responses((status = 101, description = "Switching to the agent protocol"), (status = 401, description = "Unknown device or wrong secret"),
        (status = 403, description = "The device waits for approval"), (status = 429, description = "Too many connection attempts, or too many devices connecting at once: retry after `Retry-After`")))]
async fn connect(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: Option<Extension<ClientCertificate>>,
    waited: Option<Extension<setup::WaitedPlace>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(wait) = app.connect_limiter.check(peer.ip()) {
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            refusal::RATE_LIMITED,
            format!("too many connections; retry in {wait} s"),
        );
        r.headers_mut().insert(header::RETRY_AFTER, wait.into());
        return r;
    }
    let Some(place) = app.setups.enter_unless_waited(waited.as_deref()).await else {
        return Error::from(baton_core::Error::RateLimited(setup::RETRY_AFTER_SECS)).into_response();
    };
    let unauthorized = || {
        problem(
            StatusCode::UNAUTHORIZED,
            refusal::UNAUTHORIZED,
            "unknown device or wrong secret; enroll the device again",
        )
    };
    let device = match device_from(&app, &headers, certificate.as_deref()).await {
        Ok(Some(device)) => device,
        Ok(None) => return unauthorized(),
        Err(e) => return e.into_response(),
    };
    if device.status == DeviceStatus::Pending {
        return problem(
            StatusCode::FORBIDDEN,
            refusal::PENDING_APPROVAL,
            "the device waits for an administrator's approval; retry later",
        );
    }
    let upgrade = match upgrade {
        // Frames up to 4× the limit are read and refused with a close reason (`session`); beyond
        // that the connection is cut without reading further.
        // Small buffers: an idle agent sends a heartbeat now and then, and the library's 128 KiB
        // default read buffer per connection would dominate a large fleet's memory. (The read
        // buffer grows to the largest frame read; 1 KiB holds a heartbeat and a small batch.)
        Ok(u) => u
            .max_message_size(MAX_FRAME_BYTES * 4)
            .max_frame_size(MAX_FRAME_BYTES * 4)
            .read_buffer_size(1024)
            .write_buffer_size(4 * 1024),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "not-a-websocket",
                format!("{e}: connect with a WebSocket client"),
            );
        }
    };
    metrics::counter!("baton_agent_connections_total").increment(1);
    if device.status == DeviceStatus::Decommissioned {
        let wipe = device.wipe_requested;
        return upgrade.on_upgrade(move |socket| session::refuse_decommissioned(socket, wipe));
    }
    // The session runs as a task of its own: the library's upgrade task would hold its own
    // copies of the socket and of this closure for as long as the device stays connected.
    upgrade.on_upgrade(move |socket| async move {
        tokio::spawn(session::run(app, socket, device, peer, place));
    })
}

/// Renew the device's client certificate: send a signing request for a new key (made on the
/// device); the answer is the signed certificate and its chain. Authenticated like the
/// connection (the current certificate, or the device's id and secret); active devices only.
#[utoipa::path(post, path = "/api/v1/agent/certificate", tag = "agent", security(("device" = [])),
    request_body = CertificateRequest,
    responses((status = 201, body = IssuedCertificate), (status = 401, description = "Unknown device, wrong secret, or a certificate revoked or expired"),
        (status = 422, description = "Not a valid signing request"), (status = 429, description = "Too many attempts from this address")))]
async fn renew_certificate(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Result<Json<CertificateRequest>, Response>,
) -> Result<(StatusCode, Json<IssuedCertificate>), Response> {
    app.connect_limiter.check(peer.ip()).map_err(|wait| answer(baton_core::Error::RateLimited(wait)))?;
    let device = device_from(&app, &headers, certificate.as_deref())
        .await
        .map_err(answer)?
        .filter(|d| d.status == DeviceStatus::Active)
        .ok_or_else(|| answer(baton_core::Error::Unauthorized("unknown device, wrong secret or certificate".into())))?;
    // Who asks comes first; what they sent, after.
    let Json(req) = body?;
    let request = SigningRequest::parse(&req.csr, "/csr").map_err(answer)?;
    let lifetime = app.settings.device_certificate_lifetime();
    let issued = certificates::issue(&app.db, &app.bus, &device.scope, &device.device_id, &request, lifetime)
        .await
        .map_err(answer)?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// An error as the problem+json answer it makes.
fn answer(e: impl Into<Error>) -> Response {
    e.into().into_response()
}
