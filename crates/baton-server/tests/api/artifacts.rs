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
