//! Extractors. [`Authz`] authenticates the caller and checks the permission the handler names in
//! its type, before anything else is read — so a handler without it does not get a tenant, and
//! a refused caller learns nothing about the body's validity. [`Json`], [`Query`] and [`Path`]
//! wrap axum's to report bad input as problem+json.

use std::marker::PhantomData;

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::problem::problem;
use crate::Error;
use crate::state::AppState;
use baton_core::access::{Permission, Principal, secrets, sessions, tokens};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "baton_session";
/// Header carrying the CSRF token on cookie-authenticated changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The permission a route needs, as a type, so `Authz<DevicesWrite>` reads as a sentence.
pub trait Perm: Send + Sync + 'static {
    /// `None`: any authenticated caller.
    const PERMISSION: Option<Permission>;
    /// Routes whose exact permission depends on what is asked: the caller needs at least one of
    /// these, and the handler checks the one it needs ([`Authz::require`]).
    const ANY_OF: &'static [Permission] = &[];
}

/// Permission markers for [`Authz`].
pub mod perm {
    use super::{Perm, Permission};

    macro_rules! markers {
        ($($name:ident),*) => {$(
            pub struct $name;
            impl Perm for $name {
                const PERMISSION: Option<Permission> = Some(Permission::$name);
            }
        )*};
    }
    markers!(
        DevicesRead,
        DevicesWrite,
        GroupsRead,
        GroupsWrite,
        TokensRead,
        TokensWrite,
        UsersRead,
        UsersWrite,
        CommandsRead,
        CommandsWrite,
        EnrollmentRead,
        EnrollmentWrite,
        ArtifactsRead,
        ArtifactsWrite,
        SigningKeysWrite,
        RolloutsRead,
        RolloutsWrite,
        RemoteTerminal,
        RemoteWatch,
        RemoteLogs,
        RemoteFiles,
        RemoteTunnel,
        RemoteScreenView,
        RemoteScreenControl,
        RemoteRecordings,
        RemotePolicy,
        TenantsRead,
        TenantsWrite
    );

    /// Any of the permissions that open a remote session (the kind asked decides which).
    pub struct RemoteSession;
    impl Perm for RemoteSession {
        const PERMISSION: Option<Permission> = None;
        const ANY_OF: &'static [Permission] = &[
            Permission::RemoteTerminal,
            Permission::RemoteTunnel,
            Permission::RemoteScreenView,
            Permission::RemoteScreenControl,
        ];
    }

    /// Any authenticated caller.
    pub struct Authenticated;
    impl Perm for Authenticated {
        const PERMISSION: Option<Permission> = None;
    }
}

/// An authenticated caller allowed `P`.
pub struct Authz<P: Perm> {
    pub principal: Principal,
    _perm: PhantomData<P>,
}

impl<P: Perm> Authz<P> {
    pub fn scope(&self) -> &baton_core::access::TenantScope {
        &self.principal.scope
    }

    /// Refuses (403, naming it) a caller without `permission`: for routes whose permission
    /// depends on what is asked (a remote session's kind).
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        if self.principal.can(permission) {
            return Ok(());
        }
        Err(baton_core::Error::Forbidden(format!(
            "role `{}` lacks the permission `{permission}`",
            self.principal.role.name
        ))
        .into())
    }
}

impl<P: Perm> FromRequestParts<AppState> for Authz<P> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let (secret, by_cookie) = credentials(&parts.headers)
            .ok_or_else(|| baton_core::Error::Unauthorized("sign in or send `Authorization: Bearer <token>`".into()))?;
        let principal = if secret.starts_with(secrets::SESSION_PREFIX) {
            sessions::authenticate(&state.db, &secret).await?
        } else {
            tokens::authenticate(&state.db, &secret).await?
        }
        .ok_or_else(|| {
            baton_core::Error::Unauthorized("the token or session is unknown, expired or revoked; sign in again".into())
        })?;
        let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if by_cookie && changes {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent.is_none() || sent != principal.csrf_token.as_deref() {
                return Err(baton_core::Error::Forbidden(format!("missing or wrong `{CSRF_HEADER}` header")).into());
            }
        }
        if let Some(first) = P::ANY_OF.first()
            && !P::ANY_OF.iter().any(|p| principal.can(*p))
        {
            return Err(baton_core::Error::Forbidden(format!(
                "role `{}` lacks the permission `{first}` (or another that opens remote sessions)",
                principal.role.name
            ))
            .into());
        }
        if let Some(permission) = P::PERMISSION
            && !principal.can(permission)
        {
            return Err(baton_core::Error::Forbidden(format!(
                "role `{}` lacks the permission `{permission}`",
                if permission.is_platform() { "platform-admin" } else { principal.role.name },
            ))
            .into());
        }
        Ok(Self { principal, _perm: PhantomData })
    }
}

/// The bearer token, or else the session cookie (and whether it came from the cookie).
pub(crate) fn credentials(headers: &axum::http::HeaderMap) -> Option<(String, bool)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        return (!token.is_empty()).then(|| (token.to_owned(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('=').map(str::to_owned))
        .map(|s| (s, true))
}

/// JSON body in and out; a body that does not parse, or is not an object, is a problem+json
/// 4xx naming the field.
/// A number with a zero fraction (`60.0`) is an integer, as JSON Schema (and so the OpenAPI
/// document) counts it, though serde refuses it for an integer field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        if !is_json(req.headers()) {
            let detail = "send the body as JSON with `Content-Type: application/json`";
            return Err(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", detail));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                problem(rejection.status(), "too-large", "the request body is larger than this server accepts")
            } else {
                problem(rejection.status(), "bad-request", rejection.body_text())
            }
        })?;
        let value = match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => v,
            Err(JsonRejection::JsonDataError(e)) => {
                with_whole_numbers(&bytes).ok_or_else(|| problem(e.status(), "invalid", e.body_text()))?
            }
            Err(e) => return Err(problem(e.status(), "malformed-json", e.body_text())),
        };
        // Serde also reads a struct from an array of its fields; every body here is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "the body must be a JSON object"));
        }
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `application/json` or a `+json` type, as axum's own extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body again, its whole numbers written as integers; `None` when that changes nothing or
/// does not help.
fn with_whole_numbers<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => {
                let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) else { return false };
                // Both bounds are exact powers of two, so the casts below are exact.
                let whole = if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    serde_json::Number::from(f as u64)
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    serde_json::Number::from(f as i64)
                } else {
                    return false;
                };
                *n = whole;
                true
            }
            serde_json::Value::Array(items) => items.iter_mut().map(walk).fold(false, |a, b| a | b),
            serde_json::Value::Object(map) => map.values_mut().map(walk).fold(false, |a, b| a | b),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then(|| serde_json::from_value(value).ok()).flatten()
}

/// Query string; parameters that do not parse are a 400 naming them.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| problem(StatusCode::BAD_REQUEST, "bad-query", e.body_text()))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| problem(StatusCode::BAD_REQUEST, "bad-path", e.body_text()))
    }
}
