//! Where artifact bytes live besides the data directory: an S3-compatible bucket — a real local
//! S3 server (moto's, one per test) that the server uploads to, reads byte ranges from and
//! deletes from, and whose presigned URLs devices are redirected to — and external artifacts,
//! whose bytes stay at the customer's own URL.

use std::{
    net::TcpListener as StdListener,
    process::{Child, Command, Stdio},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_core::config::{ArtifactStoreKind, Secret, Settings};
use baton_proto::api::{
    artifacts::{Artifact, ArtifactKind, SigningKey, Storage, statement},
    rollouts::{ExecutionQuery, ExecutionState, InstallSpec, Rollout, RolloutCreate, RolloutState, Targets},
};
use baton_server::App;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{TestApp, expect_problem, raw, spawn_app, spawn_with, test_settings};

const BUCKET: &str = "baton-artifacts";

/// `moto_server` on a free loopback port, killed when dropped.
struct S3Server {
    child: Child,
    url: String,
}

impl S3Server {
    /// Starts it and waits until it answers; `None` when the S3 tests are skipped on purpose
    /// (`BATON_SKIP=s3`). A missing moto fails the test, naming it.
    async fn start() -> Option<S3Server> {
        if !baton_testkit::require(&[baton_testkit::Tool::S3]) {
            return None;
        }
        // `raw()` is reqwest without a default TLS provider; the app installs ring, so do we.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = StdListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut server = S3Server { child, url: format!("http://127.0.0.1:{port}") };
        let what = format!("moto_server answers on {}", server.url);
        baton_testkit::eventually(&what, || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            let url = server.url.clone();
            async move { raw().get(&url).send().await.is_ok_and(|r| r.status().is_success()).then_some(()) }
        })
        .await;
        Some(server)
    }

    /// Creates a bucket with a plain (unsigned) PUT, which moto accepts.
    async fn create_bucket(&self, bucket: &str) {
        let created = raw().put(format!("{}/{bucket}", self.url)).send().await.expect("create bucket");
        assert!(created.status().is_success(), "creating the bucket: {}", created.status());
    }

    /// The bucket's listing (ListObjectsV2 XML).
    async fn list(&self, bucket: &str) -> String {
        let listed = raw().get(format!("{}/{bucket}?list-type=2", self.url)).send().await.expect("list bucket");
        assert!(listed.status().is_success(), "listing the bucket: {}", listed.status());
        listed.text().await.expect("listing")
    }

    fn settings(&self, dir: &std::path::Path, bucket: &str) -> Settings {
        Settings {
            artifact_store: ArtifactStoreKind::S3,
            s3_endpoint: Some(self.url.clone()),
            s3_bucket: Some(bucket.into()),
            s3_prefix: Some("fleet/artifacts".into()),
            s3_access_key_id: Some("testing".into()),
            s3_secret_access_key: Some(Secret::new("testing-secret")),
            ..test_settings(dir)
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes that are not all the same, so a misplaced range would show.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn upload(app: &TestApp, query: &str, body: Vec<u8>) -> reqwest::Response {
    raw()
        .post(format!("{}/api/v1/artifacts?{query}", app.url))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn content(app: &TestApp, id: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = raw().get(format!("{}/api/v1/artifacts/{id}/content", app.url)).bearer_auth(&app.admin_token);
    if let Some(r) = range {
        request = request.header("range", r);
    }
    request.send().await.expect("content")
}

async fn delete(app: &TestApp, id: &str) -> reqwest::Response {
    let url = format!("{}/api/v1/artifacts/{id}", app.url);
    raw().delete(url).bearer_auth(&app.admin_token).send().await.expect("delete")
}

#[tokio::test]
async fn artifacts_in_an_s3_bucket_upload_read_back_by_range_and_delete() {
    let Some(s3) = S3Server::start().await else { return };
    s3.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with(s3.settings(dir.path(), BUCKET), dir).await;

    // One artifact small enough for a single PUT, one sent in two parts (10 MiB parts).
    for (version, len) in [("1.0", 3 * 1024 * 1024 + 17), ("2.0", 12 * 1024 * 1024 + 5)] {
        let bytes = payload(len);
        let sha = hex(&Sha256::digest(&bytes));
        let response = upload(&app, &format!("name=gateway-fw&version={version}&sha256={sha}"), bytes.clone()).await;
        assert_eq!(response.status(), 201, "{version}");
        let artifact: Artifact = response.json().await.expect("artifact");
        assert_eq!((artifact.storage, artifact.size), (Storage::Stored, len as u64));

        let whole = content(&app, &artifact.id, None).await;
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.bytes().await.expect("bytes").as_ref(), bytes.as_slice(), "{version} whole");
        let (start, end) = (len - 1_000_123, len - 7);
        let part = content(&app, &artifact.id, Some(&format!("bytes={start}-{end}"))).await;
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], format!("bytes {start}-{end}/{len}").as_str());
        assert_eq!(part.bytes().await.expect("bytes").as_ref(), &bytes[start..=end], "{version} range");

        // The object is in the bucket under the prefix, and nothing is left in staging.
        let listing = s3.list(BUCKET).await;
        let key = format!("/{}</Key>", artifact.id);
        assert!(listing.contains("<Key>fleet/artifacts/") && listing.contains(&key), "{listing}");
        let staged = std::fs::read_dir(app.data_dir.join("artifacts/staging")).expect("staging").count();
        assert_eq!(staged, 0, "the staged upload is gone once it is in the bucket");

        assert_eq!(delete(&app, &artifact.id).await.status(), 204);
        assert!(!s3.list(BUCKET).await.contains(&key), "the object is deleted with the artifact");
        expect_problem(content(&app, &artifact.id, None).await, 404).await;
    }
}

#[tokio::test]
async fn a_server_whose_bucket_is_not_there_refuses_to_start() {
    let Some(s3) = S3Server::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused = App::build_with_listener(s3.settings(dir.path(), "no-such-bucket"), listener).await;
    let err = refused.err().expect("the server does not start").to_string();
    assert!(err.contains("no-such-bucket") && err.contains("not reachable"), "{err}");
    assert!(err.contains("NoSuchBucket"), "refused for the bucket, not for another reason: {err}");
    assert!(!err.contains("testing-secret"), "the secret is not in the message: {err}");
}

#[tokio::test]
async fn an_external_artifact_is_registered_by_url_signed_and_not_served_by_the_server() {
    let app = spawn_app().await;
    let created = raw()
        .post(format!("{}/api/v1/signing-keys", app.url))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "release"}))
        .send()
        .await
        .expect("key");
    let key: SigningKey = created.json().await.expect("key");
    let sha = hex(&Sha256::digest(b"firmware bytes on the CDN"));
    let url = "https://cdn.example.com/fw/gateway-3.1.bin";
    let query = format!("name=gateway-fw&version=3.1&kind=firmware&url={}&sha256={sha}&size=52428800", encode(url));
    let response = upload(&app, &query, Vec::new()).await;
    assert_eq!(response.status(), 201);
    let artifact: Artifact = response.json().await.expect("artifact");

    let got: Artifact = raw()
        .get(format!("{}/api/v1/artifacts/{}", app.url, artifact.id))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!((got.storage, got.url.as_deref(), got.size), (Storage::External, Some(url), 52_428_800));
    assert_eq!(got.sha256, sha);
    // Signed like an upload: over name, version, kind, size and hash.
    let signature = got.signature.expect("signed by the server-held key");
    assert_eq!(signature.key_id, key.id);
    let public: [u8; 32] = B64.decode(&key.public_key).expect("b64").try_into().expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("key");
    let sig: [u8; 64] = B64.decode(&signature.signature).expect("b64").try_into().expect("64 bytes");
    let said = statement("gateway-fw", "3.1", ArtifactKind::Firmware, 52_428_800, &sha);
    verifying.verify_strict(&said, &ed25519_dalek::Signature::from_bytes(&sig)).expect("the signature verifies");

    let body = expect_problem(content(&app, &artifact.id, None).await, 409).await;
    assert!(body["detail"].as_str().unwrap_or_default().contains(url), "{body}");
    // Registering the same name and version again is a conflict, as for uploads.
    expect_problem(upload(&app, &query, Vec::new()).await, 409).await;
    assert_eq!(delete(&app, &artifact.id).await.status(), 204);
}

