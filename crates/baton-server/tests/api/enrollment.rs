//! Zero-touch enrollment through the API, as an agent does it: pre-registered serials are
//! approved on arrival with their name, groups and labels; unknown serials under an approval
//! token wait until approved; re-enrolling never duplicates; tokens past their uses, expiry or
//! revocation are refused.

use std::collections::BTreeMap;

use baton_proto::api::{
    devices::{DeviceCreate, DeviceQuery, DeviceStatus},
    enrollment::{EnrollRequest, EnrollResponse, EnrollmentTokenCreate},
    groups::GroupCreate,
};

use crate::support::{TestApp, expect_problem, raw, spawn_app};

async fn enroll(app: &TestApp, token: &str, serial: &str) -> reqwest::Response {
    let req = EnrollRequest { token: token.into(), serial: serial.into(), inventory: None, csr: None };
    raw().post(format!("{}/api/v1/enroll", app.url)).json(&req).send().await.expect("send")
}

async fn enrolled(app: &TestApp, token: &str, serial: &str) -> EnrollResponse {
    let response = enroll(app, token, serial).await;
    assert_eq!(response.status(), 201, "{serial} enrolls");
    response.json().await.expect("json")
}

async fn token(app: &TestApp, req: EnrollmentTokenCreate) -> String {
    app.admin.create_enrollment_token(&req).await.expect("token").secret
}

#[tokio::test]
async fn a_pre_registered_serial_is_approved_on_arrival_with_its_group_and_labels() {
    let app = spawn_app().await;
    let stores =
        app.admin.create_group(&GroupCreate { name: "stores".into(), ..Default::default() }).await.expect("group");
    let pre = DeviceCreate {
        serial: "POS-42".into(),
        name: Some("Till 42".into()),
        labels: BTreeMap::from([("store".into(), "berlin-12".into())]),
        groups: vec![stores.id.clone()],
        ..Default::default()
    };
    let registered = app.admin.create_device(&pre).await.expect("pre-registered");
    let strict =
        token(&app, EnrollmentTokenCreate { name: "strict".into(), requires_approval: true, ..Default::default() })
            .await;

    let answer = enrolled(&app, &strict, "POS-42").await;
    assert_eq!(answer.device_id, registered.id, "the pre-registered device, not a new one");
    assert_eq!(answer.status, DeviceStatus::Active, "approved on arrival despite the approval token");
    let device = app.admin.device(&registered.id).await.expect("device");
    assert_eq!(device.name, "Till 42");
    assert_eq!(device.labels["store"], "berlin-12");
    assert_eq!(device.groups, vec![stores.id]);
}

#[tokio::test]
async fn an_unknown_serial_under_an_approval_token_waits_until_approved() {
    let app = spawn_app().await;
    let labels = BTreeMap::from([("source".into(), "factory".into())]);
    let strict =
        EnrollmentTokenCreate { name: "factory".into(), requires_approval: true, labels, ..Default::default() };
    let strict = token(&app, strict).await;
    let answer = enrolled(&app, &strict, "UNKNOWN-1").await;
    assert_eq!(answer.status, DeviceStatus::Pending);

    let pending = DeviceQuery { status: Some("pending".into()), ..Default::default() };
    let listed = app.admin.devices(&pending).await.expect("pending");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].labels["source"], "factory", "the token's labels apply");

    // While pending, the agent's connection is refused with a reason it understands.
    let connect = raw()
        .get(format!("{}/api/v1/agent/connect", app.url))
        .bearer_auth(&answer.secret)
        .header("x-baton-device-id", &answer.device_id)
        .send()
        .await
        .expect("send");
    let problem = expect_problem(connect, 403).await;
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with("/pending-approval")), "{problem}");

    let operator = app.client_with_role("operator").await;
    let approved = operator.approve_device(&answer.device_id).await.expect("approved");
    assert_eq!(approved.status, DeviceStatus::Active);
    assert_eq!(
        operator.approve_device(&answer.device_id).await.expect_err("twice").status().map(|s| s.as_u16()),
        Some(409)
    );

    // Another unknown serial is rejected: it is decommissioned, and cannot enroll again.
    let other = enrolled(&app, &strict, "UNKNOWN-2").await;
    let rejected = operator.reject_device(&other.device_id).await.expect("rejected");
    assert_eq!(rejected.status, DeviceStatus::Decommissioned);
    expect_problem(enroll(&app, &strict, "UNKNOWN-2").await, 403).await;
}

#[tokio::test]
async fn re_enrolling_the_same_hardware_never_duplicates_it() {
    let app = spawn_app().await;
    let open = token(&app, EnrollmentTokenCreate { name: "open".into(), ..Default::default() }).await;
    let first = enrolled(&app, &open, "HW-1").await;
    let second = enrolled(&app, &open, "HW-1").await;
    assert_eq!(first.device_id, second.device_id);
    assert_ne!(first.secret, second.secret, "a fresh secret");
    let all = app.admin.devices(&DeviceQuery::default()).await.expect("list");
    assert_eq!(all.items.len(), 1);
    // The old secret no longer opens anything.
    let old = raw()
        .get(format!("{}/api/v1/agent/connect", app.url))
        .bearer_auth(&first.secret)
        .header("x-baton-device-id", &first.device_id)
        .send()
        .await
        .expect("send");
    expect_problem(old, 401).await;
}

