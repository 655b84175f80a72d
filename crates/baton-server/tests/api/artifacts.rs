//! Artifacts through the API: streamed uploads checked against their declared hash, signed by
//! the tenant's server-held key or carrying an offline signature that is verified, read back
//! whole or by HTTP Range (a download resumes where it stopped), scoped to the tenant, refused
//! to a viewer.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_proto::api::{
    Page,
    artifacts::{Artifact, ArtifactKind, SigningKey, statement},
};
use ed25519_dalek::{Signer, SigningKey as Ed25519Key};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{TestApp, expect_problem, raw, spawn_app};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes that are not all the same, so a misplaced range would show.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn upload(app: &TestApp, token: &str, query: &str, body: Vec<u8>) -> reqwest::Response {
    raw()
        .post(format!("{}/api/v1/artifacts?{query}", app.url))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn list(app: &TestApp, token: &str, query: &str) -> Page<Artifact> {
    let response = raw().get(format!("{}/api/v1/artifacts{query}", app.url)).bearer_auth(token).send().await;
    response.expect("list").json().await.expect("json")
}

async fn content(app: &TestApp, id: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = raw().get(format!("{}/api/v1/artifacts/{id}/content", app.url)).bearer_auth(&app.admin_token);
    if let Some(r) = range {
        request = request.header("range", r);
    }
    request.send().await.expect("content")
}

async fn create_key(app: &TestApp, body: serde_json::Value) -> SigningKey {
    let response = raw()
        .post(format!("{}/api/v1/signing-keys", app.url))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .expect("key");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

#[tokio::test]
async fn an_upload_is_stored_signed_by_the_server_key_and_read_back_whole_or_resumed() {
    let app = spawn_app().await;
    let key = create_key(&app, json!({"name": "release"})).await;
    assert!(key.held_by_server);
    let bytes = payload(3 * 1024 * 1024 + 17);
    let sha = hex(&Sha256::digest(&bytes));
    let response = upload(&app, &app.admin_token, &format!("name=kiosk-app&version=1.4.2&kind=package&sha256={sha}&os=linux&arch=x86_64,aarch64&labels=tier%3Dprod&depends=runtime>=2.1,<3"), bytes.clone()).await;
    assert_eq!(response.status(), 201);
    let artifact: Artifact = response.json().await.expect("artifact");
    assert_eq!((artifact.size, artifact.sha256.as_str()), (bytes.len() as u64, sha.as_str()));
    assert_eq!(artifact.kind, ArtifactKind::Package);
    assert_eq!(artifact.compatibility.arch, ["x86_64", "aarch64"]);
    assert_eq!(artifact.compatibility.labels.as_deref(), Some("tier=prod"));
    assert_eq!(
        artifact.depends.as_ref().map(|d| (d.name.as_str(), d.versions.as_str())),
        Some(("runtime", ">=2.1,<3"))
    );

    // The signature is the server key's, over exactly these facts.
    let signature = artifact.signature.clone().expect("signed by the server-held key");
    assert_eq!(signature.key_id, key.id);
    let public: [u8; 32] = B64.decode(&key.public_key).expect("b64").try_into().expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("key");
    let sig: [u8; 64] = B64.decode(&signature.signature).expect("b64").try_into().expect("64 bytes");
    let said = statement("kiosk-app", "1.4.2", ArtifactKind::Package, bytes.len() as u64, &sha);
    verifying.verify_strict(&said, &ed25519_dalek::Signature::from_bytes(&sig)).expect("the signature verifies");

    let whole = content(&app, &artifact.id, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.expect("bytes").as_ref(), bytes.as_slice());

    // A download cut after the first MiB resumes from there; the pieces hash to the artifact.
    let cut = 1024 * 1024;
    let first = content(&app, &artifact.id, Some(&format!("bytes=0-{}", cut - 1))).await;
    assert_eq!(first.status(), 206);
    let first = first.bytes().await.expect("bytes");
    let rest = content(&app, &artifact.id, Some(&format!("bytes={cut}-"))).await;
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.headers()["content-range"], format!("bytes {cut}-{}/{}", bytes.len() - 1, bytes.len()).as_str());
    let rest = rest.bytes().await.expect("bytes");
    let mut hash = Sha256::new();
    hash.update(&first);
    hash.update(&rest);
    assert_eq!(hex(&hash.finalize()), sha);

    let past = content(&app, &artifact.id, Some(&format!("bytes={}-", bytes.len()))).await;
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], format!("bytes */{}", bytes.len()).as_str());

    let list = list(&app, &app.admin_token, "?name=kiosk-app").await;
    assert_eq!(list.items.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [artifact.id.as_str()]);
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let bytes = payload(4096);
    let wrong = "0".repeat(64);
    let body = expect_problem(
        upload(&app, &app.admin_token, &format!("name=a&version=1&sha256={wrong}"), bytes.clone()).await,
        422,
    )
    .await;
    assert!(body["detail"].as_str().unwrap_or_default().contains("hash to"), "{body}");
    expect_problem(upload(&app, &app.admin_token, "name=a&version=1", Vec::new()).await, 422).await;
    expect_problem(upload(&app, &app.admin_token, "name=../etc&version=1", bytes.clone()).await, 422).await;
    expect_problem(upload(&app, &app.admin_token, "name=a&version=1&kind=rootkit", bytes.clone()).await, 400).await;
    expect_problem(upload(&app, &app.admin_token, "name=a&version=1&labels=%3D%3D", bytes.clone()).await, 422).await;
    expect_problem(upload(&app, &app.admin_token, "name=a&version=1&signature=AAAA", bytes.clone()).await, 422).await;
    let list = list(&app, &app.admin_token, "").await;
    assert!(list.items.is_empty(), "{:?}", list.items);
    let staged = std::fs::read_dir(app.data_dir.join("artifacts/staging")).expect("staging").count();
    assert_eq!(staged, 0, "no half upload is left in the staging directory");

    // Unsigned is allowed when the tenant holds no key; the same name and version twice is not.
    assert_eq!(upload(&app, &app.admin_token, "name=a&version=1", bytes.clone()).await.status(), 201);
    // Refused before its bytes are stored, yet the answer reaches a client still sending them.
    expect_problem(upload(&app, &app.admin_token, "name=a&version=1", payload(16 << 20)).await, 409).await;
    expect_problem(upload(&app, &app.admin_token, "name=-a&version=1", payload(16 << 20)).await, 422).await;
}