#[tokio::test]
async fn bad_external_artifacts_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let sha = "ab".repeat(32);
    let url = encode("https://cdn.example.com/x.bin");
    let cases: [(String, Vec<u8>, &str); 6] = [
        (format!("url={url}&size=10"), Vec::new(), "sha256"),
        (format!("url={url}&sha256={sha}"), Vec::new(), "size"),
        (format!("url={}&sha256={sha}&size=10", encode("ftp://cdn.example.com/x.bin")), Vec::new(), "url"),
        (format!("url={}&sha256={sha}&size=10", encode("https://user:pw@cdn.example.com/x")), Vec::new(), "url"),
        (format!("url=%2Fx.bin&sha256={sha}&size=10"), Vec::new(), "url"),
        (format!("url={url}&sha256={sha}&size=10"), payload(4096), "body"),
    ];
    for (facts, body, field) in cases {
        let response = upload(&app, &format!("name=cdn&version=1&{facts}"), body).await;
        let problem = expect_problem(response, 422).await;
        let fields: Vec<&str> =
            problem["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{facts}: {problem}");
    }
    // An upload's declared size is checked against the bytes that arrive.
    let problem = expect_problem(upload(&app, "name=up&version=1&size=10", payload(11)).await, 422).await;
    assert!(problem["detail"].as_str().unwrap_or_default().contains("size"), "{problem}");
    let listed = raw().get(format!("{}/api/v1/artifacts", app.url)).bearer_auth(&app.admin_token).send().await;
    let listed: serde_json::Value = listed.expect("list").json().await.expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0), "nothing was registered: {listed}");
}

