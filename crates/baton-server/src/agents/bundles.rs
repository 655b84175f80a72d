//! `PUT /api/v1/agent/support-bundles/{id}`: a device uploads the support bundle it was asked
//! for, with its own credentials (as for its connection). The body streams into the artifact
//! store under `support_bundle_max_bytes` and must hash to the declared SHA-256; what it means
//! for the bundle is `baton_core::bundles::receive`'s.

use axum::{
    Extension,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    bundles::{SHA256_HEADER, SupportBundle},
    devices::DeviceStatus,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::routes::device_from;
use crate::{Error, state::AppState, tls::ClientCertificate, web::extract::Json, web::problem::problem};
use baton_core::bundles::{self, Received, Upload};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload_bundle))
}

/// Upload a support bundle this device was asked for: the body is the archive (`tar.gz`, sent as
/// `application/gzip` or `application/octet-stream`), `x-checksum-sha256` its SHA-256. Send `Authorization: Bearer <device secret>` and
/// `x-baton-device-id`, or present the device's certificate.
#[utoipa::path(put, path = "/api/v1/agent/support-bundles/{id}", tag = "agent", security(("device" = [])),
    params(("id" = String, Path), ("x-checksum-sha256" = Option<String>, Header, description = "The archive's SHA-256, hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = SupportBundle, description = "Stored"), (status = 401, description = "Unknown device or wrong secret"),
        (status = 404, description = "No such bundle for this device"), (status = 409, description = "The bundle is already stored or failed"),
        (status = 413, description = "Over the server's support_bundle_max_bytes; the bundle failed saying so"),
        (status = 422, description = "Empty, cut off, or not matching the declared SHA-256")))]
async fn upload_bundle(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    certificate: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let device = device_from(&app, &headers, certificate.as_deref())
        .await?
        .filter(|d| d.status == DeviceStatus::Active)
        .ok_or_else(|| baton_core::Error::Unauthorized("unknown device or wrong secret".into()))?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let upload = Upload {
        device_id: &device.device_id,
        bundle_id: &id,
        sha256: text(SHA256_HEADER),
        declared_len: text(header::CONTENT_LENGTH.as_str()).and_then(|n| n.parse().ok()),
        max_bytes: app.settings.support_bundle_max_bytes,
    };
    let received =
        bundles::receive(&app.db, &app.bus, app.artifacts.as_ref(), &device.scope, upload, body.into_data_stream())
            .await?;
    Ok(match received {
        Received::Stored(bundle) => Json(*bundle).into_response(),
        Received::TooLarge { limit } => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("a support bundle is at most {limit} bytes on this server (support_bundle_max_bytes)"),
        ),
    })
}
