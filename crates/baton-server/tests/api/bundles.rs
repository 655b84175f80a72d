//! Support bundles through the API on both databases (the tests with real agent processes are
//! in `crates/baton/tests/remote_bundles.rs`): an in-process agent makes and uploads one that
//! is listed, followed and downloaded; uploads straight to the agents' door with a device's
//! credentials are checked (hash, size limit → 413 and a failed bundle, another device's
//! bundle, twice); a canceled command fails its bundle; MQTT devices, `POST /api/v1/commands`,
//! a viewer and another tenant are refused; a device that turns out to speak MQTT fails its
//! bundle saying why.

use std::io::Read;

use baton_agent::{Agent, AgentConfig, config::RemoteConfig, storage::Storage};
use baton_proto::api::{
    bundles::{BundleCreate, BundleQuery, BundleState},
    commands::{CommandCreate, CommandSpec, CommandTarget},
    devices::DeviceCreate,
    enrollment::EnrollmentTokenCreate,
};
use baton_testkit::eventually;

use crate::support::{expect_problem, raw, spawn_with, test_settings};

const LIMIT: u64 = 64 * 1024;

#[tokio::test]
async fn an_agent_makes_a_bundle_that_is_listed_followed_and_downloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with(test_settings(dir.path()), dir).await;
    let token = app
        .admin
        .create_enrollment_token(&EnrollmentTokenCreate { name: "agents".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let (state, logs, journal) = (
        tempfile::tempdir().expect("state"),
        tempfile::tempdir().expect("logs"),
        tempfile::tempdir().expect("journal"),
    );
    std::fs::write(logs.path().join("app.log"), "the api-bundle-1 log\n").expect("log");
    let config = AgentConfig {
        server: Some(app.url.clone()),
        enrollment_token: Some(token),
        serial: Some("api-bundle-1".into()),
        state_dir: state.path().to_path_buf(),
        max_backoff_secs: 1,
        remote: RemoteConfig {
            bundles: true,
            log_paths: vec![logs.path().to_path_buf()],
            journal_directory: Some(journal.path().to_path_buf()),
            ..RemoteConfig::default()
        },
        ..AgentConfig::default()
    };
    let agent = Agent::builder(config).storage(Storage::memory()).build().expect("agent");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    let device = eventually("the agent comes online", || async {
        let devices = app.admin.devices(&Default::default()).await.ok()?;
        devices.items.into_iter().find(|d| d.connectivity.online)
    })
    .await;

    // A bundle is asked for through its own route, which records it first.
    let by_commands = CommandCreate {
        target: CommandTarget { device_ids: vec![device.id.clone()], ..Default::default() },
        command: CommandSpec::SupportBundle { bundle_id: "x".into(), since_secs: 60 },
        ttl_secs: None,
        idempotency_key: None,
    };
    let refused = raw()
        .post(format!("{}/api/v1/commands", app.url))
        .bearer_auth(&app.admin_token)
        .json(&by_commands)
        .send()
        .await
        .expect("send");
    let problem = expect_problem(refused, 422).await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("POST /api/v1/support-bundles")), "{problem}");

    let req = BundleCreate { device_id: Some(device.id.clone()), since: Some("30m".into()), ..Default::default() };
    let requested = app.admin.request_bundles(&req).await.expect("requested");
    assert_eq!(requested.bundles.len(), 1);
    assert_eq!(requested.bundles[0].since_secs, 1800);
    let done = eventually("the bundle is stored", || async {
        let p = app.admin.bundle_progress(&requested.request_id).await.ok()?;
        p.finished().then_some(p)
    })
    .await;
    assert_eq!(done.devices[0].state, BundleState::Stored, "{done:?}");
    assert_eq!(done.states.get("stored"), Some(&1));
    assert_eq!(done.devices[0].device_name, device.name);
    let bundle = app.admin.bundle(&done.devices[0].bundle_id).await.expect("bundle");
    assert!(bundle.requested_by.starts_with("token:") && bundle.source_addr.is_some(), "{bundle:?}");
    for q in [
        BundleQuery { device_id: Some(device.id.clone()), ..Default::default() },
        BundleQuery { request_id: Some(requested.request_id.clone()), ..Default::default() },
    ] {
        assert_eq!(app.admin.bundles(&q).await.expect("list").items, vec![bundle.clone()]);
    }
    let response = app.admin.download_bundle(&bundle.id).await.expect("download");
    let named = response.headers()["content-disposition"].to_str().expect("header").to_owned();
    assert!(named.contains(&format!("bundle-{}-", device.name)) && named.ends_with(".tar.gz\""), "{named}");
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let archive = response.bytes().await.expect("bytes");
    assert_eq!(Some(archive.len() as u64), bundle.size_bytes);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]));
    let mut log = None;
    for entry in tar.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").ends_with("app.log") {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("text");
            log = Some(text);
        }
    }
    assert_eq!(log.as_deref(), Some("the api-bundle-1 log\n"));

    // Another tenant and a viewer see nothing of it.
    let other = app.tenant_admin("other").await;
    let code = |e: baton_client::ClientError| e.status().map(|s| s.as_u16());
    assert_eq!(other.bundle(&bundle.id).await.err().and_then(code), Some(404));
    assert_eq!(other.bundle_progress(&requested.request_id).await.err().and_then(code), Some(404));
    assert_eq!(other.download_bundle(&bundle.id).await.err().and_then(code), Some(404));
    assert_eq!(other.request_bundles(&req).await.err().and_then(code), Some(422));
    let viewer = app.client_with_role("viewer").await;
    assert_eq!(viewer.bundles(&BundleQuery::default()).await.err().and_then(code), Some(403));
    assert_eq!(viewer.request_bundles(&req).await.err().and_then(code), Some(403));
    let operator = app.client_with_role("operator").await;
    assert_eq!(operator.bundles(&BundleQuery::default()).await.expect("an operator reads them").items.len(), 1);

    // Remote access switched off for the tenant refuses bundles too, saying how to turn it on.
    let mut policy = app.admin.remote_policy().await.expect("policy");
    policy.enabled = false;
    app.admin.set_remote_policy(&policy).await.expect("switched off");
    let refused = app.admin.request_bundles(&req).await.expect_err("refused while remote access is off");
    assert!(refused.to_string().contains("PUT /api/v1/remote-policy"), "{refused}");
    assert_eq!(code(refused), Some(403));

    let _ = stop.send(());
    let _ = run.await;
}

