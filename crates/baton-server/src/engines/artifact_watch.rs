//! The watched directory (`artifact_watch_dir`): a build pipeline drops `<dir>/<tenant>/<file>`
//! and then `<file>.json` — the manifest, written last, says the file is complete and what it
//! is (the fields of an upload: name, version, kind, sha256, compatibility…). Each pair becomes
//! an artifact like an upload through the API, and then rollouts by the tenant's rules. The pair
//! moves to `imported/`, or to `failed/` with `<file>.error.txt` saying why. The directory is
//! polled, so it works on any file system, network shares included. A prefix of the S3 bucket
//! (`artifact_watch_s3_prefix`) is watched the same way, for pipelines that publish to a bucket.

use std::{path::Path, time::Duration};

use baton_proto::api::artifacts::ArtifactUpload;
use bytes::Bytes;
use sqlx::Row;
use tokio::io::AsyncReadExt;

use super::Context;
use baton_core::Error;
use baton_core::{
    access::{Principal, TenantScope},
    artifacts,
};

pub fn spawn(app: &Context) {
    spawn_prefix(app);
    let Some(dir) = app.settings.artifact_watch_dir.clone() else { return };
    let every = Duration::from_secs(u64::from(app.settings.artifact_watch_secs.max(1)));
    let app = app.clone();
    tokio::spawn(async move {
        tracing::info!(dir = %dir.display(), "watching for artifacts");
        let mut stop = app.shutdown.clone();
        loop {
            if let Err(e) = pass(&app, &dir).await {
                tracing::warn!(error = %e, dir = %dir.display(), "the watched directory could not be read");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// One look at every tenant's directory.
pub async fn pass(app: &Context, dir: &Path) -> Result<(), Error> {
    let tenants = sqlx::query("SELECT id, name FROM tenants WHERE disabled = 0").fetch_all(app.db.reader()).await?;
    for row in tenants {
        let (id, name): (String, String) = (row.try_get("id")?, row.try_get("name")?);
        let tenant_dir = dir.join(&name);
        if !tenant_dir.is_dir() {
            continue;
        }
        let scope = TenantScope::internal(id);
        let mut entries = tokio::fs::read_dir(&tenant_dir).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let manifest = entry.path();
            let Some(file) = manifest.to_str().and_then(|p| p.strip_suffix(".json")).map(std::path::PathBuf::from)
            else {
                continue;
            };
            if !manifest.is_file() || !file.is_file() {
                continue;
            }
            let outcome = import(app, &scope, &file, &manifest).await;
            let (to, error) = match outcome {
                Ok(artifact) => {
                    tracing::info!(name = %artifact.name, version = %artifact.version, "artifact imported from the watched directory");
                    baton_core::rollouts::rules::apply(&app.db, &app.bus, &app.rollouts, &scope, &artifact).await;
                    ("imported", None)
                }
                Err(e) => ("failed", Some(e.to_string())),
            };
            settle(&tenant_dir, &file, &manifest, to, error.as_deref()).await;
        }
    }
    Ok(())
}

async fn import(
    app: &Context,
    scope: &TenantScope,
    file: &Path,
    manifest: &Path,
) -> Result<baton_proto::api::artifacts::Artifact, Error> {
    let text = tokio::fs::read(manifest).await.map_err(io)?;
    let facts: ArtifactUpload = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid("manifest", format!("{} is not an artifact manifest: {e}", manifest.display())))?;
    let opened = tokio::fs::File::open(file).await.map_err(io)?;
    let body = futures::stream::unfold(Some(opened), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let by = Principal::system(scope.clone(), "watched directory");
    artifacts::upload(&app.db, app.artifacts.as_ref(), scope, &by, facts, Box::pin(body)).await
}

/// Moves the pair to `imported/` or `failed/` (with the reason next to it).
async fn settle(tenant_dir: &Path, file: &Path, manifest: &Path, to: &str, error: Option<&str>) {
    let dest = tenant_dir.join(to);
    if let Err(e) = tokio::fs::create_dir_all(&dest).await {
        tracing::error!(error = %e, dir = %dest.display(), "cannot create");
        return;
    }
    for path in [file, manifest] {
        if let Some(name) = path.file_name() {
            let _ = tokio::fs::rename(path, dest.join(name)).await;
        }
    }
    if let (Some(reason), Some(name)) = (error, file.file_name()) {
        tracing::warn!(file = %file.display(), %reason, "an artifact in the watched directory was refused");
        let _ =
            tokio::fs::write(dest.join(format!("{}.error.txt", name.to_string_lossy())), format!("{reason}\n")).await;
    }
}

/// The S3 prefix (`artifact_watch_s3_prefix`), watched like the directory: `<prefix>/<tenant>/`.
fn spawn_prefix(app: &Context) {
    let Some(prefix) = app.settings.artifact_watch_s3_prefix.clone() else { return };
    let prefix = prefix.trim_matches('/').to_owned();
    let every = Duration::from_secs(u64::from(app.settings.artifact_watch_secs.max(1)));
    let app = app.clone();
    tokio::spawn(async move {
        let staging = app.settings.data_dir.join("artifacts/watch-staging");
        let bucket = match crate::artifact_stores::s3::S3Store::connect(&app.settings, staging).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the S3 prefix");
                return;
            }
        };
        tracing::info!(%prefix, "watching the bucket for artifacts");
        let mut stop = app.shutdown.clone();
        loop {
            if let Err(e) = pass_prefix(&app, &bucket, &prefix).await {
                tracing::warn!(error = %e, %prefix, "the watched prefix could not be read");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// One look at every tenant's part of the prefix.
pub async fn pass_prefix(
    app: &Context,
    bucket: &crate::artifact_stores::s3::S3Store,
    prefix: &str,
) -> Result<(), Error> {
    let tenants = sqlx::query("SELECT id, name FROM tenants WHERE disabled = 0").fetch_all(app.db.reader()).await?;
    for row in tenants {
        let (id, name): (String, String) = (row.try_get("id")?, row.try_get("name")?);
        let dir = format!("{prefix}/{name}");
        let objects = bucket.list_dir(&dir).await.map_err(io)?;
        let scope = TenantScope::internal(id);
        for manifest in objects.iter().filter(|o| o.ends_with(".json")) {
            let file = manifest.trim_end_matches(".json").to_owned();
            if !objects.contains(&file) {
                continue;
            }
            let outcome = import_object(app, bucket, &scope, &file, manifest).await;
            let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_owned();
            let (to, error) = match outcome {
                Ok(artifact) => {
                    tracing::info!(name = %artifact.name, version = %artifact.version, "artifact imported from the bucket");
                    baton_core::rollouts::rules::apply(&app.db, &app.bus, &app.rollouts, &scope, &artifact).await;
                    ("imported", None)
                }
                Err(e) => ("failed", Some(e.to_string())),
            };
            for path in [&file, manifest] {
                if let Err(e) = bucket.rename(path, &format!("{dir}/{to}/{}", base(path))).await {
                    tracing::error!(error = %e, %path, "cannot move an imported object aside");
                }
            }
            if let Some(reason) = error {
                tracing::warn!(object = %file, %reason, "an artifact in the watched prefix was refused");
                let note = format!("{dir}/failed/{}.error.txt", base(&file));
                let _ = bucket.put_small(&note, format!("{reason}\n").into_bytes()).await;
            }
        }
    }
    Ok(())
}

async fn import_object(
    app: &Context,
    bucket: &crate::artifact_stores::s3::S3Store,
    scope: &TenantScope,
    file: &str,
    manifest: &str,
) -> Result<baton_proto::api::artifacts::Artifact, Error> {
    let text = bucket.get_small(manifest, 64 * 1024).await.map_err(io)?;
    let facts: ArtifactUpload = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid("manifest", format!("{manifest} is not an artifact manifest: {e}")))?;
    let body = bucket.get_stream(file).await.map_err(io)?;
    let by = Principal::system(scope.clone(), "watched bucket prefix");
    artifacts::upload(&app.db, app.artifacts.as_ref(), scope, &by, facts, body).await
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(anyhow::anyhow!("watched directory: {e}"))
}
