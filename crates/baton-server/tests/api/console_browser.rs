//! The web console in a real browser: each test starts the server, runs one scenario of
//! `tests/browser/run.mjs` (playwright-core from `console/node_modules` driving Debian's headless
//! Chromium) against it, and checks what the browser saw against the API. A scenario fails on
//! any browser console error, page error or failed request, and leaves its screenshot in
//! `target/browser-screenshots/<scenario>.png`. Without node, `/usr/bin/chromium` or
//! `npm ci --prefix console` the tests fail naming what is missing (`scripts/provision` installs
//! it), unless skipped on purpose with `BATON_SKIP=browser`.

use std::path::Path;

use baton_proto::api::{
    access::UserCreate,
    devices::{DeviceCreate, DeviceQuery},
};
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, TestApp, spawn_app};

#[tokio::test]
async fn login_redirects_and_signs_in() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let seen = run_scenario(&app, "login", json!({})).await;
    let alert = seen["wrong_password_alert"].as_str().unwrap_or_default();
    assert!(!alert.is_empty(), "a wrong password is answered with a message: {seen}");
}

#[tokio::test]
async fn overview_counts_match_the_api_and_update_live() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    for serial in ["CB-1", "CB-2", "CB-3"] {
        app.admin.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await.expect("device");
    }
    let api = api_counts(&app).await;
    assert_eq!(api["total"], 3, "{api}");
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let config = json!({"expect_total_after": 4, "ready_file": ready});

    let scenario = run_scenario(&app, "overview", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    let first: Value = serde_json::from_str(&std::fs::read_to_string(&ready).expect("ready file")).expect("counts");
    assert_eq!(first, api, "the overview shows the API's counts");
    app.admin.create_device(&DeviceCreate { serial: "CB-4".into(), ..Default::default() }).await.expect("device");

    let seen = scenario.await;
    assert_eq!(seen["total_after"], 4, "the new device appears without a reload: {seen}");
    for name in ["total", "online", "offline", "pending"] {
        assert_eq!(seen[name], api[name], "{name}: browser {seen}, API {api}");
    }
}

#[tokio::test]
async fn filtering_the_device_list_narrows_it_on_the_server_without_a_reload() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    for serial in ["POS-0001", "POS-0002", "KIOSK-0001"] {
        app.admin.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await.expect("device");
    }
    let config = json!({"q": "kiosk", "expect_rows_before": 3, "expect_rows_after": 1});
    let seen = run_scenario(&app, "devices_filter", config).await;
    assert_eq!(seen["serials"], json!(["KIOSK-0001"]), "{seen}");
    assert!(seen["url"].as_str().is_some_and(|u| u.contains("q=kiosk")), "the filter is in the URL: {seen}");
}

#[tokio::test]
async fn sending_exec_from_a_device_page_shows_its_output_without_a_reload() {
    use baton_proto::agent::{AgentMessage, CommandProgress, CommandUpdate, ServerMessage};
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let enrolled = crate::agent::enroll(&app, "DESK-1").await;
    let mut ws = crate::agent::connect(&app, &enrolled.device_id, &enrolled.secret).await.expect("agent connects");
    ws.send(crate::agent::hello(None)).await.expect("hello");
    // The device: answers every exec with what the shell line would print.
    let device = tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(ServerMessage::Command(envelope)) = serde_json::from_str(&text) else { continue };
            let shell =
                serde_json::to_value(&envelope.command).expect("json")["shell"].as_str().unwrap_or("").to_owned();
            let result = baton_proto::api::commands::CommandResult {
                exit_code: Some(0),
                stdout: format!("ran: {shell}\n"),
                ..Default::default()
            };
            let update =
                CommandUpdate { command_id: envelope.id, state: CommandProgress::Succeeded, result: Some(result) };
            let reply = serde_json::to_string(&AgentMessage::CommandUpdate(update)).expect("json");
            if ws.send(Message::Text(reply.into())).await.is_err() {
                break;
            }
        }
    });
    let config =
        json!({"device_id": enrolled.device_id, "shell": "echo console", "expect_output": "ran: echo console"});
    let seen = run_scenario(&app, "send_exec", config).await;
    assert_eq!(seen["output"], "ran: echo console", "{seen}");
    device.abort();
}

