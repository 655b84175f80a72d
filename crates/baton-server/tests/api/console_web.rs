//! A device's web page opened from the console: a real agent (the `baton-agent` library with
//! `[remote] tunnel_ports`) in front of a small HTTP server on this machine's loopback — the
//! "printer's admin page", which records every request it gets — reached through the server on
//! the session's own host `<session>.localhost`. The page and its absolute-path resources load
//! (in Chromium too), the device never sees the console's or this door's cookies, a spent token,
//! a missing cookie or another session's host get the "link expired" page, closing or idling
//! ends it at once, and a viewer is offered nothing.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::{Request, State, WebSocketUpgrade, ws::Message as WsMessage},
    http::{HeaderMap, header},
    response::Redirect,
    routing::{get, post},
};
use baton_proto::api::{
    access::UserCreate,
    events::EventQuery,
    remote::{SessionKind, SessionState},
};
use futures::{SinkExt, StreamExt};
use reqwest::{StatusCode, redirect::Policy};
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    console_browser::{have_browser, run_scenario},
    console_pages::Console,
    fleet::Fleet,
    support::{ADMIN_PASSWORD, TestApp, spawn_app, spawn_with, test_settings},
};

/// The device's page: a title, and a stylesheet and an image by absolute path.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Printer admin</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/style.css"></head>
<body><h1 id="title">Printer admin</h1><img id="logo" src="/logo.svg" alt="printer" width="40" height="40"></body></html>"#;

/// The "device's" web server: listens on 127.0.0.1 only and keeps each request's path and
/// headers.
struct DeviceWeb {
    port: u16,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl DeviceWeb {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
            .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], "#title { color: rgb(0, 128, 0); }") }))
            .route(
                "/logo.svg",
                get(|| async {
                    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="green"/></svg>"#;
                    ([(header::CONTENT_TYPE, "image/svg+xml")], svg)
                }),
            )
            .route("/old", get(|State(port): State<u16>| async move { Redirect::to(&format!("http://localhost:{port}/")) }))
            .route("/echo", post(|body: String| async move { format!("echoed {body}") }))
            .route("/ws", get(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let record = seen.clone();
        let router = router.with_state(port).layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                record.lock().expect("lock").push((request.uri().path().to_owned(), request.headers().clone()));
                next.run(request)
            },
        ));
        tokio::spawn(async move { axum::serve(listener, router).await });
        DeviceWeb { port, seen }
    }

    fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn echo(mut socket: axum::extract::ws::WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if let WsMessage::Text(text) = message
            && socket.send(WsMessage::Text(format!("echo {text}").into())).await.is_err()
        {
            return;
        }
    }
}

/// An agent whose policy tunnels to the device web server's port; its device's id.
async fn agent(app: &TestApp, web: &DeviceWeb, prefix: &str) -> (Fleet, String) {
    let port = web.port;
    let fleet = Fleet::start_with(app, 1, prefix, move |config| config.remote.tunnel_ports = vec![port]).await;
    let device = Fleet::serials(app, prefix).await.into_keys().next().expect("the agent's device");
    (fleet, device)
}

/// A browser on the session's own host: `*.localhost` resolves to the server, as browsers do.
fn on_session_host(app: &TestApp, link: &str) -> reqwest::Client {
    let host = reqwest::Url::parse(link).expect("link").host_str().expect("host").to_owned();
    let builder = reqwest::Client::builder().redirect(Policy::none());
    builder.resolve(&host, app.addr).build().expect("client")
}

/// Posts the device page's form as a browser does (a plain form with the CSRF field); the
/// link the answer sends the new tab to.
async fn open_form(console: &Console, device: &str, port: u16) -> String {
    let fields = [("csrf", console.csrf.as_str()), ("port", &port.to_string())];
    let response = console.send(&format!("/devices/{device}/web"), &fields, None, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{:?}", response.text().await);
    response.headers()["location"].to_str().expect("ascii").to_owned()
}

/// The `baton_web` cookie (`name=value`) an opened link sets, checked to be host-only, HTTP-only
/// and Lax.
fn web_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get("set-cookie").expect("a cookie is set").to_str().expect("ascii");
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("baton_web=bw_"), "{set}");
    for wanted in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.contains(&wanted), "{wanted}: {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "host-only: {set}");
    attributes[0].to_owned()
}

