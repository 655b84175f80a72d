//! A device's web page from its console page: the small form ("Web page on the device — port
//! 80, Open") posts here in a new tab; the answer makes a tunnel session to that port on the
//! device and sends the tab to the session's own host (`remote::web`), where the device's page
//! opens outside the console's origin.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Redirect, Response},
};
use baton_core::remote::{self, Actor};
use baton_proto::api::remote::{SessionCreate, SessionKind};
use serde::Deserialize;

use super::{form::Form, session::Page};
use crate::{Error, remote::web, state::AppState, web::extract::perm};

/// The form's fields: the session's CSRF token (a plain form, as signing out is: it opens a
/// new tab, so htmx does not send it) and the port.
#[derive(Deserialize)]
pub(super) struct WebForm {
    csrf: String,
    port: String,
}

/// `POST /devices/{id}/web`: a tunnel session to `localhost:<port>` on the device, and a 303 to
/// its web page's link (which carries the session's one-time token).
pub(super) async fn open(
    Page(user, _): Page<perm::RemoteTunnel>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<WebForm>,
) -> Result<Response, Error> {
    if form.csrf.is_empty() || form.csrf != user.csrf {
        return Err(baton_core::Error::Forbidden("missing or wrong CSRF token; reload the page".into()).into());
    }
    let port = form.port.trim().parse::<u16>().ok().filter(|p| *p != 0);
    let port = port
        .ok_or_else(|| baton_core::Error::invalid("/port", "give the TCP port of the device's web page, 1 to 65535"))?;
    let req = SessionCreate {
        kind: SessionKind::Tunnel,
        host: Some("localhost".into()),
        port: Some(port),
        ..Default::default()
    };
    let actor = Actor::of(&user.principal, Some(peer.ip().to_string()));
    let limits = remote::Limits::of(&app.settings);
    let (ticket, _) = remote::create(&app.db, &user.principal.scope, &id, &req, &actor, limits).await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok(Redirect::to(&web::link(&app.settings, host, &ticket.session.id, &ticket.token)).into_response())
}
