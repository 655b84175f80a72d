//! Errors as a browser sees them: a page navigation that fails gets an HTML page with the
//! server's words instead of problem+json; htmx requests keep problem+json, which the page's
//! script shows in place next to the control that made the request.

use askama::Template;
use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    user: Option<&'a super::session::User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    title: String,
    detail: String,
}

/// Turns the problem+json of a failed page navigation into an HTML page.
pub(super) async fn as_pages(request: Request, next: Next) -> Response {
    let navigation = request.headers().get("hx-request").is_none()
        && request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    let response = next.run(request).await;
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !navigation || !problem {
        return response;
    }
    let status = response.status();
    let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|p| p.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "Something went wrong.".into());
    let title = match status {
        StatusCode::NOT_FOUND => "Not found".to_owned(),
        StatusCode::FORBIDDEN => "Not allowed".to_owned(),
        s if s.is_client_error() => "That did not work".to_owned(),
        _ => "The server failed".to_owned(),
    };
    let page = ErrorPage { user: None, csrf: None, nav: "", title, detail };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, Body::from(body)).into_response(),
    }
}
