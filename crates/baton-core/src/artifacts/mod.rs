//! Artifacts: what updates install. An upload streams straight to the [`store`] (any size, never
//! held in memory) while its SHA-256 and size are computed; it is checked against what the
//! uploader declared, signed by the tenant's server-held key or checked against the offline
//! signature it came with ([`signing`]), and only then recorded. Reads serve byte ranges, so an
//! interrupted download resumes where it stopped. The store is any [`ArtifactStore`]: the
//! server opens a local directory or an S3-compatible bucket, as `artifact_store` says.
//!
//! An artifact may also be *external*: registered with the URL of the customer's own CDN and
//! the size and SHA-256 its bytes must have, signed the same way; devices download it from
//! there and check it against those facts, and the server never holds or serves its bytes.
//!
//! This module owns the `artifacts` and `signing_keys` tables.

pub mod file_chunks;
pub mod serving;
pub mod signing;
pub mod store;

use std::{io, sync::Arc};

use baton_proto::{
    api::{
        Page,
        artifacts::{
            Artifact, ArtifactKind, ArtifactQuery, ArtifactSignature, ArtifactUpload, Compatibility, Dependency,
            Storage, statement,
        },
    },
    labels::Selector,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};
use tokio::io::AsyncWriteExt;

pub use self::store::{ArtifactStore, ByteStream, LocalStore};
use crate::{
    Error,
    access::{Principal, TenantScope},
    error::Violations,
    pagination,
    store::{Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

/// The largest artifact accepted (a full disk image fits).
pub const MAX_ARTIFACT_BYTES: u64 = 64 << 30;

const COLUMNS: &str = "id, name, version, kind, size, sha256, signature_key_id, signature, compatibility, depends, \
    storage, url, object_key, created_by, created_at";

/// The longest URL an external artifact may have.
const MAX_URL_BYTES: usize = 2048;

/// Stores an upload: the bytes from `body`, the facts from `facts`. Nothing is recorded unless
/// every byte arrived and matches what was declared. Facts with a `url` register an external
/// artifact instead, and the body must be empty.
pub async fn upload<S, E>(
    db: &Db,
    store: &dyn ArtifactStore,
    scope: &TenantScope,
    by: &Principal,
    facts: ArtifactUpload,
    body: S,
) -> Result<Artifact, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if facts.url.is_some() {
        return register_external(db, scope, by, facts, body).await;
    }
    let early = match check(&facts) {
        Ok(_) if exists(db, scope, &facts.name, &facts.version).await? => Err(conflict(&facts)),
        other => other,
    };
    let checked = match early {
        Ok(checked) => checked,
        Err(e) => {
            // Read the body before answering: a client still sending would otherwise see its
            // connection closed instead of the reason.
            drain(body).await;
            return Err(e);
        }
    };
    let staged = tempfile::NamedTempFile::new_in(store.staging()).map_err(io_error)?;
    let (size, sha256) = receive(staged.path(), body).await?;
    if let Some(expected) = &facts.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(Error::invalid("sha256", format!("the bytes received hash to {sha256}, not {expected}")));
    }
    if let Some(declared) = facts.size
        && declared != size
    {
        return Err(Error::invalid("size", format!("{size} bytes were received, not {declared}")));
    }
    let said = statement(&facts.name, &facts.version, facts.kind, size, &sha256);
    let signature = sign_or_verify(db, scope, &said, checked.signature.clone()).await?;
    let id = new_id();
    let key = format!("{}/{id}", scope.id());
    let staged = staged.into_temp_path();
    store.put(&key, &staged).await.map_err(io_error)?;
    let record = Record { id: &id, facts: &facts, checked: &checked, size, sha256: &sha256, signature };
    if let Err(e) = insert(db, scope, by, record, Place::Stored(&key)).await {
        // Another upload of the same name and version won the race: ours goes.
        let _ = store.delete(&key).await;
        return Err(e);
    }
    metrics::counter!("baton_artifact_bytes_uploaded_total").increment(size);
    get(db, scope, &id).await
}

