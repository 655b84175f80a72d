//! Device identity with certificates: a device's key stays on the device, the tenant's
//! authority signs its request, and the certificate alone then proves who it is — over MQTT
//! with TLS (Debian's `mosquitto_pub --cert/--key`, no password) and on the agent's WebSocket
//! (mutual TLS, no secret). A revoked, expired, foreign or self-made certificate is refused;
//! decommissioning revokes them all.

use std::{path::Path, sync::Arc};

use baton_proto::api::{
    certificates::{CertificateAuthority, IssuedCertificate},
    devices::DeviceCreate,
    enrollment::{EnrollResponse, EnrollmentTokenCreate},
};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::{
    mqtt_clients::{Tool, require},
    support::{TestApp, spawn_with, test_settings},
};

/// A server on TLS (HTTPS and MQTT over TLS), with its certificate's PEM.
async fn spawn_tls() -> (TestApp, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let settings = baton_server::Settings { tls_cert: Some(cert), tls_key: Some(key), ..test_settings(dir.path()) };
    (spawn_with(settings, dir).await, certified.cert.pem())
}

/// A key made "on the device" and a signing request for it.
fn key_and_request() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "whatever the device says");
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    (key, csr)
}

/// HTTPS trusting the server's certificate, presenting `client` (chain PEM, key) if given.
fn https(server_pem: &str, client: Option<(&str, &rcgen::KeyPair)>) -> reqwest::Client {
    reqwest::Client::builder().use_preconfigured_tls(tls_config(server_pem, client)).build().expect("client")
}

fn tls_config(server_pem: &str, client: Option<(&str, &rcgen::KeyPair)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut server_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = rustls_pemfile::certs(&mut chain.as_bytes()).collect::<Result<Vec<_>, _>>().expect("chain");
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            builder.with_client_auth_cert(chain, key).expect("client certificate")
        }
    }
}

/// Signs `csr` for a device through the operator's API.
async fn issue(app: &TestApp, server_pem: &str, token: &str, device: &str, csr: &str) -> reqwest::Response {
    https(server_pem, None)
        .post(format!("{}/api/v1/devices/{device}/certificates", app.url))
        .bearer_auth(token)
        .json(&serde_json::json!({ "csr": csr }))
        .send()
        .await
        .expect("request")
}

/// Publishes one QoS 1 message with `mosquitto_pub` over TLS, presenting the certificate in
/// `files` (chain, key); returns the CONNACK's and PUBACK's codes as it printed them.
async fn publish(app: &TestApp, dir: &Path, files: (&Path, &Path), user: Option<&str>, value: f64) -> String {
    let port = app.mqtt_tls_addr.expect("MQTT over TLS listens").port().to_string();
    let mut command = tokio::process::Command::new("mosquitto_pub");
    command
        .args(["-d", "-V", "mqttv5", "-h", "localhost", "-p", &port, "-q", "1", "-t", "baton/v1/me/telemetry"])
        .arg("--cafile")
        .arg(dir.join("server.pem"))
        .arg("--cert")
        .arg(files.0)
        .arg("--key")
        .arg(files.1)
        .args(["-m", &format!("{{\"temp\": {value}}}")])
        .kill_on_drop(true);
    if let Some(user) = user {
        command.args(["-u", user]);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("mosquitto_pub finishes")
        .expect("mosquitto_pub runs");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn write_pair(dir: &Path, name: &str, chain: &str, key: &rcgen::KeyPair) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, pem) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&crt, chain).expect("write");
    std::fs::write(&pem, key.serialize_pem()).expect("write");
    (crt, pem)
}

