//! ThingsBoard's device API on Baton's MQTT listener, with plain mosquitto clients logging in with
//! the device secret as access token, on MQTT 3.1.1 and 5: telemetry shapes, client and shared
//! attributes, attribute requests, server-side RPC and self-provisioning.

use baton_proto::api::{
    commands::{CommandSpec, CommandState},
    devices::{DeviceQuery, DeviceStatus},
    enrollment::EnrollmentTokenCreate,
    telemetry::TelemetryQuery,
};
use serde_json::{Map, Value, json};

use crate::{
    mqtt_clients::{Login, Mosquitto, Tool, Version, command_reaches, custom, device, latest, require, send_command},
    support::{TestApp, spawn_app},
};

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

#[tokio::test]
async fn telemetry_in_each_of_thingsboards_shapes_is_stored() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("TB-{version:?}")).await;
        let tb = Mosquitto::new(&app, version, Login::token(&secret));
        let now = chrono::Utc::now().timestamp_millis();
        let shapes = [
            json!({"temperature": 25, "active": true, "label": "skipped"}),
            json!({"ts": now - 60_000, "values": {"humidity": 40}}),
            json!([{"ts": now - 30_000, "values": {"humidity": 41}}, {"humidity": 42}]),
        ];
        for shape in shapes {
            let sent = tb.publish("v1/devices/me/telemetry", &shape.to_string()).await;
            assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)), "{version:?} {shape}: {}", sent.output);
        }
        let values = latest(&app, &id).await;
        assert_eq!(values.keys().collect::<Vec<_>>(), ["active", "humidity", "temperature"], "strings are skipped");
        assert_eq!((values["temperature"], values["active"], values["humidity"]), (25.0, 1.0, 42.0));
        let from = chrono::DateTime::from_timestamp_millis(now - 90_000);
        let query = TelemetryQuery { metric: "humidity".into(), from, bucket_secs: Some(20), ..Default::default() };
        let series = app.admin.telemetry(&id, &query).await.expect("series");
        assert_eq!(series.points.iter().map(|p| p.value).collect::<Vec<_>>(), [40.0, 41.0, 42.0], "{version:?}");
    }
}

#[tokio::test]
async fn client_attributes_are_reported_and_shared_attributes_are_pushed_as_they_change() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("TB-ATTR-{version:?}")).await;
        let tb = Mosquitto::new(&app, version, Login::token(&secret));
        let sent = tb.publish("v1/devices/me/attributes", r#"{"firmware": "1.2", "model": "TH-1"}"#).await;
        assert_eq!(sent.puback, Some(0), "{}", sent.output);
        let sent = tb.publish("v1/devices/me/attributes", r#"{"model": null, "battery": 97}"#).await;
        assert_eq!(sent.puback, Some(0), "{}", sent.output);
        let stored = app.admin.device_attributes(&id).await.expect("attributes");
        assert_eq!(stored.reported, object(json!({"firmware": "1.2", "battery": 97})), "merged; null removes");

        app.admin.patch_desired_attributes(&id, &object(json!({"interval": 10, "mode": "eco"}))).await.expect("patch");
        let mut shared = tb.subscribe(&["v1/devices/me/attributes"], &[]).await;
        assert_eq!(shared.granted, [1]);
        app.admin.patch_desired_attributes(&id, &object(json!({"interval": 20, "led": "on"}))).await.expect("patch");
        let (topic, changed) = shared.json().await;
        assert_eq!((topic.as_str(), changed), ("v1/devices/me/attributes", json!({"interval": 20, "led": "on"})));
        app.admin.patch_desired_attributes(&id, &object(json!({"led": null}))).await.expect("patch");
        assert_eq!(shared.json().await.1, json!({"deleted": ["led"]}), "{version:?}");
        shared.kill().await;

        // The device asks for attributes by key, or for all of them.
        let request = r#"{"clientKeys": "firmware", "sharedKeys": "interval,led"}"#;
        let answer = tb.request("v1/devices/me/attributes/request/1", "v1/devices/me/attributes/response/1", request);
        assert_eq!(answer.await, json!({"client": {"firmware": "1.2"}, "shared": {"interval": 20}}), "{version:?}");
        let answer = tb.request("v1/devices/me/attributes/request/7", "v1/devices/me/attributes/response/7", "{}");
        assert_eq!(
            answer.await,
            json!({"client": {"firmware": "1.2", "battery": 97}, "shared": {"interval": 20, "mode": "eco"}}),
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn server_side_rpc_reaches_the_device_and_its_answer_completes_the_command() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("TB-RPC-{version:?}")).await;
        let tb = Mosquitto::new(&app, version, Login::token(&secret));
        let calls = [
            (custom("setLed", json!({"on": true})), json!({"method": "setLed", "params": {"on": true}})),
            (
                CommandSpec::SetTelemetryInterval { seconds: 30 },
                json!({"method": "set-telemetry-interval", "params": {"seconds": 30}}),
            ),
        ];
        let answers = [
            (json!({"led": "on"}), CommandState::Succeeded),
            (json!({"error": "no such method"}), CommandState::Failed),
        ];
        for ((command, call), (answer, outcome)) in calls.into_iter().zip(answers) {
            // As in the docs: one client waits for the request, another sends the answer.
            let mut listener = tb.subscribe(&["v1/devices/me/rpc/request/+"], &["-C", "1"]).await;
            let command = send_command(&app, &id, command, None).await;
            let (topic, request) = listener.json().await;
            assert_eq!(request, call, "{version:?}");
            let number = topic.strip_prefix("v1/devices/me/rpc/request/").expect("a request topic");
            assert!(number.parse::<u32>().is_ok(), "{topic}");
            listener.finished().await;
            let sent = tb.publish(&format!("v1/devices/me/rpc/response/{number}"), &answer.to_string()).await;
            assert_eq!(sent.puback, Some(0), "{version:?}: {}", sent.output);
            let done = command_reaches(&app, &command, outcome).await;
            let result = done.result.expect("result");
            assert_eq!(result.output, Some(answer.clone()), "{version:?}: the answer is the command's output");
            if outcome == CommandState::Failed {
                assert_eq!(result.error.as_deref(), Some("no such method"));
            }
        }
    }
}