/// Registers an artifact whose bytes stay at `facts.url`, pinned by the declared size and hash.
async fn register_external<S, E>(
    db: &Db,
    scope: &TenantScope,
    by: &Principal,
    facts: ArtifactUpload,
    body: S,
) -> Result<Artifact, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let sent = drain(body).await;
    let checked = check(&facts)?;
    if sent > 0 {
        return Err(Error::invalid(
            "body",
            "an artifact with a `url` is registered with an empty body; its bytes stay at the URL",
        ));
    }
    if exists(db, scope, &facts.name, &facts.version).await? {
        return Err(conflict(&facts));
    }
    // `check` made sure both are there.
    let (Some(url), Some(sha256), Some(size)) = (facts.url.as_deref(), facts.sha256.as_deref(), facts.size) else {
        return Err(Error::invalid("url", "give `url` with `sha256` and `size`"));
    };
    let sha256 = sha256.to_ascii_lowercase();
    let said = statement(&facts.name, &facts.version, facts.kind, size, &sha256);
    let signature = sign_or_verify(db, scope, &said, checked.signature.clone()).await?;
    let id = new_id();
    let record = Record { id: &id, facts: &facts, checked: &checked, size, sha256: &sha256, signature };
    insert(db, scope, by, record, Place::External(url)).await?;
    get(db, scope, &id).await
}

/// Checks an offline signature, or signs with the tenant's server-held key (if it has one).
async fn sign_or_verify(
    db: &Db,
    scope: &TenantScope,
    said: &[u8],
    offline: Option<ArtifactSignature>,
) -> Result<Option<ArtifactSignature>, Error> {
    match offline {
        Some(sig) => {
            signing::verify(db, scope, said, &sig).await?;
            Ok(Some(sig))
        }
        None => signing::sign(db, scope, said).await,
    }
}

/// What an artifact's row records, wherever its bytes are.
struct Record<'a> {
    id: &'a str,
    facts: &'a ArtifactUpload,
    checked: &'a Checked,
    size: u64,
    sha256: &'a str,
    signature: Option<ArtifactSignature>,
}

/// Where an artifact's bytes are: under a key in the store, or at the customer's URL.
enum Place<'a> {
    Stored(&'a str),
    External(&'a str),
}

/// Records an artifact; the same name and version twice is a conflict.
async fn insert(db: &Db, scope: &TenantScope, by: &Principal, r: Record<'_>, place: Place<'_>) -> Result<(), Error> {
    let (storage, url, key) = match place {
        Place::Stored(key) => ("stored", None, Some(key)),
        Place::External(url) => ("external", Some(url), None),
    };
    let inserted = sqlx::query(
        "INSERT INTO artifacts (id, tenant_id, name, version, kind, size, sha256, signature_key_id, signature, \
         compatibility, depends, storage, url, object_key, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(r.id)
    .bind(scope.id())
    .bind(&r.facts.name)
    .bind(&r.facts.version)
    .bind(r.facts.kind.as_str())
    .bind(i64::try_from(r.size).unwrap_or(i64::MAX))
    .bind(r.sha256)
    .bind(r.signature.as_ref().map(|s| s.key_id.clone()))
    .bind(r.signature.as_ref().map(|s| s.signature.clone()))
    .bind(serde_json::to_string(&r.checked.compatibility).map_err(anyhow::Error::from)?)
    .bind(r.checked.depends.as_ref().map(serde_json::to_string).transpose().map_err(anyhow::Error::from)?)
    .bind(storage)
    .bind(url)
    .bind(key)
    .bind(by.subject_label())
    .bind(now_ms())
    .execute(db.writer())
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if Error::is_unique_violation(&e) => Err(conflict(r.facts)),
        Err(e) => Err(e.into()),
    }
}

/// Reads and drops what is left of a refused upload (bounded like an upload); returns the
/// number of bytes read.
async fn drain<S, E>(mut body: S) -> u64
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len() as u64;
        if seen > MAX_ARTIFACT_BYTES {
            break;
        }
    }
    seen
}

