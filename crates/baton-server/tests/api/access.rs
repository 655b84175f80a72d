//! Sign-in, sessions, tokens and roles: what a person and a script meet first.

use baton_proto::api::{
    access::{PageQuery, TokenCreate, UserCreate},
    devices::DeviceCreate,
};

use crate::support::{ADMIN_PASSWORD, TestApp, raw, spawn_app, spawn_with, test_settings};

fn code(e: baton_client::ClientError) -> u16 {
    e.status().map(|s| s.as_u16()).unwrap_or_default()
}

#[tokio::test]
async fn the_first_admin_signs_in_and_the_session_works_as_a_bearer_token() {
    let app = spawn_app().await;
    let session = app.anon.login(None, "admin", ADMIN_PASSWORD).await.expect("login");
    assert!(session.expires_at > chrono::Utc::now() + chrono::Duration::hours(11));
    assert_eq!(session.me.role, "admin");
    assert!(session.me.platform_admin);
    let me = app.anon.with_token(session.token.clone()).me().await.expect("me");
    assert_eq!(me.subject, "user:admin");

    app.anon.with_token(session.token.clone()).logout().await.expect("logout");
    assert_eq!(code(app.anon.with_token(session.token).me().await.expect_err("ended")), 401);
    assert_eq!(code(app.anon.login(None, "admin", "wrong password!").await.expect_err("wrong")), 401);
    assert_eq!(code(app.anon.login(None, "nobody", ADMIN_PASSWORD).await.expect_err("unknown")), 401);
}

#[tokio::test]
async fn the_session_cookie_is_safe_and_changes_by_cookie_need_the_csrf_token() {
    let app = spawn_app().await;
    let response = raw()
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    let cookie = response.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "cookie has {attribute}: {cookie}");
    }
    let session: serde_json::Value = response.json().await.expect("body");
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let csrf = session["csrf_token"].as_str().expect("csrf").to_owned();

    let read = raw().get(format!("{}/api/v1/devices", app.url)).header("cookie", &pair).send().await.expect("read");
    assert_eq!(read.status(), 200, "reads need no CSRF token");
    let body = serde_json::json!({"serial": "C-1"});
    let forged = raw()
        .post(format!("{}/api/v1/devices", app.url))
        .header("cookie", &pair)
        .json(&body)
        .send()
        .await
        .expect("forged");
    crate::support::expect_problem(forged, 403).await;
    let wrong = raw()
        .post(format!("{}/api/v1/devices", app.url))
        .header("cookie", &pair)
        .header("x-csrf-token", "guess")
        .json(&body)
        .send()
        .await
        .expect("wrong");
    crate::support::expect_problem(wrong, 403).await;
    let real = raw()
        .post(format!("{}/api/v1/devices", app.url))
        .header("cookie", &pair)
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .expect("real");
    assert_eq!(real.status(), 201);
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = spawn_app().await;
    let created = app
        .admin
        .create_token(&TokenCreate {
            name: "ci".into(),
            role: Some("operator".into()),
            expires_in_days: Some(30),
            permissions: None,
        })
        .await
        .expect("token");
    assert!(created.secret.starts_with("bt_"));
    assert!(created.token.expires_at.is_some());
    let ci = app.anon.with_token(created.secret.clone());
    ci.create_device(&DeviceCreate { serial: "CI-1".into(), ..Default::default() })
        .await
        .expect("operator acts on devices");
    let listed = app.admin.tokens(&PageQuery::default()).await.expect("tokens");
    let row = listed.items.iter().find(|t| t.id == created.token.id).expect("listed");
    assert!(row.last_used_at.is_some(), "last use is recorded");
    assert_eq!(row.created_by.as_deref(), Some("token:bootstrap"));

    let revoked = app.admin.revoke_token(&created.token.id).await.expect("revoked");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(code(ci.me().await.expect_err("refused")), 401);
}

