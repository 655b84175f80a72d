//! The web console, served by `baton serve` at `/`: server-rendered pages (askama templates in
//! `templates/`) made live with htmx and the event stream, with every asset inside the binary
//! (`assets/`, the JavaScript libraries pinned through npm in `console/` and copied by
//! `scripts/vendor-js`). Pages call the same domain modules as the API under the same
//! permissions; without a session a page redirects to the sign-in page, and a change needs the
//! session's CSRF token (htmx sends it as the `x-csrf-token` header, forms as a field).
//!
//! - [`session`]: who is signed in (the cookie), signing in and out.
//! - [`pages`]: the overview and its live fragment; [`devices`]: the devices page;
//!   [`device`]: one device's page; [`enrollment`]: tokens and approvals.
//! - [`assets`]: the embedded files; [`errors`]: failed navigations as HTML pages.

mod assets;
mod device;
mod devices;
mod enrollment;
mod errors;
mod pages;
mod session;

use axum::{
    Router,
    routing::{get, post},
};

use crate::http::AppState;

/// The console's routes; merged beside the API by [`crate::http::router`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/console/overview", get(pages::overview_live))
        .route("/devices", get(devices::page))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/commands", post(device::send_command))
        .route("/devices/{id}/approve", post(enrollment::approve))
        .route("/devices/{id}/reject", post(enrollment::reject))
        .route("/enrollment", get(enrollment::page))
        .route("/enrollment/tokens", post(enrollment::create_token))
        .route("/enrollment/tokens/{id}/revoke", post(enrollment::revoke_token))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{*path}", get(assets::serve))
        .layer(axum::middleware::from_fn(errors::as_pages))
}
