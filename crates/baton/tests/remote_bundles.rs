//! Support bundles end to end with real processes: `baton serve`, real `baton-agent`s with
//! `[remote] bundles = true`, each with a log directory of its own and a diagnostics command,
//! and the `baton` CLI. A group of three delivers three archives holding each device's own
//! files; a device offline at the request delivers when it returns; the agent's and the
//! server's size limits each say what they did; the journal of the window goes in; an agent with bundles off, a viewer and another
//! tenant are refused; the events name who, which device and how big.

mod support;

use std::{collections::BTreeMap, io::Read, path::Path};

use baton_client::{Client, ClientError};
use baton_proto::api::{
    access::UserCreate,
    bundles::{BundleCreate, BundleProgress, BundleQuery, BundleState, DeviceProgress},
    devices::Device,
    events::EventQuery,
    groups::GroupCreate,
};
use baton_testkit::{
    eventually,
    tools::{Tool, require},
};
use support::{
    Server,
    remote::{Agent, cli, enrolled, journal, other_tenant},
};

const BOOTSTRAP: &str = "bt_bundles-test-bootstrap-token";

fn server(env: &[(&str, &str)]) -> Server {
    let mut all = vec![("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP), ("BATON_HEARTBEAT_SECS", "2")];
    all.extend_from_slice(env);
    Server::start(&all, &["--http-addr", "127.0.0.1:0"])
}

/// A device's log directory with `app.log` saying whose it is, and the agent's `[remote]`.
struct Logs {
    dir: tempfile::TempDir,
    journal: tempfile::TempDir,
}

impl Logs {
    fn new(serial: &str) -> Self {
        let dir = tempfile::tempdir().expect("log dir");
        std::fs::create_dir(dir.path().join("app")).expect("app dir");
        std::fs::write(dir.path().join("app/app.log"), format!("started\nlog line of {serial}\n")).expect("log");
        Logs { dir, journal: tempfile::tempdir().expect("journal dir") }
    }

    fn remote(&self, serial: &str, extra: &str) -> String {
        format!(
            "bundles = true\nlog_paths = [\"{}\"]\njournal_directory = \"{}\"\n\
             diagnostics_command = [\"sh\", \"-c\", \"echo diagnosed {serial}; echo to-stderr >&2; exit 3\"]\n{extra}",
            self.dir.path().display(),
            self.journal.path().display()
        )
    }
}

/// The entries of a `tar.gz`, by name.
fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut found = BTreeMap::new();
    for entry in tar.entries().expect("a tar archive") {
        let mut entry = entry.expect("an entry");
        let name = entry.path().expect("a name").display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("its bytes");
        found.insert(name, data);
    }
    found
}

fn text(entries: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    let data = entries.get(name).unwrap_or_else(|| panic!("no {name} in {:?}", entries.keys()));
    String::from_utf8_lossy(data).into_owned()
}

async fn download(client: &Client, id: &str) -> Vec<u8> {
    client.download_bundle(id).await.expect("download").bytes().await.expect("bytes").to_vec()
}

async fn finished(client: &Client, request: &str) -> BundleProgress {
    eventually("every bundle of the request is stored or failed", || async {
        let progress = client.bundle_progress(request).await.ok()?;
        progress.finished().then_some(progress)
    })
    .await
}

#[tokio::test]
async fn a_group_of_three_delivers_each_devices_own_logs_inventory_and_diagnostics() {
    let server = server(&[]);
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let mut fleet: Vec<(Agent, Device, Logs)> = Vec::new();
    for serial in ["bundle-a", "bundle-b", "bundle-c"] {
        let logs = Logs::new(serial);
        let (agent, device) = enrolled(&admin, &server.url, serial, &logs.remote(serial, "")).await;
        fleet.push((agent, device, logs));
    }
    let group = admin.create_group(&GroupCreate { name: "tills".into(), ..Default::default() }).await.expect("group");
    admin.add_group_members(&group.id, fleet.iter().map(|(_, d, _)| d.id.clone()).collect()).await.expect("members");

    // The CLI asks and follows until every device is done.
    let out = cli(
        &server.url,
        BOOTSTRAP,
        &["bundle", "create", "--group", &group.id, "--since", "2h", "--wait", "-o", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "baton bundle create --wait: {stderr}");
    let devices: Vec<DeviceProgress> = serde_json::from_slice(&out.stdout).expect("progress as JSON");
    assert_eq!(devices.len(), 3, "{devices:?}");
    assert!(devices.iter().all(|d| d.state == BundleState::Stored), "{devices:?}");

    for (_, device, logs) in &fleet {
        let serial = device.serial.clone().expect("serial");
        let page = admin
            .bundles(&BundleQuery { device_id: Some(device.id.clone()), ..Default::default() })
            .await
            .expect("bundles");
        let bundle = &page.items[0];
        assert_eq!((bundle.state, bundle.since_secs), (BundleState::Stored, 7200));
        let archive = download(&admin, &bundle.id).await;
        assert_eq!(Some(archive.len() as u64), bundle.size_bytes);
        let files = entries(&archive);
        let log = logs.dir.path().canonicalize().expect("real path").join("app/app.log");
        let name = format!("logs/{}", log.display().to_string().trim_start_matches('/'));
        assert_eq!(text(&files, &name), format!("started\nlog line of {serial}\n"), "its own log");
        let inventory: serde_json::Value = serde_json::from_str(&text(&files, "inventory.json")).expect("json");
        assert_eq!(inventory["device_id"], device.id.as_str());
        assert_eq!(inventory["serial"], serial.as_str());
        assert!(inventory["inventory"]["os_family"].is_string(), "{inventory}");
        let diagnostics = text(&files, "diagnostics.txt");
        assert!(diagnostics.contains(&format!("diagnosed {serial}")), "{diagnostics}");
        assert!(diagnostics.contains("to-stderr") && diagnostics.contains("exit status 3"), "{diagnostics}");
        let manifest: serde_json::Value = serde_json::from_str(&text(&files, "manifest.json")).expect("manifest");
        assert_eq!(manifest["device_id"], device.id.as_str());
        assert_eq!(manifest["cut_for_size"], false);
        let included: Vec<&str> =
            manifest["included"].as_array().expect("list").iter().filter_map(|e| e["name"].as_str()).collect();
        assert!(included.contains(&name.as_str()) && included.contains(&"inventory.json"), "{manifest}");
    }

    // The CLI saves one under the name the server gives, and it hashes as recorded.
    let bundle = &admin.bundles(&BundleQuery::default()).await.expect("bundles").items[0];
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("saved.tar.gz");
    let out = cli(&server.url, BOOTSTRAP, &["bundle", "download", &bundle.id, "-f", &file.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(Some(sha256(&file)), bundle.sha256);

    // The events say who asked, and which device sent how much.
    let events =
        admin.events(&EventQuery { kind: Some("remote.".into()), ..Default::default() }).await.expect("events");
    let requested = events.items.iter().find(|e| e.kind == "remote.bundle_requested").expect("requested event");
    assert_eq!(requested.data["actor"], "token:bootstrap", "{:?}", requested.data);
    assert_eq!(requested.data["devices"], 3);
    assert_eq!(requested.data["since_secs"], 7200);
    let stored: Vec<_> = events.items.iter().filter(|e| e.kind == "remote.bundle_stored").collect();
    assert_eq!(stored.len(), 3);
    for event in stored {
        let device = event.device_id.as_deref().expect("a device");
        let bundle =
            admin.bundles(&BundleQuery { device_id: Some(device.into()), ..Default::default() }).await.expect("list");
        assert_eq!(event.data["size_bytes"].as_u64(), bundle.items[0].size_bytes, "{:?}", event.data);
        assert_eq!(event.data["sha256"].as_str(), bundle.items[0].sha256.as_deref());
    }
}

#[tokio::test]
async fn a_device_offline_at_the_request_delivers_when_it_returns() {
    let server = server(&[]);
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let logs = Logs::new("away-1");
    let (mut agent, device) = enrolled(&admin, &server.url, "away-1", &logs.remote("away-1", "")).await;
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    eventually("the device is offline", || async {
        let d = admin.device(&device.id).await.ok()?;
        (!d.connectivity.online).then_some(())
    })
    .await;

    let req = BundleCreate { device_id: Some(device.id.clone()), since: Some("1h".into()), ..Default::default() };
    let requested = admin.request_bundles(&req).await.expect("requested");
    let waiting = admin.bundle_progress(&requested.request_id).await.expect("progress");
    assert_eq!(waiting.devices[0].state, BundleState::Requested);
    assert_eq!(waiting.devices[0].command_state.as_str(), "QUEUED", "waits for the device");

    agent.restart();
    let done = finished(&admin, &requested.request_id).await;
    assert_eq!(done.devices[0].state, BundleState::Stored, "{done:?}");
    let files = entries(&download(&admin, &done.devices[0].bundle_id).await);
    assert!(text(&files, "inventory.json").contains("away-1"));
}

#[tokio::test]
async fn the_journal_of_the_window_goes_in_and_what_is_older_stays_out() {
    if !require(&[Tool::Journal]) {
        return;
    }
    let server = server(&[]);
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let logs = Logs::new("journal-1");
    journal(
        logs.journal.path(),
        &[(7200, "till.service", 6, "two hours ago"), (60, "till.service", 3, "a minute ago: drawer jammed")],
    );
    let (_agent, device) = enrolled(&admin, &server.url, "journal-1", &logs.remote("journal-1", "")).await;
    let req = BundleCreate { device_id: Some(device.id.clone()), since: Some("1h".into()), ..Default::default() };
    let requested = admin.request_bundles(&req).await.expect("requested");
    let done = finished(&admin, &requested.request_id).await;
    assert_eq!(done.devices[0].state, BundleState::Stored, "{done:?}");
    let files = entries(&download(&admin, &done.devices[0].bundle_id).await);
    let journal = text(&files, "journal.txt");
    assert!(journal.contains("till: a minute ago: drawer jammed"), "{journal}");
    assert!(!journal.contains("two hours ago"), "older than the window: {journal}");
}

#[tokio::test]
async fn the_agents_limit_cuts_logs_saying_so_and_the_servers_limit_fails_the_bundle() {
    let server = server(&[]);
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let logs = Logs::new("small-1");
    // Hex of random bytes: compresses to about half, so 1 MiB cannot fit in 48 KiB.
    let noise: String = (0..512 * 1024).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    std::fs::write(logs.dir.path().join("app/noise.log"), &noise).expect("noise");
    let (_agent, device) =
        enrolled(&admin, &server.url, "small-1", &logs.remote("small-1", "bundle_max_bytes = 49152")).await;
    let req = BundleCreate { device_id: Some(device.id.clone()), ..Default::default() };
    let requested = admin.request_bundles(&req).await.expect("requested");
    let done = finished(&admin, &requested.request_id).await;
    assert_eq!(done.devices[0].state, BundleState::Stored, "{done:?}");
    let archive = download(&admin, &done.devices[0].bundle_id).await;
    assert!(archive.len() <= 49152, "the bundle keeps under bundle_max_bytes: {} bytes", archive.len());
    let files = entries(&archive);
    let manifest: serde_json::Value = serde_json::from_str(&text(&files, "manifest.json")).expect("manifest");
    assert_eq!(manifest["cut_for_size"], true, "{manifest}");
    let said = manifest.to_string();
    assert!(
        said.contains("noise.log") && said.contains("bundle_max_bytes"),
        "the manifest says what was cut: {manifest}"
    );

    // A server whose limit is below the bundle refuses it, and the bundle fails saying why.
    let strict = self::server(&[("BATON_SUPPORT_BUNDLE_MAX_BYTES", "4096")]);
    let admin = Client::new(&strict.url, Some(BOOTSTRAP.into()), None).expect("client");
    let logs = Logs::new("big-1");
    std::fs::write(logs.dir.path().join("app/noise.log"), &noise).expect("noise");
    let (_agent, device) = enrolled(&admin, &strict.url, "big-1", &logs.remote("big-1", "")).await;
    let req = BundleCreate { device_id: Some(device.id.clone()), ..Default::default() };
    let requested = admin.request_bundles(&req).await.expect("requested");
    let done = finished(&admin, &requested.request_id).await;
    let failed = &done.devices[0];
    assert_eq!(failed.state, BundleState::Failed, "{done:?}");
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(error.contains("support_bundle_max_bytes") && error.contains("4096"), "{error}");
    let command = eventually("the command failed with the server's answer", || async {
        let c = admin.commands(&Default::default()).await.ok()?.items.into_iter().next()?;
        c.state.is_final().then_some(c)
    })
    .await;
    let said = command.result.and_then(|r| r.error).unwrap_or_default();
    assert!(said.contains("413"), "{said}");
    match admin.download_bundle(&failed.bundle_id).await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status.as_u16(), 409),
        other => panic!("a failed bundle downloaded: {:?}", other.map(|r| r.status())),
    }
}

#[tokio::test]
async fn bundles_off_a_viewer_and_another_tenant_are_refused() {
    let server = server(&[]);
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let (_agent, device) = enrolled(&admin, &server.url, "closed-1", "").await;
    let req = BundleCreate { device_id: Some(device.id.clone()), ..Default::default() };
    let requested = admin.request_bundles(&req).await.expect("requested");
    let done = finished(&admin, &requested.request_id).await;
    assert_eq!(done.devices[0].state, BundleState::Failed);
    let error = done.devices[0].error.clone().unwrap_or_default();
    assert!(error.contains("support bundles are off") && error.contains("[remote] bundles = true"), "{error}");
    let event = eventually("the failure is an event of the device", || async {
        let q = EventQuery {
            device: Some(device.id.clone()),
            kind: Some("remote.bundle_failed".into()),
            ..Default::default()
        };
        admin.events(&q).await.ok()?.items.into_iter().next()
    })
    .await;
    assert!(event.data["error"].as_str().is_some_and(|e| e.contains("[remote] bundles = true")), "{:?}", event.data);

    admin
        .create_user(&UserCreate {
            username: "vera".into(),
            password: "viewer-password-123".into(),
            role: Some("viewer".into()),
        })
        .await
        .expect("viewer");
    let viewer = Client::new(&server.url, None, None).expect("client");
    let session = viewer.login(None, "vera", "viewer-password-123").await.expect("login");
    let viewer = viewer.with_token(session.token);
    let other = other_tenant(&admin, &server.url).await;
    let bundle = &done.devices[0].bundle_id;

    let status = |r: Result<_, ClientError>| r.err().and_then(|e| e.status()).map(|s| s.as_u16());
    assert_eq!(status(viewer.request_bundles(&req).await.map(|_| ())), Some(403));
    assert_eq!(status(viewer.bundles(&BundleQuery::default()).await.map(|_| ())), Some(403));
    assert_eq!(status(viewer.bundle(bundle).await.map(|_| ())), Some(403));
    assert_eq!(status(viewer.download_bundle(bundle).await.map(|_| ())), Some(403));
    assert_eq!(status(other.request_bundles(&req).await.map(|_| ())), Some(422), "another tenant's device is unknown");
    assert_eq!(status(other.bundle(bundle).await.map(|_| ())), Some(404));
    assert_eq!(status(other.bundle_progress(&requested.request_id).await.map(|_| ())), Some(404));
    assert_eq!(status(other.download_bundle(bundle).await.map(|_| ())), Some(404));
    assert!(other.bundles(&BundleQuery::default()).await.expect("their list").items.is_empty());
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("file");
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}
