//! Where artifact bytes live, opened at start: the core's [`LocalStore`] in the data directory,
//! or an S3-compatible bucket ([`s3`]). The S3 store is here rather than in the core because it
//! brings an HTTP client (reqwest, and tower-http under it), which the core does not carry.

pub mod s3;

use std::sync::Arc;

use baton_core::{
    Error,
    artifacts::{ArtifactStore, LocalStore},
    config::{ArtifactStoreKind, Settings},
};

/// Opens the store `settings.artifact_store` names: `artifacts/` in the data directory, or the
/// S3 bucket (checked to be reachable; uploads are staged in `artifacts/staging` either way).
pub async fn open(settings: &Settings) -> Result<Arc<dyn ArtifactStore>, Error> {
    let dir = settings.data_dir.join("artifacts");
    match settings.artifact_store {
        ArtifactStoreKind::Local => {
            let store = LocalStore::open(&dir)
                .map_err(|e| Error::Config(format!("cannot open the artifact store in {}: {e}", dir.display())))?;
            Ok(Arc::new(store))
        }
        ArtifactStoreKind::S3 => {
            let store = s3::S3Store::connect(settings, dir.join("staging")).await?;
            tracing::info!(store = ?store, "artifacts are kept in S3-compatible object storage");
            Ok(Arc::new(store))
        }
    }
}