#[tokio::test]
async fn creating_a_token_shows_its_install_line_and_a_pending_device_is_approved() {
    use baton_proto::api::{
        devices::DeviceStatus,
        enrollment::{EnrollRequest, EnrollmentTokenCreate},
    };
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let gate = EnrollmentTokenCreate { name: "gate".into(), requires_approval: true, ..Default::default() };
    let secret = app.admin.create_enrollment_token(&gate).await.expect("token").secret;
    let req = EnrollRequest { token: secret, serial: "NEW-1".into(), inventory: None, csr: None };
    let enrolled = crate::support::raw()
        .post(format!("{}/api/v1/enroll", app.url))
        .json(&req)
        .send()
        .await
        .expect("enroll")
        .json::<baton_proto::api::enrollment::EnrollResponse>()
        .await
        .expect("json");
    assert_eq!(enrolled.status, DeviceStatus::Pending);

    let config = json!({"token_name": "line 2", "approve_device_id": enrolled.device_id});
    let seen = run_scenario(&app, "enrollment", config).await;
    let line = seen["install_line"].as_str().unwrap_or_default();
    assert!(line.starts_with("baton-agent run --server http://127.0.0.1:") && line.contains("--token be_"), "{seen}");
    let tokens = app.admin.enrollment_tokens(&Default::default()).await.expect("tokens").items;
    assert!(tokens.iter().any(|t| t.name == "line 2"), "the token exists: {tokens:?}");
    let device = app.admin.device(&enrolled.device_id).await.expect("device");
    assert_eq!(device.status, DeviceStatus::Active, "approved from the page");
}

#[tokio::test]
async fn logout_ends_the_session() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    run_scenario(&app, "logout", json!({})).await;
}

#[tokio::test]
async fn a_viewer_sees_no_controls_that_change_anything() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let viewer = UserCreate { username: "vera".into(), password: ADMIN_PASSWORD.into(), role: Some("viewer".into()) };
    app.admin.create_user(&viewer).await.expect("viewer created");
    let device =
        app.admin.create_device(&DeviceCreate { serial: "CB-V".into(), ..Default::default() }).await.expect("device");
    let page = format!("/devices/{}", device.id);
    // Every page a viewer's menu offers (enrollment and administration are not among them).
    let paths = json!(["/", "/devices", page, "/groups", "/commands"]);
    let seen = run_scenario(&app, "viewer", json!({"username": "vera", "paths": paths})).await;
    for path in ["/", "/devices", page.as_str(), "/groups", "/commands"] {
        assert_eq!(seen["mutating"][path], json!(0), "{path}: {seen}");
    }
}

#[tokio::test]
async fn every_page_reads_at_tablet_width_names_its_controls_and_works_from_the_keyboard() {
    use baton_proto::api::{
        commands::{CommandCreate, CommandSpec, CommandTarget},
        groups::GroupCreate,
    };
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let group = app.admin.create_group(&GroupCreate { name: "stores".into(), ..Default::default() }).await;
    let group = group.expect("group");
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("store".to_owned(), "berlin-12".to_owned());
    let create =
        DeviceCreate { serial: "TABLET-1".into(), labels, groups: vec![group.id.clone()], ..Default::default() };
    let device = app.admin.create_device(&create).await.expect("device");
    let req = CommandCreate {
        target: CommandTarget { device_ids: vec![device.id.clone()], ..Default::default() },
        command: CommandSpec::Ping,
        ttl_secs: None,
        idempotency_key: None,
    };
    let batch = app.admin.create_commands(&req).await.expect("batch");
    let paths = [
        "/".to_owned(),
        "/devices".to_owned(),
        format!("/devices/{}", device.id),
        "/groups".to_owned(),
        format!("/groups/{}", group.id),
        "/commands".to_owned(),
        format!("/commands/{}", batch.id),
        "/enrollment".to_owned(),
        "/admin".to_owned(),
        "/recordings".to_owned(),
    ];
    let config = json!({"paths": paths, "viewport": {"width": 768, "height": 1024}});
    let seen = run_scenario(&app, "basics", config).await;
    for path in &paths {
        assert!(seen["pages"][path].as_u64().is_some_and(|n| n >= 8), "{path}: {seen}");
    }
}

