//! Artifact bytes in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …), for servers that do
//! not keep them on their own disk. Uploads are still staged and hashed in the data directory
//! (see `baton_core::artifacts::upload`); only a finished, checked file is sent to the bucket, so the bucket
//! never holds half an artifact. A device's download is redirected to a presigned URL, so its
//! bytes go from the bucket to the device (`s3_presigned_downloads`); other reads are ranged
//! GETs streamed through, never buffered whole.
//!
//! Built on `object_store` (the Apache Arrow project's client) with its S3 code only: it signs
//! with `ring` and sends through the workspace's reqwest, so it adds seven small crates and no
//! second TLS stack; `rust-s3` would have brought reqwest 0.12, sysinfo and its own credential
//! crates. It also does multipart uploads and retries with backoff, which we do not rewrite.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, TryStreamExt, future::BoxFuture};
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
    buffered::BufWriter,
    path::Path as ObjectPath,
    signer::{Method, Signer},
};
use tokio::io::{AsyncWriteExt, BufReader};

use baton_core::{
    Error,
    artifacts::store::{ArtifactStore, ByteStream, check_key, sweep_staging},
    config::Settings,
};

/// Part size of multipart uploads; objects smaller than one part go up in a single PUT. 10 MiB
/// parts fit S3's 10,000-part limit for the largest artifact (64 GiB).
const PART_BYTES: usize = 10 << 20;
/// Parts in flight per upload: bounds an upload's memory to about this many parts.
const PARTS_IN_FLIGHT: usize = 2;
/// How long the start-up check waits for the bucket to answer.
const START_CHECK: Duration = Duration::from_secs(20);

pub struct S3Store {
    bucket: Arc<AmazonS3>,
    /// `s3_prefix`, prepended to every key.
    prefix: Option<String>,
    staging: PathBuf,
    /// For messages: `<endpoint>/<bucket>`.
    location: String,
    /// How long a presigned download URL is valid (`s3_presigned_secs`); `None` when devices
    /// download through the server (`s3_presigned_downloads = false`).
    presigned: Option<Duration>,
}

impl S3Store {
    /// Connects to the bucket the settings name and checks it can be listed, so a wrong
    /// endpoint, bucket or credential stops the server at start rather than at the first upload.
    /// `staging` is a local directory for uploads in progress.
    pub async fn connect(settings: &Settings, staging: PathBuf) -> Result<Self, Error> {
        let (Some(endpoint), Some(bucket)) = (settings.s3_endpoint.as_deref(), settings.s3_bucket.as_deref()) else {
            return Err(Error::Config("artifact_store = \"s3\" needs s3_endpoint and s3_bucket".into()));
        };
        let endpoint = endpoint.trim().trim_end_matches('/');
        let location = format!("{endpoint}/{bucket}");
        sweep_staging(&staging)
            .map_err(|e| Error::Config(format!("cannot prepare the staging directory {}: {e}", staging.display())))?;
        // reqwest is built without a default crypto provider; ring is the workspace's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = match (&settings.s3_access_key_id, &settings.s3_secret_access_key) {
            (Some(id), Some(secret)) => {
                AmazonS3Builder::new().with_access_key_id(id).with_secret_access_key(secret.expose())
            }
            // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, web identity, …
            _ => AmazonS3Builder::from_env(),
        };
        // A download streams for as long as the device takes, so no overall request timeout;
        // a connection that stops sending for a minute is given up (the device resumes).
        let client = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(5))
            .with_read_timeout(Duration::from_secs(60));
        let retry = RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(60), ..RetryConfig::default() };
        // The builder's Debug output holds the secret: it is never logged, and its errors
        // (a missing or malformed setting) do not carry it.
        let s3 = builder
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region(settings.s3_region.trim())
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| Error::Config(format!("artifact store {location}: {e}")))?;
        let prefix = settings.s3_prefix.as_deref().map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        let presigned =
            settings.s3_presigned_downloads.then(|| Duration::from_secs(u64::from(settings.s3_presigned_secs)));
        let store = S3Store { bucket: Arc::new(s3), prefix, staging, location, presigned };
        store.check().await?;
        Ok(store)
    }

    /// Lists (at most one page of) the prefix: proves endpoint, bucket and credentials.
    async fn check(&self) -> Result<(), Error> {
        let prefix = self.prefix.as_deref().map(ObjectPath::from);
        let unreachable = |why: String| {
            Error::Config(format!(
                "the artifact bucket {} is not reachable ({why}); create it, or correct s3_endpoint, s3_bucket \
                 and the credentials",
                self.location
            ))
        };
        match tokio::time::timeout(START_CHECK, self.bucket.list_with_delimiter(prefix.as_ref())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer in {} s", START_CHECK.as_secs()))),
        }
    }

    fn object(&self, key: &str) -> io::Result<ObjectPath> {
        check_key(key)?;
        Ok(match &self.prefix {
            Some(prefix) => ObjectPath::from(format!("{prefix}/{key}")),
            None => ObjectPath::from(key),
        })
    }
}

