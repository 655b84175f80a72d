//! `/api/v1/tenants`: platform administrators manage tenants.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::PageQuery,
    tenants::{Tenant, TenantCreate, TenantUpdate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::tenants;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tenants, create_tenant)).routes(routes!(get_tenant, update_tenant))
}

/// List tenants (platform administrators).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>)))]
async fn list_tenants(
    _auth: Authz<perm::TenantsRead>,
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Tenant>>, Error> {
    Ok(tenants::list(&app.db, q.limit, q.cursor.as_deref()).await.map(Json)?)
}

/// Create a tenant, optionally with its first administrator.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = TenantCreate,
    responses((status = 201, body = Tenant)))]
async fn create_tenant(
    _auth: Authz<perm::TenantsWrite>,
    State(app): State<AppState>,
    Json(req): Json<TenantCreate>,
) -> Result<(StatusCode, Json<Tenant>), Error> {
    let tenant = tenants::create(&app.db, &req).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = Tenant)))]
async fn get_tenant(
    _auth: Authz<perm::TenantsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, Error> {
    Ok(tenants::get(&app.db, &id).await.map(Json)?)
}

/// Rename, disable or re-enable a tenant.
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    request_body = TenantUpdate, responses((status = 200, body = Tenant)))]
async fn update_tenant(
    auth: Authz<perm::TenantsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<TenantUpdate>,
) -> Result<Json<Tenant>, Error> {
    Ok(tenants::update(&app.db, &id, auth.scope(), &req).await.map(Json)?)
}
