//! Device attributes and API-issued device credentials: desired attributes change by merge patch
//! within limits, other tenants see nothing, viewers change nothing, an issued secret opens the
//! agent connection and a new one retires the old, and a decommissioned device gets neither.

use baton_client::{Client, ClientError};
use baton_proto::api::{
    devices::{Device, DeviceCreate, DeviceStatus},
    enrollment::{EnrollRequest, EnrollResponse, EnrollmentTokenCreate},
    events::EventQuery,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite;

use crate::{
    agent,
    support::{TestApp, expect_problem, raw, spawn_app},
};

fn status(e: ClientError) -> u16 {
    e.status().map(|s| s.as_u16()).unwrap_or_default()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

async fn device(client: &Client, serial: &str) -> Device {
    client.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await.expect("device")
}

/// The HTTP status the agent connection is refused with, or 101 when it opens.
async fn agent_connects(app: &TestApp, device_id: &str, secret: &str) -> u16 {
    match agent::connect(app, device_id, secret).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected connection error: {e}"),
    }
}

#[tokio::test]
async fn desired_attributes_round_trip_and_null_removes_a_key() {
    let app = spawn_app().await;
    let d = device(&app.admin, "ATTR-1").await;
    let empty = app.admin.device_attributes(&d.id).await.expect("attributes");
    assert!(empty.reported.is_empty() && empty.desired.is_empty());

    let first = object(json!({"interval": 60, "mode": "eco", "limits": {"max": 3}}));
    let patched = app.admin.patch_desired_attributes(&d.id, &first).await.expect("patched");
    assert_eq!(patched.desired, first);
    assert_eq!(app.admin.device_attributes(&d.id).await.expect("attributes").desired, first);

    let second = object(json!({"mode": null, "interval": 30, "never_set": null}));
    let patched = app.admin.patch_desired_attributes(&d.id, &second).await.expect("patched");
    let want = object(json!({"interval": 30, "limits": {"max": 3}}));
    assert_eq!(patched.desired, want);
    let stored = app.admin.device_attributes(&d.id).await.expect("attributes");
    assert_eq!(stored.desired, want);
    assert!(stored.reported.is_empty(), "operators never write what the device reported");

    let query = EventQuery { device: Some(d.id.clone()), kind: Some("device.attributes".into()), ..Default::default() };
    let events = app.admin.events(&query).await.expect("events").items;
    let changed: Vec<Vec<&str>> = events
        .iter()
        .map(|e| {
            let mut keys: Vec<&str> =
                e.data["changed"].as_array().expect("changed").iter().flat_map(Value::as_str).collect();
            keys.sort_unstable();
            keys
        })
        .collect();
    assert_eq!(changed, [vec!["interval", "mode"], vec!["interval", "limits", "mode"]], "newest first");
}

#[tokio::test]
async fn attributes_over_the_limits_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let d = device(&app.admin, "ATTR-2").await;
    let kept = object(json!({"kept": true}));
    app.admin.patch_desired_attributes(&d.id, &kept).await.expect("patched");

    let too_many: Map<String, Value> = (0..256).map(|i| (format!("k{i}"), json!(i))).collect();
    let too_big = object(json!({"blob": "x".repeat(64 * 1024)}));
    let long_key: Map<String, Value> = [("k".repeat(129), json!(1))].into_iter().collect();
    let control: Map<String, Value> = [("bad\nkey".to_owned(), json!(1))].into_iter().collect();
    let empty_key: Map<String, Value> = [(String::new(), json!(1))].into_iter().collect();
    let refused = [
        ("257 keys", too_many),
        ("over 64 KiB", too_big),
        ("a long key", long_key),
        ("a control character", control),
        ("an empty key", empty_key),
    ];
    for (what, patch) in refused {
        let e = app.admin.patch_desired_attributes(&d.id, &patch).await.expect_err(what);
        let ClientError::Api { status: code, problem } = e else { panic!("{what}: an API problem") };
        assert_eq!(code.as_u16(), 422, "{what}: {problem:?}");
        assert!(!problem.errors.is_empty(), "{what}: names the field");
    }

    let url = format!("{}/api/v1/devices/{}/attributes/desired", app.url, d.id);
    for body in [json!(["a"]), json!("text"), json!(1), Value::Null] {
        let response = raw().patch(&url).bearer_auth(&app.admin_token).json(&body).send().await.expect("send");
        expect_problem(response, 422).await;
    }
    assert_eq!(app.admin.device_attributes(&d.id).await.expect("attributes").desired, kept, "nothing stored");
}