async fn provisioning_token(app: &TestApp, name: &str, requires_approval: bool) -> (String, String) {
    let req = EnrollmentTokenCreate { name: name.into(), requires_approval, ..Default::default() };
    let created = app.admin.create_enrollment_token(&req).await.expect("token");
    (created.token.id, created.secret)
}

/// Provisions `serial` over MQTT (user name `provision`) and returns the answer.
async fn provision(app: &TestApp, version: Version, request: Value) -> Value {
    Mosquitto::new(app, version, Login::user("provision"))
        .request("/provision/request", "/provision/response", &request.to_string())
        .await
}

#[tokio::test]
async fn a_device_provisions_itself_and_its_new_credential_works() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    let (token_id, token_secret) = provisioning_token(&app, "sensors", false).await;
    for version in Version::BOTH {
        let serial = format!("sensor-{version:?}");
        let request =
            json!({"deviceName": serial, "provisionDeviceKey": token_id, "provisionDeviceSecret": token_secret});
        let answer = provision(&app, version, request).await;
        assert_eq!((&answer["status"], &answer["credentialsType"]), (&json!("SUCCESS"), &json!("ACCESS_TOKEN")));
        let id = answer["deviceId"].as_str().expect("deviceId");
        let device = app.admin.device(id).await.expect("the device exists");
        assert_eq!((device.serial.as_deref(), device.status), (Some(serial.as_str()), DeviceStatus::Active));

        let access_token = answer["credentialsValue"].as_str().expect("a token");
        let sent = Mosquitto::new(&app, version, Login::token(access_token))
            .publish("v1/devices/me/telemetry", r#"{"t": 7}"#)
            .await;
        assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)), "{version:?}: {}", sent.output);
        assert_eq!(latest(&app, id).await["t"], 7.0);

        // MQTT_BASIC credentials, with the token named by its name.
        let request = json!({"deviceName": format!("{serial}-basic"), "provisionDeviceKey": "sensors",
            "provisionDeviceSecret": token_secret, "credentialsType": "MQTT_BASIC"});
        let answer = provision(&app, version, request).await;
        assert_eq!((&answer["status"], &answer["credentialsType"]), (&json!("SUCCESS"), &json!("MQTT_BASIC")));
        let basic = &answer["credentialsValue"];
        let login =
            Login::device(basic["userName"].as_str().expect("user"), basic["password"].as_str().expect("password"));
        let sent = Mosquitto::new(&app, version, login).publish("baton/v1/me/telemetry", r#"{"t": 8}"#).await;
        assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)), "{version:?}: {}", sent.output);
        assert_eq!(latest(&app, answer["deviceId"].as_str().expect("id")).await["t"], 8.0);
    }
}

#[tokio::test]
async fn a_device_provisioned_under_an_approval_token_connects_only_once_approved() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    let (token_id, token_secret) = provisioning_token(&app, "factory", true).await;
    for version in Version::BOTH {
        let request = json!({"deviceName": format!("new-{version:?}"), "provisionDeviceKey": token_id,
            "provisionDeviceSecret": token_secret});
        let answer = provision(&app, version, request).await;
        assert_eq!(answer["status"], "SUCCESS", "{answer}");
        let id = answer["deviceId"].as_str().expect("deviceId");
        assert_eq!(app.admin.device(id).await.expect("device").status, DeviceStatus::Pending);

        let device = Mosquitto::new(&app, version, Login::token(answer["credentialsValue"].as_str().expect("token")));
        let sent = device.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await;
        assert_eq!(sent.connack, Some(version.pick(5, 0x87)), "{version:?}: not authorised yet: {}", sent.output);
        assert!(latest(&app, id).await.is_empty());

        app.admin.approve_device(id).await.expect("approved");
        let sent = device.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await;
        assert_eq!((sent.connack, sent.puback), (Some(0), Some(0)), "{version:?}: {}", sent.output);
    }
}

#[tokio::test]
async fn provisioning_with_a_wrong_token_secret_fails_and_creates_nothing() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = spawn_app().await;
    let (token_id, _) = provisioning_token(&app, "sensors", false).await;
    for version in Version::BOTH {
        for request in [
            json!({"deviceName": "intruder", "provisionDeviceKey": token_id, "provisionDeviceSecret": "be_guessed"}),
            json!({"deviceName": "intruder", "provisionDeviceKey": "sensors"}),
        ] {
            let answer = provision(&app, version, request).await;
            assert_eq!(answer["status"], "FAILURE", "{version:?}: {answer}");
            assert!(answer["errorMsg"].as_str().is_some_and(|m| !m.is_empty()), "says why: {answer}");
            assert!(answer.get("credentialsValue").is_none(), "{answer}");
        }
    }
    assert!(app.admin.devices(&DeviceQuery::default()).await.expect("devices").items.is_empty());
}
