//! What a device checks before it installs, and how it downloads: tampered bytes, a key it does
//! not trust, expired claims and a downgrade are each REJECTED with nothing installed; a download
//! cut in the middle resumes with `Range` and installs the right bytes.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_core::clock::Clock;
use baton_proto::api::rollouts::{
    ExecutionQuery, ExecutionState, FailureClass, FailureGate, InstallSpec, RetryPolicy, RolloutCreate, RolloutState,
    Targets,
};
use sha2::Digest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    fleet::{Fleet, artifact, eventually, rollout_in},
    support::{TestApp, spawn_app},
};

fn to_all(name: &str, artifact_id: &str, device_ids: Vec<String>) -> RolloutCreate {
    RolloutCreate {
        name: name.into(),
        artifact_id: artifact_id.into(),
        targets: Targets { device_ids, ..Targets::default() },
        failure_gate: FailureGate {
            failed_percent: Some(100.0),
            failed_count: None,
            min_executed: 1000,
            ..FailureGate::default()
        },
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        install: InstallSpec { path: Some("/opt/app/app.bin".into()), ..InstallSpec::default() },
        ..RolloutCreate::default()
    }
}

/// The only execution of a rollout, once final.
async fn final_execution(app: &TestApp, rollout: &str) -> baton_proto::api::rollouts::Execution {
    eventually("a final execution", || async {
        let all =
            app.admin.all_rollout_executions(rollout, &ExecutionQuery::default()).await.map_err(|e| e.to_string())?;
        match all.first() {
            Some(e) if e.state.is_final() => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn one_device(app: &TestApp, prefix: &str) -> Vec<String> {
    Fleet::serials(app, prefix).await.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_bytes_are_rejected_and_nothing_is_installed() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 1, "tamper").await;
    let v1 = artifact(&app, "app", "1.0", b"the real bytes").await;
    let mut req = to_all("tamper", &v1.id, one_device(&app, "tamper").await);
    req.start = false;
    let draft = app.admin.create_rollout(&req).await.expect("draft");
    // Someone with access to the store swaps the bytes (same length).
    let mut dirs = vec![app.data_dir.join("artifacts/objects")];
    let mut tampered = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("objects") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                std::fs::write(path, b"the fake bytes").expect("tampered");
                tampered += 1;
            }
        }
    }
    assert_eq!(tampered, 1, "one artifact in the store");
    app.admin.steer_rollout(&draft.id, "start").await.expect("started");
    let e = final_execution(&app, &draft.id).await;
    assert_eq!((e.state, e.failure_class), (ExecutionState::Rejected, Some(FailureClass::Integrity)), "{e:?}");
    assert!(e.detail.as_deref().unwrap_or_default().contains("SHA-256"), "{e:?}");
    assert!(fleet.installed("tamper-000").is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_that_pins_another_key_rejects_the_servers_signature() {
    let app = spawn_app().await;
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]).verifying_key();
    let pinned = B64.encode(other.as_bytes());
    let fleet = Fleet::start_with(&app, 1, "pinned", |c| c.trusted_keys = vec![pinned.clone()]).await;
    let v1 = artifact(&app, "app", "1.0", b"bytes").await;
    let made =
        app.admin.create_rollout(&to_all("pinned", &v1.id, one_device(&app, "pinned").await)).await.expect("rollout");
    let e = final_execution(&app, &made.id).await;
    assert_eq!((e.state, e.failure_class), (ExecutionState::Rejected, Some(FailureClass::Integrity)), "{e:?}");
    assert!(e.detail.as_deref().unwrap_or_default().contains("trusts"), "{e:?}");
    assert!(fleet.installed("pinned-000").is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_trust_the_keys_they_pinned_and_those_a_pinned_key_endorses_not_any_key_listed() {
    use baton_proto::api::artifacts::SigningKeyCreate;
    let mut app = spawn_app().await;
    let held = |name: &str| SigningKeyCreate { name: name.into(), public_key: None };
    let first = app.admin.create_signing_key(&held("first")).await.expect("first key");
    // A key that no trusted key endorsed, put in the database as an attacker with access to it
    // would; revoked for now, so the device does not see it at enrollment.
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let public = rogue.verifying_key().to_bytes();
    let rogue_id: String = sha2::Sha256::digest(public)[..8].iter().map(|b| format!("{b:02x}")).collect();
    let tenant = app.admin.me().await.expect("me").tenant_id;
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    app.stage_sql(&format!(
        "INSERT INTO signing_keys (id, tenant_id, key_id, name, public_key, private_key, created_at, revoked_at) \
         VALUES ('0190d1b8-0000-7000-8000-0000000000bb', '{tenant}', '{rogue_id}', 'rogue', '{}', '{}', {later}, 1)",
        B64.encode(public),
        B64.encode([77u8; 32])
    ))
    .await;
    app.restart(|_| {}).await; // seals the key stored in plain form
    // The tenant's key exists when the device enrolls: the device pins it.
    let fleet = Fleet::start(&app, 1, "pin").await;
    let device = one_device(&app, "pin").await;
    // Now the rogue key is listed, and the newest: it signs the claims and the artifact.
    app.stage_sql(&format!("UPDATE signing_keys SET revoked_at = NULL WHERE key_id = '{rogue_id}'")).await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    assert_eq!(v1.signature.as_ref().map(|s| s.key_id.as_str()), Some(rogue_id.as_str()));
    let made = app.admin.create_rollout(&to_all("rogue", &v1.id, device.clone())).await.expect("rollout");
    let e = final_execution(&app, &made.id).await;
    assert_eq!((e.state, e.failure_class), (ExecutionState::Rejected, Some(FailureClass::Integrity)), "{e:?}");
    assert!(e.detail.as_deref().unwrap_or_default().contains("trusts"), "{e:?}");
    assert!(fleet.installed("pin-000").is_empty());

    // A key made through the API is endorsed by the keys the server holds, the pinned one
    // among them: the device follows the rotation.
    app.admin.revoke_signing_key(&rogue_id).await.expect("rogue revoked");
    let second = app.admin.create_signing_key(&held("second")).await.expect("second key");
    app.admin.revoke_signing_key(&first.id).await.expect("first retired");
    let v2 = artifact(&app, "app", "2.0", b"two").await;
    assert_eq!(v2.signature.as_ref().map(|s| s.key_id.as_str()), Some(second.id.as_str()));
    let made = app.admin.create_rollout(&to_all("rotated", &v2.id, device)).await.expect("rollout");
    let e = final_execution(&app, &made.id).await;
    assert_eq!(e.state, ExecutionState::Succeeded, "{e:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_claims_are_rejected() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 1, "expired").await;
    let v1 = artifact(&app, "app", "1.0", b"bytes").await;
    // The server's clock is two hours behind the device's: what it signs has expired on arrival.
    app.clock.set_ms(app.clock.now_ms() - 2 * 3600 * 1000);
    let made =
        app.admin.create_rollout(&to_all("expired", &v1.id, one_device(&app, "expired").await)).await.expect("rollout");
    let e = final_execution(&app, &made.id).await;
    assert_eq!((e.state, e.failure_class), (ExecutionState::Rejected, Some(FailureClass::Expired)), "{e:?}");
    assert!(fleet.installed("expired-000").is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_downgrade_is_rejected_unless_the_rollout_allows_it() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 1, "down").await;
    let device = one_device(&app, "down").await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let v2 = artifact(&app, "app", "2.0", b"two").await;
    let up = app.admin.create_rollout(&to_all("up", &v2.id, device.clone())).await.expect("rollout");
    rollout_in(&app, &up.id, RolloutState::Completed).await;

    let down = app.admin.create_rollout(&to_all("down", &v1.id, device.clone())).await.expect("rollout");
    let e = final_execution(&app, &down.id).await;
    assert_eq!((e.state, e.failure_class), (ExecutionState::Rejected, Some(FailureClass::Downgrade)), "{e:?}");
    assert_eq!(e.installed_version.as_deref(), Some("2.0"), "the report says what the device has");
    assert_eq!(fleet.installed("down-000"), vec!["2.0"]);

    let mut allowed = to_all("down, allowed", &v1.id, device);
    allowed.allow_downgrade = true;
    let allowed = app.admin.create_rollout(&allowed).await.expect("rollout");
    let e = final_execution(&app, &allowed.id).await;
    assert_eq!((e.state, e.installed_version.as_deref()), (ExecutionState::Succeeded, Some("1.0")), "{e:?}");
    assert_eq!(fleet.installed("down-000"), vec!["2.0", "1.0"]);
    // Installing what the device has already is not done again.
    let again =
        app.admin.create_rollout(&to_all("again", &v1.id, one_device(&app, "down").await)).await.expect("rollout");
    assert_eq!(final_execution(&app, &again.id).await.state, ExecutionState::AlreadyInstalled);
    assert_eq!(fleet.installed("down-000"), vec!["2.0", "1.0"]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_cut_in_the_middle_resumes_with_range_and_installs_the_right_bytes() {
    let app = spawn_app().await;
    let (proxy, requests) = cutting_proxy(app.addr, 256 * 1024).await;
    let via = format!("http://{proxy}");
    let fleet = Fleet::start_with(&app, 1, "resume", |c| c.server = Some(via.clone())).await;
    let body: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let v1 = artifact(&app, "big", "1.0", &body).await;
    let made =
        app.admin.create_rollout(&to_all("resume", &v1.id, one_device(&app, "resume").await)).await.expect("rollout");
    let e = final_execution(&app, &made.id).await;
    assert_eq!(e.state, ExecutionState::Succeeded, "{e:?}");
    assert_eq!(
        fleet.installed("resume-000"),
        vec!["1.0"],
        "installed once, with bytes whose hash the installer checked"
    );
    let heads = requests.lock().expect("lock").clone();
    assert!(heads.len() >= 2, "the download was tried again: {heads:?}");
    let resumed =
        heads[1].lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned));
    let from: u64 = resumed.as_deref().and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0);
    assert!(from > 0 && from < body.len() as u64, "the second request resumed from where the first stopped: {heads:?}");
    fleet.stop().await;
}

/// A TCP proxy to `upstream` that passes everything, except that the first artifact download
/// gets only `cut_after` bytes of its response before the connection is dropped. Returns its
/// address and the request heads of the artifact downloads it saw.
async fn cutting_proxy(upstream: SocketAddr, cut_after: usize) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut text = String::from_utf8_lossy(&head).into_owned();
                let artifact = text.starts_with("GET /api/v1/agent/executions/");
                // One request per connection (but the WebSocket), so every download is seen here.
                if !text.to_ascii_lowercase().contains("upgrade: websocket") {
                    text = text.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                    head = text.clone().into_bytes();
                }
                let cut = artifact && {
                    let mut seen = seen.lock().expect("lock");
                    seen.push(text);
                    seen.len() == 1
                };
                if server.write_all(&head).await.is_err() {
                    return;
                }
                if !cut {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let mut passed = 0;
                while passed < cut_after {
                    match tokio::time::timeout(Duration::from_secs(10), server.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            let n = n.min(cut_after - passed);
                            if client.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            passed += n;
                        }
                        _ => return,
                    }
                }
                // Dropped here, mid-body.
            });
        }
    });
    (addr, heads)
}
