//! The OpenAPI document says what the server does (scripts/schemathesis holds it to that with a
//! fuzzer in CI): the errors each operation gives, the limits the server enforces, unsigned
//! integers as unsigned; and the server reads bodies as the document's JSON Schema does.

use baton_proto::api::{
    access::{TokenCreate, UserCreate},
    tenants::{TenantCreate, TenantUpdate},
};
use serde_json::{Value, json};

use crate::support::{TestApp, expect_problem, raw, refused_naming, spawn_app};

async fn document(app: &TestApp) -> Value {
    let url = format!("{}/api/v1/openapi.json", app.url);
    raw().get(url).send().await.expect("openapi.json").json().await.expect("json")
}

fn statuses(doc: &Value, method: &str, path: &str) -> Vec<String> {
    let responses = doc["paths"][path][method]["responses"].as_object().expect("responses");
    for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('4')) {
        let problem = &response["content"]["application/problem+json"]["schema"]["$ref"];
        assert_eq!(problem, "#/components/schemas/Problem", "{method} {path} {status} is problem+json");
    }
    responses.keys().cloned().collect()
}

#[tokio::test]
async fn each_operation_lists_the_errors_it_can_give() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let create = statuses(&doc, "post", "/api/v1/devices");
    for status in ["201", "400", "401", "403", "409", "413", "415", "422"] {
        assert!(create.contains(&status.to_owned()), "POST /api/v1/devices lists {status}: {create:?}");
    }
    assert!(!create.contains(&"404".to_owned()), "nothing to find when creating");
    let read = statuses(&doc, "get", "/api/v1/devices/{id}");
    assert_eq!(read, ["200", "400", "401", "403", "404"], "GET /api/v1/devices/{{id}}");
    assert_eq!(statuses(&doc, "get", "/api/v1/me"), ["200", "401"], "any caller may ask who they are");
    let login = statuses(&doc, "post", "/api/v1/auth/login");
    assert!(login.contains(&"429".to_owned()) && login.contains(&"401".to_owned()), "{login:?}");
}

#[tokio::test]
async fn the_document_states_the_limits_the_server_enforces() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let params = doc["paths"]["/api/v1/devices"]["get"]["parameters"].as_array().expect("parameters");
    let param = |name: &str| params.iter().find(|p| p["name"] == name).expect(name)["schema"].clone();
    assert_eq!((param("limit")["minimum"].as_u64(), param("limit")["maximum"].as_u64()), (Some(1), Some(500)));
    assert_eq!(param("cursor")["minLength"], 1);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Serial"]["pattern"], "^[A-Za-z0-9._:/-]{1,64}$");
    assert_eq!(schemas["DeviceIds"]["minItems"], 1);
    let days = &schemas["TokenCreate"]["properties"]["expires_in_days"];
    assert_eq!(
        (days["format"].as_str(), days["minimum"].as_u64(), days["maximum"].as_u64()),
        (Some("uint32"), Some(1), Some(3650))
    );
    let ttl = &schemas["CommandCreate"]["properties"]["ttl_secs"];
    assert_eq!((ttl["minimum"].as_u64(), ttl["maximum"].as_u64()), (Some(0), Some(u64::from(u32::MAX))), "{ttl}");

    let at_server = raw().get(format!("{}/api/v1/devices?limit=0", app.url)).bearer_auth(&app.admin_token);
    expect_problem(at_server.send().await.expect("send"), 422).await;
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_is_an_integer() {
    let app = spawn_app().await;
    let post =
        |body: Value| raw().post(format!("{}/api/v1/tokens", app.url)).bearer_auth(&app.admin_token).json(&body).send();
    let created = post(json!({"name": "ci", "expires_in_days": 30.0})).await.expect("send");
    assert_eq!(created.status(), 201, "30.0 is the integer 30, as JSON Schema counts it");
    let fraction = post(json!({"name": "ci-2", "expires_in_days": 30.5})).await.expect("send");
    expect_problem(fraction, 422).await;
}

#[tokio::test]
async fn a_body_must_be_an_object_not_the_fields_in_a_row() {
    let app = spawn_app().await;
    let req = TenantCreate { name: "acme".into(), display_name: None, admin: None };
    let tenant = app.admin.create_tenant(&req).await.expect("tenant");
    let response = raw()
        .patch(format!("{}/api/v1/tenants/{}", app.url, tenant.id))
        .bearer_auth(&app.admin_token)
        .json(&json!([null, true]))
        .send()
        .await
        .expect("send");
    expect_problem(response, 422).await;
    assert!(!app.admin.tenant(&tenant.id).await.expect("tenant").disabled, "nothing changed");
    let update = TenantUpdate { display_name: None, disabled: Some(false) };
    app.admin.update_tenant(&tenant.id, &update).await.expect("an object is still read");
}

#[tokio::test]
async fn a_tenants_first_administrator_is_an_admin() {
    let app = spawn_app().await;
    let admin =
        UserCreate { username: "vic".into(), password: "long enough password".into(), role: Some("viewer".into()) };
    let req = TenantCreate { name: "acme".into(), display_name: None, admin: Some(admin) };
    refused_naming(&app, "/api/v1/tenants", &req, "/admin/role").await;
}

#[tokio::test]
async fn a_revoked_token_stays_readable_for_audit_as_documented() {
    let app = spawn_app().await;
    let req = TokenCreate { name: "ci".into(), role: None, expires_in_days: None, permissions: None };
    let created = app.admin.create_token(&req).await.expect("token");
    app.admin.revoke_token(&created.token.id).await.expect("revoke");
    let read = raw()
        .get(format!("{}/api/v1/tokens/{}", app.url, created.token.id))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(read.status(), 200);
    let token: Value = read.json().await.expect("json");
    assert!(token["revoked_at"].is_string(), "{token}");
    let doc = document(&app).await;
    let described = doc["paths"]["/api/v1/tokens/{id}"]["get"]["responses"]["200"]["description"].as_str();
    assert!(described.is_some_and(|d| d.contains("revoked_at")), "{described:?}");
}