#[tokio::test]
async fn an_offline_signature_is_checked_against_the_registered_keys() {
    let app = spawn_app().await;
    let offline = Ed25519Key::from_bytes(&[7u8; 32]);
    let key =
        create_key(&app, json!({"name": "offline", "public_key": B64.encode(offline.verifying_key().to_bytes())}))
            .await;
    assert!(!key.held_by_server);
    let bytes = payload(10_000);
    let sha = hex(&Sha256::digest(&bytes));
    let sign = |version: &str| {
        let said = statement("fw", version, ArtifactKind::Firmware, bytes.len() as u64, &sha);
        B64.encode(offline.sign(&said).to_bytes())
    };
    let query = |version: &str, sig: &str, key_id: &str| {
        format!(
            "name=fw&version={version}&kind=firmware&signature={}&key_id={key_id}",
            sig.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
        )
    };
    let good = upload(&app, &app.admin_token, &query("2.0", &sign("2.0"), &key.id), bytes.clone()).await;
    assert_eq!(good.status(), 201);
    let stored: Artifact = good.json().await.expect("json");
    assert_eq!(stored.signature.map(|s| s.key_id), Some(key.id.clone()));

    // A signature over another version (the bytes relabelled) is refused.
    let relabelled = upload(&app, &app.admin_token, &query("2.1", &sign("2.0"), &key.id), bytes.clone()).await;
    let body = expect_problem(relabelled, 422).await;
    assert!(body["detail"].as_str().unwrap_or_default().contains("does not match"), "{body}");
    // An unknown key, then a revoked one.
    expect_problem(
        upload(&app, &app.admin_token, &query("2.2", &sign("2.2"), "0123456789abcdef"), bytes.clone()).await,
        422,
    )
    .await;
    let revoked = raw()
        .post(format!("{}/api/v1/signing-keys/{}/revoke", app.url, key.id))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let body =
        expect_problem(upload(&app, &app.admin_token, &query("2.3", &sign("2.3"), &key.id), bytes).await, 422).await;
    assert!(body["detail"].as_str().unwrap_or_default().contains("revoked"), "{body}");
}

