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
//!   [`rollout_new`]: the form that makes one; [`terminal`]: a device's remote terminal;
//!   [`screen`]: a device's screen, viewed or controlled; [`files`]: file transfer with a device;
//!   [`device_web`]: a device's web page, opened in a new tab;
//!   [`recordings`]: recorded sessions and their replay; [`bundles`]: support bundles (a
//!   device's, and a request's progress).
//! - [`assets`]: the embedded files; [`errors`]: failed navigations as HTML pages; [`human`]:
//!   sizes and durations in words.

mod admin;
mod artifacts;
mod assets;
mod bundles;
mod commands;
mod device;
mod device_web;
mod devices;
mod enrollment;
mod errors;
mod files;
mod form;
mod groups;
mod human;
mod logs;
mod pages;
mod recordings;
mod rollout;
mod rollout_new;
mod rollouts;
mod screen;
mod session;
mod terminal;

use axum::Router;
use baton_core::access::Permission;

use crate::{
    state::AppState,
    web::extract::{Perm, perm},
};

/// Who may open a console route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the sign-in page and the static assets.
    Public,
    /// A signed-in person whose role has the permission (`None`: any signed-in person). The
    /// handler states it in its type (`Page<perm::…>` or `Changing<perm::…>`).
    SignedIn(Option<Permission>),
}

/// One console route: its method, its path and who may open it.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

/// The console's routes, each with the permission its handler's type asks for: the router and
/// the exported [`route_table`] come from this one list, so the permission walk test sees every
/// route the console serves.
macro_rules! console_routes {
    ($($method:ident $path:literal => $handler:path, $access:ident;)*) => {
        /// The console's routes; mounted beside the API by `app::router`.
        pub fn router() -> Router<AppState> {
            let mut router = Router::new();
            $(router = router.route($path, axum::routing::$method($handler));)*
            router.layer(axum::middleware::from_fn(errors::as_pages)).layer(axum::middleware::from_fn(not_framed))
        }

        /// Every console route with who may open it (the console is not in the OpenAPI
        /// document; tests walk this instead).
        pub fn route_table() -> Vec<ConsoleRoute> {
            vec![$(ConsoleRoute {
                method: stringify!($method),
                path: $path,
                access: console_routes!(@access $access),
            }),*]
        }
    };
    (@access Public) => { Access::Public };
    (@access $perm:ident) => { Access::SignedIn(<perm::$perm as Perm>::PERMISSION) };
}

/// Console pages are never shown inside another page (clickjacking: a device's web page on a
/// sibling domain could frame the console), and keep no opener link to the tabs they open.
async fn not_framed(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}

console_routes! {
    get "/" => pages::overview, DevicesRead;
    get "/console/overview" => pages::overview_live, DevicesRead;
    get "/devices" => devices::page, DevicesRead;
    post "/devices/bulk" => devices::bulk, DevicesRead;
    get "/devices/{id}" => device::page, DevicesRead;
    post "/devices/{id}/commands" => device::send_command, CommandsWrite;
    post "/devices/{id}/labels" => device::edit_labels, DevicesWrite;
    post "/devices/{id}/groups" => device::edit_groups, GroupsWrite;
    post "/devices/{id}/decommission" => device::decommission, DevicesWrite;
    post "/devices/{id}/approve" => enrollment::approve, DevicesWrite;
    post "/devices/{id}/reject" => enrollment::reject, DevicesWrite;
    get "/devices/{id}/terminal" => terminal::page, RemoteTerminal;
    get "/devices/{id}/screen" => screen::view, RemoteScreenView;
    get "/devices/{id}/screen/control" => screen::control, RemoteScreenControl;
    get "/devices/{id}/logs" => logs::page, RemoteLogs;
    get "/devices/{id}/files" => files::page, RemoteFiles;
    post "/devices/{id}/web" => device_web::open, RemoteTunnel;
    get "/devices/{id}/sessions/{session}/watch" => terminal::watch, RemoteWatch;
    get "/devices/{id}/recordings/{session}" => recordings::replay, RemoteRecordings;
    get "/recordings" => recordings::page, RemoteRecordings;
    post "/devices/{id}/bundles" => bundles::request, RemoteLogs;
    get "/bundles/{id}" => bundles::request_page, RemoteLogs;
    get "/groups" => groups::page, GroupsRead;
    post "/groups" => groups::create, GroupsWrite;
    get "/groups/{id}" => groups::group_page, GroupsRead;
    post "/groups/{id}" => groups::edit, GroupsWrite;
    post "/groups/{id}/delete" => groups::delete, GroupsWrite;
    post "/groups/{id}/members" => groups::members, GroupsWrite;
    get "/commands" => commands::page, CommandsRead;
    get "/commands/{id}" => commands::batch_page, CommandsRead;
    post "/commands/{id}/cancel" => commands::cancel, CommandsWrite;
    get "/artifacts" => artifacts::page, ArtifactsRead;
    get "/rollouts" => rollouts::page, RolloutsRead;
    post "/rollouts" => rollout_new::create, RolloutsWrite;
    get "/rollouts/new" => rollout_new::page, RolloutsWrite;
    get "/rollouts/{id}" => rollout::page, RolloutsRead;
    post "/rollouts/{id}/{action}" => rollout::steer, RolloutsWrite;
    get "/console/rollouts/stream" => rollouts::stream, RolloutsRead;
    get "/enrollment" => enrollment::page, EnrollmentRead;
    post "/enrollment/import" => enrollment::import, DevicesWrite;
    post "/enrollment/tokens" => enrollment::create_token, EnrollmentWrite;
    post "/enrollment/tokens/{id}/revoke" => enrollment::revoke_token, EnrollmentWrite;
    get "/admin" => admin::page, Authenticated;
    post "/admin/users" => admin::create_user, UsersWrite;
    post "/admin/users/{id}/delete" => admin::delete_user, UsersWrite;
    post "/admin/tokens" => admin::create_token, TokensWrite;
    post "/admin/tokens/{id}/revoke" => admin::revoke_token, TokensWrite;
    post "/admin/tenants" => admin::create_tenant, TenantsWrite;
    post "/admin/tenants/{id}" => admin::set_tenant, TenantsWrite;
    get "/login" => session::login_page, Public;
    post "/login" => session::login, Public;
    post "/logout" => session::logout, Authenticated;
    get "/assets/{*path}" => assets::serve, Public;
}
