//! `/api/v1/rollouts`: make a rollout (started, or a draft), follow it, and steer it — start,
//! pause, resume (which also approves the next wave), cancel — and list its executions.

use axum::{extract::State, http::StatusCode};
use baton_proto::api::{
    Page,
    rollouts::{Execution, ExecutionQuery, Rollout, RolloutCreate, RolloutQuery, RolloutRule, RolloutRuleCreate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::rollouts;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rollouts, create_rollout))
        .routes(routes!(get_rollout, delete_rollout))
        .routes(routes!(list_executions))
        .routes(routes!(start_rollout))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(cancel_rollout))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, delete_rule))
}

/// Automatic rollouts: each new artifact whose name matches becomes a rollout from the template.
#[utoipa::path(post, path = "/api/v1/rollout-rules", tag = "rollouts", request_body = RolloutRuleCreate,
    responses((status = 201, body = RolloutRule)))]
async fn create_rule(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Json(req): Json<RolloutRuleCreate>,
) -> Result<(StatusCode, Json<RolloutRule>), Error> {
    let rule = rollouts::rules::create(&app.db, auth.scope(), &auth.principal, req).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// The tenant's rollout rules, by name.
#[utoipa::path(get, path = "/api/v1/rollout-rules", tag = "rollouts", responses((status = 200, body = Vec<RolloutRule>)))]
async fn list_rules(
    auth: Authz<perm::RolloutsRead>,
    State(app): State<AppState>,
) -> Result<Json<Vec<RolloutRule>>, Error> {
    Ok(rollouts::rules::list(&app.db, auth.scope()).await.map(Json)?)
}

#[utoipa::path(get, path = "/api/v1/rollout-rules/{id}", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = RolloutRule)))]
async fn get_rule(
    auth: Authz<perm::RolloutsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutRule>, Error> {
    Ok(rollouts::rules::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Delete a rule; rollouts it made stay.
#[utoipa::path(delete, path = "/api/v1/rollout-rules/{id}", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_rule(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    rollouts::rules::delete(&app.db, auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a rollout: its devices are resolved now and put in waves; it starts at once unless
/// `start` is false.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts", request_body = RolloutCreate,
    responses((status = 201, body = Rollout)))]
async fn create_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Json(req): Json<RolloutCreate>,
) -> Result<(StatusCode, Json<Rollout>), Error> {
    let rollout = rollouts::create(&app.db, &app.bus, &app.rollouts, auth.scope(), &auth.principal, req).await?;
    Ok((StatusCode::CREATED, Json(rollout)))
}

/// Rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts", params(RolloutQuery),
    responses((status = 200, body = Page<Rollout>)))]
async fn list_rollouts(
    auth: Authz<perm::RolloutsRead>,
    State(app): State<AppState>,
    Query(q): Query<RolloutQuery>,
) -> Result<Json<Page<Rollout>>, Error> {
    Ok(rollouts::list(&app.db, auth.scope(), &q).await.map(Json)?)
}

/// One rollout with its progress by wave and state.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = Rollout)))]
async fn get_rollout(
    auth: Authz<perm::RolloutsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, Error> {
    Ok(rollouts::get(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Delete a rollout that is over, or a draft.
#[utoipa::path(delete, path = "/api/v1/rollouts/{id}", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    rollouts::delete(&app.db, auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The rollout's executions, one per device (and one more per device rolled back), in the
/// rollout's order.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/executions", tag = "rollouts",
    params(("id" = String, Path), ExecutionQuery), responses((status = 200, body = Page<Execution>)))]
async fn list_executions(
    auth: Authz<perm::RolloutsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExecutionQuery>,
) -> Result<Json<Page<Execution>>, Error> {
    Ok(rollouts::executions(&app.db, auth.scope(), &id, &q).await.map(Json)?)
}

/// Start a draft.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/start", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = Rollout)))]
async fn start_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, Error> {
    Ok(rollouts::start(&app.db, &app.bus, &app.rollouts, auth.scope(), &id).await.map(Json)?)
}

/// Pause: no more devices are told; those working finish.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/pause", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = Rollout)))]
async fn pause_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, Error> {
    Ok(rollouts::pause(&app.db, &app.bus, &app.rollouts, auth.scope(), &id).await.map(Json)?)
}

/// Resume a paused rollout; paused for approval, this starts the next wave.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/resume", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = Rollout)))]
async fn resume_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, Error> {
    Ok(rollouts::resume(&app.db, &app.bus, &app.rollouts, auth.scope(), &id).await.map(Json)?)
}

/// Cancel: executions not final are canceled.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/cancel", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = Rollout)))]
async fn cancel_rollout(
    auth: Authz<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, Error> {
    Ok(rollouts::cancel(&app.db, &app.bus, &app.rollouts, auth.scope(), &id).await.map(Json)?)
}