#[tokio::test]
async fn an_mqtt_device_publishes_with_its_certificate_alone_until_it_is_revoked_or_expires() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let (app, server_pem) = spawn_tls().await;
    let files = tempfile::tempdir().expect("tempdir");
    std::fs::write(files.path().join("server.pem"), &server_pem).expect("write");
    let device = app
        .admin
        .create_device(&DeviceCreate { serial: "meter-1".into(), ..Default::default() })
        .await
        .expect("device");

    // The request proves nothing about the subject: the server names the device itself.
    let (key, csr) = key_and_request();
    let response = issue(&app, &server_pem, &app.admin_token, &device.id, &csr).await;
    assert_eq!(response.status(), 201);
    let issued: IssuedCertificate = response.json().await.expect("json");
    let authority = app.admin.certificate_authority().await.expect("authority");
    assert!(issued.certificate.ends_with(&authority.certificate), "the chain ends with the tenant's authority");
    let (crt, pem) = write_pair(files.path(), "meter", &issued.certificate, &key);

    let out = publish(&app, files.path(), (&crt, &pem), None, 21.5).await;
    assert!(out.contains("received PUBACK (Mid: 1, RC:0)"), "published with the certificate alone: {out}");
    let latest = app.admin.latest_telemetry(&device.id).await.expect("latest").metrics;
    assert_eq!(latest.get("temp"), Some(&21.5), "stored as the device's telemetry");

    // Another device's id as user name with this certificate: refused.
    let other = app
        .admin
        .create_device(&DeviceCreate { serial: "meter-2".into(), ..Default::default() })
        .await
        .expect("device");
    let out = publish(&app, files.path(), (&crt, &pem), Some(&other.id), 1.0).await;
    assert!(!out.contains("received PUBACK"), "a certificate cannot speak for another device: {out}");

    // A certificate from another tenant's authority names that tenant's device, never this one.
    let tenant_b = app.tenant_admin("other").await;
    let foreign =
        tenant_b.create_device(&DeviceCreate { serial: "meter-1".into(), ..Default::default() }).await.expect("device");
    let session = app.anon.login(Some("other"), "boss", crate::support::ADMIN_PASSWORD).await.expect("login").token;
    let (foreign_key, foreign_csr) = key_and_request();
    let foreign_issued: IssuedCertificate =
        issue(&app, &server_pem, &session, &foreign.id, &foreign_csr).await.json().await.expect("json");
    let (fcrt, fpem) = write_pair(files.path(), "foreign", &foreign_issued.certificate, &foreign_key);
    let out = publish(&app, files.path(), (&fcrt, &fpem), Some(&device.id), 99.0).await;
    assert!(!out.contains("received PUBACK"), "another tenant's certificate is refused for this device: {out}");
    let out = publish(&app, files.path(), (&fcrt, &fpem), None, 7.0).await;
    assert!(out.contains("received PUBACK (Mid: 1, RC:0)"), "and publishes as its own device: {out}");
    assert_eq!(app.admin.latest_telemetry(&device.id).await.expect("latest").metrics.get("temp"), Some(&21.5));

    // A certificate this server never issued, naming the device: refused.
    let (self_key, _) = key_and_request();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, device.id.clone());
    let forged = params.self_signed(&self_key).expect("self-signed");
    let (scrt, spem) = write_pair(files.path(), "forged", &forged.pem(), &self_key);
    let out = publish(&app, files.path(), (&scrt, &spem), Some(&device.id), 5.0).await;
    assert!(!out.contains("received PUBACK"), "a self-made certificate is refused: {out}");

    // Expired (time having passed is staged in the database): refused.
    app.stage_sql(&format!(
        "UPDATE device_certificates SET not_after = 1 WHERE fingerprint = '{}'",
        foreign_issued.fingerprint
    ))
    .await;
    let out = publish(&app, files.path(), (&fcrt, &fpem), None, 8.0).await;
    assert!(!out.contains("received PUBACK"), "an expired certificate is refused: {out}");

    // Revoked by an operator: the next connection is refused.
    let revoked = app.admin.revoke_device_certificate(&device.id, &issued.fingerprint).await.expect("revoke");
    assert!(
        revoked.revoked_at.is_some() && revoked.revoked_reason.as_deref().unwrap_or_default().starts_with("revoked by")
    );
    let out = publish(&app, files.path(), (&crt, &pem), None, 30.0).await;
    assert!(!out.contains("received PUBACK"), "a revoked certificate is refused: {out}");
    assert_eq!(app.admin.latest_telemetry(&device.id).await.expect("latest").metrics.get("temp"), Some(&21.5));
}

