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
