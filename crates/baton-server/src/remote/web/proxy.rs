//! One browser request passed to the device's web server and its answer passed back, both
//! streamed: HTTP/1.1 over a new tunnel connection per request. The device sees itself asked
//! (`Host`, and `Origin`/`Referer` when they were this host's) and never this door's or the
//! console's cookies; hop-by-hop headers stay on their own hop. A WebSocket upgrade goes
//! through: once the device switches protocols, the two connections are joined byte for byte.

use std::sync::Arc;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header},
};
use hyper_util::rt::TokioIo;

use super::{COOKIE, Tunnel, io};
use crate::remote::Relay;

/// Headers that belong to one connection, not to the request or response (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Where a request came from and what the device must not see of it.
pub struct Asked<'a> {
    /// The scheme and host the browser asked, e.g. `http://<session>.localhost:8080`.
    pub origin: &'a str,
    /// Cookies of the server's own (the console's session) besides this door's.
    pub withheld_cookies: &'a [&'a str],
}

/// Passes `request` to the device through `tunnel`, and its answer back; a device that cannot
/// be reached is a 502 page.
pub async fn forward(
    app: &Relay,
    tunnel: Arc<Tunnel>,
    mut request: Request<Body>,
    asked: &Asked<'_>,
) -> Response<Body> {
    let target = format!("{}:{}", tunnel.host, tunnel.port);
    let io = match io::connect(app, tunnel).await {
        Ok(io) => io,
        Err(not) => return bad_gateway(&not.reason()),
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return bad_gateway(&format!("the connection to the device failed: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "a device web page's connection ended");
        }
    });
    let upgrade = upgrade_asked(request.headers()).then(|| hyper::upgrade::on(&mut request));
    let request = to_device(request, &target, asked);
    let mut response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return bad_gateway(&format!("the device's web server did not answer: {e}")),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(browser) = upgrade
    {
        let device = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(browser), Ok(device)) = tokio::join!(browser, device) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(browser), &mut TokioIo::new(device)).await;
            }
        });
    }
    from_device(response.map(Body::new), &target, asked.origin)
}

/// The request as the device gets it.
fn to_device(request: Request<Body>, target: &str, asked: &Asked<'_>) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    let upgrade = upgrade_asked(&parts.headers).then(|| parts.headers.get(header::UPGRADE).cloned()).flatten();
    drop_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse().unwrap_or_default();
    parts.version = axum::http::Version::HTTP_11;
    if let Ok(host) = HeaderValue::from_str(target) {
        parts.headers.insert(header::HOST, host);
    }
    withhold_cookies(&mut parts.headers, asked.withheld_cookies);
    let device_origin = format!("http://{target}");
    for name in [header::ORIGIN, header::REFERER] {
        // Exactly this host's origin (then nothing, or a path): `https://<id>.dom.evil.net` is not.
        let ours = parts.headers.get(&name).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix(asked.origin));
        let ours = ours.filter(|rest| rest.is_empty() || rest.starts_with('/'));
        if let Some(rest) = ours.and_then(|rest| HeaderValue::from_str(&format!("{device_origin}{rest}")).ok()) {
            parts.headers.insert(name, rest);
        }
    }
    Request::from_parts(parts, body)
}