/// Percent-encodes a URL for a query string.
fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).expect("encode")[2..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_artifact_published_under_the_watched_prefix_starts_a_rollout_by_its_rule() {
    use baton_proto::api::rollouts::{RolloutQuery, RolloutRuleCreate};
    let Some(s3) = S3Server::start().await else { return };
    s3.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = s3.settings(dir.path(), BUCKET);
    settings.artifact_watch_s3_prefix = Some("drop".into());
    settings.artifact_watch_secs = 1;
    let app = spawn_with(settings, dir).await;
    let fleet = crate::fleet::Fleet::start(&app, 1, "bucket").await;
    let devices: Vec<String> = crate::fleet::Fleet::serials(&app, "bucket").await.into_keys().collect();
    let template = RolloutCreate {
        targets: Targets { device_ids: devices, ..Targets::default() },
        install: InstallSpec { path: Some("/opt/app".into()), ..Default::default() },
        ..RolloutCreate::default()
    };
    let rule = RolloutRuleCreate { name: "from the bucket".into(), artifact_name: "app".into(), kind: None, template };
    app.admin.create_rollout_rule(&rule).await.expect("rule");

    // The pipeline publishes the file, then its manifest.
    for (key, body) in [
        ("drop/default/app-3.0.bin", b"app, 3.0".to_vec()),
        ("drop/default/app-3.0.bin.json", br#"{"name": "app", "version": "3.0"}"#.to_vec()),
    ] {
        let put = raw().put(format!("{}/{BUCKET}/{key}", s3.url)).body(body).send().await.expect("put");
        assert!(put.status().is_success(), "{key}: {}", put.status());
    }
    let made = crate::fleet::eventually("a rollout made by the rule", || async {
        let page = app.admin.rollouts(&RolloutQuery::default()).await.map_err(|e| e.to_string())?;
        page.items.into_iter().next().ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(made.name, "from the bucket: app 3.0");
    crate::fleet::rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(fleet.installed("bucket-000"), vec!["3.0"]);
    let listing = s3.list(BUCKET).await;
    assert!(listing.contains("drop/default/imported/app-3.0.bin.json"), "{listing}");
    assert!(!listing.contains("<Key>drop/default/app-3.0.bin</Key>"), "moved aside: {listing}");
    fleet.stop().await;
}

/// A rollout of `artifact` to `devices`.
pub(crate) async fn roll_out(app: &TestApp, artifact: &str, devices: Vec<String>) -> Rollout {
    let req = RolloutCreate {
        name: "from the bucket".into(),
        artifact_id: artifact.into(),
        targets: Targets { device_ids: devices, ..Targets::default() },
        install: InstallSpec { path: Some("/opt/app".into()), ..Default::default() },
        ..RolloutCreate::default()
    };
    app.admin.create_rollout(&req).await.expect("rollout")
}

/// A device with a credential and no agent, and the URL of its download in a rollout of
/// `artifact` (once it may download): (device id, secret, URL).
pub(crate) async fn device_download(app: &TestApp, artifact: &str, serial: &str) -> (String, String, String) {
    let (device, secret) = crate::mqtt_clients::device(app, serial).await;
    let rollout = roll_out(app, artifact, vec![device.clone()]).await;
    let execution = crate::fleet::eventually("the execution is NOTIFIED", || async {
        let all = app.admin.all_rollout_executions(&rollout.id, &ExecutionQuery::default()).await;
        let all = all.map_err(|e| e.to_string())?;
        all.into_iter().find(|e| e.state == ExecutionState::Notified).ok_or_else(|| "not yet".to_owned())
    })
    .await;
    (device, secret, format!("{}/api/v1/agent/executions/{}/artifact", app.url, execution.id))
}

/// A client that shows redirects instead of following them.
fn not_following() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_download_an_artifact_in_s3_from_the_bucket_by_a_presigned_redirect() {
    let Some(s3) = S3Server::start().await else { return };
    s3.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with(s3.settings(dir.path(), BUCKET), dir).await;
    let bytes = payload(3 * 1024 * 1024 + 17);
    let sha = hex(&Sha256::digest(&bytes));
    let response = upload(&app, &format!("name=app&version=2.0&sha256={sha}"), bytes.clone()).await;
    let artifact: Artifact = response.json().await.expect("artifact");

    // A real agent follows the redirect to the bucket, checks the hash and installs.
    let fleet = crate::fleet::Fleet::start(&app, 1, "presigned").await;
    let devices: Vec<String> = crate::fleet::Fleet::serials(&app, "presigned").await.into_keys().collect();
    let rollout = roll_out(&app, &artifact.id, devices).await;
    crate::fleet::rollout_in(&app, &rollout.id, RolloutState::Completed).await;
    assert_eq!(fleet.installed("presigned-000"), vec!["2.0"]);
    fleet.stop().await;

    // What the server answers a device: a redirect to a presigned URL of the object, which
    // serves the bytes (and a resumed range) without the server.
    let (device, secret, url) = device_download(&app, &artifact.id, "OFFLINE-1").await;
    let answer = not_following().get(&url).bearer_auth(&secret).header("x-baton-device-id", &device).send().await;
    let answer = answer.expect("download");
    assert_eq!(answer.status(), 307);
    let location = answer.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&format!("{}/{BUCKET}/fleet/artifacts/", s3.url)), "{location}");
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"), "{location}");
    let whole = raw().get(&location).send().await.expect("from the bucket");
    assert_eq!(whole.status(), 200);
    assert_eq!(hex(&Sha256::digest(whole.bytes().await.expect("bytes"))), sha);
    let part = raw().get(&location).header("range", "bytes=3000000-").send().await.expect("a range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &bytes[3_000_000..]);
    // Without the device's credentials there is no redirect.
    let stranger = not_following().get(&url).bearer_auth("wrong").header("x-baton-device-id", &device).send().await;
    assert_eq!(stranger.expect("refused").status(), 401);
}

#[tokio::test]
async fn with_presigned_downloads_off_the_server_streams_an_artifact_in_s3_to_devices() {
    let Some(s3) = S3Server::start().await else { return };
    s3.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings { s3_presigned_downloads: false, ..s3.settings(dir.path(), BUCKET) };
    let app = spawn_with(settings, dir).await;
    let bytes = payload(100_003);
    let sha = hex(&Sha256::digest(&bytes));
    let artifact: Artifact =
        upload(&app, &format!("name=app&version=1.0&sha256={sha}"), bytes).await.json().await.expect("artifact");
    let (device, secret, url) = device_download(&app, &artifact.id, "STREAMED-1").await;
    let got = not_following().get(&url).bearer_auth(&secret).header("x-baton-device-id", &device).send().await;
    let got = got.expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(hex(&Sha256::digest(got.bytes().await.expect("bytes"))), sha);
}
