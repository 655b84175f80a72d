//! Walks the OpenAPI document and calls every operation: without credentials every secured one
//! is refused with 401, and with a viewer token every one that changes something gets 403.

use crate::support::{expect_problem, raw, spawn_app};

/// Operations any signed-in caller may use whatever the role: signing out.
const OPEN_TO_EVERY_ROLE: &[(&str, &str)] = &[("post", "/api/v1/auth/logout")];

struct Operation {
    method: String,
    path: String,
    secured: bool,
    /// Authenticated as a device (its certificate or secret), not as a user.
    device: bool,
}

async fn operations(app: &crate::support::TestApp) -> Vec<Operation> {
    let doc: serde_json::Value = raw()
        .get(format!("{}/api/v1/openapi.json", app.url))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let secured = op
                .get("security")
                .and_then(|s| s.as_array())
                .is_none_or(|s| s.iter().any(|r| r.as_object().is_some_and(|o| !o.is_empty())));
            let device = op
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| s.iter().any(|r| r.get("device").is_some()));
            // A fresh, well-formed id: exists nowhere, so only auth can decide the answer.
            let path = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
            ops.push(Operation { method: method.clone(), path, secured, device });
        }
    }
    ops
}

fn request(method: &str, url: String) -> reqwest::RequestBuilder {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let r = raw().request(m.clone(), url);
    if m == reqwest::Method::GET { r } else { r.json(&serde_json::json!({})) }
}

#[tokio::test]
async fn every_secured_route_refuses_a_caller_without_credentials() {
    let app = spawn_app().await;
    let ops = operations(&app).await;
    assert!(ops.len() >= 25, "the document lists every route ({} found)", ops.len());
    let mut checked = 0;
    for op in ops.iter().filter(|o| o.secured) {
        let response = request(&op.method, format!("{}{}", app.url, op.path)).send().await.expect("send");
        let body = expect_problem(response, 401).await;
        assert!(body["detail"].as_str().is_some(), "{} {}: says what to do", op.method, op.path);
        checked += 1;
    }
    let mut unsecured: Vec<_> = ops.iter().filter(|o| !o.secured).map(|o| o.path.as_str()).collect();
    unsecured.sort();
    assert_eq!(
        unsecured,
        // The attach WebSocket is authenticated by the one-time token in its query.
        [
            "/api/v1/auth/login",
            "/api/v1/enroll",
            "/api/v1/sessions/{session}/attach",
            "/healthz",
            "/metrics",
            "/readyz"
        ],
        "only these are open"
    );
    assert!(checked >= 24);
}

#[tokio::test]
async fn a_viewer_is_refused_every_route_that_changes_something() {
    let app = spawn_app().await;
    let token = viewer_token(&app).await;
    let mut refused = 0;
    // Devices' routes take device credentials: a user's token is no one there (401).
    for op in operations(&app).await.iter().filter(|o| o.secured && !o.device && o.method != "get") {
        if OPEN_TO_EVERY_ROLE.iter().any(|(m, p)| *m == op.method && *p == op.path) {
            continue;
        }
        let response =
            request(&op.method, format!("{}{}", app.url, op.path)).bearer_auth(&token).send().await.expect("send");
        expect_problem(response, 403).await;
        refused += 1;
    }
    assert!(refused >= 15, "checked {refused} mutating routes");
}

#[tokio::test]
async fn a_viewer_reads_devices_and_groups() {
    let app = spawn_app().await;
    let token = viewer_token(&app).await;
    for path in ["/api/v1/devices", "/api/v1/groups", "/api/v1/me", "/api/v1/roles"] {
        let response = raw().get(format!("{}{path}", app.url)).bearer_auth(&token).send().await.expect("send");
        assert_eq!(response.status(), 200, "{path}");
    }
    for path in ["/api/v1/tokens", "/api/v1/users", "/api/v1/tenants"] {
        let response = raw().get(format!("{}{path}", app.url)).bearer_auth(&token).send().await.expect("send");
        expect_problem(response, 403).await;
    }
}

async fn viewer_token(app: &crate::support::TestApp) -> String {
    let req = baton_proto::api::access::TokenCreate {
        name: "viewer".into(),
        role: Some("viewer".into()),
        expires_in_days: None,
        permissions: None,
    };
    app.admin.create_token(&req).await.expect("viewer token").secret
}
