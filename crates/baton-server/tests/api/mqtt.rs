//! MQTT devices in Baton's own dialect, driven by real clients (mosquitto and paho) on MQTT 3.1.1
//! and 5: telemetry lands and is queryable, commands reach subscribers and their replies complete
//! them, bad credentials are refused, and a device can neither write to nor read from another
//! device's topics.

use baton_proto::api::{commands::CommandState, telemetry::TelemetryQuery};
use serde_json::json;

use crate::{
    mqtt_clients::{
        Login, Mosquitto, Paho, Tool, Version, command_reaches, custom, device, latest, require, send_command,
    },
    support::spawn_app,
};

#[tokio::test]
async fn telemetry_from_mosquitto_and_paho_is_stored_before_the_puback() {
    if !require(&[Tool::Mosquitto, Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("TELEMETRY-{version:?}")).await;
        let login = Login::device(&id, &secret);
        let mosquitto = Mosquitto::new(&app, version, login.clone());
        let sent = mosquitto.publish("baton/v1/me/telemetry", r#"{"temp": 21.5, "door_open": false}"#).await;
        assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)), "{version:?}: {}", sent.output);

        let now = chrono::Utc::now().timestamp_millis();
        let mut paho = Paho::start(&app, version).await;
        assert_eq!(paho.connect(&login).await, 0);
        let own_time = json!({"ts": now - 120_000, "values": {"hum": 40}}).to_string();
        assert_eq!(paho.publish(&format!("baton/v1/{id}/telemetry"), &own_time).await, 0, "by id");
        let batch = json!([{"ts": now - 60_000, "values": {"hum": 41}}, {"ts": now, "values": {"hum": 42}}]);
        assert_eq!(paho.publish("baton/v1/me/telemetry", &batch.to_string()).await, 0, "a batch");

        // The PUBACK comes only once the values are stored: they are queryable at once.
        let values = latest(&app, &id).await;
        assert_eq!((values["temp"], values["door_open"], values["hum"]), (21.5, 0.0, 42.0), "{version:?}");
        let from = chrono::DateTime::from_timestamp_millis(now - 180_000);
        let query = TelemetryQuery { metric: "hum".into(), from, bucket_secs: Some(30), ..Default::default() };
        let series = app.admin.telemetry(&id, &query).await.expect("series");
        let points: Vec<(f64, u64)> = series.points.iter().map(|p| (p.value, p.count)).collect();
        assert_eq!(points, [(40.0, 1), (41.0, 1), (42.0, 1)], "{version:?}: each sample at its own time");
    }
}

#[tokio::test]
async fn commands_reach_subscribed_clients_and_their_replies_complete_them() {
    if !require(&[Tool::Mosquitto, Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        // mosquitto: one client listens, another answers (the first has exited by then).
        let (id, secret) = device(&app, &format!("VALVE-{version:?}")).await;
        let mosquitto = Mosquitto::new(&app, version, Login::device(&id, &secret));
        let mut listener = mosquitto.subscribe(&["baton/v1/me/commands/+"], &["-C", "1"]).await;
        assert_eq!(listener.granted, [1]);
        let command = send_command(&app, &id, custom("open-valve", json!({"seconds": 5})), None).await;
        let (topic, envelope) = listener.json().await;
        assert_eq!(topic, format!("baton/v1/me/commands/{command}"));
        assert_eq!(envelope["id"], command);
        assert_eq!(envelope["command"], json!({"type": "custom", "name": "open-valve", "params": {"seconds": 5}}));
        assert!(envelope["expires_at"].is_i64(), "{envelope}");
        listener.finished().await;
        let answer = r#"{"state": "succeeded", "result": {"output": {"valve": "open"}}}"#;
        let sent = mosquitto.publish(&format!("baton/v1/me/commands/{command}/result"), answer).await;
        assert_eq!(sent.puback, Some(0), "{}", sent.output);
        let done = command_reaches(&app, &command, CommandState::Succeeded).await;
        assert_eq!(done.result.expect("result").output, Some(json!({"valve": "open"})), "{version:?}");
        assert!(done.acked_at.is_some(), "the client's PUBACK acknowledged it");

        // paho: one connection listens and answers, on the id spelling of the topics.
        let (id, secret) = device(&app, &format!("PAHO-VALVE-{version:?}")).await;
        let mut paho = Paho::start(&app, version).await;
        assert_eq!(paho.connect(&Login::device(&id, &secret)).await, 0);
        assert_eq!(paho.subscribe(&format!("baton/v1/{id}/commands/+")).await, 1);
        let command = send_command(&app, &id, custom("close-valve", json!(null)), None).await;
        let (topic, envelope) = paho.message().await;
        assert_eq!(
            (topic, &envelope["command"]["name"]),
            (format!("baton/v1/{id}/commands/{command}"), &json!("close-valve"))
        );
        command_reaches(&app, &command, CommandState::Acked).await;
        let answer = json!({"state": "failed", "result": {"error": "jammed", "exit_code": 3}});
        assert_eq!(paho.publish(&format!("baton/v1/{id}/commands/{command}/result"), &answer.to_string()).await, 0);
        let done = command_reaches(&app, &command, CommandState::Failed).await;
        let result = done.result.expect("result");
        assert_eq!((result.error.as_deref(), result.exit_code), (Some("jammed"), Some(3)), "{version:?}");
    }
}

#[tokio::test]
async fn a_wrong_secret_or_no_user_name_is_refused_in_the_connack() {
    if !require(&[Tool::Mosquitto, Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    let (id, secret) = device(&app, "LOCKED").await;
    for version in Version::BOTH {
        let refused = version.pick(4, 0x86); // bad user name or password
        for login in [Login::device(&id, "bd_wrong"), Login::token("bd_wrong"), Login::anonymous()] {
            let sent =
                Mosquitto::new(&app, version, login.clone()).publish("baton/v1/me/telemetry", "{\"t\": 1}").await;
            assert_eq!((sent.connack, sent.puback), (Some(refused), None), "{version:?} {login:?}: {}", sent.output);
            let mut paho = Paho::start(&app, version).await;
            // paho reports 3.1.1's code 4 as its MQTT 5 equivalent.
            assert_eq!(paho.connect(&login).await, 0x86, "{version:?} {login:?}");
        }
        let other_secret = app.admin.issue_device_credential(&device(&app, &format!("X-{version:?}")).await.0).await;
        let sent = Mosquitto::new(&app, version, Login::device(&id, &other_secret.expect("secret").secret))
            .publish("baton/v1/me/telemetry", "{\"t\": 1}")
            .await;
        assert_eq!(sent.connack, Some(refused), "another device's secret does not open this one");
    }
    let locked = app.admin.device(&id).await.expect("device");
    assert!(!locked.connectivity.online && locked.connectivity.last_seen_at.is_none(), "never connected");
    assert!(latest(&app, &id).await.is_empty(), "nothing was stored");
    // The right secret still works.
    let sent = Mosquitto::new(&app, Version::V5, Login::device(&id, &secret))
        .publish("baton/v1/me/telemetry", "{\"t\": 1}")
        .await;
    assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)));
}

