//! Remote sessions through the API on both databases (the real-process terminal tests are in
//! `crates/baton/tests/remote.rs`): an in-process agent with terminals on opens one over the
//! session's WebSocket and the recording is stored; the session is a resource (list, get,
//! close, watch); a session for an offline device closes with the reason; the tenant policy
//! round-trips; roles and tenants are kept apart.

use baton_agent::{Agent, AgentConfig, config::RemoteConfig, storage::Storage};
use baton_proto::api::{
    access::PageQuery,
    enrollment::EnrollmentTokenCreate,
    remote::{AttachServerMessage, RemotePolicy, SessionCreate, SessionState},
};
use baton_testkit::eventually;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{expect_problem, raw, spawn_app};

fn terminal() -> SessionCreate {
    SessionCreate { cols: Some(80), rows: Some(24), ..Default::default() }
}

#[tokio::test]
async fn a_session_opens_on_an_agent_is_listed_closed_and_recorded() {
    let mut app = spawn_app().await;
    let token = app
        .admin
        .create_enrollment_token(&EnrollmentTokenCreate { name: "agents".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let config = AgentConfig {
        server: Some(app.url.clone()),
        enrollment_token: Some(token),
        serial: Some("remote-1".into()),
        max_backoff_secs: 1,
        remote: RemoteConfig { terminal: true, shell: Some("/bin/sh".into()), ..RemoteConfig::default() },
        ..AgentConfig::default()
    };
    let agent = Agent::builder(config).storage(Storage::memory()).build().expect("agent");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    let device = eventually("the agent comes online", || async {
        let devices = app.admin.devices(&Default::default()).await.ok()?;
        devices.items.into_iter().find(|d| d.connectivity.online).map(|d| d.id)
    })
    .await;

    let ticket = app.admin.open_session(&device, &terminal()).await.expect("session");
    let (mut ws, _) = tokio_tungstenite::connect_async(app.admin.attach_url(&ticket)).await.expect("attach");
    let opened = ws.next().await.expect("a frame").expect("ok");
    let opened: AttachServerMessage = serde_json::from_str(opened.to_text().expect("text")).expect("json");
    assert!(matches!(opened, AttachServerMessage::Opened { read_only: false, .. }));
    ws.send(Message::Binary(b"echo sum=$((20+22))\n".to_vec().into())).await.expect("typed");
    let mut seen = String::new();
    while !seen.contains("sum=42") {
        match ws.next().await.expect("output").expect("ok") {
            Message::Binary(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("unexpected {other:?}; seen {seen:?}"),
        }
    }
    let listed = app.admin.sessions(&device, &PageQuery::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].state, SessionState::Open);
    assert_eq!(listed.items[0].opened_by, "token:bootstrap");

    let closed = app.admin.close_session(&device, &ticket.session.id).await.expect("close");
    assert_eq!(closed.state, SessionState::Closed);
    assert_eq!(closed.close_reason.as_deref(), Some("closed by token:bootstrap"));
    let told = loop {
        match ws.next().await.expect("a frame").expect("ok") {
            Message::Text(t) => break serde_json::from_str::<AttachServerMessage>(&t).expect("json"),
            Message::Binary(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(told, AttachServerMessage::Closed { reason: "closed by token:bootstrap".into(), exit_code: None });
    let recorded = app.admin.recordings(None, &PageQuery::default()).await.expect("recordings");
    assert_eq!(recorded.items.len(), 1);
    let cast = String::from_utf8(app.admin.recording(&device, &ticket.session.id).await.expect("cast")).expect("utf-8");
    assert!(cast.starts_with(r#"{"#) && cast.contains("sum=42"), "{cast}");

    // Closing again changes nothing; a viewer sees no sessions and cannot open one.
    let again = app.admin.close_session(&device, &ticket.session.id).await.expect("close again");
    assert_eq!(again.closed_at, closed.closed_at);
    let viewer = app.client_with_role("viewer").await;
    for path in [format!("/api/v1/devices/{device}/sessions"), "/api/v1/recordings".to_owned()] {
        let response = raw().get(format!("{}{path}", app.url)).bearer_auth(viewer.token().expect("token")).send();
        expect_problem(response.await.expect("send"), 403).await;
    }
    // Another tenant's admin does not find the device.
    let other = app.tenant_admin("elsewhere").await;
    assert!(other.open_session(&device, &terminal()).await.is_err());
    assert!(other.sessions(&device, &PageQuery::default()).await.is_err());

    // Offline: the session ends with the reason.
    let _ = stop.send(());
    run.await.expect("agent task").expect("agent stops");
    eventually("the device is offline", || async {
        (!app.admin.device(&device).await.ok()?.connectivity.online).then_some(())
    })
    .await;
    let ticket = app.admin.open_session(&device, &terminal()).await.expect("session");
    let (mut ws, _) = tokio_tungstenite::connect_async(app.admin.attach_url(&ticket)).await.expect("attach");
    let told = ws.next().await.expect("a frame").expect("ok");
    let told: AttachServerMessage = serde_json::from_str(told.to_text().expect("text")).expect("json");
    assert_eq!(told, AttachServerMessage::Closed { reason: "the device is offline".into(), exit_code: None });
    let stored = app.admin.session(&device, &ticket.session.id).await.expect("session");
    assert_eq!((stored.state, stored.close_reason.as_deref()), (SessionState::Closed, Some("the device is offline")));

    // Past its retention (90 days), the recording is deleted; the session's facts stay.
    let recorded_session = recorded.items[0].id.clone();
    app.stage_sql("UPDATE remote_sessions SET closed_at = 0").await;
    app.restart(|_| {}).await;
    eventually("the old recording is pruned", || async {
        let s = app.admin.session(&device, &recorded_session).await.ok()?;
        s.recording.is_none().then_some(())
    })
    .await;
    assert!(app.admin.recording(&device, &recorded_session).await.is_err(), "its bytes are gone");
    assert!(app.admin.recordings(None, &PageQuery::default()).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn the_policy_round_trips_and_bad_requests_are_refused_with_reasons() {
    let app = spawn_app().await;
    assert_eq!(app.admin.remote_policy().await.expect("policy"), RemotePolicy { enabled: true, record_input: false });
    let off = RemotePolicy { enabled: false, record_input: true };
    assert_eq!(app.admin.set_remote_policy(&off).await.expect("policy"), off);
    assert_eq!(app.admin.remote_policy().await.expect("policy"), off);
    let operator = app.client_with_role("operator").await;
    assert!(operator.set_remote_policy(&RemotePolicy::default()).await.is_err(), "only admins set the policy");

    // A used, wrong or missing token does not attach.
    let attach = |query: &str| {
        let url = format!(
            "{}/api/v1/sessions/0190aaaa-0000-7000-8000-000000000000/attach{query}",
            app.url.replacen("http", "ws", 1)
        );
        tokio_tungstenite::connect_async(url)
    };
    assert!(attach("?token=bx_nothing").await.is_err());
    assert!(attach("").await.is_err());
    // Sizes out of range, an unknown device.
    let device = "0190aaaa-0000-7000-8000-000000000000";
    let response = raw()
        .post(format!("{}/api/v1/devices/{device}/sessions", app.url))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"kind": "terminal", "cols": 0}))
        .send()
        .await
        .expect("send");
    expect_problem(response, 422).await;
    let response = raw()
        .post(format!("{}/api/v1/devices/{device}/sessions", app.url))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"kind": "terminal"}))
        .send()
        .await
        .expect("send");
    expect_problem(response, 404).await;
}

#[tokio::test]
async fn an_agent_that_does_not_speak_streams_is_never_sent_one_and_the_client_is_told_why() {
    use crate::agent;
    let app = spawn_app().await;
    let device = agent::enroll(&app, "OLD-AGENT-1").await;
    let mut old = agent::connect(&app, &device.device_id, &device.secret).await.expect("connects");
    old.send(agent::hello(None)).await.expect("hello without features");
    eventually("the old agent is online", || async {
        app.admin.device(&device.device_id).await.ok()?.connectivity.online.then_some(())
    })
    .await;
    let ticket = app.admin.open_session(&device.device_id, &terminal()).await.expect("session");
    let (mut ws, _) = tokio_tungstenite::connect_async(app.admin.attach_url(&ticket)).await.expect("attach");
    let told = ws.next().await.expect("a frame").expect("ok");
    let told: AttachServerMessage = serde_json::from_str(told.to_text().expect("text")).expect("json");
    let AttachServerMessage::Closed { reason, .. } = told else { panic!("opened on an old agent: {told:?}") };
    assert!(reason.contains("update baton-agent"), "{reason}");
    // Nothing about streams reached the old agent.
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(std::time::Duration::from_millis(200), old.next()).await
    {
        assert!(!text.contains("stream_open"), "an old agent was sent {text}");
    }
}
