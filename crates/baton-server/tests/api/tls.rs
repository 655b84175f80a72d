//! HTTPS: with a certificate and key configured, the API is served over TLS, a client that
//! trusts the CA works, and plain HTTP on that port gets nowhere.

use crate::support::{spawn_with, test_settings};

#[tokio::test]
async fn the_api_is_served_over_tls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).expect("cert");
    let cert_pem = certified.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let settings = baton_server::Settings { tls_cert: Some(cert), tls_key: Some(key), ..test_settings(dir.path()) };
    let app = spawn_with(settings, dir).await;
    assert!(app.url.starts_with("https://"), "{}", app.url);

    let trusted =
        baton_client::Client::new(&app.url, Some(app.admin_token.clone()), Some(cert_pem.as_bytes())).expect("client");
    let me = trusted.me().await.expect("me over TLS");
    assert_eq!(me.role, "admin");

    let untrusted = baton_client::Client::new(&app.url, Some(app.admin_token.clone()), None).expect("client");
    assert!(
        matches!(untrusted.me().await, Err(baton_client::ClientError::Unreachable { .. })),
        "an unknown CA is refused"
    );

    let plain = format!("http://{}/healthz", app.addr);
    assert!(reqwest::get(&plain).await.is_err(), "plain HTTP is not answered on the TLS port");
    // And the session cookie is marked Secure.
    let http = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem")])
        .build()
        .expect("client");
    let login = http
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&serde_json::json!({"username": "admin", "password": crate::support::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(login.headers()["set-cookie"].to_str().expect("cookie").contains("Secure"));
}

/// MQTT over TLS: with a certificate, devices reach the MQTT listener through TLS on its own port,
/// authenticate and publish telemetry that is stored; a client that does not trust the CA fails
/// the handshake, and plain MQTT bytes on the TLS port get no CONNACK.
#[tokio::test]
async fn mqtt_is_served_over_tls_on_its_own_port() {
    use baton_proto::mqtt::{self, Connect, Packet, Publish, Version};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
    let cert_pem = certified.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut settings = baton_server::Settings { tls_cert: Some(cert), tls_key: Some(key), ..test_settings(dir.path()) };
    settings.bootstrap_token = Some("bootstrap-mqtt-tls-test-token".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let app = baton_server::App::build_with_listener(settings, listener).await.expect("app");
    let tls_addr = app.mqtt_tls_addr().expect("MQTT over TLS listens");
    let url = app.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let admin =
        baton_client::Client::new(&url, Some("bootstrap-mqtt-tls-test-token".into()), Some(cert_pem.as_bytes()))
            .expect("client");
    let device = admin
        .create_device(&baton_proto::api::devices::DeviceCreate { serial: "tls-sensor".into(), ..Default::default() })
        .await
        .expect("device");
    let credential = admin.issue_device_credential(&device.id).await.expect("credential");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = crate::support::tls_connector(&certified.cert);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.expect("connect");
    let mut tls = connector.connect(name.clone(), tcp).await.expect("handshake with a trusted CA");

    let mut out = Vec::new();
    let connect = Connect {
        version: Version::V5,
        client_id: "tls-sensor".into(),
        clean_start: true,
        keep_alive: 30,
        username: Some(device.id.clone()),
        password: Some(credential.secret.clone().into_bytes()),
        will: None,
        properties: Default::default(),
    };
    mqtt::encode(&Packet::Connect(connect), Version::V5, &mut out);
    let publish = Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: "baton/v1/me/telemetry".into(),
        packet_id: Some(1),
        properties: Default::default(),
        payload: br#"{"temp": 19.5}"#.to_vec(),
    };
    mqtt::encode(&Packet::Publish(publish), Version::V5, &mut out);
    tls.write_all(&out).await.expect("send");
    let mut buf = Vec::new();
    let mut packets = Vec::new();
    while packets.len() < 2 {
        let mut chunk = [0u8; 512];
        let n = tls.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the TLS connection early");
        buf.extend_from_slice(&chunk[..n]);
        while let Some((packet, used)) = mqtt::decode(&buf, Some(Version::V5), 1 << 20).expect("valid packet") {
            buf.drain(..used);
            packets.push(packet);
        }
    }
    assert!(matches!(&packets[0], Packet::ConnAck(a) if a.reason == 0), "{:?}", packets[0]);
    assert!(matches!(&packets[1], Packet::PubAck(a) if a.packet_id == 1 && a.reason == 0), "{:?}", packets[1]);
    let latest = admin.latest_telemetry(&device.id).await.expect("latest");
    assert_eq!(latest.metrics.get("temp"), Some(&19.5), "acknowledged telemetry is stored");

    // A client that does not trust the CA cannot complete the handshake.
    let untrusting = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.expect("connect");
    let refused = tokio_rustls::TlsConnector::from(Arc::new(untrusting)).connect(name, tcp).await;
    assert!(refused.is_err(), "an unknown CA is refused");

    // Plain MQTT on the TLS port is not answered with a CONNACK.
    let mut plain = tokio::net::TcpStream::connect(tls_addr).await.expect("connect");
    plain.write_all(&out).await.expect("send");
    let mut reply = [0u8; 64];
    let got = tokio::time::timeout(std::time::Duration::from_secs(15), plain.read(&mut reply)).await;
    assert!(matches!(got, Ok(Ok(n)) if n == 0 || reply[0] != 0x20) || matches!(got, Ok(Err(_))), "{got:?}");

    let _ = stop.send(());
    server.await.expect("server task").expect("server stopped");
}
