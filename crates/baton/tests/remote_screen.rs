//! Screen sessions end to end with real processes: `baton serve`, the real `baton-agent` with
//! `[remote] screen = true`, and a real X display (`Xvfb`) with an `xterm` whose typed lines
//! land in a file, shown by `x11vnc`. Headless Chromium shows the screen in the console (the
//! canvas holds the xterm's colours) and types into it only when controlling; at the RFB level,
//! a view session's keys stop at the agent even before a VNC server that would take them, and
//! the password that server asks for stays on the device. Also: who may open which mode, the
//! consent hook, the on-device notice, and the events with the mode and the duration.

mod support;

use std::path::Path;

use baton_client::{Client, ClientError};
use baton_proto::api::{
    access::TokenCreate,
    events::EventQuery,
    remote::{SessionCreate, SessionKind, SessionState},
};
use baton_testkit::{
    eventually,
    tools::{Tool, require},
};
use serde_json::json;
use support::{
    Server,
    remote::{enrolled, other_tenant, process},
    screen::{BACKGROUND, Display, HEIGHT, Rfb, TEXT, WIDTH, children},
};

const BOOTSTRAP: &str = "bt_screen-test-bootstrap-token";
const ADMIN_PASSWORD: &str = "screen-admin-password";

fn screen(control: bool) -> SessionCreate {
    SessionCreate { kind: SessionKind::Screen, control, ..Default::default() }
}