#[tokio::test]
async fn a_devices_web_page_opens_on_its_own_host_and_the_device_never_sees_the_consoles_cookies() {
    let app = spawn_app().await;
    let web = DeviceWeb::start().await;
    let (_fleet, device) = agent(&app, &web, "WEB").await;
    let console = Console::sign_in(&app, "", "admin").await;
    let link = open_form(&console, &device, web.port).await;
    let session_host = link.split("://").nth(1).and_then(|r| r.split('/').next()).expect("host").to_owned();
    let session_id = session_host.split('.').next().expect("session").to_owned();
    let port = app.addr.port();
    assert_eq!(
        link,
        format!("http://{session_id}.localhost:{port}/.baton/open?{}", link.split('?').nth(1).unwrap_or(""))
    );
    assert!(link.contains("token=bx_"), "{link}");
    let browser = on_session_host(&app, &link);
    let base = format!("http://{session_host}");

    let opened = browser.get(&link).send().await.expect("open");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()["location"], "/");
    let cookie = web_cookie(&opened);
    // The browser sends its cookies for this host; had the console's reached it, it goes no further.
    let cookies = format!("theirs=1; {cookie}; {}", console.cookie);
    let page = browser.get(format!("{base}/")).header("cookie", &cookies).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.expect("html"), PAGE);
    for (path, kind) in [("/style.css", "text/css"), ("/logo.svg", "image/svg+xml")] {
        let got = browser.get(format!("{base}{path}")).header("cookie", &cookies).send().await.expect(path);
        assert_eq!((got.status(), got.headers()["content-type"].to_str().ok()), (StatusCode::OK, Some(kind)), "{path}");
    }
    let echoed =
        browser.post(format!("{base}/echo")).header("cookie", &cookies).body("hello").send().await.expect("post");
    assert_eq!(echoed.text().await.expect("body"), "echoed hello");
    let moved = browser.get(format!("{base}/old")).header("cookie", &cookies).send().await.expect("redirect");
    assert_eq!(moved.headers()["location"], format!("{base}/").as_str(), "the device's own address stays on this host");

    let requests = web.requests();
    assert_eq!(requests.len(), 5, "each request reached the device once: {requests:?}");
    for (path, headers) in &requests {
        assert_eq!(headers["host"], format!("localhost:{}", web.port).as_str(), "{path}");
        let sent: Vec<_> = headers.get_all("cookie").iter().map(|v| v.to_str().unwrap_or_default()).collect();
        assert_eq!(sent, ["theirs=1"], "{path}: only the device's own cookie");
    }

    // A WebSocket on the device's page goes through too.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{session_host}/ws"
    ))
    .expect("request");
    request.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
    let tcp = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("the upgrade goes through");
    ws.send(tokio_tungstenite::tungstenite::Message::Text("ping".into())).await.expect("send");
    let answer = ws.next().await.expect("answer").expect("frame");
    assert_eq!(answer.into_text().expect("text").as_str(), "echo ping");
    drop(ws);

    // Refused: the spent token, no cookie, a forged one, this cookie on another session's host.
    let before = web.requests().len();
    let again = browser.get(&link).send().await.expect("again");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.expect("html").contains("has expired"), "the page says why");
    assert_eq!(browser.get(format!("{base}/")).send().await.expect("page").status(), StatusCode::UNAUTHORIZED);
    let forged = browser.get(format!("{base}/")).header("cookie", "baton_web=bw_forged").send().await.expect("page");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let other = format!("{}.localhost:{port}", uuid::Uuid::now_v7());
    let elsewhere = reqwest::Client::builder()
        .resolve(other.split(':').next().unwrap_or_default(), app.addr)
        .build()
        .expect("client");
    let response =
        elsewhere.get(format!("http://{other}/")).header("cookie", &cookie).send().await.expect("other host");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(web.requests().len(), before, "nothing refused reached the device");

    // Closed through the API: the next request is refused.
    let closed = app.admin.close_session(&device, &session_id).await.expect("closed");
    assert_eq!((closed.kind, closed.state), (SessionKind::Tunnel, SessionState::Closed));
    let after = browser.get(format!("{base}/")).header("cookie", &cookies).send().await.expect("page");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(web.requests().len(), before);
    let query =
        EventQuery { device: Some(device.clone()), kind: Some("remote.session_ended".into()), ..Default::default() };
    let events = app.admin.events(&query).await.expect("events").items;
    let [ended] = events.as_slice() else { panic!("one end: {events:?}") };
    let data = &ended.data;
    assert_eq!(
        (data["kind"].as_str(), data["host"].as_str(), data["port"].as_u64()),
        (Some("tunnel"), Some("localhost"), Some(u64::from(web.port))),
        "{data}"
    );
    assert!(
        data["duration_ms"].is_u64() && data["reason"].as_str().is_some_and(|r| r.starts_with("closed by")),
        "{data}"
    );
    assert_eq!(data["connections"], 6, "one connection per request and the WebSocket: {data}");
    assert!(data["bytes_from_device"].as_u64().is_some_and(|b| b > PAGE.len() as u64), "{data}");
}

