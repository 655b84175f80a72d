//! MQTT sessions over time, on 3.1.1 and 5: commands sent while a device is offline wait for it
//! (with a persistent session it need not even resubscribe), TTLs still expire them, and
//! presence — online, offline, the will of a client that vanished — shows in the API.

use baton_proto::api::{commands::CommandState, events::EventQuery};
use serde_json::{Value, json};

use crate::{
    mqtt_clients::{
        Login, Mosquitto, Paho, SessionOptions, Tool, Version, command_reaches, custom, device, eventually,
        online_becomes, require, send_command,
    },
    support::{TestApp, spawn_app},
};

/// A persistent session: 3.1.1 clean session off; 5 a Session Expiry Interval above zero.
fn persistent(client_id: &str) -> SessionOptions {
    SessionOptions { client_id: client_id.into(), clean: false, session_expiry: 3600, will: None }
}

#[tokio::test]
async fn a_persistent_session_gets_commands_sent_while_offline_without_resubscribing() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("SLEEPY-{version:?}")).await;
        let login = Login::device(&id, &secret);
        let mut paho = Paho::start(&app, version).await;
        let session = persistent(&format!("sleepy-{version:?}"));
        assert_eq!(paho.connect_with(&login, &session).await, (0, false), "{version:?}: a new session");
        assert_eq!(paho.subscribe("baton/v1/me/commands/+").await, 1);
        paho.disconnect().await;
        online_becomes(&app, &id, false).await;

        let command = send_command(&app, &id, custom("wake", json!({"why": "offline"})), None).await;
        assert_eq!(app.admin.command(&command).await.expect("command").state, CommandState::Queued);

        assert_eq!(paho.connect_with(&login, &session).await, (0, true), "{version:?}: the session is present");
        let (topic, envelope) = paho.message().await;
        assert_eq!((topic, &envelope["id"]), (format!("baton/v1/me/commands/{command}"), &json!(command)));
        let answer = json!({"result": {"output": "awake"}}).to_string();
        assert_eq!(paho.publish(&format!("baton/v1/me/commands/{command}/result"), &answer).await, 0);
        let done = command_reaches(&app, &command, CommandState::Succeeded).await;
        assert_eq!(done.result.expect("result").output, Some(json!("awake")), "{version:?}");

        // A clean session forgets the subscription: nothing arrives until it subscribes again.
        paho.disconnect().await;
        let clean = SessionOptions { clean: true, session_expiry: 0, ..session };
        assert_eq!(paho.connect_with(&login, &clean).await, (0, false), "{version:?}: a clean start");
        let later = send_command(&app, &id, custom("later", json!(null)), None).await;
        assert_eq!(paho.subscribe("baton/v1/me/commands/+").await, 1);
        let (topic, _) = paho.message().await;
        assert_eq!(topic, format!("baton/v1/me/commands/{later}"), "{version:?}: delivered once subscribed");
    }
}

#[tokio::test]
async fn a_clean_session_gets_commands_sent_while_offline_when_it_subscribes_again() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("CLEAN-{version:?}")).await;
        let mosquitto = Mosquitto::new(&app, version, Login::device(&id, &secret));
        let mut first = mosquitto.subscribe(&["baton/v1/me/commands/+"], &[]).await;
        online_becomes(&app, &id, true).await;
        first.kill().await;
        online_becomes(&app, &id, false).await;

        let commands = [
            send_command(&app, &id, custom("one", json!(1)), None).await,
            send_command(&app, &id, custom("two", json!(2)), None).await,
        ];
        let mut again = mosquitto.subscribe(&["baton/v1/me/commands/+"], &["-C", "2"]).await;
        let mut got = vec![again.json().await.1["id"].clone(), again.json().await.1["id"].clone()];
        got.sort_by_key(|id| id.as_str().map(str::to_owned));
        let mut want: Vec<Value> = commands.iter().map(|c| json!(c)).collect();
        want.sort_by_key(|id| id.as_str().map(str::to_owned));
        assert_eq!(got, want, "{version:?}: both waited for the device");
        again.finished().await;
        for command in &commands {
            command_reaches(&app, command, CommandState::Acked).await;
        }
    }
}

