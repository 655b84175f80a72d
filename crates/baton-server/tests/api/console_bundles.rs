//! Support bundles in the console: the device page's list and "Collect support bundle" button,
//! shown by role; the button asks and goes to the request's page, which follows the device
//! live until its bundle is stored (uploaded here with the device's credentials, as its agent
//! does) and then offers the download, which takes the console's cookie. In Chromium with a
//! real agent: the button, the request's page followed live and the downloads; and the page of
//! a request for a group, one of whose devices answers while it is watched.

use std::{io::Read, path::Path};

use baton_proto::api::{
    access::UserCreate,
    bundles::{BundleCreate, BundleState},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    console_browser::{have_browser, run_scenario, until_exists},
    console_pages::{Console, device, group, header},
    fleet::Fleet,
    support::{ADMIN_PASSWORD, TestApp, raw, spawn_app},
};

async fn signed_in_as(app: &TestApp, role: &str) -> Console {
    let username = format!("{role}-person");
    let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
    app.admin.create_user(&req).await.expect("user");
    Console::sign_in(app, "", &username).await
}

#[tokio::test]
async fn a_bundle_is_collected_from_the_device_page_followed_and_downloaded() {
    let app = spawn_app().await;
    let till = device(&app, "TILL-1", "till one", &[]).await;
    let page = format!("/devices/{}", till.id);
    let viewer = signed_in_as(&app, "viewer").await;
    assert!(!viewer.html(&page).await.contains(r#"id="support-bundles""#), "a viewer sees no bundles");
    let operator = signed_in_as(&app, "operator").await;
    let html = operator.html(&page).await;
    assert!(html.contains(r#"id="support-bundles""#) && html.contains("Collect support bundle"), "{html}");
    assert!(html.contains("No support bundles yet"));

    let asked = operator.post(&format!("/devices/{}/bundles", till.id), &[("since", "6h")]).await;
    assert_eq!(asked.status(), StatusCode::NO_CONTENT);
    let location = header(&asked, "hx-location");
    assert!(location.starts_with("/bundles/"), "{location}");
    let html = operator.html(&location).await;
    assert!(html.contains("till one") && html.contains("waiting for the device to come online"), "{html}");
    assert!(html.contains("about 6 h") && html.contains(r#"hx-trigger="baton:changed from:body""#), "live: {html}");
    assert!(html.contains(r#"data-state="requested""#), "{html}");

    // The device uploads it, as its agent does.
    let bundle = app.admin.bundles(&Default::default()).await.expect("bundles").items.remove(0);
    let secret = app.admin.issue_device_credential(&till.id).await.expect("credential").secret;
    let uploaded = raw()
        .put(format!("{}/api/v1/agent/support-bundles/{}", app.url, bundle.id))
        .header("x-baton-device-id", till.id.as_str())
        .bearer_auth(secret)
        .body(b"an archive".to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(uploaded.status(), StatusCode::OK);
    let html = operator.html(&location).await;
    let download = format!("/api/v1/support-bundles/{}/download", bundle.id);
    assert!(html.contains(r#"data-state="stored""#) && html.contains(&download), "{html}");
    assert!(!html.contains("hx-trigger"), "a finished request stops following: {html}");
    assert!(operator.html(&page).await.contains(&download), "the device page lists it");
    let archive = operator.get(&download).await;
    assert_eq!(archive.status(), StatusCode::OK);
    assert_eq!(header(&archive, "content-type"), "application/gzip");
    assert!(header(&archive, "content-disposition").contains("bundle-till_one-"));
    assert_eq!(archive.bytes().await.expect("bytes").as_ref(), b"an archive");

    // A viewer can neither ask nor follow; a window that is not one is refused.
    viewer.refused(&format!("/devices/{}/bundles", till.id), &[("since", "1h")], 403).await;
    assert_eq!(viewer.get(&location).await.status(), StatusCode::FORBIDDEN);
    let detail = operator.refused(&format!("/devices/{}/bundles", till.id), &[("since", "soon")], 422).await;
    assert!(detail.contains("since"), "{detail}");
}

/// Agents (`prefix`) that make support bundles of the log file `app.log` of a directory inside
/// `dir`, their state there too and an empty journal (not the host's): the device ids.
async fn bundling_fleet(app: &TestApp, dir: &Path, prefix: &str) -> (Fleet, Vec<String>) {
    let (state, logs, journal) = (dir.join("state"), dir.join("logs"), dir.join("journal"));
    for d in [&state, &logs, &journal] {
        std::fs::create_dir_all(d).expect("dir");
    }
    std::fs::write(logs.join("app.log"), format!("the {prefix} log\n")).expect("log");
    let fleet = Fleet::start_with(app, 1, prefix, move |config| {
        config.state_dir = state.clone();
        config.remote.bundles = true;
        config.remote.log_paths = vec![logs.clone()];
        config.remote.journal_directory = Some(journal.clone());
    })
    .await;
    let devices = Fleet::serials(app, prefix).await.into_keys().collect();
    (fleet, devices)
}

/// What the browser downloaded (`downloadVia` of remote.mjs) is the archive the API serves for
/// bundle `id`, as stored: a gzip. Returns the bytes.
async fn downloaded_as_stored(app: &TestApp, id: &str, seen: &Value) -> Vec<u8> {
    let bundle = app.admin.bundle(id).await.expect("bundle");
    assert_eq!(bundle.state, BundleState::Stored, "{bundle:?}");
    let bytes = app.admin.download_bundle(id).await.expect("download").bytes().await.expect("bytes").to_vec();
    assert_eq!(Some(bytes.len() as u64), bundle.size_bytes);
    assert_eq!(seen["bytes"], bytes.len(), "{id}: {seen}");
    assert_eq!(seen["sha256"].as_str(), bundle.sha256.as_deref(), "{id}: {seen}");
    assert!(seen["first_bytes"].as_str().is_some_and(|b| b.starts_with("1f 8b")), "a gzip: {seen}");
    let name = seen["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("bundle-") && name.ends_with(".tar.gz"), "{seen}");
    bytes
}

/// In Chromium with a real agent (`[remote] bundles = true`): "Collect support bundle" on the
/// device page goes to the request's page without a reload, which follows the device until its
/// bundle is stored, then stops following and offers the download: the agent's gzip, its log
/// inside. Back on the device page, the bundle is listed as stored with its own download link.
#[tokio::test]
async fn a_real_agents_bundle_is_collected_from_the_device_page_followed_and_downloaded_in_chromium() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_fleet, devices) = bundling_fleet(&app, dir.path(), "BUNDLE").await;
    let device = &devices[0];
    let config = json!({"device_id": device, "since": "6h", "timeout_ms": 30_000});
    let seen = run_scenario(&app, "bundle", config).await;
    assert_eq!((seen["listed_before"].as_u64(), seen["rows"].as_u64()), (Some(0), Some(1)), "{seen}");
    let id = seen["bundle_id"].as_str().expect("the bundle's id");
    let bundle = app.admin.bundle(id).await.expect("bundle");
    assert_eq!((&bundle.device_id, bundle.since_secs), (device, 6 * 3600), "{bundle:?}");
    assert_eq!(
        (bundle.request_id.as_str(), bundle.requested_by.as_str()),
        (seen["request_id"].as_str().unwrap_or_default(), "user:admin")
    );
    let states = seen["states_seen"].as_array().expect("states seen");
    assert_eq!(states.last(), Some(&json!("stored")), "{seen}");
    assert_eq!(seen["states"], "1 stored", "{seen}");
    assert_eq!(seen["following_after"], 0, "a finished request stops following: {seen}");
    assert_eq!(seen["device_state"], "stored", "{seen}");

    let archive = downloaded_as_stored(&app, id, &seen["download"]).await;
    downloaded_as_stored(&app, id, &seen["device_download"]).await;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]));
    let log = tar.entries().expect("tar").find_map(|entry| {
        let mut entry = entry.expect("entry");
        let is_log = entry.path().expect("path").ends_with("app.log");
        let mut text = String::new();
        (is_log && entry.read_to_string(&mut text).is_ok()).then_some(text)
    });
    assert_eq!(log.as_deref(), Some("the BUNDLE log\n"), "the agent's log is in the archive");
}

/// In Chromium: the page of a request for a group of two devices, a real agent's and one that
/// has never connected. The agent's bundle shows stored and the other waits for its device;
/// when that device's bundle arrives (uploaded with its credentials, as an agent does) the page
/// shows it without a reload and stops following; both download as the gzips stored.
#[tokio::test]
async fn a_group_requests_page_follows_each_device_until_all_are_stored_in_chromium() {
    use std::io::Write;
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_fleet, devices) = bundling_fleet(&app, dir.path(), "BULK").await;
    let agent = devices[0].clone();
    let absent = device(&app, "BULK-ABSENT", "absent till", &[]).await;
    let tills = group(&app, "tills").await;
    app.admin.add_group_members(&tills.id, vec![agent.clone(), absent.id.clone()]).await.expect("members");
    let req = BundleCreate { group_id: Some(tills.id.clone()), since: Some("1h".into()), ..Default::default() };
    let requested = app.admin.request_bundles(&req).await.expect("requested");
    assert_eq!(requested.bundles.len(), 2);
    let late = requested.bundles.iter().find(|b| b.device_id == absent.id).expect("the absent device's bundle");

    let ready = dir.path().join("ready");
    let config =
        json!({"request_id": requested.request_id, "stored_device": agent, "ready_file": ready, "timeout_ms": 30_000});
    let scenario = run_scenario(&app, "bundle_request", config);
    tokio::pin!(scenario);
    tokio::select! {
        seen = &mut scenario => panic!("the scenario ended without writing its ready file: {seen}"),
        () = until_exists(&ready) => {}
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(b"the absent till's bundle").expect("gzip");
    let archive = gzip.finish().expect("gzip");
    let secret = app.admin.issue_device_credential(&absent.id).await.expect("credential").secret;
    let uploaded = raw()
        .put(format!("{}/api/v1/agent/support-bundles/{}", app.url, late.id))
        .header("x-baton-device-id", absent.id.as_str())
        .bearer_auth(secret)
        .body(archive.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(uploaded.status(), StatusCode::OK);
    let seen = scenario.await;

    assert_eq!(seen["rows"], 2, "{seen}");
    assert_eq!(seen["before"], "1 requested 1 stored", "{seen}");
    let details = seen["details_before"].as_array().expect("details");
    assert!(details.contains(&json!("waiting for the device to come online")), "{seen}");
    assert_eq!((seen["following_before"].as_u64(), seen["after"].as_str()), (Some(1), Some("2 stored")), "{seen}");
    let downloads = seen["downloads"].as_object().expect("downloads");
    assert_eq!(downloads.len(), 2, "{seen}");
    for b in &requested.bundles {
        let bytes = downloaded_as_stored(&app, &b.id, &downloads[&b.id]).await;
        if b.id == late.id {
            assert!(bytes == archive, "the absent device's bundle is what it uploaded");
        }
    }
}
