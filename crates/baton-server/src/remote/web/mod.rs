//! A device's web page (a printer's or router's admin page) in the operator's browser, through
//! a tunnel session the server holds. The page is served on a host of its own,
//! `<session>.<remote_web_domain>`, never in the console's origin: a device's script could
//! otherwise call the API with the operator's cookie. The console makes the session and sends
//! the browser to [`link`]; [`open`] spends the session's one-time token there, holds the session
//! (idle, longest, closed, server stopping: as a terminal's) and hands the browser a cookie of
//! its own for that host only; with it, each request is [`forward`]ed to the device over a new
//! tunnel connection (`io`), HTTP/1.1 with the console's and this door's cookies taken out.
//! [`Passes`] keeps, per session open on this node, the tunnel and the hash of its cookie.

mod io;
mod proxy;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, Response, StatusCode, header},
};
use baton_core::{Settings, access::secrets, remote};
use baton_proto::api::remote::SessionKind;

use super::{
    Relay,
    tunnel::{Holder, Tunnel},
};
pub use proxy::{Asked, forward};

/// The path on a session's host that spends its token and sets the cookie.
pub const OPEN_PATH: &str = "/.baton/open";
/// The cookie that lets a browser through to the device's pages on one session's host.
pub const COOKIE: &str = "baton_web";
/// Prefix of that cookie's value, so a leaked one is recognisable.
const COOKIE_PREFIX: &str = "bw_";

/// The sessions whose device's web page is open on this node: the tunnel and the hash of the
/// browser's cookie (never the cookie itself), by session id.
#[derive(Default)]
pub struct Passes {
    map: Mutex<HashMap<String, Pass>>,
}

struct Pass {
    tunnel: Arc<Tunnel>,
    cookie_hash: String,
}

impl Passes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pass>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tunnel of `session_id` if the request carries its cookie; `None` for anything else
    /// (no cookie, another session's, a session that ended).
    pub fn check(&self, session_id: &str, headers: &HeaderMap) -> Option<Arc<Tunnel>> {
        let passes = self.lock();
        let pass = passes.get(session_id)?;
        let mut sent = cookies(headers).filter(|(name, _)| *name == COOKIE);
        sent.any(|(_, value)| secrets::hash_token(value) == pass.cookie_hash).then(|| pass.tunnel.clone())
    }
}

/// The session a request's host names, when it is `<session>.<domain>` (any port): the host
/// of a device's web page. Any other host (the console's, a name that is not a session id) is
/// not one.
pub fn session_of_host<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let (label, rest) = without_port(host).split_once('.')?;
    let canonical = uuid::Uuid::try_parse(label).is_ok_and(|id| id.hyphenated().to_string() == label);
    (canonical && rest.eq_ignore_ascii_case(domain)).then_some(label)
}

/// Where the browser opens session `session_id`'s web page with its one-time `token`: the
/// session's host under `remote_web_domain`, with the scheme and port of the configured public
/// URL, else those the console was reached with (`console_host`, its `Host` header).
pub fn link(settings: &Settings, console_host: Option<&str>, session_id: &str, token: &str) -> String {
    let (scheme, port) = match settings.public_url.as_deref() {
        Some(url) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
            (scheme.to_ascii_lowercase(), port_of(rest.split('/').next().unwrap_or_default()))
        }
        None => (scheme(settings).to_owned(), console_host.map(port_of).unwrap_or_default()),
    };
    format!("{scheme}://{session_id}.{}{port}{OPEN_PATH}?token={token}", settings.remote_web_domain)
}

/// How browsers reach this server: over TLS when it serves TLS or its public URL says so.
pub fn scheme(settings: &Settings) -> &'static str {
    let public_https = settings.public_url.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
    if settings.tls_enabled() || public_https { "https" } else { "http" }
}

/// Why a device's web page could not be opened, in words for the page that says so.
#[derive(Debug)]
pub enum NotOpen {
    /// The token is unknown, used, expired, or not a web page's.
    Token(String),
    /// The device refused or could not reach the port.
    Device(String),
    /// The server failed (logged); the page says only that.
    Server,
}

