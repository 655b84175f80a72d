//! `/api/v1/tokens`: API tokens of the tenant.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::{ApiToken, PageQuery, TokenCreate, TokenCreated},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::access::tokens;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(get_token, revoke_token))
}

/// List the tenant's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", params(PageQuery),
    responses((status = 200, body = Page<ApiToken>)))]
async fn list_tokens(
    auth: Authz<perm::TokensRead>,
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<ApiToken>>, Error> {
    Ok(tokens::list(&app.db, auth.scope(), q.limit, q.cursor.as_deref()).await.map(Json)?)
}

/// Create an API token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated)))]
async fn create_token(
    auth: Authz<perm::TokensWrite>,
    State(app): State<AppState>,
    Json(req): Json<TokenCreate>,
) -> Result<(StatusCode, Json<TokenCreated>), Error> {
    let created = tokens::create(&app.db, auth.scope(), &auth.principal, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One API token; a revoked one too, with its `revoked_at`, kept for audit.
#[utoipa::path(get, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, description = "The token; `revoked_at` is set once it is revoked", body = ApiToken)))]
async fn get_token(
    auth: Authz<perm::TokensRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, Error> {
    Ok(tokens::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Revoke an API token: refused from now on. The token is not erased: it stays in the list and
/// readable with `revoked_at` set (a soft revoke, for audit).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, description = "The revoked token, with `revoked_at`", body = ApiToken)))]
async fn revoke_token(
    auth: Authz<perm::TokensWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, Error> {
    Ok(tokens::revoke(&app.db, auth.scope(), &auth.principal, &id).await.map(Json)?)
}