#[tokio::test]
async fn a_device_can_neither_write_to_nor_read_from_another_devices_topics() {
    if !require(&[Tool::Mosquitto, Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let denied = version.pick(0x80, 0x87);
        let (intruder, intruder_secret) = device(&app, &format!("INTRUDER-{version:?}")).await;
        let (victim, victim_secret) = device(&app, &format!("VICTIM-{version:?}")).await;
        let mosquitto = Mosquitto::new(&app, version, Login::device(&intruder, &intruder_secret));

        // Publishing into the victim's namespace: refused (5) or silently dropped (3.1.1).
        let forged = mosquitto.publish(&format!("baton/v1/{victim}/telemetry"), r#"{"temp": 99}"#).await;
        assert_eq!(forged.puback, Some(version.pick(0, 0x87)), "{version:?}: {}", forged.output);
        assert!(latest(&app, &victim).await.is_empty(), "{version:?}: the victim's telemetry is unchanged");
        assert!(latest(&app, &intruder).await.is_empty(), "{version:?}: and nothing landed on the intruder");

        // The victim listens for its commands; the intruder tries every way to listen too.
        let mut paho = Paho::start(&app, version).await;
        assert_eq!(paho.connect(&Login::device(&victim, &victim_secret)).await, 0);
        assert_eq!(paho.subscribe("baton/v1/me/commands/+").await, 1);
        let victims_filter = format!("baton/v1/{victim}/commands/+");
        let filters = ["#", &victims_filter, "baton/v1/+/commands/+", "baton/v1/me/commands/+"];
        let mut snoop = mosquitto.subscribe(&filters, &[]).await;
        assert_eq!(snoop.granted, [denied, denied, denied, 1], "{version:?}: only its own topics");

        let theirs = send_command(&app, &victim, custom("unlock", json!({"door": 1})), None).await;
        let (topic, _) = paho.message().await;
        assert_eq!(topic, format!("baton/v1/me/commands/{theirs}"), "the victim gets its command");
        command_reaches(&app, &theirs, CommandState::Acked).await;
        // The next command the snooper sees is its own: the victim's never reached it.
        let mine = send_command(&app, &intruder, custom("marker", json!(null)), None).await;
        let (topic, _) = snoop.message().await;
        assert_eq!(topic, format!("baton/v1/me/commands/{mine}"), "{version:?}: nothing of the victim's leaked");

        // Nor can the intruder answer the victim's command for it.
        snoop.kill().await;
        let forged = mosquitto.publish(&format!("baton/v1/{victim}/commands/{theirs}/result"), "{}").await;
        assert_eq!(forged.puback, Some(version.pick(0, 0x87)), "{version:?}: {}", forged.output);
        assert_eq!(app.admin.command(&theirs).await.expect("command").state, CommandState::Acked);
    }
}
