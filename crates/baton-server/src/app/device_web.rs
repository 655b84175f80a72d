//! The door to devices' web pages, in front of every other: a request whose host is
//! `<session>.<remote_web_domain>` never reaches the API or the console. On that host
//! `GET /.baton/open?token=…` opens the session's web page (the token spent, the session held,
//! the browser given its cookie and sent to `/`); every other request, with that cookie, goes
//! to the device (`remote::web`), and without it is answered that the link has expired.

use axum::{
    body::Body,
    extract::{Query, Request, State},
    http::{HeaderValue, Method, Response, StatusCode, Uri, header},
    middleware::Next,
};
use serde::Deserialize;

use crate::{
    remote::web::{self, Asked, NotOpen},
    state::AppState,
    web::extract::SESSION_COOKIE,
};

/// Sends requests for a device's web page to it; the rest go on to `next`.
pub async fn route(State(app): State<AppState>, request: Request, next: Next) -> Response<Body> {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let host = host.or_else(|| request.uri().authority().map(|a| a.as_str())).unwrap_or_default().to_owned();
    let Some(session) = web::session_of_host(&host, &app.settings.remote_web_domain).map(str::to_owned) else {
        return next.run(request).await;
    };
    let origin = format!("{}://{host}", web::scheme(&app.settings));
    if request.uri().path() == web::OPEN_PATH {
        return open(&app, &session, request.method().clone(), request.uri().clone()).await;
    }
    let Some(tunnel) = app.remote.web.check(&session, request.headers()) else { return web::expired() };
    let asked = Asked { origin: &origin, withheld_cookies: &[SESSION_COOKIE] };
    web::forward(&app.relay(), tunnel, request, &asked).await
}

#[derive(Deserialize)]
struct OpenQuery {
    token: String,
}

/// `GET /.baton/open?token=bx_…`: spends the token, sets the cookie and sends the browser to the
/// device's first page.
async fn open(app: &AppState, session: &str, method: Method, uri: Uri) -> Response<Body> {
    if method != Method::GET {
        return web::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not here",
            "This address only opens a link from the console.",
        );
    }
    let Ok(Query(query)) = Query::<OpenQuery>::try_from_uri(&uri) else { return web::expired() };
    let secure = web::scheme(&app.settings) == "https";
    match web::open(app.relay(), session, &query.token, secure).await {
        Ok(cookie) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::SEE_OTHER;
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, HeaderValue::from_static("/"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // The token in this address goes nowhere else.
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(NotOpen::Token(_)) => web::expired(),
        Err(NotOpen::Device(reason)) => {
            web::page(StatusCode::BAD_GATEWAY, "The device did not open its web page", &format!("{reason}."))
        }
        Err(NotOpen::Server) => web::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server failed",
            "The server could not open the device's web page; try again from the console.",
        ),
    }
}