#[tokio::test]
async fn uploads_are_checked_limited_and_final_and_a_canceled_command_fails_its_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    settings.support_bundle_max_bytes = LIMIT;
    let app = spawn_with(settings, dir).await;
    // Devices that never connected may run the agent: they are asked.
    let mut devices = Vec::new();
    for serial in ["upload-1", "upload-2"] {
        let device = app
            .admin
            .create_device(&DeviceCreate { serial: serial.into(), ..Default::default() })
            .await
            .expect("device");
        let credential = app.admin.issue_device_credential(&device.id).await.expect("credential");
        devices.push((device, credential.secret));
    }
    let ask = |device: &str| BundleCreate { device_id: Some(device.into()), ..Default::default() };
    let first = app.admin.request_bundles(&ask(&devices[0].0.id)).await.expect("requested").bundles.remove(0);
    assert_eq!(first.since_secs, 3600, "an hour unless asked");
    let put =
        |bundle: &str, (device, secret): &(baton_proto::api::devices::Device, String), body: Vec<u8>, sha: &str| {
            raw()
                .put(format!("{}/api/v1/agent/support-bundles/{bundle}", app.url))
                .header("x-baton-device-id", device.id.as_str())
                .bearer_auth(secret)
                .header("x-checksum-sha256", sha)
                .body(body)
        };
    let archive = vec![7u8; 1000];
    let sha = hex_sha256(&archive);

    let wrong = put(&first.id, &devices[0], archive.clone(), &hex_sha256(b"other")).send().await.expect("send");
    let problem = expect_problem(wrong, 422).await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("hash to")), "{problem}");
    let theirs = put(&first.id, &devices[1], archive.clone(), &sha).send().await.expect("send");
    expect_problem(theirs, 404).await;
    let anonymous = raw().put(format!("{}/api/v1/agent/support-bundles/{}", app.url, first.id)).body(archive.clone());
    expect_problem(anonymous.send().await.expect("send"), 401).await;
    let stored = put(&first.id, &devices[0], archive.clone(), &sha).send().await.expect("send");
    assert_eq!(stored.status(), 200);
    let bundle = app.admin.bundle(&first.id).await.expect("bundle");
    assert_eq!(
        (bundle.state, bundle.size_bytes, bundle.sha256.as_deref()),
        (BundleState::Stored, Some(1000), Some(sha.as_str()))
    );
    assert_eq!(
        app.admin.download_bundle(&first.id).await.expect("download").bytes().await.expect("bytes").to_vec(),
        archive
    );
    let again = put(&first.id, &devices[0], archive.clone(), &sha).send().await.expect("send");
    expect_problem(again, 409).await;

    // Over the server's limit: 413, nothing stored, the bundle failed saying which limit.
    let big = app.admin.request_bundles(&ask(&devices[0].0.id)).await.expect("requested").bundles.remove(0);
    let body = vec![1u8; LIMIT as usize + 1];
    let refused = put(&big.id, &devices[0], body.clone(), &hex_sha256(&body)).send().await.expect("send");
    let problem = expect_problem(refused, 413).await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("support_bundle_max_bytes")), "{problem}");
    let failed = app.admin.bundle(&big.id).await.expect("bundle");
    assert_eq!(failed.state, BundleState::Failed);
    assert!(failed.error.as_deref().is_some_and(|e| e.contains(&LIMIT.to_string())), "{failed:?}");
    let download = app.admin.download_bundle(&big.id).await;
    assert_eq!(download.err().and_then(|e| e.status()).map(|s| s.as_u16()), Some(409));
    expect_problem(put(&big.id, &devices[0], archive.clone(), &sha).send().await.expect("send"), 409).await;

    // A canceled command fails its bundle.
    let waiting = app.admin.request_bundles(&ask(&devices[1].0.id)).await.expect("requested").bundles.remove(0);
    app.admin.cancel_command(&waiting.command_id).await.expect("canceled");
    let failed = eventually("the bundle fails with its command", || async {
        let b = app.admin.bundle(&waiting.id).await.ok()?;
        (b.state == BundleState::Failed).then_some(b)
    })
    .await;
    assert_eq!(failed.error.as_deref(), Some("the request was canceled"));

    // MQTT devices cannot make bundles: asking one is refused, naming why.
    app.stage_sql(&format!("UPDATE devices SET transport = 'mqtt' WHERE id = '{}'", devices[1].0.id)).await;
    let refused = raw()
        .post(format!("{}/api/v1/support-bundles", app.url))
        .bearer_auth(&app.admin_token)
        .json(&ask(&devices[1].0.id))
        .send()
        .await
        .expect("send");
    let problem = expect_problem(refused, 409).await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("MQTT")), "{problem}");
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"device_id": devices[0].0.id, "selector": "a=b"}),
        serde_json::json!({"device_id": devices[0].0.id, "since": "1 week"}),
        serde_json::json!({"device_id": devices[0].0.id, "since_secs": 0}),
    ] {
        let answer = raw()
            .post(format!("{}/api/v1/support-bundles", app.url))
            .bearer_auth(&app.admin_token)
            .json(&bad)
            .send()
            .await
            .expect("send");
        expect_problem(answer, 422).await;
    }
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_bundle_for_a_device_that_turns_out_to_speak_mqtt_fails_saying_so() {
    use crate::mqtt_clients::{Login, Mosquitto, Tool, Version, device, require};
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let app = crate::support::spawn_app().await;
    // Never connected: it may run the agent, so it is asked; then it subscribes over MQTT.
    let (id, secret) = device(&app, "METER-1").await;
    let req = BundleCreate { device_id: Some(id.clone()), ..Default::default() };
    let bundle = app.admin.request_bundles(&req).await.expect("requested").bundles.remove(0);
    let mosquitto = Mosquitto::new(&app, Version::V5, Login::device(&id, &secret));
    let mut listener = mosquitto.subscribe(&["baton/v1/me/commands/+"], &["-W", "3"]).await;
    let failed = eventually("the bundle fails", || async {
        let b = app.admin.bundle(&bundle.id).await.ok()?;
        (b.state == BundleState::Failed).then_some(b)
    })
    .await;
    assert!(
        failed.error.as_deref().is_some_and(|e| e.contains("MQTT devices cannot make support bundles")),
        "{failed:?}"
    );
    listener.kill().await;
}