#[tokio::test]
async fn artifacts_belong_to_their_tenant_and_a_viewer_cannot_upload() {
    let app = spawn_app().await;
    let bytes = payload(1000);
    let artifact: Artifact =
        upload(&app, &app.admin_token, "name=ours&version=1", bytes.clone()).await.json().await.expect("json");
    let other = app.tenant_admin("acme").await;
    let token = other.token().expect("session token").to_owned();
    for path in [format!("/api/v1/artifacts/{}", artifact.id), format!("/api/v1/artifacts/{}/content", artifact.id)] {
        let response = raw().get(format!("{}{path}", app.url)).bearer_auth(&token).send().await.expect("get");
        expect_problem(response, 404).await;
    }
    let theirs = list(&app, &token, "").await;
    assert!(theirs.items.is_empty());
    let viewer = app.client_with_role("viewer").await;
    let viewer_token = viewer.token().expect("token").to_owned();
    expect_problem(upload(&app, &viewer_token, "name=v&version=1", bytes).await, 403).await;
    let keys = raw()
        .post(format!("{}/api/v1/signing-keys", app.url))
        .bearer_auth(&viewer_token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("key");
    expect_problem(keys, 403).await;
    let deleted = raw()
        .delete(format!("{}/api/v1/artifacts/{}", app.url, artifact.id))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    expect_problem(content(&app, &artifact.id, None).await, 404).await;
}

/// The signing keys as the database holds them: (tenant, key id, public key, private key).
async fn stored_keys(app: &TestApp) -> Vec<(String, String, String, Option<String>)> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.expect("connect to the app's database");
    let rows = sqlx::query("SELECT tenant_id, key_id, public_key, private_key FROM signing_keys")
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

/// Tries every base64 run in `stored` as an ed25519 seed; true if one signs `message` so that
/// `public` (base64) verifies it.
fn signs_with(stored: &str, public: &str, message: &[u8]) -> bool {
    let public: [u8; 32] = B64.decode(public).expect("public key").try_into().expect("32 bytes");
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("a key");
    let runs = stored.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)));
    runs.filter_map(|run| B64.decode(run).ok()).any(|bytes| {
        (0..bytes.len().saturating_sub(31)).any(|at| {
            let seed: [u8; 32] = bytes[at..at + 32].try_into().expect("32 bytes");
            public.verify_strict(message, &Ed25519Key::from_bytes(&seed).sign(message)).is_ok()
        })
    })
}

