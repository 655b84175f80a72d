//! `/api/v1/artifacts` and `/api/v1/signing-keys`: uploading artifacts (the body streamed to the
//! store), listing, reading them back with HTTP Range, and the keys that sign them.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use baton_proto::api::{
    Page,
    artifacts::{Artifact, ArtifactQuery, ArtifactUpload, SigningKey, SigningKeyCreate},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
};
use baton_core::artifacts::{self, signing};

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
    baton_core::rollouts::rules::apply(&app.db, &app.bus, &app.rollouts, auth.scope(), &artifact).await;
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
    Ok(artifacts::list(&app.db, auth.scope(), &q).await.map(Json)?)
}

/// One artifact.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}", tag = "artifacts", params(("id" = String, Path)),
    responses((status = 200, body = Artifact)))]
async fn get_artifact(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Artifact>, Error> {
    Ok(artifacts::get(&app.db, auth.scope(), &id).await.map(Json)?)
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
        (status = 409, description = "an external artifact: its bytes are at its URL, not here"),
        (status = 416, description = "the range is outside the artifact")))]
async fn artifact_content(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let found = artifacts::locate(&app.db, auth.scope(), &id).await?;
    crate::web::ranged::serve(&app, &found, &headers, None).await
}

/// The tenant's signing keys, revoked ones too.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "artifacts", responses((status = 200, body = Vec<SigningKey>)))]
async fn list_keys(
    auth: Authz<perm::ArtifactsRead>,
    State(app): State<AppState>,
) -> Result<Json<Vec<SigningKey>>, Error> {
    Ok(signing::list(&app.db, auth.scope()).await.map(Json)?)
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
    Ok(signing::revoke(&app.db, auth.scope(), &id).await.map(Json)?)
}