#[tokio::test]
async fn bad_signing_requests_and_authorities_are_refused_with_the_field_named() {
    let (app, server_pem) = spawn_tls().await;
    let device =
        app.admin.create_device(&DeviceCreate { serial: "x-1".into(), ..Default::default() }).await.expect("device");
    let problem: serde_json::Value =
        issue(&app, &server_pem, &app.admin_token, &device.id, "not a request").await.json().await.expect("json");
    assert_eq!(problem["status"], 422, "{problem}");
    assert!(problem.to_string().contains("/csr"), "{problem}");

    // An authority that is not a CA (a key that is not the CA's own is checked below).
    let leaf = rcgen::generate_simple_self_signed(vec!["leaf".into()]).expect("leaf");
    let other_key = rcgen::KeyPair::generate().expect("key");
    for (certificate, key, field) in [(leaf.cert.pem(), leaf.signing_key.serialize_pem(), "/certificate")] {
        let response = https(&server_pem, None)
            .put(format!("{}/api/v1/certificate-authority", app.url))
            .bearer_auth(&app.admin_token)
            .json(&serde_json::json!({"certificate": certificate, "private_key": key}))
            .send()
            .await
            .expect("upload");
        let problem: serde_json::Value = response.json().await.expect("json");
        assert_eq!(problem["status"], 422, "{problem}");
        assert!(problem.to_string().contains(field), "{problem}");
    }
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("ca");
    let response = https(&server_pem, None)
        .put(format!("{}/api/v1/certificate-authority", app.url))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"certificate": ca.pem(), "private_key": other_key.serialize_pem()}))
        .send()
        .await
        .expect("upload");
    let problem: serde_json::Value = response.json().await.expect("json");
    assert!(problem.to_string().contains("/private_key"), "a key that is not the CA's: {problem}");

    // The right pair is taken, and signs from then on.
    let uploaded: CertificateAuthority = https(&server_pem, None)
        .put(format!("{}/api/v1/certificate-authority", app.url))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({"certificate": ca.pem(), "private_key": ca_key.serialize_pem()}))
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let (_, csr) = key_and_request();
    let issued: IssuedCertificate =
        issue(&app, &server_pem, &app.admin_token, &device.id, &csr).await.json().await.expect("json");
    assert!(issued.certificate.ends_with(&uploaded.certificate), "signed by the uploaded authority");
}

