//! ThingsBoard's gateway API: a gateway (a paho client, on MQTT 3.1.1 and 5) announces the
//! sensors behind it by name, which become sub-devices in the registry; it relays their
//! telemetry and their RPC, and they go offline with it.

use baton_proto::api::{
    commands::CommandState,
    devices::{Device, DeviceQuery},
    events::EventQuery,
};
use serde_json::json;

use crate::{
    mqtt_clients::{
        Login, Paho, Tool, Version, command_reaches, custom, device, eventually, latest, online_becomes, require,
        send_command,
    },
    support::{TestApp, spawn_app},
};

async fn sub_devices(app: &TestApp, gateway_id: &str) -> Vec<Device> {
    let query = DeviceQuery { gateway_id: Some(gateway_id.into()), ..Default::default() };
    app.admin.devices(&query).await.expect("devices").items
}

#[tokio::test]
async fn a_gateway_announces_relays_and_answers_for_its_sub_devices() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (gateway_id, secret) = device(&app, &format!("GATEWAY-{version:?}")).await;
        let mut gateway = Paho::start(&app, version).await;
        assert_eq!(gateway.connect(&Login::device(&gateway_id, &secret)).await, 0);
        assert_eq!(gateway.subscribe("v1/gateway/rpc").await, 1);

        assert_eq!(gateway.publish("v1/gateway/connect", r#"{"device": "Sensor A"}"#).await, 0, "{version:?}");
        let subs = sub_devices(&app, &gateway_id).await;
        assert_eq!(subs.len(), 1, "{version:?}: one sub-device");
        let sensor = &subs[0];
        assert_eq!(sensor.serial.as_deref(), Some("Sensor A"));
        assert_eq!(sensor.gateway_id.as_deref(), Some(gateway_id.as_str()));
        assert_eq!(sensor.transport.as_deref(), Some("mqtt"));
        assert!(sensor.connectivity.online, "announced: online");

        let now = chrono::Utc::now().timestamp_millis();
        let telemetry = json!({"Sensor A": [{"ts": now - 1000, "values": {"temp": 21}}, {"temp": 22.5}]});
        assert_eq!(gateway.publish("v1/gateway/telemetry", &telemetry.to_string()).await, 0);
        assert_eq!(latest(&app, &sensor.id).await["temp"], 22.5, "{version:?}: stored on the sub-device");
        assert!(latest(&app, &gateway_id).await.is_empty(), "not on the gateway");

        let command = send_command(&app, &sensor.id, custom("setLed", json!({"on": true})), None).await;
        let (topic, call) = gateway.message().await;
        assert_eq!(topic, "v1/gateway/rpc");
        let n = call["data"]["id"].clone();
        assert!(n.is_u64(), "{call}");
        assert_eq!(call, json!({"device": "Sensor A", "data": {"id": n, "method": "setLed", "params": {"on": true}}}));
        let answer = json!({"device": "Sensor A", "id": n, "data": {"led": "on"}});
        assert_eq!(gateway.publish("v1/gateway/rpc", &answer.to_string()).await, 0);
        let done = command_reaches(&app, &command, CommandState::Succeeded).await;
        assert_eq!(done.result.expect("result").output, Some(json!({"led": "on"})), "{version:?}");

        gateway.disconnect().await;
        online_becomes(&app, &sensor.id, false).await;
        online_becomes(&app, &gateway_id, false).await;
    }
}

#[tokio::test]
async fn sub_devices_go_offline_when_announced_gone_or_when_the_gateway_is_lost() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (gateway_id, secret) = device(&app, &format!("GATEWAY-{version:?}")).await;
        let mut gateway = Paho::start(&app, version).await;
        assert_eq!(gateway.connect(&Login::device(&gateway_id, &secret)).await, 0);
        // Names of their own each round, so no event of the round before can answer for this one.
        let names = [format!("Sensor A {version:?}"), format!("Sensor B {version:?}")];
        for name in &names {
            let announce = json!({"device": name}).to_string();
            assert_eq!(gateway.publish("v1/gateway/connect", &announce).await, 0);
        }
        let subs = sub_devices(&app, &gateway_id).await;
        let id_of = |name: &str| subs.iter().find(|d| d.serial.as_deref() == Some(name)).expect(name).id.clone();
        let (a, b) = (id_of(&names[0]), id_of(&names[1]));

        let leave = json!({"device": names[0]}).to_string();
        assert_eq!(gateway.publish("v1/gateway/disconnect", &leave).await, 0);
        assert!(!app.admin.device(&a).await.expect("a").connectivity.online, "{version:?}: A left");
        assert!(app.admin.device(&b).await.expect("b").connectivity.online, "{version:?}: B is still there");

        drop(gateway); // the process is killed: the connection is lost, not closed
        online_becomes(&app, &b, false).await;
        let offline = eventually("B's offline event is recorded", || offline_event(&app, &b)).await;
        assert_eq!(offline["gateway_id"], json!(gateway_id), "{version:?}: {offline}");
    }
}

/// The data of the device's newest `device.offline` event.
async fn offline_event(app: &TestApp, device: &str) -> Option<serde_json::Value> {
    let query = EventQuery { device: Some(device.into()), kind: Some("device.offline".into()), ..Default::default() };
    app.admin.events(&query).await.expect("events").items.first().map(|e| e.data.clone())
}

#[tokio::test]
async fn desired_attributes_of_a_sub_device_reach_its_gateway() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    for version in Version::BOTH {
        let (gateway_id, secret) = device(&app, &format!("GATEWAY-{version:?}")).await;
        let mut gateway = Paho::start(&app, version).await;
        assert_eq!(gateway.connect(&Login::device(&gateway_id, &secret)).await, 0);
        assert_eq!(gateway.subscribe("v1/gateway/attributes").await, 1);
        assert_eq!(gateway.publish("v1/gateway/connect", r#"{"device": "Valve 7"}"#).await, 0);
        let valve = sub_devices(&app, &gateway_id).await.pop().expect("the sub-device");

        // Attributes the gateway reports for it are the sub-device's reported attributes.
        let reported = json!({"Valve 7": {"firmware": "2.1"}}).to_string();
        assert_eq!(gateway.publish("v1/gateway/attributes", &reported).await, 0);
        let attributes = app.admin.device_attributes(&valve.id).await.expect("attributes");
        assert_eq!(attributes.reported.get("firmware"), Some(&json!("2.1")), "{version:?}");

        // What an operator wants for it is pushed to the gateway, addressed by name.
        let patch = serde_json::Map::from_iter([("open_pct".to_owned(), json!(40))]);
        app.admin.patch_desired_attributes(&valve.id, &patch).await.expect("desired");
        let (topic, pushed) = gateway.message().await;
        assert_eq!(topic, "v1/gateway/attributes");
        assert_eq!(pushed, json!({"device": "Valve 7", "data": {"open_pct": 40}}), "{version:?}");
        gateway.disconnect().await;
    }
}