#[tokio::test]
async fn tokens_past_their_uses_expiry_or_revocation_are_refused() {
    let app = spawn_app().await;
    let once = EnrollmentTokenCreate { name: "once".into(), max_uses: Some(1), ..Default::default() };
    let once = app.admin.create_enrollment_token(&once).await.expect("token");
    enrolled(&app, &once.secret, "A-1").await;
    let used_up = expect_problem(enroll(&app, &once.secret, "A-2").await, 401).await;
    assert!(used_up["detail"].as_str().is_some_and(|d| d.contains("used")), "{used_up}");
    assert_eq!(app.admin.enrollment_token(&once.token.id).await.expect("token").uses, 1);

    let expiring = EnrollmentTokenCreate { name: "expiring".into(), expires_in_hours: Some(1), ..Default::default() };
    let expiring = app.admin.create_enrollment_token(&expiring).await.expect("token");
    app.stage_sql(&format!("UPDATE enrollment_tokens SET expires_at = 1 WHERE id = '{}'", expiring.token.id)).await;
    let expired = expect_problem(enroll(&app, &expiring.secret, "B-1").await, 401).await;
    assert!(expired["detail"].as_str().is_some_and(|d| d.contains("expired")), "{expired}");

    let revocable = app
        .admin
        .create_enrollment_token(&EnrollmentTokenCreate { name: "r".into(), ..Default::default() })
        .await
        .expect("token");
    app.admin.revoke_enrollment_token(&revocable.token.id).await.expect("revoked");
    expect_problem(enroll(&app, &revocable.secret, "C-1").await, 401).await;
    expect_problem(enroll(&app, "be_not-a-token", "C-2").await, 401).await;
    expect_problem(enroll(&app, &once.secret, "bad serial!").await, 422).await;

    let devices = app.admin.devices(&DeviceQuery::default()).await.expect("list");
    assert_eq!(devices.items.len(), 1, "only the one enrollment that was allowed made a device");
}

#[tokio::test]
async fn re_enrolling_under_an_approval_token_needs_approval_again_and_drops_the_old_connection() {
    let app = spawn_app().await;
    let open = token(&app, EnrollmentTokenCreate { name: "open".into(), ..Default::default() }).await;
    let first = enrolled(&app, &open, "HW-9").await;
    assert_eq!(first.status, DeviceStatus::Active);
    let mut old = crate::agent::connect(&app, &first.device_id, &first.secret).await.expect("connects");
    futures::SinkExt::send(&mut old, crate::agent::hello(None)).await.expect("hello");
    baton_testkit::eventually("the device comes online", || async {
        app.admin.device(&first.device_id).await.expect("device").connectivity.online.then_some(())
    })
    .await;

    // Someone who knows the serial and holds an approval token cannot take the device over.
    let strict =
        token(&app, EnrollmentTokenCreate { name: "strict".into(), requires_approval: true, ..Default::default() })
            .await;
    let second = enrolled(&app, &strict, "HW-9").await;
    assert_eq!(second.device_id, first.device_id);
    assert_eq!(second.status, DeviceStatus::Pending);
    // The connection with the old secret is closed by the server.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(frame) = futures::StreamExt::next(&mut old).await {
            if matches!(frame, Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true), "the old connection ends");
}

#[tokio::test]
async fn enrollments_at_once_each_count_one_use_and_a_refused_one_leaves_the_others_stored() {
    let app = spawn_app().await;
    let open = EnrollmentTokenCreate { name: "open".into(), ..Default::default() };
    let open = app.admin.create_enrollment_token(&open).await.expect("token");
    let limited = EnrollmentTokenCreate { name: "five".into(), max_uses: Some(5), ..Default::default() };
    let limited = app.admin.create_enrollment_token(&limited).await.expect("token");
    // Sent together, so the server writes many of them in one transaction.
    let open_serials: Vec<String> = (0..40).map(|i| format!("OPEN-{i}")).collect();
    let limited_serials: Vec<String> = (0..12).map(|i| format!("LIMITED-{i}")).collect();
    let open_ones = open_serials.iter().map(|serial| enroll(&app, &open.secret, serial));
    let limited_ones = limited_serials.iter().map(|serial| enroll(&app, &limited.secret, serial));
    let (open_answers, limited_answers) =
        tokio::join!(futures::future::join_all(open_ones), futures::future::join_all(limited_ones));
    assert!(open_answers.iter().all(|r| r.status() == 201), "every enrollment with the open token is stored");
    let statuses: Vec<u16> = limited_answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "the limit holds: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 7, "the others are refused: {statuses:?}");

    assert_eq!(app.admin.enrollment_token(&open.token.id).await.expect("token").uses, 40);
    assert_eq!(app.admin.enrollment_token(&limited.token.id).await.expect("token").uses, 5);
    let devices = app.admin.devices(&DeviceQuery { limit: Some(100), ..Default::default() }).await.expect("list");
    assert_eq!(devices.items.len(), 45, "one device per enrollment stored, none for the refused");
}