#[tokio::test]
async fn nobody_hands_out_more_power_than_they_have() {
    let app = spawn_app().await;
    let admin_token = app.client_with_role("admin").await;
    // An admin token (not a platform admin) cannot reach tenants.
    assert_eq!(code(admin_token.tenants(&PageQuery::default()).await.expect_err("platform")), 403);
    // A user with the operator role cannot mint an admin token or create users.
    let operator =
        UserCreate { username: "olga".into(), password: ADMIN_PASSWORD.into(), role: Some("operator".into()) };
    app.admin.create_user(&operator).await.expect("user");
    let olga = app.anon.with_token(app.anon.login(None, "olga", ADMIN_PASSWORD).await.expect("olga").token);
    let escalate =
        TokenCreate { name: "x".into(), role: Some("admin".into()), expires_in_days: None, permissions: None };
    assert_eq!(code(olga.create_token(&escalate).await.expect_err("no tokens for operators")), 403);
    let roles = olga.roles().await.expect("roles");
    let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["admin", "operator", "viewer"]);
    assert!(roles[2].permissions.iter().all(|p| p.ends_with(":read")));
}

#[tokio::test]
async fn logins_are_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = baton_server::Settings { login_attempts_per_minute: 3, ..test_settings(dir.path()) };
    let app: TestApp = spawn_with(settings, dir).await;
    for _ in 0..3 {
        assert_eq!(code(app.anon.login(None, "admin", "wrong password!").await.expect_err("wrong")), 401);
    }
    let limited = raw()
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("send");
    assert!(limited.headers().contains_key("retry-after"));
    crate::support::expect_problem(limited, 429).await;
}