#[tokio::test]
async fn a_device_page_charts_stored_telemetry_over_each_range_and_live() {
    use futures::SinkExt;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let enrolled = crate::agent::enroll(&app, "CHART-1").await;
    let mut ws = crate::agent::connect(&app, &enrolled.device_id, &enrolled.secret).await.expect("agent connects");
    ws.send(crate::agent::hello(Some(1))).await.expect("hello");
    let now = chrono::Utc::now().timestamp_millis();
    let (minute, hour, day) = (60_000, 3_600_000, 86_400_000);
    // The last 50 minutes, a sample a minute; then one an hour back to a day; then one a day
    // back to a week.
    let mut samples: Vec<(i64, f64)> = (1..=50).map(|k| (now - k * minute, k as f64)).collect();
    samples.extend((2..=23).map(|h| (now - h * hour, 100.0 + h as f64)));
    samples.extend((2..=6).map(|d| (now - d * day, 200.0 + d as f64)));
    crate::telemetry::send(&mut ws, 1, &samples).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let config = json!({"device_id": enrolled.device_id, "expect_hour_points": 50, "expect_points_after": 51,
        "ready_file": ready});
    let scenario = run_scenario(&app, "chart", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    // A new sample now: the chart follows without a reload.
    crate::telemetry::send(&mut ws, 2, &[(chrono::Utc::now().timestamp_millis() - 1_000, 7.0)]).await;
    let seen = scenario.await;
    assert_eq!(seen["metric"], "m", "{seen}");
    assert_eq!(seen["hour_points"], 50, "one point per sample of the last hour: {seen}");
    assert!(seen["canvas_width"].as_u64().is_some_and(|w| w > 200), "the chart is drawn: {seen}");
    // Five-minute buckets: the 50 minutes fill 10 or 11 of them (by where the range starts),
    // plus the 22 hourly samples.
    let day = seen["day_points"].as_u64().unwrap_or_default();
    assert!((32..=33).contains(&day), "last day: {seen}");
    // Half-hour buckets: 2 or 3 for the 50 minutes, 22 hourly, 5 daily.
    let week = seen["week_points"].as_u64().unwrap_or_default();
    assert!((29..=30).contains(&week), "last week: {seen}");
    assert_eq!(seen["points_after"], 51, "{seen}");
}

#[tokio::test]
async fn labels_and_groups_are_edited_on_the_device_page() {
    use baton_proto::api::groups::GroupCreate;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let device =
        app.admin.create_device(&DeviceCreate { serial: "EDIT-1".into(), ..Default::default() }).await.expect("device");
    let group = app.admin.create_group(&GroupCreate { name: "kiosks".into(), ..Default::default() }).await;
    let group = group.expect("group");
    let config = json!({"device_id": device.id, "label": "store=b12", "group_name": "kiosks"});
    let seen = run_scenario(&app, "edit_device", config).await;
    assert_eq!(seen["labels_set"], "store=b12", "{seen}");
    assert_eq!(seen["input_after"], "", "the form is emptied once the label is set: {seen}");
    assert_eq!(seen["groups"], "kiosks", "{seen}");
    let stored = app.admin.device(&device.id).await.expect("device");
    assert!(stored.labels.is_empty(), "the label was removed again: {:?}", stored.labels);
    assert_eq!(stored.groups, [group.id]);
}

#[tokio::test]
async fn decommissioning_from_the_device_page_retires_the_device() {
    use baton_proto::api::devices::DeviceStatus;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let device =
        app.admin.create_device(&DeviceCreate { serial: "OLD-1".into(), ..Default::default() }).await.expect("device");
    let seen = run_scenario(&app, "decommission", json!({"device_id": device.id})).await;
    assert!(seen["confirm"].as_str().is_some_and(|m| m.contains("Decommission")), "asked first: {seen}");
    assert_eq!(seen["button_left"], 0, "{seen}");
    let stored = app.admin.device(&device.id).await.expect("device");
    assert_eq!(stored.status, DeviceStatus::Decommissioned);
}

#[tokio::test]
async fn devices_picked_on_the_list_are_added_to_a_group_together() {
    use baton_proto::api::groups::GroupCreate;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for serial in ["TILL-1", "TILL-2", "TILL-3"] {
        let d = app.admin.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await;
        ids.push(d.expect("device").id);
    }
    let group = app.admin.create_group(&GroupCreate { name: "berlin".into(), ..Default::default() }).await;
    let group = group.expect("group");
    let config = json!({"pick_serials": ["TILL-1", "TILL-3"], "group_name": "berlin"});
    let seen = run_scenario(&app, "bulk_group", config).await;
    assert_eq!(seen["selected"], 2, "{seen}");
    assert!(seen["notice"].as_str().is_some_and(|n| n.contains("Added 2 of 2")), "{seen}");
    assert_eq!(seen["selected_after"], 0, "the selection is cleared once done: {seen}");
    let members = app.admin.group(&group.id).await.expect("group");
    assert_eq!(members.device_count, 2);
    for (id, want) in ids.iter().zip([true, false, true]) {
        let d = app.admin.device(id).await.expect("device");
        assert_eq!(d.groups.contains(&group.id), want, "{}", d.name);
    }
}

#[tokio::test]
async fn a_group_is_created_in_the_tree_and_gets_a_device_by_serial() {
    use baton_proto::api::groups::GroupCreate;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let device = app
        .admin
        .create_device(&DeviceCreate { serial: "KIOSK-7".into(), ..Default::default() })
        .await
        .expect("device");
    app.admin.create_group(&GroupCreate { name: "europe".into(), ..Default::default() }).await.expect("group");
    let config = json!({"group_name": "lisbon", "parent_name": "europe", "add_serial": "KIOSK-7"});
    let seen = run_scenario(&app, "groups", config).await;
    assert_eq!(seen["members"], json!(["KIOSK-7"]), "{seen}");
    assert_eq!(seen["tree"], json!([["europe", 0], ["lisbon", 1]]), "{seen}");
    let id = seen["group_id"].as_str().expect("group id");
    let group = app.admin.group(id).await.expect("group");
    assert_eq!(group.name, "lisbon");
    assert!(app.admin.device(&device.id).await.expect("device").groups.contains(&group.id));
}

#[tokio::test]
async fn the_commands_page_shows_a_batch_by_state_and_cancels_it() {
    use baton_proto::api::commands::{CommandCreate, CommandSpec, CommandTarget};
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for serial in ["Q-1", "Q-2"] {
        let d = app.admin.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await;
        ids.push(d.expect("device").id);
    }
    // Offline devices: the commands wait, QUEUED.
    let req = CommandCreate {
        target: CommandTarget { device_ids: ids, ..Default::default() },
        command: CommandSpec::Ping,
        ttl_secs: None,
        idempotency_key: None,
    };
    let batch = app.admin.create_commands(&req).await.expect("batch");
    let seen = run_scenario(&app, "commands", json!({"batch_id": batch.id})).await;
    assert!(seen["before"].as_str().is_some_and(|s| s.contains("2 QUEUED")), "{seen}");
    assert!(seen["after"].as_str().is_some_and(|s| s.contains("2 CANCELED")), "{seen}");
    assert_eq!(seen["cancel_left"], 0, "{seen}");
    let stored = app.admin.command_batch(&batch.id).await.expect("batch");
    assert_eq!(stored.states.get("CANCELED"), Some(&2), "{stored:?}");
}

#[tokio::test]
async fn a_rollout_made_on_the_form_is_started_followed_live_and_canceled_from_its_page() {
    use baton_proto::api::{
        groups::GroupCreate,
        rollouts::{ExecutionQuery, ExecutionState, RolloutState},
    };
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let group = app.admin.create_group(&GroupCreate { name: "stores".into(), ..Default::default() }).await;
    let group = group.expect("group");
    let mut ids = Vec::new();
    for serial in ["SHOP-1", "SHOP-2"] {
        let create = DeviceCreate { serial: serial.into(), groups: vec![group.id.clone()], ..Default::default() };
        ids.push(app.admin.create_device(&create).await.expect("device").id);
    }
    let artifact = crate::fleet::artifact(&app, "app", "2.0", b"version two").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let config = json!({"name": "app 2.0 to the stores", "artifact_id": artifact.id, "group_name": "stores",
        "path": "/opt/app/app.bin", "bad_waves": "10%, ten", "waves": "100%", "ready_file": ready});
    let scenario = run_scenario(&app, "rollout", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    // Someone else pauses it: the page shows it live.
    let started = std::fs::read_to_string(&ready).expect("ready file");
    app.admin.steer_rollout(&started, "pause").await.expect("paused");
    let seen = scenario.await;
    assert!(seen["wave_error"].as_str().is_some_and(|e| e.contains("`ten` is not a wave")), "{seen}");
    assert_eq!(seen["wave_invalid"], "true", "the field is marked: {seen}");
    assert_eq!(seen["queued"], "2 QUEUED", "{seen}");
    assert_eq!(seen["states"], json!(["DRAFT", "RUNNING", "PAUSED", "CANCELED"]), "{seen}");
    assert_eq!(seen["wave_after"], "2 CANCELED", "{seen}");
    assert_eq!(seen["buttons_left"], 0, "{seen}");
    let id = seen["rollout_id"].as_str().expect("rollout id");
    let stored = app.admin.rollout(id).await.expect("rollout");
    assert_eq!((stored.name.as_str(), stored.state), ("app 2.0 to the stores", RolloutState::Canceled));
    assert_eq!(stored.targets.groups, [group.id]);
    let executions = app.admin.all_rollout_executions(id, &ExecutionQuery::default()).await.expect("executions");
    let mut devices: Vec<&str> = executions.iter().map(|e| e.device_id.as_str()).collect();
    devices.sort_unstable();
    ids.sort_unstable();
    assert_eq!(devices, ids);
    assert!(executions.iter().all(|e| e.state == ExecutionState::Canceled), "{executions:?}");
    let all = app.admin.rollouts(&Default::default()).await.expect("rollouts").items;
    assert_eq!(all.len(), 1, "the refused form made nothing: {all:?}");
}

#[tokio::test]
async fn the_artifact_and_rollout_pages_read_at_tablet_width_name_their_controls_and_work_from_the_keyboard() {
    use baton_proto::api::rollouts::{InstallSpec, RolloutCreate, Targets};
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let device =
        app.admin.create_device(&DeviceCreate { serial: "TAB-1".into(), ..Default::default() }).await.expect("device");
    let artifact = crate::fleet::artifact(&app, "app", "2.0", b"version two").await;
    let req = RolloutCreate {
        name: "app 2.0".into(),
        artifact_id: artifact.id.clone(),
        targets: Targets { device_ids: vec![device.id], ..Default::default() },
        install: InstallSpec { path: Some("/opt/app/app.bin".into()), ..Default::default() },
        ..Default::default()
    };
    let rollout = app.admin.create_rollout(&req).await.expect("rollout");
    let paths = [
        "/artifacts".to_owned(),
        "/rollouts".to_owned(),
        format!("/rollouts/new?artifact={}", artifact.id),
        format!("/rollouts/{}", rollout.id),
    ];
    let config = json!({"paths": paths, "viewport": {"width": 768, "height": 1024}});
    let seen = run_scenario(&app, "basics", config).await;
    for path in &paths {
        assert!(seen["pages"][path].as_u64().is_some_and(|n| n >= 8), "{path}: {seen}");
    }
}

/// Runs scenario `name` of `run.mjs` against `app` as `admin` of tenant `default` (fields of
/// `extra` override or add to that config), asserts it passed and returns its JSON line.
pub async fn run_scenario(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut config = json!({"url": app.url, "username": "admin", "password": ADMIN_PASSWORD, "tenant": "default"});
    let fields = config.as_object_mut().expect("object");
    fields.extend(extra.as_object().cloned().expect("extra config is an object"));
    baton_testkit::browser::run_scenario(name, config).await
}

/// Whether the browser tests can run: node, Chromium and playwright-core, or a deliberate skip.
pub(crate) fn have_browser() -> bool {
    baton_testkit::require(&[baton_testkit::Tool::Browser])
}

/// The devices the overview counts, from the API: `total` is every device not decommissioned,
/// `online` and `offline` split the active ones, `pending` awaits approval.
async fn api_counts(app: &TestApp) -> Value {
    let pending = count(app, DeviceQuery { status: Some("pending".into()), ..Default::default() }).await;
    let online = DeviceQuery { status: Some("active".into()), online: Some(true), ..Default::default() };
    let offline = DeviceQuery { online: Some(false), ..online.clone() };
    let (online, offline) = (count(app, online).await, count(app, offline).await);
    json!({"total": online + offline + pending, "online": online, "offline": offline, "pending": pending})
}

async fn count(app: &TestApp, mut query: DeviceQuery) -> u64 {
    query.limit = Some(500);
    let mut n = 0;
    loop {
        let page = app.admin.devices(&query).await.expect("devices");
        n += page.items.len() as u64;
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return n,
        }
    }
}

/// Polls until `file` exists, failing after a deadline.
pub(crate) async fn until_exists(file: &Path) {
    let what = format!("{} appears", file.display());
    baton_testkit::eventually_within(baton_testkit::browser::SCENARIO_PATIENCE, &what, || async {
        file.exists().then_some(())
    })
    .await;
}
