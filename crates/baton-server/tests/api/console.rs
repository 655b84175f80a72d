//! The web console over plain HTTP (the browser tests are in `console_browser.rs`): every page
//! sends a visitor without a session to the sign-in page, a wrong password is answered on the
//! page, the session cookie is `HttpOnly` and `SameSite`, and a change without the session's
//! CSRF token is refused.

use reqwest::{StatusCode, redirect::Policy};

use crate::support::{ADMIN_PASSWORD, TestApp, spawn_app};

/// An HTML form's body (`application/x-www-form-urlencoded`).
trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let body = serde_urlencoded::to_string(fields).expect("form");
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }
}

/// Follows no redirect, so a test sees where the server sends the browser.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("client")
}

/// Signs in through the form; returns the session cookie (`name=value`).
async fn sign_in(app: &TestApp, username: &str, password: &str) -> Option<String> {
    let response = browser()
        .post(format!("{}/login", app.url))
        .form_body(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("login");
    let cookie = response.headers().get("set-cookie")?.to_str().expect("ascii").to_owned();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no Secure flag without TLS (the browser would drop it)");
    Some(cookie.split(';').next().expect("pair").to_owned())
}

#[tokio::test]
async fn every_page_sends_a_visitor_without_a_session_to_sign_in() {
    let app = spawn_app().await;
    for path in ["/", "/console/overview"] {
        for cookie in [None, Some("baton_session=bs_forged"), Some("baton_session=")] {
            let mut request = browser().get(format!("{}{path}", app.url));
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let response = request.send().await.expect("page");
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} with {cookie:?}");
            assert_eq!(response.headers()["location"], "/login", "{path}");
        }
        // An API token is not a browser session.
        let response =
            browser().get(format!("{}{path}", app.url)).bearer_auth(&app.admin_token).send().await.expect("page");
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} with a bearer token");
    }
    let login = browser().get(format!("{}/login", app.url)).send().await.expect("login page");
    assert_eq!(login.status(), StatusCode::OK);
    let html = login.text().await.expect("html");
    assert!(html.contains(r#"<form id="login""#), "{html}");
}

#[tokio::test]
async fn a_wrong_password_is_answered_on_the_page_and_the_right_one_opens_the_overview() {
    let app = spawn_app().await;
    assert_eq!(sign_in(&app, "admin", "not-the-password").await, None, "no session for a wrong password");
    let page = browser()
        .post(format!("{}/login", app.url))
        .form_body(&[("username", "admin"), ("password", "not-the-password")])
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"role="alert""#) && page.contains("Wrong tenant, user name or password"), "{page}");

    let cookie = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("signed in");
    let overview = browser().get(format!("{}/", app.url)).header("cookie", &cookie).send().await.expect("overview");
    assert_eq!(overview.status(), StatusCode::OK);
    let html = overview.text().await.expect("html");
    assert!(html.contains("<h1>Overview</h1>") && html.contains(r#"data-testid="count-total">0<"#), "{html}");
    // Signed in: the sign-in page sends the user on.
    let again = browser().get(format!("{}/login", app.url)).header("cookie", &cookie).send().await.expect("login");
    assert_eq!(again.headers()["location"], "/");
}

#[tokio::test]
async fn signing_out_needs_the_pages_csrf_token_and_ends_the_session() {
    let app = spawn_app().await;
    let cookie = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("signed in");
    let html = browser().get(format!("{}/", app.url)).header("cookie", &cookie).send().await.expect("page");
    let html = html.text().await.expect("html");
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();

    // Another site can make the browser post, but cannot know the token.
    for forged in [vec![], vec![("csrf", "guessed")]] {
        let refused =
            browser().post(format!("{}/logout", app.url)).header("cookie", &cookie).form_body(&forged).send().await;
        assert_eq!(refused.expect("logout").status(), StatusCode::FORBIDDEN, "{forged:?}");
    }
    let still = browser().get(format!("{}/", app.url)).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(still.status(), StatusCode::OK, "the refused sign-out changed nothing");

    let out = browser()
        .post(format!("{}/logout", app.url))
        .header("cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!((out.status(), out.headers()["location"].to_str().expect("ascii")), (StatusCode::SEE_OTHER, "/login"));
    let after = browser().get(format!("{}/", app.url)).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(after.headers()["location"], "/login", "the old cookie opens nothing");
}

#[tokio::test]
async fn assets_are_served_from_the_binary() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/assets/vendor/htmx.min.js", "text/javascript"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/assets/vendor/xterm.js", "text/javascript"),
        ("/assets/vendor/xterm.css", "text/css"),
        ("/assets/vendor/addon-fit.js", "text/javascript"),
        ("/assets/terminal.js", "text/javascript"),
        ("/assets/session.js", "text/javascript"),
        ("/assets/screen.js", "text/javascript"),
        ("/assets/vendor/novnc-rfb.js", "text/javascript"),
        ("/assets/player.js", "text/javascript"),
    ] {
        let response = browser().get(format!("{}{path}", app.url)).send().await.expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!response.bytes().await.expect("body").is_empty());
    }
    let missing = browser().get(format!("{}/assets/nope.js", app.url)).send().await.expect("asset");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_devices_page_filters_sorts_and_pages_on_the_server() {
    use baton_proto::api::devices::DeviceCreate;
    let app = spawn_app().await;
    for (serial, store) in [("POS-1", "berlin"), ("POS-2", "berlin"), ("POS-3", "paris"), ("KIOSK-1", "berlin")] {
        let labels = std::collections::BTreeMap::from([("store".to_owned(), store.to_owned())]);
        let req = DeviceCreate { serial: serial.into(), labels, ..Default::default() };
        app.admin.create_device(&req).await.expect("device");
    }
    let cookie = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("signed in");
    let page = |query: &'static str| {
        let (url, cookie) = (format!("{}/devices?{query}", app.url), cookie.clone());
        async move {
            let response = browser().get(url).header("cookie", cookie).send().await.expect("page");
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.text().await.expect("html")
        }
    };
    let rows = |html: &str| html.matches("<tr data-device=").count();

    assert_eq!(rows(&page("").await), 4);
    let berlin_pos = page("q=pos&labels=store%3Dberlin").await;
    assert_eq!(rows(&berlin_pos), 2, "{berlin_pos}");
    assert!(berlin_pos.contains("POS-1") && berlin_pos.contains("POS-2") && !berlin_pos.contains("POS-3"));
    let none = page("q=nothing-like-this").await;
    assert!(none.contains("No device matches these filters."), "an empty state that says why");

    // A filter the server refuses is answered on the page, in the server's words.
    let bad = page("labels=store%3D%3D%3D").await;
    assert!(bad.contains(r#"role="alert""#) && bad.contains("labels"), "{bad}");

    // Sorted by serial, one page at a time through the `Next page` link (limit 50: all fit).
    let sorted = page("sort=serial").await;
    let order: Vec<usize> = ["KIOSK-1", "POS-1", "POS-2", "POS-3"].iter().map(|s| sorted.find(s).expect(s)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "sorted by serial: {order:?}");
    assert!(!sorted.contains(r#"rel="next""#), "one page holds them all");

    let anonymous = browser().get(format!("{}/devices", app.url)).send().await.expect("page");
    assert_eq!(anonymous.headers()["location"], "/login");
}

#[tokio::test]
async fn a_device_page_shows_what_the_device_is_and_reports_and_another_tenants_device_is_not_found() {
    use baton_proto::api::devices::DeviceCreate;
    let app = spawn_app().await;
    let labels = std::collections::BTreeMap::from([("store".to_owned(), "berlin".to_owned())]);
    let req = DeviceCreate { serial: "POS-9".into(), name: Some("Till 9".into()), labels, ..Default::default() };
    let device = app.admin.create_device(&req).await.expect("device");
    let cookie = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("signed in");
    let get = |path: String| {
        let cookie = cookie.clone();
        async move { browser().get(path).header("cookie", cookie).send().await.expect("page") }
    };

    let page = get(format!("{}/devices/{}", app.url, device.id)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    for expected in ["<h1>Till 9</h1>", "POS-9", "store=berlin", r#"data-testid="status">active<"#, "device.created"] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    let list = get(format!("{}/devices", app.url)).await.text().await.expect("html");
    assert!(list.contains(&format!(r#"href="/devices/{}""#, device.id)), "the list links to the page");

    let unknown = get(format!("{}/devices/01a21b00-0000-7000-8000-000000000000", app.url)).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let other = app.tenant_admin("other").await;
    let theirs =
        other.create_device(&DeviceCreate { serial: "THEIRS".into(), ..Default::default() }).await.expect("device");
    let foreign = get(format!("{}/devices/{}", app.url, theirs.id)).await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND, "another tenant's device does not exist here");
}

/// The CSRF token a signed-in page carries in its `<meta name="csrf-token">`.
async fn page_csrf(app: &TestApp, cookie: &str) -> String {
    let html = browser().get(format!("{}/", app.url)).header("cookie", cookie).send().await.expect("page");
    let html = html.text().await.expect("html");
    html.split(r#"<meta name="csrf-token" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned()
}

#[tokio::test]
async fn sending_a_command_from_a_page_needs_the_csrf_token_and_the_permission() {
    use baton_proto::api::{
        access::UserCreate,
        commands::{CommandQuery, CommandState},
        devices::DeviceCreate,
    };
    let app = spawn_app().await;
    let device = app.admin.create_device(&DeviceCreate { serial: "CMD-1".into(), ..Default::default() }).await;
    let device = device.expect("device");
    let viewer = UserCreate { username: "vic".into(), password: ADMIN_PASSWORD.into(), role: Some("viewer".into()) };
    app.admin.create_user(&viewer).await.expect("viewer");
    let send = |cookie: String, csrf: Option<String>| {
        let url = format!("{}/devices/{}/commands", app.url, device.id);
        async move {
            let mut request = browser().post(url).header("cookie", cookie);
            if let Some(token) = csrf {
                request = request.header("x-csrf-token", token);
            }
            request.form_body(&[("kind", "ping")]).send().await.expect("post").status()
        }
    };
    let admin = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("admin");
    let vic = sign_in(&app, "vic", ADMIN_PASSWORD).await.expect("viewer");
    assert_eq!(send(admin.clone(), None).await, StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(send(admin.clone(), Some("guessed".into())).await, StatusCode::FORBIDDEN, "a wrong token");
    let vic_csrf = page_csrf(&app, &vic).await;
    assert_eq!(send(vic, Some(vic_csrf)).await, StatusCode::FORBIDDEN, "a viewer may not send commands");
    let query = CommandQuery { device: Some(device.id.clone()), ..Default::default() };
    assert!(app.admin.commands(&query).await.expect("commands").items.is_empty(), "nothing was queued");

    let csrf = page_csrf(&app, &admin).await;
    assert_eq!(send(admin, Some(csrf)).await, StatusCode::OK);
    let queued = app.admin.commands(&query).await.expect("commands").items;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].state, CommandState::Queued);
}

#[tokio::test]
async fn a_failed_page_is_an_html_page_for_the_browser_and_problem_json_for_htmx() {
    let app = spawn_app().await;
    let cookie = sign_in(&app, "admin", ADMIN_PASSWORD).await.expect("signed in");
    let url = format!("{}/devices/01a21b00-0000-7000-8000-000000000000", app.url);
    let page = browser().get(&url).header("cookie", &cookie).header("accept", "text/html").send().await.expect("page");
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1>Not found</h1>") && html.contains(r#"role="alert""#), "{html}");

    let htmx = browser()
        .get(&url)
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .header("hx-request", "true")
        .send()
        .await
        .expect("fragment");
    assert_eq!(htmx.status(), StatusCode::NOT_FOUND);
    assert_eq!(htmx.headers()["content-type"], "application/problem+json", "htmx shows the detail in place");
}
