//! The HTTP edge: the router, shared state, the OpenAPI document and the docs page, health and
//! metrics endpoints, and the TLS listener. Routes live in [`routes`], one module per noun.

pub mod extract;
pub mod problem;
pub mod routes;
pub mod sse;
pub mod tls;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
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
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    access::login_limit::LoginLimiter,
    agents::{Registry, rate::ConnectLimiter},
    bus::SharedBus,
    config::Settings,
    store::Db,
    telemetry::writer::TelemetryWriter,
};

/// What every handler can reach.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub db: Db,
    pub settings: Settings,
    /// Counts login attempts per address and account; see `access::login_limit`.
    pub login_limiter: LoginLimiter,
    /// Paces device connections and enrollments per address; see `agents::rate`.
    pub connect_limiter: ConnectLimiter,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub bus: SharedBus,
    /// Live agent sessions on this node.
    pub agents: Arc<Registry>,
    pub telemetry: TelemetryWriter,
    /// Where artifact bytes live; see `artifacts::store`.
    pub artifacts: Arc<dyn crate::artifacts::ArtifactStore>,
    /// The rollout engine's clock and wake-up; see `rollouts::engine`.
    pub rollouts: crate::rollouts::Engine,
    /// Flips to true when the server starts shutting down, so long-lived connections (agent
    /// sessions, event streams) end instead of holding the graceful shutdown open.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Baton API", description = "Manage a fleet of devices: registry, groups, tenants and access."),
    modifiers(&Conventions),
    security(("bearer" = [])),
    components(schemas(baton_proto::api::problem::Problem, baton_proto::api::problem::FieldError)),
    tags(
        (name = "devices", description = "The device registry"),
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

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api_router().split_for_parts();
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .merge(api)
        .merge(crate::console::router())
        .merge(
            SwaggerUi::new("/api/docs")
                .url("/api/v1/openapi.json", openapi)
                // No validator badge: it would load from the internet, and the docs work offline.
                .config(utoipa_swagger_ui::Config::from("/api/v1/openapi.json").validator_url("none")),
        )
        .fallback(|| async { problem::problem(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            problem::problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document, for tools that want it without a running server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::devices::router())
        .merge(routes::attributes::router())
        .merge(routes::groups::router())
        .merge(routes::auth::router())
        .merge(routes::tokens::router())
        .merge(routes::users::router())
        .merge(routes::tenants::router())
        .merge(routes::agent::router())
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
async fn track(request: Request, next: Next) -> Response {
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