#[tokio::test]
async fn commands_past_their_ttl_expire_and_are_never_delivered() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("MUTE-{version:?}")).await;
        // Sent while the device is offline, expired before it comes back: never delivered.
        let stale = send_command(&app, &id, custom("stale", json!(null)), Some(1)).await;
        command_reaches(&app, &stale, CommandState::Expired).await;

        let mut paho = Paho::start(&app, version).await;
        assert_eq!(paho.connect(&Login::device(&id, &secret)).await, 0);
        assert_eq!(paho.subscribe("baton/v1/me/commands/+").await, 1);
        let unanswered = send_command(&app, &id, custom("unanswered", json!(null)), Some(60)).await;
        let (topic, _) = paho.message().await;
        assert_eq!(topic, format!("baton/v1/me/commands/{unanswered}"), "{version:?}: the stale one never came");

        // Delivered and acknowledged (the PUBACK), never answered: past its TTL, and the grace
        // acknowledged commands get for long jobs, it fails as for any device.
        command_reaches(&app, &unanswered, CommandState::Acked).await;
        app.stage_sql(&format!("UPDATE commands SET expires_at = 1 WHERE id = '{unanswered}'")).await;
        let failed = command_reaches(&app, &unanswered, CommandState::Failed).await;
        let error = failed.result.and_then(|r| r.error).unwrap_or_default();
        assert!(error.contains("before the command expired"), "{version:?}: {error}");
        // A late answer changes nothing.
        let late = json!({"state": "succeeded"}).to_string();
        paho.publish(&format!("baton/v1/me/commands/{unanswered}/result"), &late).await;
        assert_eq!(app.admin.command(&unanswered).await.expect("command").state, CommandState::Failed);
    }
}

/// The data of the device's newest `device.offline` event.
async fn offline_event(app: &TestApp, device: &str) -> Option<Value> {
    let query = EventQuery { device: Some(device.into()), kind: Some("device.offline".into()), ..Default::default() };
    app.admin.events(&query).await.expect("events").items.first().map(|e| e.data.clone())
}

#[tokio::test]
async fn a_device_is_online_while_connected_and_offline_after() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("PRESENT-{version:?}")).await;
        let mut paho = Paho::start(&app, version).await;
        assert_eq!(paho.connect(&Login::device(&id, &secret)).await, 0);
        online_becomes(&app, &id, true).await;
        let connected = app.admin.device(&id).await.expect("device");
        assert_eq!(connected.connectivity.remote_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(connected.transport.as_deref(), Some("mqtt"));

        paho.disconnect().await;
        online_becomes(&app, &id, false).await;
        let offline = eventually("the offline event is recorded", || offline_event(&app, &id)).await;
        assert_eq!(offline["clean"], json!(true), "{version:?}: a DISCONNECT is a clean end: {offline}");
        assert!(offline.get("will").is_none(), "{version:?}: no will on a clean end: {offline}");
    }
}

#[tokio::test]
async fn a_client_that_vanishes_goes_offline_with_its_will() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("WILL-{version:?}")).await;
        let will = ["--will-topic", "baton/v1/me/status", "--will-payload", "offline", "-k", "30"];
        let mut client = Mosquitto::new(&app, version, Login::device(&id, &secret))
            .subscribe(&["baton/v1/me/commands/+"], &will)
            .await;
        online_becomes(&app, &id, true).await;

        client.kill().await; // no DISCONNECT: the socket just closes
        online_becomes(&app, &id, false).await;
        let offline = eventually("the offline event is recorded", || offline_event(&app, &id)).await;
        assert_eq!(offline["clean"], json!(false), "{version:?}: {offline}");
        assert_eq!(offline["will"], json!({"topic": "baton/v1/me/status", "payload": "offline"}), "{version:?}");
    }
}
