//! The REST API, the door for people and scripts: its routes (one module per noun in
//! [`routes`]), the OpenAPI document's conventions, and the health and metrics endpoints. The
//! app mounts it beside the other HTTP doors (console, agents) and serves the docs page.

pub mod routes;

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, ResponseBuilder,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};
use utoipa_axum::router::OpenApiRouter;

use crate::{state::AppState, web::problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "Baton API", description = "Manage a fleet of devices: registry, groups, tenants and access."),
    modifiers(&Conventions),
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

/// Adds the bearer scheme and the problem+json error responses every operation can give.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
            components.add_security_scheme(
                "device",
                SecurityScheme::Http(
                    utoipa::openapi::security::HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The device secret, with the device id in `x-baton-device-id`"))
                        .build(),
                ),
            );
        }
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    baton_proto::api::problem::PROBLEM_CONTENT_TYPE,
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                let secured = op.security.as_ref().is_none_or(|s| !s.is_empty());
                let takes_input = op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut add = |code: &str, text: &str| {
                    op.responses.responses.entry(code.into()).or_insert_with(|| problem(text).into());
                };
                if takes_input {
                    add("400", "Malformed request");
                    add("422", "Invalid input, with field-level errors");
                }
                if secured {
                    add("401", "Missing, expired or revoked credentials");
                    add("403", "The caller's role lacks the permission");
                    add("404", "Not found in the caller's tenant");
                }
            }
        }
    }
}

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