#[tokio::test]
async fn another_tenant_finds_neither_the_attributes_nor_the_device_to_issue_credentials_for() {
    let app = spawn_app().await;
    let d = device(&app.admin, "ATTR-3").await;
    let theirs = app.tenant_admin("acme").await;
    assert_eq!(status(theirs.device_attributes(&d.id).await.expect_err("get")), 404);
    let patch = object(json!({"stolen": true}));
    assert_eq!(status(theirs.patch_desired_attributes(&d.id, &patch).await.expect_err("patch")), 404);
    assert_eq!(status(theirs.issue_device_credential(&d.id).await.expect_err("credentials")), 404);
    assert_eq!(status(app.admin.device_attributes("not-an-id").await.expect_err("bad id")), 404);
    assert!(app.admin.device_attributes(&d.id).await.expect("ours").desired.is_empty());
}

#[tokio::test]
async fn a_viewer_reads_attributes_but_cannot_change_them_or_issue_credentials() {
    let app = spawn_app().await;
    let d = device(&app.admin, "ATTR-4").await;
    let viewer = app.client_with_role("viewer").await;
    viewer.device_attributes(&d.id).await.expect("viewers read");
    let patch = object(json!({"mode": "eco"}));
    assert_eq!(status(viewer.patch_desired_attributes(&d.id, &patch).await.expect_err("patch")), 403);
    assert_eq!(status(viewer.issue_device_credential(&d.id).await.expect_err("credentials")), 403);
    let operator = app.client_with_role("operator").await;
    operator.patch_desired_attributes(&d.id, &patch).await.expect("operators change attributes");
    operator.issue_device_credential(&d.id).await.expect("operators issue credentials");
}

#[tokio::test]
async fn an_issued_credential_opens_the_agent_connection_and_a_new_one_retires_the_old() {
    let app = spawn_app().await;
    let d = device(&app.admin, "MQTT-1").await;
    assert_eq!(agent_connects(&app, &d.id, "bd_nothing-issued-yet").await, 401);

    let first = app.admin.issue_device_credential(&d.id).await.expect("issued");
    assert_eq!(first.device_id, d.id);
    assert!(first.secret.starts_with("bd_"), "{}", first.secret);
    let mut ws = agent::connect(&app, &d.id, &first.secret).await.expect("the secret opens the connection");
    ws.send(agent::hello(None)).await.expect("hello");
    wait_until_online(&app, &d.id).await;

    let second = app.admin.issue_device_credential(&d.id).await.expect("issued again");
    assert_ne!(first.secret, second.secret);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(frame) = ws.next().await {
            if matches!(frame, Ok(tungstenite::Message::Close(_)) | Err(_)) {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection with the old secret ends");
    assert_eq!(agent_connects(&app, &d.id, &first.secret).await, 401, "the old secret opens nothing");
    assert_eq!(agent_connects(&app, &d.id, &second.secret).await, 101, "the new one does");

    let query =
        EventQuery { device: Some(d.id.clone()), kind: Some("device.credentials".into()), ..Default::default() };
    assert_eq!(app.admin.events(&query).await.expect("events").items.len(), 2);
}

async fn wait_until_online(app: &TestApp, id: &str) {
    baton_testkit::eventually("the device comes online", || async {
        app.admin.device(id).await.expect("device").connectivity.online.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_pending_device_stays_pending_when_given_a_credential() {
    let app = spawn_app().await;
    let token = EnrollmentTokenCreate { name: "strict".into(), requires_approval: true, ..Default::default() };
    let token = app.admin.create_enrollment_token(&token).await.expect("token").secret;
    let req = EnrollRequest { token, serial: "PENDING-1".into(), inventory: None, csr: None };
    let response = raw().post(format!("{}/api/v1/enroll", app.url)).json(&req).send().await.expect("enroll");
    let enrolled: EnrollResponse = response.json().await.expect("json");

    let issued = app.admin.issue_device_credential(&enrolled.device_id).await.expect("issued");
    assert_eq!(app.admin.device(&enrolled.device_id).await.expect("device").status, DeviceStatus::Pending);
    assert_eq!(agent_connects(&app, &enrolled.device_id, &issued.secret).await, 403, "waits for approval");
    assert_eq!(agent_connects(&app, &enrolled.device_id, &enrolled.secret).await, 401, "old secret retired");
}

#[tokio::test]
async fn a_decommissioned_device_gets_no_credentials_and_no_desired_attributes() {
    let app = spawn_app().await;
    let d = device(&app.admin, "GONE-1").await;
    app.admin.decommission_device(&d.id, false).await.expect("decommissioned");

    let e = app.admin.issue_device_credential(&d.id).await.expect_err("refused");
    let ClientError::Api { status: code, problem } = e else { panic!("an API problem") };
    assert_eq!(code.as_u16(), 409);
    assert!(problem.detail.as_deref().is_some_and(|d| d.contains("delete it")), "{problem:?}");

    let patch = object(json!({"mode": "eco"}));
    assert_eq!(status(app.admin.patch_desired_attributes(&d.id, &patch).await.expect_err("refused")), 409);
    assert!(app.admin.device_attributes(&d.id).await.expect("still readable").desired.is_empty());
}
