//! Remote support in the console: the device page's ways to a terminal, the screen and the
//! recorded sessions, shown by role; the terminal and screen pages, which open nothing by
//! loading; and, in Chromium with a real agent (the `baton-agent` library with `[remote]
//! terminal = true`), a command run in the terminal, the reason shown when the device goes
//! away, and the session's recording replayed and downloaded.

use baton_proto::api::{
    access::{PageQuery, UserCreate},
    remote::{SessionCreate, SessionState},
};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    console_browser::{have_browser, run_scenario, until_exists},
    console_pages::{Console, device},
    fleet::Fleet,
    support::{ADMIN_PASSWORD, TestApp, expect_problem, spawn_app},
};

async fn signed_in_as(app: &TestApp, role: &str) -> Console {
    let username = format!("{role}-person");
    let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
    app.admin.create_user(&req).await.expect("user");
    Console::sign_in(app, "", &username).await
}

#[tokio::test]
async fn the_device_page_offers_the_terminal_and_the_recordings_to_whom_the_role_allows() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-1", "kiosk one", &[]).await;
    let page = format!("/devices/{}", kiosk.id);
    let terminal_link = format!(r#"href="/devices/{}/terminal""#, kiosk.id);
    // (role, sees the Terminal link, sees the recorded sessions and the Recordings menu entry)
    for (role, terminal, recordings) in [("admin", true, true), ("operator", true, false), ("viewer", false, false)] {
        let html = signed_in_as(&app, role).await.html(&page).await;
        assert_eq!(html.contains(&terminal_link), terminal, "{role}: Terminal link");
        assert_eq!(html.contains(r#"id="device-recordings""#), recordings, "{role}: recorded sessions");
        assert_eq!(html.contains(r#"<a href="/recordings""#), recordings, "{role}: Recordings in the menu");
    }
    // A device that cannot open sessions offers no terminal.
    app.admin.decommission_device(&kiosk.id, false).await.expect("decommissioned");
    let admin = Console::sign_in(&app, "", "admin").await;
    assert!(!admin.html(&page).await.contains(&terminal_link), "no terminal for a decommissioned device");
    let terminal = admin.html(&format!("/devices/{}/terminal", kiosk.id)).await;
    assert!(terminal.contains("The device is decommissioned"), "the terminal page says why: {terminal}");
}

#[tokio::test]
async fn the_device_page_offers_the_screen_to_whom_the_role_allows_and_loading_it_opens_nothing() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-S", "kiosk screen", &[]).await;
    let page = format!("/devices/{}", kiosk.id);
    let (view, control) = (format!("/devices/{}/screen", kiosk.id), format!("/devices/{}/screen/control", kiosk.id));
    for (role, offered) in [("admin", true), ("operator", true), ("viewer", false)] {
        let person = signed_in_as(&app, role).await;
        let html = person.html(&page).await;
        assert_eq!(html.contains(&format!(r#"href="{view}""#)), offered, "{role}: View screen");
        assert_eq!(html.contains(&format!(r#"href="{control}""#)), offered, "{role}: Control screen");
        if !offered {
            expect_problem(person.get(&view).await, 403).await;
            expect_problem(person.get(&control).await, 403).await;
        }
    }
    let admin = Console::sign_in(&app, "", "admin").await;
    let html = admin.html(&control).await;
    assert!(html.contains("data-control") && html.contains("/assets/screen.js"), "{html}");
    assert!(!admin.html(&view).await.contains("data-control"), "viewing is view-only");
    let sessions = app.admin.sessions(&kiosk.id, &PageQuery::default()).await.expect("sessions").items;
    assert!(sessions.is_empty(), "a GET changed nothing: {sessions:?}");
    expect_problem(admin.get(&format!("/devices/{}/screen", uuid::Uuid::new_v4())).await, 404).await;
    // A device that cannot open sessions offers no screen, and its screen page says why.
    app.admin.decommission_device(&kiosk.id, false).await.expect("decommissioned");
    assert!(!admin.html(&page).await.contains(&format!(r#"href="{view}""#)), "no screen for a decommissioned device");
    assert!(admin.html(&view).await.contains("The device is decommissioned"));
}

#[tokio::test]
async fn loading_the_terminal_page_opens_no_session() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-2", "kiosk two", &[]).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let html = admin.html(&format!("/devices/{}/terminal", kiosk.id)).await;
    assert!(html.contains(&format!(r#"data-device="{}""#, kiosk.id)), "the script is told the device: {html}");
    assert!(html.contains("/assets/vendor/xterm.js") && html.contains("/assets/terminal.js"));
    let sessions = app.admin.sessions(&kiosk.id, &PageQuery::default()).await.expect("sessions").items;
    assert!(sessions.is_empty(), "a GET changed nothing: {sessions:?}");
    let other = uuid::Uuid::new_v4();
    expect_problem(admin.get(&format!("/devices/{other}/terminal")).await, 404).await;
}

#[tokio::test]
async fn a_session_without_a_recording_has_no_replay_page_and_is_not_listed() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-3", "kiosk three", &[]).await;
    // Made, never attached: no recording.
    let req = SessionCreate::default();
    let ticket = app.admin.open_session(&kiosk.id, &req).await.expect("session");
    assert_eq!(ticket.session.state, SessionState::Pending);
    let admin = Console::sign_in(&app, "", "admin").await;
    let problem =
        expect_problem(admin.get(&format!("/devices/{}/recordings/{}", kiosk.id, ticket.session.id)).await, 404).await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("has none")), "{problem}");
    for page in ["/recordings".to_owned(), format!("/recordings?device={}", kiosk.id)] {
        let html = admin.html(&page).await;
        assert!(html.contains("No recordings yet") && !html.contains(&ticket.session.id), "{page}: {html}");
    }
    let unknown = admin.get(&format!("/recordings?device={}", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "another tenant's device, or none");
}

/// The issue's scenario, in Chromium: the device page's Terminal runs `echo $((6*7))` on a real
/// agent and shows 42 (kept as `terminal-running.png`); the agent stops and the page says why,
/// in the words the server stored; the recording is listed, replayed to its end and downloaded.
#[tokio::test]
async fn the_device_pages_terminal_runs_a_command_says_why_it_ended_and_its_recording_replays() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let fleet = Fleet::start_with(&app, 1, "TERM", |config| {
        config.remote.terminal = true;
        config.remote.shell = Some("/bin/sh".into());
    })
    .await;
    let device = Fleet::serials(&app, "TERM").await.into_keys().next().expect("the agent's device");
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let config = json!({"device_id": device, "command": "echo $((6*7))", "expect": "42", "ready_file": ready});
    let scenario = run_scenario(&app, "terminal", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    fleet.stop().await;
    let seen = scenario.await;
    assert_eq!(seen["status"], "Connected.", "{seen}");
    assert!(seen["rows"].as_array().is_some_and(|rows| rows.contains(&json!("42"))), "{seen}");
    let shot = seen["running_screenshot"].as_str().expect("screenshot path");
    assert!(std::path::Path::new(shot).is_file(), "the running terminal's screenshot is kept: {shot}");
    assert_eq!(
        (seen["disconnect_enabled"].clone(), seen["disconnect_enabled_after"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(seen["state_after"], "ended", "{seen}");

    let sessions = app.admin.sessions(&device, &PageQuery::default()).await.expect("sessions").items;
    let [session] = sessions.as_slice() else { panic!("one session: {sessions:?}") };
    assert_eq!(session.state, SessionState::Closed);
    let reason = session.close_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("the device's connection ended"), "{reason}");
    let shown = seen["ended"].as_str().unwrap_or_default();
    assert!(shown.starts_with(&format!("Session ended: {reason}.")), "the page says the server's reason: {shown}");

    let recording = session.recording.as_ref().expect("the session was recorded");
    let cast = app.admin.recording(&device, &session.id).await.expect("the recording's bytes");
    let answered_at = output_time(&cast, "42").expect("the recording holds the answer");
    let config = json!({"device_id": device, "session_id": session.id, "expect": "42"});
    let seen = run_scenario(&app, "replay", config).await;
    assert_eq!(seen["listed"], 1, "on the tenant's recordings page: {seen}");
    // Typed at 50 ms a key, the answer came most of a second in; the replay keeps that pace.
    let waited = seen["ms_to_expect"].as_f64().unwrap_or_default();
    assert!(
        answered_at > 0.5 && waited >= answered_at * 1000.0 - 20.0,
        "answer at {answered_at} s, replayed after {waited} ms"
    );
    assert_eq!((seen["state"].as_str(), seen["button_after"].as_str()), (Some("ended"), Some("Play again")), "{seen}");
    let time = seen["time"].as_str().unwrap_or_default();
    assert!(time.split_once(" / ").is_some_and(|(at, of)| at == of), "played to its end: {time}");
    assert_eq!(seen["download_name"], format!("session-{}.cast", session.id));
    assert_eq!(seen["download_bytes"], recording.size_bytes, "{seen}");
}

/// In Chromium: an operator's open session (a real agent's shell) is listed on the device page
/// and watched read-only: the watcher sees what the owner's commands print next, and what the
/// watcher types never reaches the shell.
#[tokio::test]
async fn an_open_session_is_watched_read_only_from_the_device_page() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let _fleet = Fleet::start_with(&app, 1, "WATCH", |config| {
        config.remote.terminal = true;
        config.remote.shell = Some("/bin/sh".into());
    })
    .await;
    let device = Fleet::serials(&app, "WATCH").await.into_keys().next().expect("the agent's device");
    let req = SessionCreate::default();
    let ticket = app.client_with_role("operator").await.open_session(&device, &req).await.expect("session");
    let (mut owner, _) = tokio_tungstenite::connect_async(app.admin.attach_url(&ticket)).await.expect("attach");
    let mut seen = String::new();
    let read_until = async |owner: &mut _, seen: &mut String, text: &str| {
        let owner: &mut tokio_tungstenite::WebSocketStream<_> = owner;
        while !seen.contains(text) {
            match owner.next().await {
                Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
                Some(Ok(_)) => {}
                other => panic!("the owner's session ended: {other:?}; saw {seen:?}"),
            }
        }
    };
    owner.send(Message::Binary(b"echo ready\n".to_vec().into())).await.expect("typed");
    read_until(&mut owner, &mut seen, "ready\r\n").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let config = json!({"device_id": device, "session_id": ticket.session.id, "expect": "watched-42",
        "typed": "echo typed-by-the-watcher", "ready_file": ready});
    let scenario = run_scenario(&app, "watch", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    owner.send(Message::Binary(b"echo watched-$((40+2))\n".to_vec().into())).await.expect("typed");
    let watched = scenario.await;
    assert_eq!(watched["status"], "Watching (read-only).", "{watched}");
    assert_eq!(watched["paste_offered"], 0, "a watcher is offered no paste: {watched}");
    assert!(watched["rows"].as_array().is_some_and(|rows| rows.contains(&json!("watched-42"))), "{watched}");
    // The owner's next command comes out after anything the watcher could have sent.
    owner.send(Message::Binary(b"echo after-$((1+1))\n".to_vec().into())).await.expect("typed");
    read_until(&mut owner, &mut seen, "after-2").await;
    assert!(!seen.contains("typed-by-the-watcher"), "the watcher's keys reached the shell: {seen}");
}

/// When (seconds into the asciicast) the output first held `text`.
fn output_time(cast: &[u8], text: &str) -> Option<f64> {
    let cast = std::str::from_utf8(cast).ok()?;
    cast.lines().skip(1).find_map(|line| {
        let (at, code, data): (f64, String, String) = serde_json::from_str(line).ok()?;
        (code == "o" && data.contains(text)).then_some(at)
    })
}

#[tokio::test]
async fn the_device_page_links_the_live_logs_to_whom_the_role_allows_and_the_log_page_asks_nothing() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-L", "kiosk logs", &[]).await;
    let logs = format!("/devices/{}/logs", kiosk.id);
    let link = format!(r#"href="{logs}""#);
    for (role, allowed) in [("admin", true), ("operator", true), ("viewer", false)] {
        let console = signed_in_as(&app, role).await;
        assert_eq!(console.html(&format!("/devices/{}", kiosk.id)).await.contains(&link), allowed, "{role}: Logs link");
        let page = console.get(&logs).await;
        let want = if allowed { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(page.status(), want, "{role}: the log page");
    }
    let admin = Console::sign_in(&app, "", "admin").await;
    let html = admin.html(&logs).await;
    assert!(html.contains(&format!(r#"data-device="{}""#, kiosk.id)) && html.contains("/assets/logs.js"), "{html}");
    let script = admin.get("/assets/logs.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    let query = baton_proto::api::events::EventQuery { device: Some(kiosk.id.clone()), ..Default::default() };
    let events = app.admin.events(&query).await.expect("events").items;
    assert!(!events.iter().any(|e| e.kind.starts_with("remote.logs")), "loading the page read no logs: {events:?}");
    expect_problem(admin.get(&format!("/devices/{}/logs", uuid::Uuid::new_v4())).await, 404).await;
    app.admin.decommission_device(&kiosk.id, false).await.expect("decommissioned");
    assert!(!admin.html(&format!("/devices/{}", kiosk.id)).await.contains(&link), "no logs of a decommissioned device");
    assert!(admin.html(&logs).await.contains("live logs need an active device"));
}

/// In Chromium with a real agent reading a file: the device page's Logs shows the file's last
/// lines, then a line appended within a second; paused, a new line waits (counted) until
/// Resume; the filter hides the rest; Download saves the lines shown. The stream's events say
/// who read the file.
#[tokio::test]
async fn the_log_page_shows_a_file_live_pauses_filters_and_downloads() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "line 1\nline 2\nready line 3\n").expect("written");
    let allowed = dir.path().to_path_buf();
    let _fleet = Fleet::start_with(&app, 1, "LOGS", move |config| {
        config.remote.logs = true;
        config.remote.log_paths = vec![allowed.clone()];
    })
    .await;
    let device = Fleet::serials(&app, "LOGS").await.into_keys().next().expect("the agent's device");
    let config = json!({"device_id": device, "log_path": log, "expect": "ready line 3", "filter": "PAUSED"});
    let seen = run_scenario(&app, "logs", config).await;
    assert_eq!(seen["status"], "Live.", "{seen}");
    assert!(seen["ms_to_live"].as_u64().is_some_and(|ms| ms < 1000), "shown within a second: {seen}");
    assert_eq!(
        (seen["pause_label"].clone(), seen["paused_shown"].clone()),
        (json!("Resume (1 new)"), json!(0)),
        "{seen}"
    );
    let filtered = seen["filtered"].as_array().expect("filtered lines");
    assert_eq!(filtered.len(), 1, "{seen}");
    assert!(filtered[0].as_str().unwrap_or_default().ends_with(": written while paused"), "{seen}");
    let text = seen["download_text"].as_str().unwrap_or_default();
    assert!(text.contains("written while paused") && !text.contains("line 1"), "what was shown: {text}");
    assert!(seen["download_name"].as_str().is_some_and(|n| n.ends_with(".log")), "{seen}");
    assert_eq!(seen["status_after"], "Stopped.", "{seen}");
    let events = baton_testkit::eventually("the stream's end is an event", || async {
        let query = baton_proto::api::events::EventQuery {
            device: Some(device.clone()),
            kind: Some("remote.logs_closed".into()),
            ..Default::default()
        };
        app.admin.events(&query).await.ok()?.items.into_iter().next()
    })
    .await;
    assert_eq!(events.data["user"], "user:admin", "{:?}", events.data);
    assert_eq!(events.data["path"].as_str(), log.to_str());
}
