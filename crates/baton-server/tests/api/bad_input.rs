//! Bad input on every write route — malformed JSON, unknown fields, wrong types, oversize
//! bodies, invalid ids, selectors that do not parse — gets a 4xx problem+json, never a 5xx, and
//! changes nothing.

use baton_proto::api::{
    access::PageQuery,
    devices::{DeviceCreate, DeviceQuery},
    groups::{GroupCreate, GroupQuery},
};
use serde_json::Value;

use crate::support::{TestApp, expect_problem, raw, spawn_app};

/// Everything a client can see, to compare before and after.
async fn snapshot(app: &TestApp) -> Value {
    let a = &app.admin;
    let all = DeviceQuery { limit: Some(500), ..Default::default() };
    serde_json::json!({
        "devices": a.devices(&all).await.expect("devices").items,
        "groups": a.groups(&GroupQuery::default()).await.expect("groups").items,
        "tokens": a.tokens(&PageQuery::default()).await.expect("tokens").items.iter().map(|t| (t.id.clone(), t.revoked_at)).collect::<Vec<_>>(),
        "users": a.users(&PageQuery::default()).await.expect("users").items,
        "tenants": a.tenants(&PageQuery::default()).await.expect("tenants").items,
    })
}

enum Body {
    Json(&'static str),
    Text(&'static str),
    Bytes(Vec<u8>),
    None,
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let device = app
        .admin
        .create_device(&DeviceCreate { serial: "KIOSK-1".into(), ..Default::default() })
        .await
        .expect("device");
    let group =
        app.admin.create_group(&GroupCreate { name: "stores".into(), ..Default::default() }).await.expect("group");
    let before = snapshot(&app).await;
    let d = device.id.as_str();
    let g = group.id.as_str();
    let huge = format!("{{\"serial\":\"{}\"}}", "A".repeat(2 * 1024 * 1024)).into_bytes();
    let missing = uuid::Uuid::new_v4().to_string();

    let cases: Vec<(&str, String, Body, u16)> = vec![
        // Malformed, wrong media type, oversize.
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\": "), 400),
        ("POST", "/api/v1/devices".into(), Body::Text("{\"serial\":\"X-1\"}"), 415),
        ("POST", "/api/v1/devices".into(), Body::Bytes(huge), 413),
        ("POST", "/api/v1/devices".into(), Body::None, 415),
        // Unknown fields and wrong types.
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":\"X-1\",\"colour\":\"red\"}"), 422),
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":5}"), 422),
        ("POST", "/api/v1/devices".into(), Body::Json("[]"), 422),
        // Values that break rules.
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":\"bad serial!\"}"), 422),
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":\"X-1\",\"labels\":{\"bad key\":\"v\"}}"), 422),
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":\"X-1\",\"groups\":[\"not-an-id\"]}"), 422),
        ("POST", "/api/v1/devices".into(), Body::Json("{\"serial\":\"KIOSK-1\"}"), 409),
        ("PATCH", format!("/api/v1/devices/{d}"), Body::Json("{\"labels\":{\"k\":5}}"), 422),
        ("PATCH", format!("/api/v1/devices/{d}"), Body::Json("{\"labels\":{\"k\":\"a b\"}}"), 422),
        ("PATCH", format!("/api/v1/devices/{d}"), Body::Json("{\"name\":\"\"}"), 422),
        ("PATCH", format!("/api/v1/devices/{d}"), Body::Json("{\"status\":\"active\"}"), 422),
        ("DELETE", format!("/api/v1/devices/{d}"), Body::None, 409),
        // Invalid and unknown ids.
        ("PATCH", "/api/v1/devices/not-an-id".into(), Body::Json("{\"name\":\"x\"}"), 404),
        ("POST", "/api/v1/devices/..%2F..%2Fetc/decommission".into(), Body::None, 404),
        ("DELETE", format!("/api/v1/devices/{missing}"), Body::None, 404),
        ("PATCH", format!("/api/v1/groups/{missing}"), Body::Json("{\"name\":\"x\"}"), 404),
        // Groups.
        ("POST", "/api/v1/groups".into(), Body::Json("{\"name\":\"\"}"), 422),
        ("POST", "/api/v1/groups".into(), Body::Json("{\"name\":\"x\",\"parent_id\":\"nope\"}"), 422),
        ("POST", "/api/v1/groups".into(), Body::Json("{\"name\":\"stores\"}"), 409),
        ("PATCH", format!("/api/v1/groups/{g}"), Body::Json(r#"{"parent_id":null,"extra":1}"#), 422),
        ("POST", format!("/api/v1/groups/{g}/members/add"), Body::Json("{\"device_ids\":[]}"), 422),
        ("POST", format!("/api/v1/groups/{g}/members/add"), Body::Json("{\"device_ids\":[\"x\"]}"), 422),
        ("POST", format!("/api/v1/groups/{g}/members/remove"), Body::Json("{\"device_ids\":\"x\"}"), 422),
        // Access and tenants.
        ("POST", "/api/v1/tokens".into(), Body::Json("{\"name\":\"t\",\"role\":\"god\"}"), 422),
        ("POST", "/api/v1/tokens".into(), Body::Json("{\"name\":\"t\",\"expires_in_days\":0}"), 422),
        ("POST", "/api/v1/tokens".into(), Body::Json("{\"name\":\"t\",\"expires_in_days\":-1}"), 422),
        ("DELETE", "/api/v1/tokens/not-an-id".into(), Body::None, 404),
        ("POST", "/api/v1/users".into(), Body::Json("{\"username\":\"ann\",\"password\":\"short\"}"), 422),
        ("POST", "/api/v1/users".into(), Body::Json("{\"username\":\"a b\",\"password\":\"long-enough-pass\"}"), 422),
        ("POST", "/api/v1/tenants".into(), Body::Json("{\"name\":\"Acme Corp\"}"), 422),
        (
            "POST",
            "/api/v1/tenants".into(),
            Body::Json("{\"name\":\"acme\",\"admin\":{\"username\":\"x\",\"password\":\"short\"}}"),
            422,
        ),
        ("PATCH", format!("/api/v1/tenants/{missing}"), Body::Json("{\"disabled\":true}"), 404),
        ("POST", "/api/v1/auth/login".into(), Body::Json("{\"username\":"), 400),
        // Wrong method and unknown route.
        ("PUT", "/api/v1/devices".into(), Body::Json("{}"), 405),
        ("POST", "/api/v1/nothing-here".into(), Body::Json("{}"), 404),
    ];

    for (method, path, body, status) in cases {
        let mut request = raw()
            .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), format!("{}{path}", app.url))
            .bearer_auth(&app.admin_token);
        request = match body {
            Body::Json(text) => request.header("content-type", "application/json").body(text),
            Body::Text(text) => request.header("content-type", "text/plain").body(text),
            Body::Bytes(bytes) => request.header("content-type", "application/json").body(bytes),
            Body::None => request,
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let problem = expect_problem(response, status).await;
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path}: a detail that says why");
    }

    assert_eq!(snapshot(&app).await, before, "nothing changed");
}

