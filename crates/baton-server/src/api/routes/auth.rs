//! `/api/v1/auth/*`, `/api/v1/me` and `/api/v1/roles`: signing in and out, and who the caller is.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::api::access::{LoginRequest, Me, Role as WireRole, Session};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, SESSION_COOKIE, credentials, perm},
};
use baton_core::{
    access::{Principal, permissions::BUILTIN_ROLES, sessions, users},
    store::from_ms,
    tenants::DEFAULT_TENANT,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(logout)).routes(routes!(me)).routes(routes!(roles))
}

/// Sign in with a username and password. Sets the session cookie and returns the session,
/// whose token also works as a bearer token. Rate-limited per client address and account.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "access", request_body = LoginRequest, security(()),
    responses((status = 200, body = Session), (status = 429, description = "Too many attempts")))]
async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, Error> {
    let tenant = req.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    let mut keys = vec![format!("ip:{}", peer.ip())];
    let plausible = users::plausible_username(&req.username) && users::plausible_username(tenant);
    if plausible {
        keys.push(format!("user:{tenant}/{}", req.username));
    }
    app.login_limiter.attempt(&keys).map_err(baton_core::Error::RateLimited)?;
    if !plausible || req.password.len() > 1024 {
        return Err(baton_core::Error::Unauthorized("wrong tenant, username or password".into()).into());
    }
    let (scope, user_id) = users::verify_login(&app.db, tenant, &req.username, &req.password)
        .await?
        .ok_or_else(|| baton_core::Error::Unauthorized("wrong tenant, username or password".into()))?;
    let ttl_ms = i64::from(app.settings.session_ttl_hours) * 3_600_000;
    let session = sessions::create(&app.db, &scope, &user_id, ttl_ms).await?;
    let principal = sessions::authenticate(&app.db, &session.secret)
        .await?
        .ok_or_else(|| anyhow::anyhow!("a session just created does not authenticate"))?;
    let secure = if app.settings.tls_enabled() { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session.secret,
        ttl_ms / 1000
    );
    let body = Session {
        token: session.secret,
        csrf_token: session.csrf_token,
        expires_at: from_ms(session.expires_at_ms),
        me: me_of(&principal),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(anyhow::Error::from)?);
    Ok(response)
}

/// End the current session and clear the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "access", responses((status = 204)))]
async fn logout(
    _auth: Authz<perm::Authenticated>,
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    // The same credentials the extractor authenticated; an API token is not a session, and
    // deleting by its hash finds nothing.
    if let Some((secret, _)) = credentials(&headers) {
        sessions::delete(&app.db, &secret).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// The caller: tenant, identity, role and permissions.
#[utoipa::path(get, path = "/api/v1/me", tag = "access", responses((status = 200, body = Me)))]
async fn me(auth: Authz<perm::Authenticated>) -> Json<Me> {
    Json(me_of(&auth.principal))
}

/// The roles that can be given to users and tokens, and what each grants.
#[utoipa::path(get, path = "/api/v1/roles", tag = "access", responses((status = 200, body = Vec<WireRole>)))]
async fn roles(_auth: Authz<perm::Authenticated>) -> Json<Vec<WireRole>> {
    Json(
        BUILTIN_ROLES
            .iter()
            .map(|r| WireRole {
                name: r.name.into(),
                description: r.description.into(),
                permissions: r.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            })
            .collect(),
    )
}

fn me_of(p: &Principal) -> Me {
    Me {
        tenant_id: p.scope.id().to_owned(),
        tenant_name: p.tenant_name.clone(),
        subject: p.subject_label(),
        role: p.role.name.to_owned(),
        platform_admin: p.platform_admin,
        permissions: p.permissions().iter().map(|p| p.as_str().to_owned()).collect(),
    }
}
