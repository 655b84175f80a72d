//! `/api/v1/certificate-authority` and `/api/v1/devices/{id}/certificates`: the tenant's
//! certificate authority (made by Baton at first need, or an uploaded intermediate) and the
//! client certificates it signs for devices — the agent asks for its own at enrollment and
//! renews it itself; these routes serve devices that cannot (MQTT devices bring a signing
//! request) and operators who revoke one.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::PageQuery,
    certificates::{
        CertificateAuthority, CertificateAuthorityUpload, CertificateRequest, DeviceCertificate, IssuedCertificate,
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::certificates::{self, SigningRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_authority, upload_authority))
        .routes(routes!(list_certificates, issue_certificate))
        .routes(routes!(revoke_certificate))
}

/// The tenant's certificate authority (made now if it has none): what a TLS client or an MQTT
/// bridge trusts for device certificates.
#[utoipa::path(get, path = "/api/v1/certificate-authority", tag = "certificates",
    responses((status = 200, body = CertificateAuthority)))]
async fn get_authority(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
) -> Result<Json<CertificateAuthority>, Error> {
    Ok(certificates::authority(&app.db, auth.scope()).await.map(Json)?)
}

/// Bring your own authority: an intermediate CA certificate (its chain may follow) and its
/// PKCS#8 private key, both PEM. It signs every device certificate from now on; those issued
/// before stay valid until they expire or are revoked.
#[utoipa::path(put, path = "/api/v1/certificate-authority", tag = "certificates",
    request_body = CertificateAuthorityUpload, responses((status = 200, body = CertificateAuthority)))]
async fn upload_authority(
    auth: Authz<perm::SigningKeysWrite>,
    State(app): State<AppState>,
    Json(req): Json<CertificateAuthorityUpload>,
) -> Result<Json<CertificateAuthority>, Error> {
    Ok(certificates::upload(&app.db, auth.scope(), req).await.map(Json)?)
}

/// The device's certificates, oldest first, revoked and expired ones included.
#[utoipa::path(get, path = "/api/v1/devices/{id}/certificates", tag = "certificates",
    params(("id" = String, Path), PageQuery), responses((status = 200, body = Page<DeviceCertificate>)))]
async fn list_certificates(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<DeviceCertificate>>, Error> {
    Ok(certificates::list(&app.db, auth.scope(), &id, q.limit, q.cursor.as_deref()).await.map(Json)?)
}

/// Sign a client certificate for the device from its signing request (the key stays on the
/// device). For MQTT devices: connect over TLS with it, no password needed.
#[utoipa::path(post, path = "/api/v1/devices/{id}/certificates", tag = "certificates",
    params(("id" = String, Path)), request_body = CertificateRequest,
    responses((status = 201, body = IssuedCertificate), (status = 409, description = "The device is decommissioned")))]
async fn issue_certificate(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<CertificateRequest>,
) -> Result<(StatusCode, Json<IssuedCertificate>), Error> {
    let request = SigningRequest::parse(&req.csr, "/csr")?;
    let lifetime = app.settings.device_certificate_lifetime();
    let issued = certificates::issue(&app.db, &app.bus, auth.scope(), &id, &request, lifetime).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Revoke one of the device's certificates: its next TLS connection is refused.
#[utoipa::path(post, path = "/api/v1/devices/{id}/certificates/{fingerprint}/revoke", tag = "certificates",
    params(("id" = String, Path), ("fingerprint" = String, Path)), responses((status = 200, body = DeviceCertificate)))]
async fn revoke_certificate(
    auth: Authz<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path((id, fingerprint)): Path<(String, String)>,
) -> Result<Json<DeviceCertificate>, Error> {
    let revoked = certificates::revoke(&app.db, &app.bus, auth.scope(), &id, &fingerprint, &auth.principal).await?;
    Ok(Json(revoked))
}
