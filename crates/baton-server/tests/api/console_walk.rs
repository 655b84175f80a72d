//! Walks the console's route table (`console::route_table`, the list the router is built from)
//! the way the OpenAPI walk covers the API: without a session every page and change sends the
//! browser to sign in, a role without a route's permission is refused it, and a viewer is
//! refused every change the console offers.

use baton_core::access::{Permission, permissions::BUILTIN_ROLES};
use baton_proto::api::access::UserCreate;
use baton_server::console::{Access, ConsoleRoute, route_table};
use reqwest::StatusCode;

use crate::{
    console::browser,
    console_pages::{Console, header},
    support::{ADMIN_PASSWORD, TestApp, expect_problem, spawn_app},
};

/// The changes every signed-in person may make, whatever the role: signing out.
const OPEN_TO_EVERY_ROLE: &[&str] = &["/logout"];

/// The route's path with its parameters filled in: ids that exist nowhere, so only access decides.
fn concrete(route: &ConsoleRoute) -> String {
    route
        .path
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
        .replace("{session}", &uuid::Uuid::new_v4().to_string())
        .replace("{action}", "pause")
        .replace("{*path}", "app.css")
}

fn role_has(role: &str, permission: Permission) -> bool {
    !permission.is_platform() && BUILTIN_ROLES.iter().any(|r| r.name == role && r.permissions.contains(&permission))
}

async fn signed_in_as(app: &TestApp, role: &str) -> Console {
    let username = format!("{role}-person");
    let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
    app.admin.create_user(&req).await.expect("user");
    Console::sign_in(app, "", &username).await
}

/// A change as a page would send it (CSRF token, htmx), with fields that name a device, so a
/// bulk action has something to act on.
async fn send(console: &Console, route: &ConsoleRoute) -> reqwest::Response {
    let path = concrete(route);
    if route.method == "get" {
        return console.get(&path).await;
    }
    let fields = [("action", "decommission"), ("device", "00000000-0000-7000-8000-000000000000")];
    console.post(&path, &fields).await
}

#[tokio::test]
async fn every_console_route_sends_a_visitor_without_a_session_to_sign_in() {
    let app = spawn_app().await;
    let table = route_table();
    assert!(table.len() >= 40, "the table lists every console route ({} found)", table.len());
    for route in &table {
        let url = format!("{}{}", app.url, concrete(route));
        let response = if route.method == "get" { browser().get(url) } else { browser().post(url).body("") }
            .send()
            .await
            .expect("send");
        match route.access {
            Access::Public if route.method == "get" => {
                assert_eq!(response.status(), StatusCode::OK, "{} {} is open", route.method, route.path)
            }
            Access::Public => {}
            Access::SignedIn(_) => {
                assert_eq!(response.status(), StatusCode::SEE_OTHER, "{} {}", route.method, route.path);
                assert_eq!(header(&response, "location"), "/login", "{} {}", route.method, route.path);
            }
        }
    }
}

#[tokio::test]
async fn a_role_without_a_routes_permission_is_refused_it() {
    let app = spawn_app().await;
    let mut refused = 0;
    for role in ["viewer", "operator"] {
        let console = signed_in_as(&app, role).await;
        for route in route_table() {
            let Access::SignedIn(Some(permission)) = route.access else { continue };
            if role_has(role, permission) {
                if route.method == "get" {
                    let response = send(&console, &route).await;
                    assert_ne!(response.status(), StatusCode::FORBIDDEN, "{role} may open {}", route.path);
                }
                continue;
            }
            let problem = expect_problem(send(&console, &route).await, 403).await;
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains(&format!("lacks the permission `{permission}`")),
                "{role} on {} {}: {detail}",
                route.method,
                route.path
            );
            refused += 1;
        }
    }
    assert!(refused >= 30, "roles were refused what they lack ({refused} refusals)");
}

#[tokio::test]
async fn a_viewer_is_refused_every_change_the_console_offers() {
    let app = spawn_app().await;
    let viewer = signed_in_as(&app, "viewer").await;
    let changes: Vec<ConsoleRoute> = route_table()
        .into_iter()
        .filter(|r| r.method != "get" && r.access != Access::Public && !OPEN_TO_EVERY_ROLE.contains(&r.path))
        .collect();
    assert!(changes.len() >= 20, "{} changes", changes.len());
    for route in &changes {
        let problem = expect_problem(send(&viewer, route).await, 403).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("lacks the permission"), "{} {}: {detail}", route.method, route.path);
    }
    // Still signed in: the refusals were about permissions, not the session.
    assert_eq!(viewer.get("/devices").await.status(), StatusCode::OK);
}
