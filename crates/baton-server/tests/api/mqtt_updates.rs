//! Updates for MQTT devices, with a real client (paho): in Baton's dialect the deployment
//! arrives on the device's `deployments` topic, the device downloads the bytes over HTTP with its
//! own credentials and reports states that move the rollout; in ThingsBoard's, the `fw_*`
//! attributes arrive, the image comes in chunks over MQTT, and `fw_state` telemetry moves it.

use baton_proto::{
    api::{
        artifacts::{ArtifactKind, ArtifactUpload},
        rollouts::{ExecutionQuery, ExecutionState, RolloutCreate, RolloutState, Targets},
    },
    deployment::{Deployment, ExecutionClaims},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    fleet::rollout_in,
    mqtt_clients::{Login, Paho, Tool, Version, device, require},
    support::{TestApp, raw, spawn_app},
};

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn upload(app: &TestApp, name: &str, version: &str, kind: ArtifactKind, body: Vec<u8>) -> String {
    let facts = ArtifactUpload { name: name.into(), version: version.into(), kind, ..ArtifactUpload::default() };
    let len = body.len() as u64;
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(body)]);
    app.admin.upload_artifact(&facts, len, stream).await.expect("uploaded").id
}

async fn roll_out(app: &TestApp, artifact: &str, device: &str) -> String {
    let req = RolloutCreate {
        name: "mqtt update".into(),
        artifact_id: artifact.into(),
        targets: Targets { device_ids: vec![device.into()], ..Targets::default() },
        ..RolloutCreate::default()
    };
    app.admin.create_rollout(&req).await.expect("rollout").id
}

#[tokio::test]
async fn a_native_mqtt_device_gets_its_deployment_downloads_it_and_reports_success() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    let (id, secret) = device(&app, "VALVE-OTA").await;
    let mut paho = Paho::start(&app, Version::V5).await;
    assert_eq!(paho.connect(&Login::device(&id, &secret)).await, 0);
    assert_eq!(paho.subscribe("baton/v1/me/deployments/+").await, 1);
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let artifact = upload(&app, "valve-fw", "1.4", ArtifactKind::Firmware, bytes.clone()).await;
    let rollout = roll_out(&app, &artifact, &id).await;

    let (topic, payload) = paho.message().await;
    let d: Deployment = serde_json::from_value(payload).expect("a deployment");
    assert_eq!(topic, format!("baton/v1/me/deployments/{}", d.execution_id));
    assert_eq!((d.artifact.size, d.artifact.sha256.clone()), (bytes.len() as u64, hex(&bytes)));
    let claims = ExecutionClaims::parse(&d.claims).expect("claims");
    assert_eq!((claims.device_id.as_str(), claims.sha256.as_str()), (id.as_str(), d.artifact.sha256.as_str()));
    assert!(d.artifact.signature.is_some(), "signed");

    // The device downloads with its own credentials (resuming is allowed: a range works too).
    let url = format!("{}{}", app.url, d.artifact.url);
    let got = raw().get(&url).bearer_auth(&secret).header("x-baton-device-id", &id).send().await.expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(hex(&got.bytes().await.expect("bytes")), d.artifact.sha256);
    let stranger = raw().get(&url).bearer_auth("wrong").header("x-baton-device-id", &id).send().await.expect("refused");
    assert_eq!(stranger.status(), 401);

    let state = |s: &str, v: Option<&str>| json!({"attempt": 1, "state": s, "installed_version": v}).to_string();
    let topic = format!("baton/v1/me/deployments/{}/state", d.execution_id);
    assert_eq!(paho.publish(&topic, &state("DOWNLOADING", Some("1.3"))).await, 0);
    assert_eq!(paho.publish(&topic, &json!({"state": "SIDEWAYS"}).to_string()).await, 0x99, "a bad state is refused");
    assert_eq!(paho.publish(&topic, &state("SUCCEEDED", Some("1.4"))).await, 0);
    let done = rollout_in(&app, &rollout, RolloutState::Completed).await;
    assert_eq!(done.progress.states.get(&ExecutionState::Succeeded), Some(&1));
    let e = app.admin.all_rollout_executions(&rollout, &ExecutionQuery::default()).await.expect("executions");
    assert_eq!(e[0].installed_version.as_deref(), Some("1.4"));
}

#[tokio::test]
async fn a_thingsboard_device_gets_fw_attributes_fetches_chunks_and_reports_fw_state() {
    if !require(&[Tool::Paho]) {
        return;
    }
    let app = spawn_app().await;
    let (id, secret) = device(&app, "TB-OTA").await;
    let mut paho = Paho::start(&app, Version::V311).await;
    assert_eq!(paho.connect(&Login::token(&secret)).await, 0);
    assert_eq!(paho.subscribe("v1/devices/me/attributes").await, 1);
    assert_eq!(paho.subscribe("v2/fw/response/+/chunk/+").await, 1);
    // Text, so the test's client hands it over unchanged.
    let image: Vec<u8> = (0..3000).flat_map(|i| format!("line {i:05} of the firmware image\n").into_bytes()).collect();
    let artifact = upload(&app, "tb-fw", "2.0", ArtifactKind::Firmware, image.clone()).await;
    let rollout = roll_out(&app, &artifact, &id).await;

    let (topic, fw) = paho.message().await;
    assert_eq!(topic, "v1/devices/me/attributes");
    assert_eq!((fw["fw_title"].as_str(), fw["fw_version"].as_str()), (Some("tb-fw"), Some("2.0")));
    assert_eq!(
        (fw["fw_checksum_algorithm"].as_str(), fw["fw_size"].as_u64()),
        (Some("SHA256"), Some(image.len() as u64))
    );
    let checksum = fw["fw_checksum"].as_str().expect("checksum").to_owned();

    assert_eq!(paho.publish("v1/devices/me/telemetry", r#"{"fw_state": "DOWNLOADING"}"#).await, 0);
    let mut received = Vec::new();
    for chunk in 0.. {
        assert_eq!(paho.publish(&format!("v2/fw/request/7/chunk/{chunk}"), "32768").await, 0);
        let (topic, piece) = paho.message_text().await;
        assert_eq!(topic, format!("v2/fw/response/7/chunk/{chunk}"));
        if piece.is_empty() {
            break;
        }
        received.extend_from_slice(piece.as_bytes());
    }
    assert_eq!(hex(&received), checksum, "the chunks make the image");
    for state in ["DOWNLOADED", "VERIFIED", "UPDATING"] {
        assert_eq!(paho.publish("v1/devices/me/telemetry", &json!({"fw_state": state}).to_string()).await, 0);
    }
    let updated = json!({"ts": chrono::Utc::now().timestamp_millis(), "values": {"fw_state": "UPDATED", "current_fw_version": "2.0"}});
    assert_eq!(paho.publish("v1/devices/me/telemetry", &updated.to_string()).await, 0);
    rollout_in(&app, &rollout, RolloutState::Completed).await;
    let e = app.admin.all_rollout_executions(&rollout, &ExecutionQuery::default()).await.expect("executions");
    assert_eq!((e[0].state, e[0].installed_version.as_deref()), (ExecutionState::Succeeded, Some("2.0")));
}
