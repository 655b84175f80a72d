//! `/api/v1/enrollment-tokens`: tokens that let devices enroll themselves.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::PageQuery,
    enrollment::{EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::enrollment;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(get_token, revoke_token))
}

/// List enrollment tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "enrollment", params(PageQuery),
    responses((status = 200, body = Page<EnrollmentToken>)))]
async fn list_tokens(
    auth: Authz<perm::EnrollmentRead>,
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<EnrollmentToken>>, Error> {
    Ok(enrollment::list_tokens(&app.db, auth.scope(), q.limit, q.cursor.as_deref()).await.map(Json)?)
}

/// Create an enrollment token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "enrollment", request_body = EnrollmentTokenCreate,
    responses((status = 201, body = EnrollmentTokenCreated)))]
async fn create_token(
    auth: Authz<perm::EnrollmentWrite>,
    State(app): State<AppState>,
    Json(req): Json<EnrollmentTokenCreate>,
) -> Result<(StatusCode, Json<EnrollmentTokenCreated>), Error> {
    let created = enrollment::create_token(&app.db, auth.scope(), &auth.principal, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One enrollment token; a revoked one too, with its `revoked_at`, kept for audit.
#[utoipa::path(get, path = "/api/v1/enrollment-tokens/{id}", tag = "enrollment", params(("id" = String, Path)),
    responses((status = 200, description = "The token; `revoked_at` is set once it is revoked", body = EnrollmentToken)))]
async fn get_token(
    auth: Authz<perm::EnrollmentRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EnrollmentToken>, Error> {
    Ok(enrollment::get_token(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Revoke an enrollment token: devices already enrolled stay; new enrollments are refused. The
/// token is not erased: it stays readable with `revoked_at` set (a soft revoke, for audit).
#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", tag = "enrollment", params(("id" = String, Path)),
    responses((status = 200, description = "The revoked token, with `revoked_at`", body = EnrollmentToken)))]
async fn revoke_token(
    auth: Authz<perm::EnrollmentWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EnrollmentToken>, Error> {
    Ok(enrollment::revoke_token(&app.db, auth.scope(), &id).await.map(Json)?)
}