#[tokio::test]
async fn a_devices_web_page_left_alone_ends_after_the_idle_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    settings.remote_idle_timeout_secs = 1;
    let app = spawn_with(settings, dir).await;
    let web = DeviceWeb::start().await;
    let (_fleet, device) = agent(&app, &web, "IDLE").await;
    let console = Console::sign_in(&app, "", "admin").await;
    let link = open_form(&console, &device, web.port).await;
    let browser = on_session_host(&app, &link);
    let opened = browser.get(&link).send().await.expect("open");
    let cookie = web_cookie(&opened);
    let base = link.split("/.baton").next().expect("base").to_owned();
    let page = browser.get(format!("{base}/")).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let session = link.split("://").nth(1).and_then(|r| r.split('.').next()).expect("session").to_owned();
    let ended = baton_testkit::eventually("the idle session ends", || async {
        let s = app.admin.session(&device, &session).await.map_err(|e| e.to_string())?;
        if s.state == SessionState::Closed { Ok(s) } else { Err(format!("{:?}", s.state)) }
    })
    .await;
    assert_eq!(ended.close_reason.as_deref(), Some("no connection for 1 s"));
    let after = browser.get(format!("{base}/")).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_port_the_device_does_not_allow_is_said_on_the_new_tab_and_the_session_closes() {
    let app = spawn_app().await;
    let web = DeviceWeb::start().await;
    let (_fleet, device) = agent(&app, &web, "PORT").await;
    let console = Console::sign_in(&app, "", "admin").await;
    let link = open_form(&console, &device, web.port + 1).await;
    let answer = on_session_host(&app, &link).get(&link).send().await.expect("open");
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    assert!(answer.headers().get("set-cookie").is_none(), "no cookie for a page that did not open");
    let html = answer.text().await.expect("html");
    assert!(html.contains("is not one this device tunnels to"), "the device's reason is shown: {html}");
    let sessions = app.admin.sessions(&device, &Default::default()).await.expect("sessions").items;
    let [session] = sessions.as_slice() else { panic!("one session: {sessions:?}") };
    assert_eq!(session.state, SessionState::Closed);
    assert!(session.close_reason.as_deref().is_some_and(|r| r.contains("tunnel_ports")), "{session:?}");
}

#[tokio::test]
async fn only_those_who_may_tunnel_are_offered_a_devices_web_page() {
    let app = spawn_app().await;
    let web = DeviceWeb::start().await;
    let (_fleet, device) = agent(&app, &web, "ROLE").await;
    let page = format!("/devices/{device}");
    for (role, offered) in [("operator", true), ("viewer", false)] {
        let username = format!("{role}-web");
        let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
        app.admin.create_user(&req).await.expect("user");
        let console = Console::sign_in(&app, "", &username).await;
        let html = console.html(&page).await;
        assert_eq!(html.contains(r#"data-testid="device-web""#), offered, "{role}: the form");
        if offered {
            assert!(open_form(&console, &device, web.port).await.contains("/.baton/open?token=bx_"));
        } else {
            let fields = [("csrf", console.csrf.as_str()), ("port", "80")];
            let refused = console.send(&format!("/devices/{device}/web"), &fields, None, false).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{role}");
        }
    }
    // Without the CSRF field (another site's form), nothing is opened.
    let admin = Console::sign_in(&app, "", "admin").await;
    let refused =
        admin.send(&format!("/devices/{device}/web"), &[("port", "80"), ("csrf", "wrong")], None, false).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let sessions = app.admin.sessions(&device, &Default::default()).await.expect("sessions").items;
    assert_eq!(sessions.len(), 1, "the operator's only: {sessions:?}");
    assert!(web.requests().is_empty(), "no page was opened");
}

/// The issue's scenario in Chromium: the device page's Open shows the device's page in a new
/// tab, its stylesheet and image loaded from absolute paths, on the session's own host.
#[tokio::test]
async fn chromium_opens_a_devices_web_page_in_a_new_tab_from_the_console() {
    if !have_browser() {
        return;
    }
    let app = spawn_app().await;
    let web = DeviceWeb::start().await;
    let (_fleet, device) = agent(&app, &web, "TAB").await;
    let config = json!({"device_id": device, "port": web.port, "expect_title": "Printer admin"});
    let seen = run_scenario(&app, "device_web", config).await;
    assert_eq!(seen["title"], "Printer admin", "{seen}");
    assert_eq!(seen["title_color"], "rgb(0, 128, 0)", "the stylesheet at /style.css applied: {seen}");
    assert_eq!(seen["image_width"], 40, "the image at /logo.svg loaded: {seen}");
    let url = seen["url"].as_str().unwrap_or_default();
    assert!(url.starts_with("http://") && url.contains(".localhost:") && url.ends_with('/'), "{seen}");
    let paths: Vec<String> = web.requests().into_iter().map(|(p, _)| p).collect();
    for path in ["/", "/style.css", "/logo.svg"] {
        assert!(paths.iter().any(|p| p == path), "{path} reached the device: {paths:?}");
    }
    for (path, headers) in web.requests() {
        let cookies =
            headers.get_all("cookie").iter().map(|v| v.to_str().unwrap_or_default().to_owned()).collect::<Vec<_>>();
        assert!(cookies.iter().all(|c| !c.contains("baton_")), "{path}: {cookies:?}");
    }
}