#[tokio::test]
async fn secrets_are_stored_only_as_hashes() {
    let mut app = spawn_app().await;
    let token = app.admin.create_token(&TokenCreate { name: "t".into(), ..Default::default() }).await.expect("token");
    let session = app.anon.login(None, "admin", ADMIN_PASSWORD).await.expect("login");
    let bootstrap = app.admin_token.clone();
    let text = if app.database_url.starts_with("postgres") {
        // Every row of every table, as PostgreSQL stores it.
        let text = every_row_as_text(&app.database_url).await;
        app.stop().await;
        text
    } else {
        app.stop().await;
        let mut bytes = Vec::new();
        for file in ["baton.db", "baton.db-wal"] {
            if let Ok(b) = std::fs::read(app.data_dir.join(file)) {
                bytes.extend(b);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(text.contains("admin"), "the stored rows were read");
    for secret in [token.secret.as_str(), session.token.as_str(), bootstrap.as_str(), ADMIN_PASSWORD] {
        assert!(!text.contains(secret), "a secret is stored in clear");
    }
    assert!(text.contains("$argon2id$"), "passwords are argon2 hashes");
}

/// Every row of every table of a PostgreSQL database, as JSON text.
async fn every_row_as_text(url: &str) -> String {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let tables: Vec<String> =
        sqlx::query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(&mut conn)
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get("t"))
            .collect();
    assert!(tables.iter().any(|t| t == "api_tokens"), "the tables were listed: {tables:?}");
    let mut text = String::new();
    for table in tables {
        let sql = format!("SELECT CAST(row_to_json(t) AS TEXT) AS r FROM \"{table}\" t");
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.expect("rows") {
            text.push_str(&row.get::<String, _>("r"));
            text.push('\n');
        }
    }
    text
}

#[tokio::test]
async fn expired_tokens_and_sessions_are_refused() {
    let app = spawn_app().await;
    let created = app
        .admin
        .create_token(&TokenCreate {
            name: "short-lived".into(),
            role: None,
            expires_in_days: Some(1),
            permissions: None,
        })
        .await
        .expect("token");
    let token = app.anon.with_token(created.secret);
    let session = app.anon.with_token(app.anon.login(None, "admin", ADMIN_PASSWORD).await.expect("login").token);
    assert!(token.me().await.is_ok() && session.me().await.is_ok());

    // A day and a session lifetime pass.
    app.stage_sql("UPDATE api_tokens SET expires_at = 1 WHERE name = 'short-lived'").await;
    app.stage_sql("UPDATE sessions SET expires_at = 1").await;
    assert_eq!(code(token.me().await.expect_err("token expired")), 401);
    assert_eq!(code(session.me().await.expect_err("session expired")), 401);
    assert!(app.admin.me().await.is_ok(), "tokens without expiry keep working");
}

#[tokio::test]
async fn only_platform_admins_remove_platform_admins() {
    let app = spawn_app().await;
    let tenant_admin = app.client_with_role("admin").await;
    let users = app.admin.users(&PageQuery::default()).await.expect("users");
    let platform_user = users.items.iter().find(|u| u.platform_admin).expect("the first admin");
    assert_eq!(code(tenant_admin.delete_user(&platform_user.id).await.expect_err("refused")), 403);
    let tokens = app.admin.tokens(&PageQuery::default()).await.expect("tokens");
    let bootstrap = tokens.items.iter().find(|t| t.name == "bootstrap").expect("bootstrap token");
    assert_eq!(code(tenant_admin.revoke_token(&bootstrap.id).await.expect_err("refused")), 403);
    assert!(app.admin.me().await.is_ok(), "platform administration intact");
}

#[tokio::test]
async fn a_changed_bootstrap_token_retires_the_old_one() {
    let mut app = spawn_app().await;
    let old_secret = app.admin_token.clone();
    app.admin.me().await.expect("old token works");
    let new_token = format!("bootstrap-{}", uuid::Uuid::new_v4().simple());
    let new_value = new_token.clone();
    app.restart(move |s| s.bootstrap_token = Some(new_value)).await;
    let old = app.anon.with_token(old_secret);
    assert_eq!(code(old.me().await.expect_err("old token retired")), 401);
    assert!(app.anon.with_token(new_token).me().await.is_ok(), "the new one works");
}

#[tokio::test]
async fn a_token_narrowed_to_some_permissions_holds_only_those_and_hands_out_no_more() {
    let app = spawn_app().await;
    let narrow = |name: &str, role: &str, permissions: &[&str]| TokenCreate {
        name: name.into(),
        role: Some(role.into()),
        expires_in_days: None,
        permissions: Some(permissions.iter().map(|p| p.to_string()).collect()),
    };
    let created = app.admin.create_token(&narrow("helpdesk", "operator", &["devices:read"])).await.expect("narrowed");
    assert_eq!(created.token.permissions, Some(vec!["devices:read".to_owned()]), "the token says what it holds");
    let helpdesk = app.anon.with_token(created.secret);
    helpdesk.devices(&Default::default()).await.expect("it reads devices");
    let me = helpdesk.me().await.expect("me");
    assert_eq!(me.permissions, ["devices:read"], "and nothing else of the operator's");
    assert_eq!(code(helpdesk.groups(&Default::default()).await.expect_err("groups:read was left out")), 403);

    // A permission the role lacks, or an unknown one, is refused saying which.
    let beyond = app.admin.create_token(&narrow("x", "viewer", &["devices:write"])).await.expect_err("beyond the role");
    assert_eq!(code(beyond), 403);
    assert_eq!(code(app.admin.create_token(&narrow("x", "viewer", &["devices:fly"])).await.expect_err("unknown")), 422);

    // A narrowed token that may make tokens cannot make one wider than itself.
    let minter =
        app.admin.create_token(&narrow("minter", "admin", &["tokens:write", "devices:read"])).await.expect("m");
    let minter = app.anon.with_token(minter.secret);
    let wide =
        TokenCreate { name: "wide".into(), role: Some("admin".into()), expires_in_days: None, permissions: None };
    assert_eq!(code(minter.create_token(&wide).await.expect_err("wider than the minter")), 403);
    let within = minter.create_token(&narrow("within", "admin", &["devices:read"])).await.expect("within its own");
    assert_eq!(within.token.permissions, Some(vec!["devices:read".to_owned()]));
}
