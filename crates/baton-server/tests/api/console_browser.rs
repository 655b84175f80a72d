//! The web console in a real browser: each test starts the server, runs one scenario of
//! `tests/browser/run.mjs` (playwright-core from `console/node_modules` driving Debian's headless
//! Chromium) against it, and checks what the browser saw against the API. A scenario fails on
//! any browser console error, page error or failed request, and leaves its screenshot in
//! `target/browser-screenshots/<scenario>.png`. Without node, `/usr/bin/chromium` or
//! `npm ci --prefix console` the tests print `SKIPPED:` — and fail with `CI=true`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use baton_proto::api::{
    access::UserCreate,
    devices::{DeviceCreate, DeviceQuery},
};
use serde_json::{Value, json};
use tokio::{process::Command, time::Instant};

use crate::support::{ADMIN_PASSWORD, TestApp, spawn_app};

/// The longest one scenario may run, browser start included; each wait inside it has 15 s.
const SCENARIO_PATIENCE: Duration = Duration::from_secs(120);

const CHROMIUM: &str = "/usr/bin/chromium";

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
    let req = EnrollRequest { token: secret, serial: "NEW-1".into(), inventory: None };
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
    let paths = json!(["/", "/devices", page]);
    let seen = run_scenario(&app, "viewer", json!({"username": "vera", "paths": paths})).await;
    for path in ["/", "/devices", page.as_str()] {
        assert_eq!(seen["mutating"][path], json!(0), "{path}: {seen}");
    }
}

/// Runs scenario `name` of `run.mjs` against `app` as `admin` of tenant `default` (fields of
/// `extra` override or add to that config), asserts it passed and returns its JSON line.
pub async fn run_scenario(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut config = json!({
        "url": app.url,
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "tenant": "default",
        "screenshot_dir": workspace().join("target/browser-screenshots"),
        "chromium": CHROMIUM,
    });
    let fields = config.as_object_mut().expect("object");
    fields.extend(extra.as_object().cloned().expect("extra config is an object"));
    let child = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.mjs"))
        .arg(name)
        .env("BATON_BROWSER_CONFIG", config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let output = tokio::time::timeout(SCENARIO_PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("scenario {name} still running after {SCENARIO_PATIENCE:?}"))
        .expect("scenario output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("scenario {name} printed no JSON line; stdout: {stdout}; stderr: {stderr}"));
    assert!(
        output.status.success() && result["ok"] == true,
        "scenario {name} failed ({}): {}\nscreenshot: {}\nstderr: {stderr}",
        output.status,
        result["error"],
        result["screenshot"],
    );
    result
}

/// Whether node, Chromium and playwright-core are there. When one is missing the test should
/// return: this prints `SKIPPED:` naming it — or, with `CI=true`, fails the test instead, so a CI
/// machine cannot silently skip.
fn have_browser() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !node {
        "node (apt install nodejs)"
    } else if !Path::new(CHROMIUM).exists() {
        "/usr/bin/chromium (apt install chromium)"
    } else if !workspace().join("console/node_modules/playwright-core/package.json").exists() {
        "console/node_modules/playwright-core (npm ci --prefix console)"
    } else {
        return true;
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {missing} is missing");
    println!("SKIPPED: {missing} is missing");
    false
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
async fn until_exists(file: &Path) {
    let deadline = Instant::now() + SCENARIO_PATIENCE;
    while !file.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", file.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}
