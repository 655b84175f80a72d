//! Who is signed in to the console: the session cookie (never a bearer token: a page is a
//! browser's), checked on every page; signing in with a form (rate-limited like the API's
//! login) and out (with the CSRF token).

use std::{marker::PhantomData, net::SocketAddr};

use askama::Template;
use axum::{
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, HeaderValue, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::form::Form;
use crate::{
    Error,
    state::AppState,
    web::extract::{Perm, SESSION_COOKIE, credentials, perm},
};
use baton_core::{
    access::{Permission, Principal, Subject, secrets, sessions, users},
    tenants::DEFAULT_TENANT,
};

/// A signed-in person, as pages show them.
pub(super) struct User {
    pub principal: Principal,
    pub name: String,
    pub role: String,
    pub tenant: String,
    pub csrf: String,
    /// Which pages are open to them (the menu shows only what they may open).
    pub sees_enrollment: bool,
    pub sees_groups: bool,
    pub sees_commands: bool,
    pub sees_artifacts: bool,
    pub sees_rollouts: bool,
    pub sees_recordings: bool,
    pub sees_admin: bool,
}

/// A page for a signed-in person whose role has `P`: the permission is in the handler's type,
/// as the API's `Authz<P>` is, so a page cannot forget it. Without a live session the browser
/// is sent to the sign-in page; without the permission the page is refused (403).
pub(super) struct Page<P: Perm>(pub User, pub PhantomData<P>);

impl<P: Perm> FromRequestParts<AppState> for Page<P> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let user = signed_in(parts, app).await?;
        if let Some(permission) = P::PERMISSION {
            user.need(permission).map_err(|e| Error::from(e).into_response())?;
        }
        Ok(Page(user, PhantomData))
    }
}

/// The person the session cookie names; without a live session, the sign-in page.
async fn signed_in(parts: &Parts, app: &AppState) -> Result<User, Response> {
    let to_login = || Redirect::to("/login").into_response();
    let Some((secret, true)) = credentials(&parts.headers) else { return Err(to_login()) };
    if !secret.starts_with(secrets::SESSION_PREFIX) {
        return Err(to_login());
    }
    let principal = match sessions::authenticate(&app.db, &secret).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(to_login()),
        Err(e) => return Err(Error::from(e).into_response()),
    };
    let name = match &principal.subject {
        Subject::User { username, .. } => username.clone(),
        Subject::Token { name, .. } | Subject::System { name } => name.clone(),
    };
    Ok(User {
        name,
        role: principal.role.name.to_owned(),
        tenant: principal.tenant_name.clone(),
        csrf: principal.csrf_token.clone().unwrap_or_default(),
        sees_enrollment: principal.can(Permission::EnrollmentRead),
        sees_groups: principal.can(Permission::GroupsRead),
        sees_commands: principal.can(Permission::CommandsRead),
        sees_artifacts: principal.can(Permission::ArtifactsRead),
        sees_rollouts: principal.can(Permission::RolloutsRead),
        sees_recordings: principal.can(Permission::RemoteRecordings),
        sees_admin: principal.can(Permission::UsersRead)
            || principal.can(Permission::TokensRead)
            || principal.can(Permission::TenantsRead),
        principal,
    })
}

impl User {
    /// Refuses a user whose role lacks `permission`, in the API's words. Pages state their
    /// permission in their type ([`Page`], [`Changing`]); this is for the checks that depend on
    /// what the request asks (one bulk action or another).
    pub(super) fn need(&self, permission: Permission) -> Result<(), baton_core::Error> {
        if self.principal.can(permission) {
            Ok(())
        } else {
            Err(baton_core::Error::Forbidden(format!("role `{}` lacks the permission `{permission}`", self.role)))
        }
    }
}

/// A signed-in person whose role has `P` making a change: the request carries the session's
/// CSRF token (htmx sends it as the `x-csrf-token` header), so another site cannot make the
/// change in their name. Every handler that changes something takes this instead of [`Page`].
pub(super) struct Changing<P: Perm>(pub User, pub PhantomData<P>);

impl<P: Perm> FromRequestParts<AppState> for Changing<P> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Page(user, _) = Page::<P>::from_request_parts(parts, app).await?;
        let sent = parts.headers.get(crate::web::extract::CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent.is_some_and(|s| !user.csrf.is_empty() && s == user.csrf) {
            Ok(Changing(user, PhantomData))
        } else {
            Err(Error::from(baton_core::Error::Forbidden("missing or wrong CSRF token; reload the page".into()))
                .into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    error: Option<String>,
    username: String,
    tenant: String,
}

pub(super) async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    // Already signed in: straight to the overview.
    if let Some((secret, true)) = credentials(&headers)
        && matches!(sessions::authenticate(&app.db, &secret).await, Ok(Some(_)))
    {
        return Redirect::to("/").into_response();
    }
    render(LoginPage { user: None, csrf: None, nav: "", error: None, username: String::new(), tenant: String::new() })
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    tenant: String,
}

pub(super) async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let tenant = if form.tenant.trim().is_empty() { DEFAULT_TENANT.to_owned() } else { form.tenant.trim().to_owned() };
    let again = |error: String| {
        render(LoginPage {
            user: None,
            csrf: None,
            nav: "",
            error: Some(error),
            username: form.username.clone(),
            tenant: if tenant == DEFAULT_TENANT { String::new() } else { tenant.clone() },
        })
    };
    let mut keys = vec![format!("ip:{}", peer.ip())];
    let plausible = users::plausible_username(&form.username) && users::plausible_username(&tenant);
    if plausible {
        keys.push(format!("user:{tenant}/{}", form.username));
    }
    if let Err(wait) = app.login_limiter.attempt(&keys) {
        return again(format!("Too many attempts. Try again in {wait} seconds."));
    }
    let verified = if plausible && form.password.len() <= 1024 {
        users::verify_login(&app.db, &tenant, &form.username, &form.password).await
    } else {
        Ok(None)
    };
    let (scope, user_id) = match verified {
        Ok(Some(found)) => found,
        Ok(None) => return again("Wrong tenant, user name or password.".into()),
        Err(e) => return Error::from(e).into_response(),
    };
    let ttl_ms = i64::from(app.settings.session_ttl_hours) * 3_600_000;
    let session = match sessions::create(&app.db, &scope, &user_id, ttl_ms).await {
        Ok(s) => s,
        Err(e) => return Error::from(e).into_response(),
    };
    let secure = if app.settings.tls_enabled() { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session.secret,
        ttl_ms / 1000
    );
    with_cookie(Redirect::to("/").into_response(), &cookie)
}

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out; the form carries the CSRF token, so another site cannot sign a user out.
pub(super) async fn logout(
    Page(user, _): Page<perm::Authenticated>,
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if form.csrf != user.csrf {
        return Error::from(baton_core::Error::Forbidden("missing or wrong CSRF token; reload the page".into()))
            .into_response();
    }
    if let Some((secret, _)) = credentials(&headers)
        && let Err(e) = sessions::delete(&app.db, &secret).await
    {
        return Error::from(e).into_response();
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/login").into_response(), &clear)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A page, or the server's error if the template fails.
pub(super) fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => Error::from(baton_core::Error::Internal(anyhow::anyhow!("rendering a page: {e}"))).into_response(),
    }
}
