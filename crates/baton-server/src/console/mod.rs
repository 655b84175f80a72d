//! The web console, served by `baton serve` at `/`: server-rendered pages (askama templates in
//! `templates/`) made live with htmx and the event stream, with every asset inside the binary
//! (`assets/`, the JavaScript libraries pinned through npm in `console/` and copied by
//! `scripts/vendor-js`). Pages call the same domain modules as the API under the same
//! permissions; without a session a page redirects to the sign-in page, and a change needs the
//! session's CSRF token (htmx sends it as the `x-csrf-token` header, forms as a field).
//!
//! - [`session`]: who is signed in (the cookie), signing in and out, CSRF and permissions.
//! - [`pages`]: the overview and its live fragment; [`devices`]: the devices page and its bulk
//!   actions; [`device`]: one device's page; [`groups`]: the group tree and a group's page;
//!   [`commands`]: command batches; [`enrollment`]: tokens, approvals, CSV import; [`admin`]:
//!   users, API tokens, tenants; [`artifacts`]: what updates install; [`rollouts`]: the
//!   rollouts and their live stream; [`rollout`]: one rollout's page and its buttons;
//!   [`rollout_new`]: the form that makes one.
//! - [`assets`]: the embedded files; [`errors`]: failed navigations as HTML pages; [`human`]:
//!   sizes and durations in words.

mod admin;
mod artifacts;
mod assets;
mod commands;
mod device;
mod devices;
mod enrollment;
mod errors;
mod form;
mod groups;
mod human;
mod pages;
mod rollout;
mod rollout_new;
mod rollouts;
mod session;

use axum::{
    Router,
    routing::{get, post},
};

use crate::state::AppState;

/// The console's routes; merged beside the API by [`crate::api::router`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/console/overview", get(pages::overview_live))
        .route("/devices", get(devices::page))
        .route("/devices/bulk", post(devices::bulk))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/commands", post(device::send_command))
        .route("/devices/{id}/labels", post(device::edit_labels))
        .route("/devices/{id}/groups", post(device::edit_groups))
        .route("/devices/{id}/decommission", post(device::decommission))
        .route("/devices/{id}/approve", post(enrollment::approve))
        .route("/devices/{id}/reject", post(enrollment::reject))
        .route("/groups", get(groups::page).post(groups::create))
        .route("/groups/{id}", get(groups::group_page).post(groups::edit))
        .route("/groups/{id}/delete", post(groups::delete))
        .route("/groups/{id}/members", post(groups::members))
        .route("/commands", get(commands::page))
        .route("/commands/{id}", get(commands::batch_page))
        .route("/commands/{id}/cancel", post(commands::cancel))
        .route("/artifacts", get(artifacts::page))
        .route("/rollouts", get(rollouts::page).post(rollout_new::create))
        .route("/rollouts/new", get(rollout_new::page))
        .route("/rollouts/{id}", get(rollout::page))
        .route("/rollouts/{id}/{action}", post(rollout::steer))
        .route("/console/rollouts/stream", get(rollouts::stream))
        .route("/enrollment", get(enrollment::page))
        .route("/enrollment/import", post(enrollment::import))
        .route("/enrollment/tokens", post(enrollment::create_token))
        .route("/enrollment/tokens/{id}/revoke", post(enrollment::revoke_token))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/users/{id}/delete", post(admin::delete_user))
        .route("/admin/tokens", post(admin::create_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/admin/tenants", post(admin::create_tenant))
        .route("/admin/tenants/{id}", post(admin::set_tenant))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{*path}", get(assets::serve))
        .layer(axum::middleware::from_fn(errors::as_pages))
}
