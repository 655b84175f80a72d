//! The REST API, the door for people and scripts: its routes (one module per noun in
//! [`routes`]), the OpenAPI document (the errors every operation can give in [`contract`]), and
//! the health and metrics endpoints. The app mounts it beside the other HTTP doors (console,
//! agents) and serves the docs page.

pub mod contract;
pub mod routes;

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{state::AppState, web::problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "Baton API", description = "Manage a fleet of devices: registry, groups, tenants and access."),
    security(("bearer" = [])),
    components(schemas(baton_proto::api::problem::Problem, baton_proto::api::problem::FieldError)),
    tags(
        (name = "devices", description = "The device registry"),
        (name = "certificates", description = "Device identity with certificates: the tenant's certificate authority and the client certificates it issues"),
        (name = "groups", description = "Nestable groups of devices"),
        (name = "access", description = "Sign-in, users, API tokens and roles"),
        (name = "tenants", description = "Tenants (platform administrators)"),
        (name = "agent", description = "Device enrollment and the agent connection"),
        (name = "enrollment", description = "Enrollment tokens"),
        (name = "telemetry", description = "Telemetry series, latest values and the live stream"),
        (name = "commands", description = "The durable command outbox"),
        (name = "events", description = "The device event log"),
        (name = "artifacts", description = "Artifacts for updates, and the keys that sign them"),
        (name = "rollouts", description = "Staged updates: waves, gates, executions"),
        (name = "system", description = "Health, readiness and metrics; no credentials needed"),
    )
)]
struct ApiDoc;

/// The API's routes with their OpenAPI descriptions; the app adds the other doors' and serves
/// the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::devices::router())
        .merge(routes::certificates::router())
        .merge(routes::attributes::router())
        .merge(routes::groups::router())
        .merge(routes::auth::router())
        .merge(routes::tokens::router())
        .merge(routes::users::router())
        .merge(routes::tenants::router())
        .merge(routes::enrollment::router())
        .merge(routes::commands::router())
        .merge(routes::telemetry::router())
        .merge(routes::events::router())
        .merge(routes::artifacts::router())
        .merge(routes::rollouts::router())
        .merge(routes::sessions::router())
        .merge(routes::logs::router())
        .merge(routes::files::router())
        .merge(routes::bundles::router())
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .routes(utoipa_axum::routes!(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers too.
#[utoipa::path(get, path = "/readyz", tag = "system", security(()),
    responses((status = 200, body = String), (status = 503, description = "The database does not answer")))]
async fn readyz(State(app): State<AppState>) -> Response {
    if app.db.ping().await {
        "ready".into_response()
    } else {
        problem::problem(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "the database does not answer")
    }
}

/// Prometheus metrics of this server process.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()), responses((status = 200, body = String)))]
async fn metrics(State(app): State<AppState>) -> String {
    app.metrics.render()
}

/// Counts and times every request by route template (never by raw path, which would explode
/// the number of series).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("baton_http_requests_total", &labels).increment(1);
    metrics::histogram!("baton_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}
