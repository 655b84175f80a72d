//! Uploading a finished bundle: `PUT /api/v1/agent/support-bundles/{id}` with the device's
//! credentials (its secret, or the client certificate in the TLS handshake), the file streamed
//! with its length and SHA-256. A broken connection or a server error is tried again; a refusal
//! (too large, already stored, failed) is final and its words become the command's error.

use std::{path::Path, time::Duration};

use baton_proto::{
    agent::DEVICE_ID_HEADER,
    api::bundles::{SHA256_HEADER, upload_path},
};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::{errors::innermost, storage::Identity};

/// Uploads tried before the bundle counts as failed.
const ATTEMPTS: u32 = 3;
/// Bytes read from the file per chunk of the body.
const CHUNK: usize = 64 * 1024;

/// Sends the archive at `path` (`size` bytes, hashing to `sha256`) as bundle `id`.
pub async fn put(
    http: &reqwest::Client,
    identity: &Identity,
    id: &str,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), String> {
    let url = format!("{}{}", identity.server.trim_end_matches('/'), upload_path(id));
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2 * u64::from(attempt))).await;
        }
        let file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read the bundle: {e}"))?;
        let mut request = http
            .put(&url)
            .timeout(Duration::from_secs(3600))
            .header(DEVICE_ID_HEADER, &identity.device_id)
            .header(SHA256_HEADER, sha256)
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(chunks(file)));
        if !identity.secret.is_empty() {
            request = request.bearer_auth(&identity.secret);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("the upload failed: {}", innermost(&e));
                tracing::warn!(%last, "support bundle upload failed; trying again");
                continue;
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let said = body.get("detail").and_then(|d| d.as_str()).unwrap_or("no reason given").to_owned();
        last = format!("the server refused the bundle ({status}): {said}");
        if !status.is_server_error() {
            break;
        }
    }
    Err(last)
}

/// The file as a stream of chunks.
fn chunks(file: tokio::fs::File) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((file, vec![0u8; CHUNK]), |(mut file, mut buf)| async move {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some((Bytes::copy_from_slice(&buf[..n]), (file, buf))))
    })
}