#[tokio::test]
async fn an_agent_connects_with_its_certificate_alone_renews_it_and_is_told_after_decommission() {
    let (app, server_pem) = spawn_tls().await;
    let token = app
        .admin
        .create_enrollment_token(&EnrollmentTokenCreate { name: "certs".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let (key, csr) = key_and_request();
    let enrolled: EnrollResponse = https(&server_pem, None)
        .post(format!("{}/api/v1/enroll", app.url))
        .json(&serde_json::json!({"token": token, "serial": "kiosk-7", "csr": csr}))
        .send()
        .await
        .expect("enroll")
        .json()
        .await
        .expect("json");
    let issued = enrolled.certificate.expect("a certificate comes with enrollment");
    let device = enrolled.device_id;

    let connect = |chain: String, key: &rcgen::KeyPair, id: String| {
        let config = Arc::new(tls_config(&server_pem, Some((&chain, key))));
        let url = format!("{}/api/v1/agent/connect", app.url.replacen("https", "wss", 1));
        async move {
            let mut request = url.into_client_request().expect("request");
            request.headers_mut().insert("x-baton-device-id", id.parse().expect("header"));
            let connector = tokio_tungstenite::Connector::Rustls(config);
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
                .await
                .map(|(ws, _)| ws)
        }
    };
    connect(issued.certificate.clone(), &key, device.clone()).await.expect("mutual TLS alone opens the connection");
    let stranger = uuid::Uuid::now_v7().to_string();
    match connect(issued.certificate.clone(), &key, stranger).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a certificate for another device id must be refused, got {:?}", other.map(|_| ())),
    }

    // Renewal with the current certificate: a new key, a new certificate, both listed.
    let (new_key, new_csr) = key_and_request();
    let renewed = https(&server_pem, Some((&issued.certificate, &key)))
        .post(format!("{}/api/v1/agent/certificate", app.url))
        .header("x-baton-device-id", &device)
        .json(&serde_json::json!({"csr": new_csr}))
        .send()
        .await
        .expect("renew");
    assert_eq!(renewed.status(), 201);
    let renewed: IssuedCertificate = renewed.json().await.expect("json");
    assert_ne!(renewed.fingerprint, issued.fingerprint);
    connect(renewed.certificate.clone(), &new_key, device.clone()).await.expect("the renewed certificate works");
    let listed = app.admin.device_certificates(&device, &Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 2);

    // Decommissioned: every certificate is revoked; the agent is told, and renewing is refused.
    app.admin.decommission_device(&device, false).await.expect("decommission");
    let listed = app.admin.device_certificates(&device, &Default::default()).await.expect("list");
    assert!(listed.items.iter().all(|c| c.revoked_reason.as_deref() == Some("decommissioned")), "{listed:?}");
    let mut ws = connect(renewed.certificate.clone(), &new_key, device.clone()).await.expect("told, after the upgrade");
    let told = futures::StreamExt::next(&mut ws).await.expect("a frame").expect("frame");
    assert!(told.to_string().contains("decommission"), "{told}");
    let (_, last_csr) = key_and_request();
    let refused = https(&server_pem, Some((&renewed.certificate, &new_key)))
        .post(format!("{}/api/v1/agent/certificate", app.url))
        .json(&serde_json::json!({"csr": last_csr}))
        .send()
        .await
        .expect("renew");
    assert_eq!(refused.status(), 401);
}

/// The real agent (the `baton-agent` library, state on disk) against a server whose
/// certificates live twelve seconds: it enrolls with a key of its own, renews before expiry,
/// connects again with its certificate alone once its secret is removed, and stops when the
/// device is decommissioned.
#[tokio::test]
async fn the_agent_holds_a_certificate_renews_it_and_needs_no_secret() {
    use baton_agent::{Agent, AgentConfig, Exit, Storage};
    use baton_testkit::eventually;

    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let settings = baton_server::Settings {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        device_certificate_lifetime_secs: 12,
        ..test_settings(dir.path())
    };
    let app = spawn_with(settings, dir).await;
    let token = app
        .admin
        .create_enrollment_token(&EnrollmentTokenCreate { name: "agents".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let state = tempfile::tempdir().expect("state");
    let config = AgentConfig {
        server: Some(app.url.replace("127.0.0.1", "localhost")),
        enrollment_token: Some(token),
        ca_cert: Some(cert),
        serial: Some("kiosk-9".into()),
        max_backoff_secs: 1,
        ..AgentConfig::default()
    };
    let start = |config: AgentConfig| {
        let agent = Agent::builder(config).storage(Storage::disk(state.path()).expect("state")).build().expect("agent");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(agent.run(async {
            let _ = stopped.await;
        }));
        (stop, run)
    };
    let certificates = |device: String| {
        let admin = app.admin.clone();
        async move { admin.device_certificates(&device, &Default::default()).await.map(|p| p.items).unwrap_or_default() }
    };

    let (stop, run) = start(config.clone());
    let device = eventually("the agent enrolls and comes online", || async {
        let devices = app.admin.devices(&Default::default()).await.ok()?;
        devices
            .items
            .into_iter()
            .find(|d| d.serial.as_deref() == Some("kiosk-9") && d.connectivity.online)
            .map(|d| d.id)
    })
    .await;
    let first = certificates(device.clone()).await;
    assert_eq!(first.len(), 1, "a certificate comes with enrollment");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("identity.json")).expect("identity")).expect("json");
    assert!(state.path().join("certificate.json").exists());

    // Renewed before it expires (a third of its twelve seconds left), with a new key.
    eventually("the agent renews its certificate", || async {
        let now = certificates(device.clone()).await;
        (now.len() >= 2).then_some(())
    })
    .await;
    let _ = stop.send(());
    run.await.expect("agent task").expect("agent stops cleanly");
    eventually("the device goes offline", || async {
        (!app.admin.device(&device).await.ok()?.connectivity.online).then_some(())
    })
    .await;

    // The secret removed: the certificate alone brings it back.
    let mut without = identity.clone();
    without["secret"] = serde_json::Value::String(String::new());
    std::fs::write(state.path().join("identity.json"), serde_json::to_vec(&without).expect("json")).expect("write");
    let (stop, run) = start(AgentConfig { enrollment_token: None, ..config });
    eventually("the agent reconnects with mutual TLS only", || async {
        app.admin.device(&device).await.ok()?.connectivity.online.then_some(())
    })
    .await;
    assert_eq!(app.admin.devices(&Default::default()).await.expect("list").items.len(), 1, "no second device");

    // Decommissioned: its certificates are revoked and the agent is told, and stops.
    app.admin.decommission_device(&device, false).await.expect("decommission");
    let exit = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("the agent stops");
    assert!(matches!(
        exit.expect("task"),
        Ok(Exit::Decommissioned { .. }) | Err(baton_agent::AgentError::Decommissioned)
    ));
    drop(stop);
}