/// Objects under a drop prefix of the same bucket, by their full paths: what the watched-prefix
/// importer (`rollouts::watch`) reads, imports and moves aside.
impl S3Store {
    /// Paths of the objects directly under `dir` (not in its sub-"directories").
    pub async fn list_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        let dir = ObjectPath::from(dir.trim_matches('/'));
        let listed = self.bucket.list_with_delimiter(Some(&dir)).await?;
        Ok(listed.objects.into_iter().map(|o| o.location.to_string()).collect())
    }

    /// A small object whole (a manifest).
    pub async fn get_small(&self, path: &str, max: usize) -> io::Result<Vec<u8>> {
        let got = self.bucket.get(&ObjectPath::from(path)).await?;
        if got.meta.size > max as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path} is over {max} bytes")));
        }
        Ok(got.bytes().await?.to_vec())
    }

    /// An object's bytes, streamed.
    pub async fn get_stream(&self, path: &str) -> io::Result<ByteStream> {
        let got = self.bucket.get(&ObjectPath::from(path)).await?;
        Ok(got.into_stream().map_err(io::Error::from).boxed())
    }

    /// Moves an object (copy, then delete).
    pub async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.bucket.copy(&ObjectPath::from(from), &ObjectPath::from(to)).await?;
        self.bucket.delete(&ObjectPath::from(from)).await?;
        Ok(())
    }

    /// Writes a small object.
    pub async fn put_small(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.bucket.put(&ObjectPath::from(path), bytes.into()).await?;
        Ok(())
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("location", &self.location).field("prefix", &self.prefix).finish()
    }
}

impl ArtifactStore for S3Store {
    fn staging(&self) -> &Path {
        &self.staging
    }

    fn put<'a>(&'a self, key: &'a str, finished: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let object = self.object(key)?;
            let file = tokio::fs::File::open(finished).await?;
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            let store: Arc<dyn ObjectStore> = self.bucket.clone();
            let mut writer = BufWriter::with_capacity(store, object, PART_BYTES).with_max_concurrency(PARTS_IN_FLIGHT);
            let sent = match tokio::io::copy_buf(&mut reader, &mut writer).await {
                Ok(_) => writer.shutdown().await,
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                // Drop the parts already sent; a bucket keeps (and bills) them otherwise.
                let _ = writer.abort().await;
                return Err(e);
            }
            // Moved, as the trait says: the staged copy is not needed any more.
            match tokio::fs::remove_file(finished).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }

    fn read<'a>(&'a self, key: &'a str, start: u64, len: u64) -> BoxFuture<'a, io::Result<ByteStream>> {
        Box::pin(async move {
            let object = self.object(key)?;
            if len == 0 {
                return Ok(futures::stream::empty().boxed());
            }
            let range = GetRange::Bounded(start..start.saturating_add(len));
            let got = self.bucket.get_opts(&object, GetOptions::new().with_range(Some(range))).await?;
            Ok(got.into_stream().map_err(io::Error::from).boxed())
        })
    }

    /// A presigned GET: signing is local (no request to the bucket), and the URL carries its own
    /// expiry, so a leaked one opens this one object for `s3_presigned_secs` at most.
    fn direct_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<String>>> {
        Box::pin(async move {
            let Some(valid_for) = self.presigned else { return Ok(None) };
            let url = self.bucket.signed_url(Method::GET, &self.object(key)?, valid_for).await?;
            Ok(Some(url.into()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match self.bucket.delete(&self.object(key)?).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