fn server() -> Server {
    Server::start(
        &[
            ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
            ("BATON_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("BATON_HEARTBEAT_SECS", "2"),
        ],
        &["--http-addr", "127.0.0.1:0"],
    )
}

fn toml_path(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("json string")
}

/// What a file holds, empty while it does not exist.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Refreshes the picture until the xterm shows: mostly its background, and its text.
async fn until_xterm_shows(rfb: &mut Rfb) {
    let shown = tokio::time::timeout(baton_testkit::PATIENCE, async {
        loop {
            rfb.refresh().await.expect("the session stays open");
            if rfb.share(BACKGROUND) > 0.5 && rfb.share(TEXT) > 0.0 {
                return;
            }
        }
    });
    shown.await.unwrap_or_else(|_| {
        panic!("the xterm never showed: {:.3} background, {:.5} text", rfb.share(BACKGROUND), rfb.share(TEXT))
    });
}

#[tokio::test]
async fn the_console_shows_the_screen_and_types_into_it_only_when_controlling() {
    if !require(&[Tool::Screen, Tool::Browser]) {
        return;
    }
    let display = Display::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let typed = dir.path().join("typed");
    let _xterm = display.xterm("BATON-SCREEN", &typed);
    let server = server();
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let remote = format!("screen = true\nscreen_x11vnc = true\nscreen_display = \"{}\"", display.name);
    let (agent, device) = enrolled(&client, &server.url, "screen-1", &remote).await;
    let agent_pid = agent.child.id();
    let config = |control: bool, text: &str, ready: &Path| {
        json!({
            "url": server.url, "username": "admin", "password": ADMIN_PASSWORD, "tenant": "default",
            "device_id": device.id, "control": control, "type": text, "ready_file": ready,
            "width": WIDTH, "height": HEIGHT, "background": BACKGROUND, "text": TEXT,
        })
    };

    // Viewing: the screen shows, typing reaches nothing, Disconnect ends the session.
    let ready = dir.path().join("view-ready");
    let seen = baton_testkit::browser::run_scenario("screen", config(false, "viewed\n", &ready)).await;
    assert_eq!((seen["canvas_width"].as_u64(), seen["canvas_height"].as_u64()), (Some(640), Some(480)), "{seen}");
    assert!(seen["background_share"].as_f64().is_some_and(|s| s > 0.5), "the xterm fills the view: {seen}");
    assert!(seen["text_share"].as_f64().is_some_and(|s| s > 0.0), "its text shows: {seen}");
    assert_eq!(seen["ended"], "Session ended: you disconnected. Connect again", "{seen}");
    let sessions = client.sessions(&device.id, &Default::default()).await.expect("sessions").items;
    let viewed = sessions.first().expect("the page opened a session").clone();
    assert!(!viewed.control, "{viewed:?}");
    eventually("the view session is closed and its x11vnc gone", || async {
        let s = client.session(&device.id, &viewed.id).await.ok()?;
        (s.state == SessionState::Closed && children(agent_pid, "x11vnc").is_empty()).then_some(())
    })
    .await;

    // Controlling: typed keys reach the xterm; the view session's did not (they would have come first).
    let ready = dir.path().join("control-ready");
    let scenario = baton_testkit::browser::run_scenario("screen", config(true, "marker\n", &ready));
    tokio::pin!(scenario);
    let controlled = tokio::select! {
        seen = &mut scenario => panic!("the scenario ended before typing: {seen}"),
        controlled = eventually("the typed line lands in the file", || async {
            (read(&typed) == "marker\n").then(|| read(&ready)).filter(|session| !session.is_empty())
        }) => controlled,
    };
    assert_eq!(children(agent_pid, "x11vnc").len(), 1, "x11vnc runs for the session");
    let closed = client.close_session(&device.id, controlled.trim()).await.expect("closed");
    assert!(closed.control);
    let seen = scenario.await;
    let ended = seen["ended"].as_str().unwrap_or_default();
    assert!(ended.starts_with("Session ended: closed by token:"), "the close reason shows: {seen}");
    assert_eq!(read(&typed), "marker\n", "only the controlled session typed");
    eventually("x11vnc stops with the session", || async { children(agent_pid, "x11vnc").is_empty().then_some(()) })
        .await;
}

#[tokio::test]
async fn a_view_session_s_keys_stop_at_the_agent_and_a_control_session_s_reach_the_device() {
    if !require(&[Tool::Screen]) {
        return;
    }
    let display = Display::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let typed = dir.path().join("typed");
    let _xterm = display.xterm("BATON-SCREEN", &typed);
    // A VNC server that takes keys from anyone with its password.
    let password = dir.path().join("vnc-password");
    std::fs::write(&password, "s3cret-pw\n").expect("password file");
    let (_x11vnc, port) = display.x11vnc(&password);
    let notice = dir.path().join("notice");
    let server = server();
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let remote = format!(
        "screen = true\nscreen_vnc = \"127.0.0.1:{port}\"\nscreen_password_file = {}\n\
         screen_notice_command = [\"sh\", \"-c\", \"echo $$ \\\"$1\\\" \\\"$2\\\" > \\\"$0\\\"; exec sleep 600\", {}, \"{{mode}}\", \"{{user}}\"]",
        toml_path(&password),
        toml_path(&notice),
    );
    let (_agent, device) = enrolled(&client, &server.url, "screen-2", &remote).await;

    // Viewing: the device's screen, and its on-device notice while the session lasts.
    let ticket = client.open_session(&device.id, &screen(false)).await.expect("view session");
    let mut rfb = Rfb::connect(&client.attach_url(&ticket)).await.expect("the screen opens");
    assert_eq!((rfb.width, rfb.height), (WIDTH, HEIGHT), "the device's screen size");
    until_xterm_shows(&mut rfb).await;
    let said = eventually("the notice runs", || async { Some(read(&notice)).filter(|n| n.ends_with('\n')) }).await;
    let mut words = said.split_whitespace();
    let pid: u32 = words.next().and_then(|p| p.parse().ok()).expect("the notice's pid");
    assert_eq!(words.next(), Some("view"), "{said}");
    assert!(words.next().is_some_and(|user| user.starts_with("token:")), "{said}");
    assert!(process(pid).is_some_and(|p| p.alive), "the notice runs during the session");
    // Keys, a click and a clipboard, then a picture: the server has read everything before it.
    rfb.type_text("leaked\n").await;
    rfb.send(&[5, 1, 0, 10, 0, 10]).await;
    rfb.send(&[5, 0, 0, 10, 0, 10]).await;
    rfb.send(&[&[6u8, 0, 0, 0, 0, 0, 0, 6][..], b"leaked"].concat()).await;
    rfb.refresh().await.expect("the session stays open");
    rfb.leave().await;
    eventually("the notice stops with the session", || async { process(pid).is_none_or(|p| !p.alive).then_some(()) })
        .await;

    // Controlling: the keys reach the xterm, and only they do.
    let ticket = client.open_session(&device.id, &screen(true)).await.expect("control session");
    let mut rfb = Rfb::connect(&client.attach_url(&ticket)).await.expect("the screen opens");
    until_xterm_shows(&mut rfb).await;
    rfb.type_text("marker\n").await;
    eventually("the typed line lands in the file", || async { (read(&typed) == "marker\n").then_some(()) }).await;
    assert_eq!(read(&typed), "marker\n", "the view session's keys never arrived");
    client.close_session(&device.id, &ticket.session.id).await.expect("closed");
    let reason = rfb.until_closed().await;
    assert!(reason.starts_with("closed by token:"), "{reason}");

    // The events: who, which mode, how long.
    let query = EventQuery { device: Some(device.id.clone()), kind: Some("remote.".into()), ..Default::default() };
    let events = client.events(&query).await.expect("events").items;
    for (kind, control) in [("remote.session_started", false), ("remote.session_started", true)] {
        assert!(events.iter().any(|e| e.kind == kind && e.data["control"] == control), "{kind} {control}: {events:?}");
    }
    let ended: Vec<_> = events.iter().filter(|e| e.kind == "remote.session_ended").collect();
    assert_eq!(ended.len(), 2, "{events:?}");
    for event in ended {
        assert!(event.data["duration_ms"].as_u64().is_some(), "{event:?}");
        assert!(event.data["user"].as_str().is_some_and(|u| u.starts_with("token:")), "{event:?}");
        assert!(event.data["control"].is_boolean(), "{event:?}");
    }
}

#[tokio::test]
async fn each_mode_needs_its_own_permission_and_the_consent_hook_can_refuse() {
    let server = server();
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let remote = "screen = true\nconsent_command = [\"false\"]";
    let (_agent, device) = enrolled(&admin, &server.url, "screen-3", remote).await;
    let narrowed = |permission: &str| TokenCreate {
        name: format!("only {permission}"),
        role: Some("operator".into()),
        expires_in_days: None,
        permissions: Some(vec![permission.into()]),
    };
    let viewer = admin.with_token(admin.create_token(&narrowed("remote:screen-view")).await.expect("token").secret);
    let controller =
        admin.with_token(admin.create_token(&narrowed("remote:screen-control")).await.expect("token").secret);
    let other = other_tenant(&admin, &server.url).await;

    for (who, client, control, status, missing) in [
        ("a view-only token", &viewer, true, 403, "remote:screen-control"),
        ("a control-only token", &controller, false, 403, "remote:screen-view"),
        ("another tenant", &other, false, 404, ""),
    ] {
        match client.open_session(&device.id, &screen(control)).await {
            Err(ClientError::Api { status: got, problem }) => {
                assert_eq!(got.as_u16(), status, "{who}: {problem:?}");
                assert!(problem.detail.as_deref().unwrap_or_default().contains(missing), "{who}: {problem:?}");
            }
            answer => panic!("{who} opened a screen session: {answer:?}"),
        }
    }
    // Each may open what it holds; the person at the device still has the last word.
    for (client, control) in [(&viewer, false), (&controller, true)] {
        let ticket = client.open_session(&device.id, &screen(control)).await.expect("allowed");
        let refused = Rfb::connect(&client.attach_url(&ticket)).await.err().expect("the consent hook says no");
        assert!(refused.contains("declined"), "{refused}");
        let stored = admin.session(&device.id, &ticket.session.id).await.expect("session");
        assert_eq!(stored.state, SessionState::Closed);
    }
}
