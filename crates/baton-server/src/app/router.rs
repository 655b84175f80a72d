//! The HTTP application: the doors that answer over HTTP (the REST API, the agents' door and the
//! console) mounted side by side, the OpenAPI document of the first two with its docs page, and
//! what applies to every request (body limit, metrics, tracing, problem+json for unknown routes).
//! In front of them all, requests on a device web page's own host go to that door
//! ([`super::device_web`]) whatever their path. Assembled here, above the doors, so no door
//! mounts another.

use axum::{Router, http::StatusCode, middleware};
use utoipa_swagger_ui::SwaggerUi;

use crate::{agents, api, console, state::AppState, web::problem};

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (doors, openapi) = documented();
    let body_limit = state.settings.max_body_bytes;
    Router::new()
        .merge(doors)
        .merge(console::router())
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
        .layer(middleware::from_fn(api::track))
        .layer(middleware::from_fn_with_state(state.clone(), super::device_web::route))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document, for tools that want it without a running server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

/// The routes the OpenAPI document describes (the API's and the agents' door's), and the
/// document with the error responses every operation can give.
fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) =
        api::router().merge(agents::routes::router()).merge(agents::bundles::router()).split_for_parts();
    api::contract::apply(&mut openapi);
    (routes, openapi)
}