/// Writes the body to `path`, hashing it; refuses it past [`MAX_ARTIFACT_BYTES`].
async fn receive<S, E>(path: &std::path::Path, mut body: S) -> Result<(u64, String), Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path).await.map_err(io_error)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::invalid("body", format!("the upload was cut off: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_ARTIFACT_BYTES {
            return Err(Error::invalid("body", format!("an artifact is at most {MAX_ARTIFACT_BYTES} bytes")));
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    if size == 0 {
        return Err(Error::invalid("body", "the upload is empty; send the artifact's bytes as the body"));
    }
    file.flush().await.map_err(io_error)?;
    file.sync_all().await.map_err(io_error)?;
    Ok((size, hash.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

/// The parts of an upload's facts that need parsing.
struct Checked {
    compatibility: Compatibility,
    depends: Option<Dependency>,
    signature: Option<ArtifactSignature>,
}

fn check(facts: &ArtifactUpload) -> Result<Checked, Error> {
    let mut v = Violations::default();
    v.check("name", token(&facts.name, 128, "/+"));
    v.check("version", token(&facts.version, 64, "+~"));
    if let Some(h) = &facts.sha256
        && !(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        v.add("sha256", "64 hex digits");
    }
    if facts.size.is_some_and(|n| n == 0 || n > MAX_ARTIFACT_BYTES) {
        v.add("size", format!("1 to {MAX_ARTIFACT_BYTES} bytes"));
    }
    if let Some(url) = &facts.url {
        v.check("url", external_url(url));
        if facts.sha256.is_none() {
            v.add("sha256", "required with `url`: devices check what they download against it");
        }
        if facts.size.is_none() {
            v.add("size", "required with `url`: devices check what they download against it");
        }
    }
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref().unwrap_or("").split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
    };
    let compatibility =
        Compatibility { os: list(&facts.os), arch: list(&facts.arch), models: list(&facts.models), labels: None };
    for (field, items) in [("os", &compatibility.os), ("arch", &compatibility.arch), ("models", &compatibility.models)]
    {
        if items.len() > 32 || items.iter().any(|i| token(i, 64, "").is_err()) {
            v.add(field, "at most 32 comma-separated names of letters, digits, `.`, `_` and `-`");
        }
    }
    let labels = facts.labels.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(Err(e)) = labels.map(Selector::parse) {
        v.add("labels", e.to_string());
    }
    let depends = match facts.depends.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => {
            let at = text.find(['<', '>', '=', '!', '~']).unwrap_or(text.len());
            let (name, versions) = (text[..at].trim(), text[at..].trim());
            if token(name, 128, "/+").is_err() || versions.is_empty() {
                v.add("depends", "an artifact name and a version range, e.g. `runtime>=2.1,<3`");
            }
            Some(Dependency { name: name.to_owned(), versions: versions.to_owned() })
        }
    };
    let signature = match (&facts.signature, &facts.key_id) {
        (Some(signature), Some(key_id)) => {
            Some(ArtifactSignature { key_id: key_id.trim().to_owned(), signature: signature.trim().to_owned() })
        }
        (None, None) => None,
        _ => {
            v.add("signature", "give both `signature` and `key_id`, or neither");
            None
        }
    };
    v.finish()?;
    Ok(Checked {
        compatibility: Compatibility { labels: labels.map(str::to_owned), ..compatibility },
        depends,
        signature,
    })
}

/// An external artifact's URL: absolute `http` or `https` with a host, without credentials (it
/// is shown to everyone who can read the artifact, and sent to devices).
fn external_url(text: &str) -> Result<(), String> {
    let bad =
        || format!("an http:// or https:// URL with a host, without user or password, at most {MAX_URL_BYTES} bytes");
    if text.len() > MAX_URL_BYTES || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let url = url::Url::parse(text).map_err(|_| bad())?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none();
    if ok { Ok(()) } else { Err(bad()) }
}

/// 1 to `max` letters, digits, `.`, `_`, `-` and the `extra` characters, starting with a letter
/// or digit and without `..` (names end up in file names and URLs on devices).
fn token(text: &str, max: usize, extra: &str) -> Result<(), String> {
    let ok = text.len() <= max
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !text.contains("..")
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("1 to {max} letters, digits, `.`, `_`, `-` or `{extra}`, starting with a letter or digit"))
    }
}

fn conflict(facts: &ArtifactUpload) -> Error {
    Error::Conflict(format!("{} {} exists already; upload it with another version", facts.name, facts.version))
}

fn io_error(e: io::Error) -> Error {
    Error::Internal(anyhow::anyhow!("artifact store: {e}"))
}

async fn exists(db: &Db, scope: &TenantScope, name: &str, version: &str) -> Result<bool, Error> {
    let row = sqlx::query("SELECT id FROM artifacts WHERE tenant_id = $1 AND name = $2 AND version = $3")
        .bind(scope.id())
        .bind(name)
        .bind(version)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.is_some())
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<Artifact, Error> {
    Ok(locate(db, scope, id).await?.artifact)
}

/// Signs an artifact that arrived before the tenant had a server-held key, so devices can check
/// it like any other. An artifact with a signature keeps it.
pub async fn sign_if_unsigned(db: &Db, scope: &TenantScope, artifact: Artifact) -> Result<Artifact, Error> {
    if artifact.signature.is_some() {
        return Ok(artifact);
    }
    let text = statement(&artifact.name, &artifact.version, artifact.kind, artifact.size, &artifact.sha256);
    let Some(sig) = signing::sign(db, scope, &text).await? else {
        return Err(Error::Conflict(format!(
            "artifact {} is not signed and the tenant has no server-held key to sign it",
            artifact.id
        )));
    };
    sqlx::query(
        "UPDATE artifacts SET signature_key_id = $3, signature = $4 WHERE tenant_id = $1 AND id = $2 AND signature IS NULL",
    )
    .bind(scope.id())
    .bind(&artifact.id)
    .bind(&sig.key_id)
    .bind(&sig.signature)
    .execute(db.writer())
    .await?;
    get(db, scope, &artifact.id).await
}