/// Spends the one-time `token` of session `session_id` (a tunnel, named by the host the
/// browser came to), checks the device's port, and holds the session open on this node until
/// it idles, is closed, reaches its longest, or the server stops. The answer is the
/// `Set-Cookie` value that lets this browser through (host-only: no `Domain`).
pub async fn open(app: Relay, session_id: &str, token: &str, secure: bool) -> Result<String, NotOpen> {
    let attach = remote::redeem(&app.db, session_id, token).await.map_err(|e| match e {
        baton_core::Error::Unauthorized(reason) => NotOpen::Token(reason),
        other => {
            tracing::error!(error = %other, "cannot redeem a device web page's token");
            NotOpen::Server
        }
    })?;
    if attach.session.kind != SessionKind::Tunnel || attach.read_only {
        if !attach.read_only {
            // Its token is spent: the session can never open now.
            let ending =
                remote::Ending { reason: "its token was spent on a device's web page".into(), ..Default::default() };
            let closed = remote::closed(&app.db, &app.bus, &attach.scope, &attach.session, &attach.actor, &ending);
            if let Err(e) = closed.await {
                tracing::error!(error = %e, "cannot record the end of a session");
            }
        }
        return Err(NotOpen::Token(
            "this link is not a device's web page; open the page again from the console".into(),
        ));
    }
    let running = app.connections.running();
    let mut holder = Holder::new(&attach);
    if let Err(reason) = holder.open(&app, &attach).await {
        holder.finish(&app, &attach, &reason).await;
        return Err(NotOpen::Device(reason));
    }
    let cookie = secrets::generate(COOKIE_PREFIX);
    let pass = Pass { tunnel: holder.tunnel.clone(), cookie_hash: secrets::hash_token(&cookie) };
    app.live.web.lock().insert(attach.session.id.clone(), pass);
    tokio::spawn(async move {
        let _running = running;
        let reason = holder.hold(&app, std::future::pending()).await;
        app.live.web.lock().remove(&attach.session.id);
        holder.finish(&app, &attach, &reason).await;
        tracing::info!(session_id = %attach.session.id, reason = %reason, "device web page session ended");
    });
    let secure = if secure { "; Secure" } else { "" };
    Ok(format!("{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax{secure}"))
}

/// The answer to a request without this session's cookie (none, another's, or the session has
/// ended): the link has expired; the way back is the console.
pub fn expired() -> Response<Body> {
    page(
        StatusCode::UNAUTHORIZED,
        "This link to the device's web page has expired",
        "The session behind it has ended, or this browser was not the one that opened it. Open the device's web page again from its page in the console.",
    )
}

#[derive(askama::Template)]
#[template(
    ext = "html",
    source = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>{{ title }}</h1><p>{{ detail }}</p></body></html>"#
)]
struct Notice<'a> {
    title: &'a str,
    detail: &'a str,
}

/// A short HTML page (this door's own, never cached) saying what happened.
pub fn page(status: StatusCode, title: &str, detail: &str) -> Response<Body> {
    let html = askama::Template::render(&Notice { title, detail }).unwrap_or_else(|_| title.to_owned());
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The request's cookies as (name, value) pairs.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// `host[:port]` without the port (`[::1]:8080` → `[::1]`).
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `:port` of `host[:port]`, or nothing.
fn port_of(host: &str) -> String {
    let name = without_port(host);
    host[name.len()..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

    #[test]
    fn only_a_session_id_under_the_domain_names_a_device_web_page() {
        assert_eq!(session_of_host(&format!("{ID}.localhost:8080"), "localhost"), Some(ID));
        assert_eq!(session_of_host(&format!("{ID}.devices.example.com"), "devices.example.com"), Some(ID));
        for other in [
            "localhost:8080".to_owned(),
            "127.0.0.1:8080".to_owned(),
            format!("{ID}.example.com"),
            format!("x.{ID}.localhost"),
            format!("{}.localhost", ID.to_uppercase()),
            format!("{}.localhost", ID.replace('-', "")),
            "baton.localhost".to_owned(),
        ] {
            assert_eq!(session_of_host(&other, "localhost"), None, "{other}");
        }
    }

    #[test]
    fn the_link_keeps_the_consoles_scheme_and_port_or_the_public_urls() {
        let mut settings = Settings::default();
        let link = link(&settings, Some("127.0.0.1:41234"), ID, "bx_t");
        assert_eq!(link, format!("http://{ID}.localhost:41234/.baton/open?token=bx_t"));
        assert_eq!(
            super::link(&settings, Some("localhost"), ID, "bx_t"),
            format!("http://{ID}.localhost/.baton/open?token=bx_t")
        );
        settings.public_url = Some("https://baton.example.com:8443/".into());
        settings.remote_web_domain = "devices.example.com".into();
        let link = super::link(&settings, Some("10.0.0.1:8080"), ID, "bx_t");
        assert_eq!(link, format!("https://{ID}.devices.example.com:8443/.baton/open?token=bx_t"));
        assert_eq!(scheme(&settings), "https");
    }
}
