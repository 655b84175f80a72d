//! `/api/v1/artifacts` and `/api/v1/signing-keys`: uploading artifacts (the body streamed to the
//! store), listing, reading them back with HTTP Range, and the keys that sign them.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    Page,
    artifacts::{Artifact, ArtifactQuery, ArtifactUpload, SigningKey, SigningKeyCreate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    artifacts::{self, signing},
    http::{
        AppState,
        extract::{Authz, Json, Path, Query, perm},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_artifacts, upload_artifact))
        .routes(routes!(get_artifact, delete_artifact))
        .routes(routes!(artifact_content))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// Upload an artifact: the body is its bytes (any size, streamed), the query its facts. It is
/// signed with the tenant's server-held key, or carries a signature made offline, checked here.
#[utoipa::path(post, path = "/api/v1/artifacts", tag = "artifacts", params(ArtifactUpload),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Artifact)))]
async fn upload_artifact(
    auth: Authz<perm::ArtifactsWrite>,
    State(app): State<AppState>,
    Query(facts): Query<ArtifactUpload>,
    body: Body,
) -> Result<(StatusCode, Json<Artifact>), Error> {
    let stream = body.into_data_stream();
    let artifact =
        artifacts::upload(&app.db, app.artifacts.as_ref(), auth.scope(), &auth.principal, facts, stream).await?;
    crate::rollouts::rules::apply(&app.db, &app.bus, &app.rollouts, auth.scope(), &artifact).await;
    Ok((StatusCode::CREATED, Json(artifact)))
}

/// Artifacts, newest first, optionally of one name.
#[utoipa::path(get, path = "/api/v1/artifacts", tag = "artifacts", params(ArtifactQuery),
    responses((status = 200, body = Page<Artifact>)))]
async fn list_artifacts(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Query(q): Query<ArtifactQuery>,
) -> Result<Json<Page<Artifact>>, Error> {
    artifacts::list(&app.db, auth.scope(), &q).await.map(Json)
}

/// One artifact.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}", tag = "artifacts", params(("id" = String, Path)),
    responses((status = 200, body = Artifact)))]
async fn get_artifact(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Artifact>, Error> {
    artifacts::get(&app.db, auth.scope(), &id).await.map(Json)
}

/// Delete an artifact and its bytes.
#[utoipa::path(delete, path = "/api/v1/artifacts/{id}", tag = "artifacts", params(("id" = String, Path)),
    responses((status = 204)))]
async fn delete_artifact(
    auth: Authz<perm::ArtifactsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    artifacts::delete(&app.db, app.artifacts.as_ref(), auth.scope(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The artifact's bytes. A `Range: bytes=start-end` header (one range) gets 206 with that part,
/// so an interrupted download resumes; a range past the end gets 416.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/content", tag = "artifacts", params(("id" = String, Path)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "the asked range"),
        (status = 416, description = "the range is outside the artifact")))]
async fn artifact_content(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let found = artifacts::locate(&app.db, auth.scope(), &id).await?;
    serve(&app, &found, &headers).await
}

/// An artifact's bytes as a response, honouring one `Range`.
pub(crate) async fn serve(app: &AppState, found: &artifacts::Located, headers: &HeaderMap) -> Result<Response, Error> {
    let size = found.artifact.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range.map(|r| parse_range(r, size)) {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let stream = artifacts::read(app.artifacts.as_ref(), found, start, len).await?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", found.artifact.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` of a resource of `size` bytes, as inclusive offsets;
/// `None` when it is malformed, holds several ranges, or lies outside.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (from, to) = spec.split_once('-')?;
    let (start, end) = match (from.trim(), to.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

/// The tenant's signing keys, revoked ones too.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "artifacts", responses((status = 200, body = Vec<SigningKey>)))]
async fn list_keys(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
) -> Result<Json<Vec<SigningKey>>, Error> {
    signing::list(&app.db, auth.scope()).await.map(Json)
}

/// Make a key the server holds and signs with, or register a public key kept offline.
#[utoipa::path(post, path = "/api/v1/signing-keys", tag = "artifacts", request_body = SigningKeyCreate,
    responses((status = 201, body = SigningKey)))]
async fn create_key(
    auth: Authz<perm::SigningKeysWrite>,
    State(app): State<AppState>,
    Json(req): Json<SigningKeyCreate>,
) -> Result<(StatusCode, Json<SigningKey>), Error> {
    let key = signing::create(&app.db, auth.scope(), req).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Revoke a signing key: it signs nothing more and its signatures are no longer accepted.
#[utoipa::path(post, path = "/api/v1/signing-keys/{id}/revoke", tag = "artifacts", params(("id" = String, Path)),
    responses((status = 200, body = SigningKey)))]
async fn revoke_key(
    auth: Authz<perm::SigningKeysWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SigningKey>, Error> {
    signing::revoke(&app.db, auth.scope(), &id).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-5000", 1000), Some((0, 999)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some((990, 999)));
        for bad in ["bytes=1000-", "bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-1", "bytes=-"] {
            assert_eq!(parse_range(bad, 1000), None, "{bad}");
        }
    }
}