#[tokio::test]
async fn query_parameters_that_do_not_parse_are_refused() {
    let app = spawn_app().await;
    let token = app.admin_token.clone();
    for (query, status) in [
        ("labels=a%20in%20b", 422),
        ("labels=tier%21%3Da%20b", 422),
        ("labels=a%3Db%3Dc", 422),
        ("labels=%3Dx", 422),
        ("labels=a%3Db%2C", 422),
        ("limit=0", 422),
        ("limit=501", 422),
        ("limit=abc", 400),
        ("online=maybe", 400),
        ("sort=colour", 422),
        ("status=lost", 422),
        ("cursor=garbage", 422),
        ("group=not-an-id", 422),
        ("recursive=true", 422),
        ("colour=red", 400),
    ] {
        let response =
            raw().get(format!("{}/api/v1/devices?{query}", app.url)).bearer_auth(&token).send().await.expect("send");
        let body = expect_problem(response, status).await;
        if status == 422 {
            assert!(body["errors"][0]["field"].is_string(), "{query}: names the parameter: {body}");
        }
    }
}

#[tokio::test]
async fn a_bulk_add_with_one_unknown_device_adds_none() {
    let app = spawn_app().await;
    let device =
        app.admin.create_device(&DeviceCreate { serial: "A-1".into(), ..Default::default() }).await.expect("device");
    let group = app.admin.create_group(&GroupCreate { name: "g".into(), ..Default::default() }).await.expect("group");
    let missing = uuid::Uuid::new_v4().to_string();
    let err =
        app.admin.add_group_members(&group.id, vec![device.id.clone(), missing.clone()]).await.expect_err("refused");
    let baton_client::ClientError::Api { problem, .. } = err else { panic!("a problem") };
    assert_eq!(problem.errors[0].field, "/device_ids/1");
    assert!(problem.errors[0].message.contains(&missing));
    assert_eq!(app.admin.group(&group.id).await.expect("group").device_count, 0);
}

#[tokio::test]
async fn text_postgres_would_refuse_is_a_4xx_on_every_engine() {
    let app = spawn_app().await;
    let token = app.admin_token.clone();
    let get = |path: String| raw().get(format!("{}{path}", app.url)).bearer_auth(&token).send();
    for path in ["/api/v1/devices?q=%00", "/api/v1/devices?os=a%00", "/api/v1/groups?q=%00"] {
        expect_problem(get(path.to_owned()).await.expect("send"), 422).await;
    }
    for path in ["/api/v1/tokens/%00", "/api/v1/users/%00", "/api/v1/tenants/%00", "/api/v1/devices/%00"] {
        expect_problem(get(path.to_owned()).await.expect("send"), 404).await;
    }
    let login = raw()
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&serde_json::json!({"tenant": "a\u{0}", "username": "admin\u{0}", "password": "x"}))
        .send()
        .await
        .expect("login");
    expect_problem(login, 401).await;
    let group = raw()
        .post(format!("{}/api/v1/groups", app.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "g", "description": "a\u{0}b"}))
        .send()
        .await
        .expect("group");
    expect_problem(group, 422).await;
    let selector = vec!["a"; 100].join(",");
    expect_problem(get(format!("/api/v1/devices?labels={selector}")).await.expect("send"), 422).await;
}

#[tokio::test]
async fn a_forged_cursor_is_refused() {
    use base64::Engine;
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    for (order, key) in [("created_at", r#""text":"x""#), ("name", r#""int":5"#), ("name", r#""text":"x","int":5"#)] {
        let json = format!(r#"{{"order":"{order}",{key},"id":"{id}"}}"#);
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let url = format!("{}/api/v1/devices?sort={order}&cursor={cursor}", app.url);
        let response = raw().get(url).bearer_auth(&app.admin_token).send().await.expect("send");
        expect_problem(response, 422).await;
    }
}