/// An artifact and where its bytes are in the store (`None` for an external one).
pub struct Located {
    pub artifact: Artifact,
    key: Option<String>,
}

/// The artifact with where to [`read`] it.
pub async fn locate(db: &Db, scope: &TenantScope, id: &str) -> Result<Located, Error> {
    let not_found = || Error::NotFound(format!("artifact {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM artifacts WHERE tenant_id = $1 AND id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(not_found)?;
    Ok(Located { artifact: from_row(&row)?, key: row.try_get("object_key")? })
}

/// The tenant's artifacts, newest first.
pub async fn list(db: &Db, scope: &TenantScope, q: &ArtifactQuery) -> Result<Page<Artifact>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM artifacts WHERE tenant_id = "));
    sql.bind(scope.id());
    if let Some(name) = &q.name {
        sql.push(" AND name = ").bind(name.as_str());
    }
    pagination::newest_first(&mut sql, q.cursor.as_deref(), limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |a| pagination::newest_cursor(a.created_at, &a.id)))
}

/// Deletes an artifact and its bytes.
pub async fn delete(db: &Db, store: &dyn ArtifactStore, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let key = locate(db, scope, id).await?.key;
    let used = sqlx::query(
        "SELECT id FROM rollouts WHERE tenant_id = $1 AND (artifact_id = $2 OR rollback_artifact_id = $2) LIMIT 1",
    )
    .bind(scope.id())
    .bind(id)
    .fetch_optional(db.reader())
    .await?;
    if let Some(rollout) = used {
        let rollout: String = rollout.try_get("id")?;
        return Err(Error::Conflict(format!("artifact {id} is used by rollout {rollout}; delete that first")));
    }
    sqlx::query("DELETE FROM artifacts WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(db.writer())
        .await?;
    if let Some(key) = key {
        store.delete(&key).await.map_err(io_error)?;
    }
    Ok(())
}

/// Bytes `start..start + len` of an artifact (`len` already checked against its size).
pub async fn read(store: &dyn ArtifactStore, found: &Located, start: u64, len: u64) -> Result<ByteStream, Error> {
    let Some(key) = &found.key else {
        let a = &found.artifact;
        return Err(Error::Conflict(format!(
            "artifact {} is served from {}",
            a.id,
            a.url.as_deref().unwrap_or("its URL")
        )));
    };
    store.read(key, start, len).await.map_err(io_error)
}

/// The stored artifact's file, when the store keeps it on this machine (see
/// [`ArtifactStore::file`]); `None` for other stores and for external artifacts.
pub async fn file(store: &dyn ArtifactStore, found: &Located) -> Result<Option<Arc<std::fs::File>>, Error> {
    match &found.key {
        Some(key) => store.file(key).await.map_err(io_error),
        None => Ok(None),
    }
}

/// Where a device may fetch a stored artifact without the server, if the store says (a
/// presigned URL); `None` for a store that serves through the server, and for external
/// artifacts (their own URL is in the deployment already).
pub async fn direct_url(store: &dyn ArtifactStore, found: &Located) -> Result<Option<String>, Error> {
    match &found.key {
        Some(key) => store.direct_url(key).await.map_err(io_error),
        None => Ok(None),
    }
}

fn from_row(row: &AnyRow) -> Result<Artifact, Error> {
    let kind: String = row.try_get("kind")?;
    let storage: String = row.try_get("storage")?;
    let key_id: Option<String> = row.try_get("signature_key_id")?;
    let signature: Option<String> = row.try_get("signature")?;
    let depends: Option<String> = row.try_get("depends")?;
    Ok(Artifact {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        kind: ArtifactKind::parse(&kind).ok_or_else(|| anyhow::anyhow!("stored artifact kind `{kind}`"))?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        signature: key_id.zip(signature).map(|(key_id, signature)| ArtifactSignature { key_id, signature }),
        compatibility: serde_json::from_str(&row.try_get::<String, _>("compatibility")?)
            .map_err(anyhow::Error::from)?,
        depends: depends.map(|d| serde_json::from_str(&d)).transpose().map_err(anyhow::Error::from)?,
        storage: if storage == "external" { Storage::External } else { Storage::Stored },
        url: row.try_get("url")?,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
