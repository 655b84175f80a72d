//! `/api/v1/users`: people who sign in to the tenant.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::{PageQuery, User, UserCreate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::access::users;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user)).routes(routes!(get_user, delete_user))
}

/// List the tenant's users.
#[utoipa::path(get, path = "/api/v1/users", tag = "access", params(PageQuery),
    responses((status = 200, body = Page<User>)))]
async fn list_users(
    auth: Authz<perm::UsersRead>,
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<User>>, Error> {
    Ok(users::list(&app.db, auth.scope(), q.limit, q.cursor.as_deref()).await.map(Json)?)
}

/// Create a user with a role no stronger than the caller's.
#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = UserCreate,
    responses((status = 201, body = User)))]
async fn create_user(
    auth: Authz<perm::UsersWrite>,
    State(app): State<AppState>,
    Json(req): Json<UserCreate>,
) -> Result<(StatusCode, Json<User>), Error> {
    let user = users::create(&app.db, auth.scope(), Some(&auth.principal), &req, false).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = User)))]
async fn get_user(
    auth: Authz<perm::UsersRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<User>, Error> {
    Ok(users::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Delete a user and end their sessions.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_user(
    auth: Authz<perm::UsersWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    users::delete(&app.db, auth.scope(), &auth.principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