/// The device's answer as the browser gets it: a redirect to the device's own address points
/// at this host instead.
fn from_device(mut response: Response<Body>, target: &str, origin: &str) -> Response<Body> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    let kept = switching.then(|| (headers.get(header::CONNECTION).cloned(), headers.get(header::UPGRADE).cloned()));
    drop_hop_by_hop(headers);
    if let Some((connection, upgrade)) = kept {
        for (name, value) in [(header::CONNECTION, connection), (header::UPGRADE, upgrade)] {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
    }
    drop_cookie_domains(headers);
    let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
    let port_80 = target.strip_suffix(":80");
    let mut ours = location.and_then(|l| {
        [Some(target), port_80].into_iter().flatten().find_map(|t| l.strip_prefix(&format!("http://{t}")))
    });
    if let Some(path) = ours.take().filter(|p| p.is_empty() || p.starts_with('/'))
        && let Ok(value) = HeaderValue::from_str(&format!("{origin}{path}"))
    {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// Keeps the device's cookies on the session's host: a `Domain` attribute would let a device set
/// cookies for the console's own domain (and siblings), so it is taken out of every
/// `Set-Cookie`.
fn drop_cookie_domains(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        let Ok(text) = cookie.to_str() else { continue };
        let kept: Vec<&str> =
            text.split(';').filter(|part| !part.trim_start().to_ascii_lowercase().starts_with("domain=")).collect();
        if let Ok(value) = HeaderValue::from_str(&kept.join(";")) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// A WebSocket (or other protocol) upgrade asked for: `Connection: upgrade` with `Upgrade`.
fn upgrade_asked(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && listed(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Removes the hop-by-hop headers and those the `Connection` header names.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = listed(headers, header::CONNECTION).filter_map(|t| t.parse().ok()).collect();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    for name in named {
        headers.remove(name);
    }
}

/// The comma-separated tokens of every `name` header.
fn listed(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Takes this door's cookie and the `withheld` ones out of the request: the device gets its own
/// cookies only.
fn withhold_cookies(headers: &mut HeaderMap, withheld: &[&str]) {
    let theirs: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name).trim();
            !pair.is_empty() && name != COOKIE && !withheld.contains(&name)
        })
        .collect();
    let joined = HeaderValue::from_str(&theirs.join("; "));
    headers.remove(header::COOKIE);
    if let Ok(value) = joined.as_ref()
        && !value.is_empty()
    {
        headers.insert(header::COOKIE, value.clone());
    }
}

/// The device could not be reached: a page that says why.
fn bad_gateway(reason: &str) -> Response<Body> {
    tracing::info!(reason = %reason, "a device web page request failed");
    super::page(StatusCode::BAD_GATEWAY, "The device's web page did not answer", reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "http://01890a5d-ac96-774b-bcce-b302099a8057.localhost:8080";

    fn asked(headers: &[(&str, &str)]) -> HeaderMap {
        let mut request = Request::builder().uri("/admin?x=1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).expect("request");
        let sent =
            to_device(request, "localhost:8081", &Asked { origin: ORIGIN, withheld_cookies: &["baton_session"] });
        assert_eq!(sent.uri(), "/admin?x=1");
        sent.headers().clone()
    }

    #[test]
    fn the_device_gets_its_own_host_and_cookies_and_no_hop_by_hop_headers() {
        let cookie = "a=1; baton_web=bw_secret; baton_session=bs_secret; b=2";
        let headers = asked(&[
            ("host", "01890a5d-ac96-774b-bcce-b302099a8057.localhost:8080"),
            ("cookie", cookie),
            ("cookie", "baton_session=bs_other"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("te", "trailers"),
            ("origin", ORIGIN),
            ("referer", &format!("{ORIGIN}/page")),
            ("accept", "text/html"),
        ]);
        assert_eq!(headers["host"], "localhost:8081");
        assert_eq!(headers.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        for gone in ["connection", "x-private", "te"] {
            assert!(!headers.contains_key(gone), "{gone}: {headers:?}");
        }
        assert_eq!(headers["origin"], "http://localhost:8081");
        assert_eq!(headers["referer"], "http://localhost:8081/page");
        assert_eq!(headers["accept"], "text/html");
        let only_ours = asked(&[("cookie", "baton_web=bw_secret")]);
        assert!(!only_ours.contains_key("cookie"), "{only_ours:?}");
    }

    #[test]
    fn a_websocket_upgrade_keeps_its_upgrade_headers() {
        let headers = asked(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")]);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["sec-websocket-key"], "k");
    }

    #[test]
    fn a_redirect_to_the_devices_own_address_stays_on_this_host() {
        for (location, want) in [
            ("http://localhost:8081/login", format!("{ORIGIN}/login")),
            ("/login", "/login".to_owned()),
            ("http://elsewhere.example/", "http://elsewhere.example/".to_owned()),
        ] {
            let answered = from_device(redirect(location), "localhost:8081", ORIGIN);
            assert_eq!(answered.headers()["location"], want.as_str(), "{location}");
        }
        let answered = from_device(redirect("http://localhost/x"), "localhost:80", ORIGIN);
        assert_eq!(answered.headers()["location"], format!("{ORIGIN}/x").as_str());
    }

    fn redirect(location: &str) -> Response<Body> {
        Response::builder().status(302).header("location", location).body(Body::empty()).expect("response")
    }
}

#[cfg(test)]
mod boundary_tests {
    use super::*;

    #[test]
    fn only_this_hosts_own_origin_is_rewritten_and_device_cookies_stay_on_it() {
        let origin = "http://01890a5d-ac96-774b-bcce-b302099a8057.localhost:8080";
        let request = Request::builder()
            .uri("/")
            .header("origin", format!("{origin}.evil.net"))
            .header("referer", format!("{origin}/page"))
            .body(Body::empty())
            .expect("request");
        let sent = to_device(request, "localhost:80", &Asked { origin, withheld_cookies: &[] });
        assert_eq!(sent.headers()["origin"], format!("{origin}.evil.net"), "a longer host is not this one");
        assert_eq!(sent.headers()["referer"], "http://localhost:80/page");

        let response = Response::builder()
            .header("set-cookie", "sid=1; Domain=localhost; Path=/; HttpOnly")
            .header("set-cookie", "theme=dark")
            .body(Body::empty())
            .expect("response");
        let shown = from_device(response, "localhost:80", origin);
        let cookies: Vec<_> = shown.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap_or("")).collect();
        assert_eq!(cookies, ["sid=1; Path=/; HttpOnly", "theme=dark"]);
    }
}