#[tokio::test]
async fn a_copy_of_the_database_alone_cannot_sign_and_plain_keys_are_sealed_at_start() {
    let mut app = spawn_app().await;
    let held = baton_proto::api::artifacts::SigningKeyCreate { name: "server".into(), public_key: None };
    app.admin.create_signing_key(&held).await.expect("a key the server holds");
    let signed = crate::fleet::artifact(&app, "fw", "1.0", b"firmware one").await;
    assert!(signed.signature.is_some(), "the server signed the upload");
    let message = b"an update an attacker would like devices to take";
    let keys = stored_keys(&app).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    for (_, key_id, public, private) in &keys {
        let private = private.as_deref().expect("held by the server");
        assert!(!signs_with(private, public, message), "the database alone signs with key {key_id}");
    }
    // The key that seals them lives beside, not in, the database: readable by its owner only.
    let key_file = app.data_dir.join("key-encryption.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("the key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A key stored in plain form (before sealing) is sealed at the next start, and still signs.
    let seed = [42u8; 32];
    let old = Ed25519Key::from_bytes(&seed);
    let public = old.verifying_key().to_bytes();
    let key_id = hex(&Sha256::digest(public)[..8]);
    let tenant = &keys[0].0;
    app.stage_sql(&format!(
        "INSERT INTO signing_keys (id, tenant_id, key_id, name, public_key, private_key, created_at) \
         VALUES ('0190d1b8-0000-7000-8000-0000000000aa', '{tenant}', '{key_id}', 'old', '{}', '{}', 99999999999999)",
        B64.encode(public),
        B64.encode(seed)
    ))
    .await;
    app.restart(|_| {}).await;
    let stored = stored_keys(&app).await;
    let (_, _, _, private) = stored.iter().find(|k| k.1 == key_id).expect("the old key");
    let private = private.as_deref().expect("still held");
    assert!(!private.contains(&B64.encode(seed)) && private.starts_with("sealed:"), "{private}");
    assert!(!signs_with(private, &B64.encode(public), message));
    let two = crate::fleet::artifact(&app, "fw", "2.0", b"firmware two").await;
    let signature = two.signature.expect("signed");
    assert_eq!(signature.key_id, key_id, "the newest held key signs");
    let said = statement("fw", "2.0", two.kind, two.size, &two.sha256);
    let bytes: [u8; 64] = B64.decode(&signature.signature).expect("b64").try_into().expect("64 bytes");
    old.verifying_key().verify_strict(&said, &ed25519_dalek::Signature::from_bytes(&bytes)).expect("verifies");

    // Started with another key-encryption key, the server refuses to start, saying why.
    std::fs::write(&key_file, format!("{}\n", B64.encode([9u8; 32]))).expect("replace the key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused = baton_server::App::build_with_listener(app.settings.clone(), listener).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("key-encryption key"), "{message}");
}

/// One HTTP/1.1 exchange on a kept-alive connection: the status, the headers (names lowered) and
/// the body, read as its `content-length` says.
async fn exchange(
    tcp: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    request: &str,
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    tcp.get_mut().write_all(request.as_bytes()).await.expect("send");
    let mut line = String::new();
    tcp.read_line(&mut line).await.expect("status line");
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status: {line:?}"));
    let mut headers = std::collections::HashMap::new();
    loop {
        line.clear();
        tcp.read_line(&mut line).await.expect("header");
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).expect("content-length");
    let mut body = vec![0; len];
    tcp.read_exact(&mut body).await.expect("body");
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_download_over_one_kept_alive_connection_whole_by_range_and_refused_then_other_requests_follow() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app().await;
    let bytes = payload(5 * 1024 * 1024 + 3);
    let sha = hex(&Sha256::digest(&bytes));
    let response =
        upload(&app, &app.admin_token, &format!("name=fw&version=1&kind=file&sha256={sha}"), bytes.clone()).await;
    assert_eq!(response.status(), 201);
    let artifact: Artifact = response.json().await.expect("artifact");
    let (device, secret, url) = crate::artifact_stores::device_download(&app, &artifact.id, "sendfile-1").await;
    let path = url.strip_prefix(&app.url).expect("a path on the server");
    let get = |auth: &str, extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {auth}\r\nx-baton-device-id: {device}\r\n{extra}\r\n",
            app.addr
        )
    };
    let mut tcp = tokio::io::BufReader::new(tokio::net::TcpStream::connect(app.addr).await.expect("connect"));

    let (status, headers, body) = exchange(&mut tcp, &get(&secret, "")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], format!("\"{sha}\""));
    assert_eq!(hex(&Sha256::digest(&body)), sha, "the whole artifact, byte for byte");

    // A resumed download, on the same connection.
    let (status, headers, body) = exchange(&mut tcp, &get(&secret, "range: bytes=4000000-\r\n")).await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 4000000-{}/{}", bytes.len() - 1, bytes.len()));
    assert_eq!(body, bytes[4_000_000..]);

    // A wrong secret: a problem document, and the connection still serves.
    let (status, headers, body) = exchange(&mut tcp, &get("wrong", "")).await;
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem+json");
    assert_eq!(problem["status"], 401);

    // Then any other request on the connection is the API's as usual.
    let other = format!(
        "GET /api/v1/artifacts/{} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        artifact.id, app.admin_token
    );
    let (status, _, body) = exchange(&mut tcp, &other).await;
    assert_eq!(status, 200);
    let read: Artifact = serde_json::from_slice(&body).expect("the artifact");
    assert_eq!(read.sha256, sha);

    // The artifact's bytes were sent by the kernel, not through the server's buffers.
    let metrics = raw().get(format!("{}/metrics", app.url)).send().await.expect("metrics").text().await.expect("text");
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("baton_artifact_sendfile_bytes_total ")?.parse().ok())
        .unwrap_or_else(|| panic!("no sendfile counter in\n{metrics}"));
    assert!(sent >= (2 * bytes.len() - 4_000_000) as u64, "{sent} bytes by sendfile");

    // A client asking to close is answered and closed.
    let mut tcp = tokio::io::BufReader::new(tokio::net::TcpStream::connect(app.addr).await.expect("connect"));
    let (status, headers, body) = exchange(&mut tcp, &get(&secret, "range: bytes=0-9\r\nconnection: close\r\n")).await;
    assert_eq!((status, headers["connection"].as_str(), body.as_slice()), (206, "close", &bytes[..10]));
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.expect("closed");
    assert!(rest.is_empty());
}
