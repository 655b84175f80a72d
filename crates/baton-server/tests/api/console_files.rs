//! File transfer in the console: the device page's way to the files page, shown to whom the
//! role allows; the files page, which transfers nothing by loading and hands its script the
//! device; a viewer refused it and another tenant's device not found. In Chromium with a real
//! agent, the page's upload, download and the device's refusal. (The transfers themselves are
//! the API's, tested end to end with real processes in `crates/baton/tests/remote_files.rs`.)

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_proto::api::access::UserCreate;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    console_browser::{have_browser, run_scenario},
    console_pages::{Console, device},
    fleet::Fleet,
    support::{ADMIN_PASSWORD, expect_problem, spawn_app},
};

#[tokio::test]
async fn the_device_page_offers_the_files_page_to_whom_the_role_allows() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-F1", "kiosk files", &[]).await;
    let page = format!("/devices/{}", kiosk.id);
    let files = format!("/devices/{}/files", kiosk.id);
    let link = format!(r#"href="{files}""#);
    for (role, allowed) in [("admin", true), ("operator", true), ("viewer", false)] {
        let username = format!("{role}-files");
        let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
        app.admin.create_user(&req).await.expect("user");
        let console = Console::sign_in(&app, "", &username).await;
        assert_eq!(console.html(&page).await.contains(&link), allowed, "{role}: Files link");
        if allowed {
            let html = console.html(&files).await;
            assert!(html.contains(&format!(r#"data-device="{}""#, kiosk.id)), "{html}");
            assert!(html.contains("/assets/files.js") && html.contains(r#"name="csrf-token""#), "{html}");
        } else {
            expect_problem(console.get(&files).await, 403).await;
        }
    }
    let admin = Console::sign_in(&app, "", "admin").await;
    let js = admin.get("/assets/files.js").await;
    assert_eq!(js.status().as_u16(), 200);
    expect_problem(admin.get(&format!("/devices/{}/files", uuid::Uuid::new_v4())).await, 404).await;
    app.admin.decommission_device(&kiosk.id, false).await.expect("decommissioned");
    assert!(!admin.html(&page).await.contains(&link), "no files for a decommissioned device");
    assert!(admin.html(&files).await.contains("file transfer needs an active device"));
}

/// In Chromium with a real agent (`[remote] files = true`, `file_paths` a temporary directory),
/// from the device page's Files link: a path outside the allow-list is refused in the device's
/// words, described and as an upload's target, and nothing is written there; a generated file
/// (given to the file input as a buffer) uploaded into the allowed directory arrives there
/// under its name byte for byte while the progress bar goes to its end; a file described and
/// downloaded through the page's link comes back byte for byte, and so does the uploaded one
/// when its path is in the field without the page having seen it typed.
#[tokio::test]
async fn the_files_page_uploads_and_downloads_through_a_real_agent_and_says_its_refusal() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let root = tempfile::tempdir().expect("tempdir");
    let (allowed, outside) = (root.path().join("allowed"), root.path().join("outside"));
    std::fs::create_dir_all(&allowed).expect("dir");
    std::fs::create_dir_all(&outside).expect("dir");
    // Bytes of every value, in no simple order, big enough for the upload to report progress.
    let upload: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let source = outside.join("source.bin");
    std::fs::write(&source, &upload).expect("source");
    let served: Vec<u8> = (0..5_000u32).map(|i| (i.wrapping_mul(40_503) >> 3) as u8).collect();
    std::fs::write(allowed.join("served.bin"), &served).expect("served");
    let files_under = allowed.clone();
    let _fleet = Fleet::start_with(&app, 1, "FILES", move |config| {
        config.remote.files = true;
        config.remote.file_paths = vec![files_under.clone()];
    })
    .await;
    let device = Fleet::serials(&app, "FILES").await.into_keys().next().expect("the agent's device");
    let refused = outside.join("refused.txt");
    let config = json!({
        "device_id": device,
        "outside_path": refused,
        "upload_source": source,
        "upload_name": "upload.bin",
        "upload_dir": allowed,
        "download_path": allowed.join("served.bin"),
    });
    let mut seen = run_scenario(&app, "files", config).await;
    // The download's bytes, kept out of the messages below.
    let downloaded = B64.decode(seen["download"]["base64"].take().as_str().unwrap_or_default()).expect("base64");

    let outside_words =
        format!("the device refused: `{}` is outside the allowed paths: {}", refused.display(), allowed.display());
    for key in ["outside_facts", "outside_upload"] {
        assert_eq!(seen[key]["error"], true, "{key}: {seen}");
        assert_eq!(seen[key]["text"], outside_words.as_str(), "{key}: the device's words: {seen}");
    }
    assert_eq!(seen["outside_facts_role"], "alert", "{seen}");
    // Its link downloads nothing (the browser's download fails) and the page stays.
    assert!(seen["outside_download"]["failure"].as_str().is_some_and(|f| !f.is_empty()), "{seen}");
    assert!(seen["outside_download"]["url"].as_str().is_some_and(|u| u.ends_with("/files")), "{seen}");
    let left: Vec<_> = std::fs::read_dir(&outside).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["source.bin"], "nothing was written outside the allow-list");

    let target = allowed.join("upload.bin");
    let want = format!("Written: {} ({} bytes, SHA-256 {}).", target.display(), upload.len(), sha256(&upload));
    assert_eq!(seen["upload"], json!({"text": want, "error": false}), "{seen}");
    assert!(std::fs::read(&target).expect("the uploaded file") == upload, "the file on disk is the one uploaded");
    let progress: Vec<f64> = seen["progress"].as_array().expect("progress").iter().filter_map(Value::as_f64).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "the progress only grows: {progress:?}");
    assert_eq!(progress.last(), Some(&1.0), "it ends at 100 %: {progress:?}");
    assert_eq!((seen["progress_value"].as_f64(), seen["progress_shown"].as_bool()), (Some(1.0), Some(true)), "{seen}");

    let facts = seen["download_facts"]["text"].as_str().unwrap_or_default();
    assert!(facts.starts_with(&format!("A file of {} bytes", served.len())), "{seen}");
    assert!(facts.ends_with(&format!("SHA-256 {}", sha256(&served))), "{seen}");
    assert_eq!(
        (seen["download_disabled"].as_str(), seen["download_disabled_after"].as_str()),
        (Some("true"), Some("false"))
    );
    assert_eq!(seen["download"]["name"], "served.bin", "{seen}");
    assert!(downloaded == served, "the download is the file's bytes: {} of {} bytes", downloaded.len(), served.len());
    let again = &seen["restored_download"];
    assert_eq!(
        (again["name"].as_str(), again["bytes"].as_u64()),
        (Some("upload.bin"), Some(upload.len() as u64)),
        "{seen}"
    );
    assert_eq!(again["sha256"], sha256(&upload), "the uploaded file comes back down: {seen}");
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
