//! `/api/v1/commands` and `/api/v1/command-batches`: the durable command outbox.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    access::PageQuery,
    commands::{Command, CommandBatch, CommandCreate, CommandQuery},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::commands;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_commands, create_commands))
        .routes(routes!(get_command))
        .routes(routes!(cancel_command))
        .routes(routes!(list_batches))
        .routes(routes!(get_batch))
        .routes(routes!(cancel_batch))
}

/// Queue a command for one device or a selection (ids, group, label selector). Returns the
/// batch; every device gets its own command, delivered when it is connected.
#[utoipa::path(post, path = "/api/v1/commands", tag = "commands", request_body = CommandCreate,
    responses((status = 201, body = CommandBatch)))]
async fn create_commands(
    auth: Authz<perm::CommandsWrite>,
    State(app): State<AppState>,
    Json(req): Json<CommandCreate>,
) -> Result<(StatusCode, Json<CommandBatch>), Error> {
    let batch = commands::create(&app.db, &app.bus, auth.scope(), &auth.principal, req).await?;
    Ok((StatusCode::CREATED, Json(batch)))
}

/// Commands, newest first, by device, batch or state.
#[utoipa::path(get, path = "/api/v1/commands", tag = "commands", params(CommandQuery),
    responses((status = 200, body = Page<Command>)))]
async fn list_commands(
    auth: Authz<perm::CommandsRead>,
    State(app): State<AppState>,
    Query(q): Query<CommandQuery>,
) -> Result<Json<Page<Command>>, Error> {
    Ok(commands::list(&app.db, auth.scope(), &q).await.map(Json)?)
}

/// One command with its result.
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = Command)))]
async fn get_command(
    auth: Authz<perm::CommandsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Command>, Error> {
    Ok(commands::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Cancel a command that has not finished.
#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = Command)))]
async fn cancel_command(
    auth: Authz<perm::CommandsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Command>, Error> {
    Ok(commands::cancel(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// A batch and its progress by state.
#[utoipa::path(get, path = "/api/v1/command-batches/{id}", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = CommandBatch)))]
async fn get_batch(
    auth: Authz<perm::CommandsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandBatch>, Error> {
    Ok(commands::batch(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Command batches (one per request), newest first, each with its progress by state.
#[utoipa::path(get, path = "/api/v1/command-batches", tag = "commands", params(PageQuery),
    responses((status = 200, body = Page<CommandBatch>)))]
async fn list_batches(
    auth: Authz<perm::CommandsRead>,
    State(app): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<CommandBatch>>, Error> {
    Ok(commands::batches(&app.db, auth.scope(), &q).await.map(Json)?)
}

/// Cancel every command of a batch that has not finished.
#[utoipa::path(post, path = "/api/v1/command-batches/{id}/cancel", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = CommandBatch)))]
async fn cancel_batch(
    auth: Authz<perm::CommandsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandBatch>, Error> {
    Ok(commands::cancel_batch(&app.db, auth.scope(), &id).await.map(Json)?)
}
