//! `spawn_app()`: the real server on a random port, with a fresh database — SQLite in a temp
//! dir, or, when `BATON_TEST_DATABASE_URL` names a PostgreSQL server, a new database there that
//! is dropped afterwards.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use baton_client::Client;
use baton_core::clock::ManualClock;
use baton_proto::api::{
    access::{TokenCreate, UserCreate},
    tenants::TenantCreate,
};
use baton_server::{App, Settings};
use sqlx::{Connection, Executor};
use tokio::{net::TcpListener, sync::oneshot};

pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

pub struct TestApp {
    pub url: String,
    pub addr: SocketAddr,
    /// Where the MQTT listener is (plain TCP).
    pub mqtt_addr: SocketAddr,
    /// Where MQTT over TLS listens, when the settings name a certificate.
    pub mqtt_tls_addr: Option<SocketAddr>,
    /// Admin of tenant `default`, also platform administrator (the bootstrap token).
    pub admin: Client,
    /// The secret behind `admin`, for raw requests.
    pub admin_token: String,
    /// No credentials.
    pub anon: Client,
    pub data_dir: PathBuf,
    /// The app's database, for tests that must stage what the API cannot (time passing).
    pub database_url: String,
    /// The server's clock: it moves only when a test moves it (rollout bake times, retry
    /// backoff, the expiry of execution claims).
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), baton_server::Error>>>,
    postgres: Option<(String, String)>,
}

/// Settings every test starts from.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        mqtt_addr: "127.0.0.1:0".parse().expect("addr"),
        mqtt_tls_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        bootstrap_token: Some(format!("bootstrap-{}", uuid::Uuid::new_v4().simple())),
        login_attempts_per_minute: 1000,
        command_expiry_check_secs: 1,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    spawn_with(test_settings(dir.path()), dir).await
}

type Running = (
    SocketAddr,
    String,
    (SocketAddr, Option<SocketAddr>),
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), baton_server::Error>>,
);

async fn start(settings: Settings, clock: Arc<ManualClock>) -> Running {
    let listener = TcpListener::bind(settings.http_addr).await.expect("bind");
    let app = App::build_with_clock(settings, listener, clock).await.expect("app builds");
    let (addr, url) = (app.local_addr(), app.url());
    let mqtt_addr = (app.mqtt_addr().expect("MQTT listens"), app.mqtt_tls_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (addr, url, mqtt_addr, stop, server)
}

pub async fn spawn_with(mut settings: Settings, dir: tempfile::TempDir) -> TestApp {
    let postgres = match std::env::var("BATON_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("baton_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect to BATON_TEST_DATABASE_URL");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
            let url = match base.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => panic!("BATON_TEST_DATABASE_URL must end in /<database>"),
            };
            settings.database_url = Some(url);
            Some((base, name))
        }
        _ => None,
    };
    let token = settings.bootstrap_token.clone().expect("bootstrap token");
    let database_url = settings
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", settings.data_dir.join("baton.db").display()));
    let clock = ManualClock::shared();
    let (addr, url, (mqtt_addr, mqtt_tls_addr), stop, server) = start(settings.clone(), clock.clone()).await;
    // Over TLS, the clients trust the server's own certificate.
    let ca = settings.tls_cert.as_ref().map(|p| std::fs::read(p).expect("read the TLS certificate"));
    let anon = Client::new(&url, None, ca.as_deref()).expect("client");
    TestApp {
        clock,
        admin: anon.with_token(token.clone()),
        admin_token: token,
        anon,
        url,
        addr,
        mqtt_addr,
        mqtt_tls_addr,
        data_dir: dir.path().to_path_buf(),
        database_url,
        _dir: dir,
        settings,
        stop: Some(stop),
        server: Some(server),
        postgres,
    }
}

impl TestApp {
    /// A token with `role` in tenant `default`.
    pub async fn client_with_role(&self, role: &str) -> Client {
        let req = TokenCreate {
            name: format!("{role}-token"),
            role: Some(role.into()),
            expires_in_days: None,
            permissions: None,
        };
        let created = self.admin.create_token(&req).await.expect("token created");
        self.anon.with_token(created.secret)
    }

    /// A new tenant with its own admin; returns that admin's client (a session).
    pub async fn tenant_admin(&self, name: &str) -> Client {
        let admin = UserCreate { username: "boss".into(), password: ADMIN_PASSWORD.into(), role: None };
        let req = TenantCreate { name: name.into(), display_name: None, admin: Some(admin) };
        self.admin.create_tenant(&req).await.expect("tenant created");
        let session = self.anon.login(Some(name), "boss", ADMIN_PASSWORD).await.expect("tenant admin logs in");
        self.anon.with_token(session.token)
    }

    /// Runs one statement on the app's database directly. Only for staging what the API cannot,
    /// such as time having passed; assertions still go through the API.
    pub async fn stage_sql(&self, statement: &str) {
        let mut conn = sqlx::AnyConnection::connect(&self.database_url).await.expect("connect to the app's database");
        conn.execute(sqlx::AssertSqlSafe(statement.to_owned())).await.expect("staging statement");
    }

    /// Stops the server and starts it again on the same database (on a new port), with
    /// `change` applied to its settings. The clients follow the new address.
    pub async fn restart(&mut self, change: impl FnOnce(&mut Settings)) {
        self.stop().await;
        let mut settings = self.settings.clone();
        change(&mut settings);
        let (addr, url, (mqtt_addr, mqtt_tls_addr), stop, server) = start(settings.clone(), self.clock.clone()).await;
        self.mqtt_addr = mqtt_addr;
        self.mqtt_tls_addr = mqtt_tls_addr;
        self.anon = Client::new(&url, None, None).expect("client");
        self.admin_token = settings.bootstrap_token.clone().expect("bootstrap token");
        self.admin = self.anon.with_token(self.admin_token.clone());
        (self.addr, self.url, self.stop, self.server, self.settings) = (addr, url, Some(stop), Some(server), settings);
    }

    /// Stops the server gracefully and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((base, name)) = self.postgres.take() {
            // Dropping needs its own runtime: the test's may be shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A TLS client that trusts `ca` only.
pub fn tls_connector(ca: &rcgen::Certificate) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Raw HTTP for requests the typed client cannot make (bad bodies, wrong methods).
pub fn raw() -> reqwest::Client {
    reqwest::Client::new()
}

/// Posts `body` to `path` as the admin and asserts it is refused with 422 naming `field` (in
/// its field errors); returns the problem's body.
pub async fn refused_naming(app: &TestApp, path: &str, body: &impl serde::Serialize, field: &str) -> serde_json::Value {
    let response = raw()
        .post(format!("{}{path}", app.url))
        .bearer_auth(&app.admin_token)
        .json(body)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 422).await;
    let named = body["errors"].as_array().into_iter().flatten().any(|e| e["field"] == field);
    assert!(named, "{path}: {field} not named in {body}");
    body
}

/// Asserts a response is a problem+json with `status`, and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    let got = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let url = response.url().to_string();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    assert_eq!(got, status, "{url}: expected {status}, got {got}: {body}");
    assert_eq!(content_type, "application/problem+json", "{url}: content type");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{url}: body {body}");
    body
}
