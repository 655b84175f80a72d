//! Downloading an artifact so that nothing is lost to a bad connection: bytes go to
//! `<sha256>.part` in the downloads directory, a broken transfer resumes from where it stopped
//! (HTTP `Range`), and only bytes of the right length and SHA-256 become `<sha256>.bin`. A server
//! that sends more than the artifact's length is cut off: the length bounds what is read.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use baton_proto::{agent::DEVICE_ID_HEADER, api::rollouts::FailureClass};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::trust::Refusal;
use crate::storage::Identity;

/// Transfers tried (each resuming the last) before the download counts as failed.
const TRANSFERS: u32 = 5;

pub struct Fetched {
    pub path: PathBuf,
    /// Average speed of the transfers, bytes per second.
    pub bytes_per_sec: Option<u64>,
}

/// Where the artifact is downloaded from, and with which credentials.
pub fn resolve(url: &str, identity: &Identity) -> (String, bool) {
    if url.starts_with('/') {
        (format!("{}{url}", identity.server.trim_end_matches('/')), true)
    } else {
        (url.to_owned(), false)
    }
}

pub async fn fetch(
    http: &reqwest::Client,
    url: &str,
    identity: &Identity,
    dir: &Path,
    sha256: &str,
    size: u64,
) -> Result<Fetched, Refusal> {
    let fail = |class, detail: String| Refusal { class, detail };
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(FailureClass::Integrity, "the artifact's SHA-256 is malformed".into()));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| fail(FailureClass::Download, format!("cannot create {}: {e}", dir.display())))?;
    let done = dir.join(format!("{sha256}.bin"));
    if tokio::fs::metadata(&done).await.is_ok_and(|m| m.len() == size)
        && hash_of(&done).await.as_deref() == Some(sha256)
    {
        return Ok(Fetched { path: done, bytes_per_sec: None });
    }
    let part = dir.join(format!("{sha256}.part"));
    let (url, with_credentials) = resolve(url, identity);
    let started = Instant::now();
    let mut moved = 0u64;
    let mut last_error = String::new();
    for transfer in 0..TRANSFERS {
        let have = tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0);
        if have == size {
            break;
        }
        if have > size {
            let _ = tokio::fs::remove_file(&part).await;
            continue;
        }
        if transfer > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(transfer))).await;
        }
        match transfer_once(http, &url, with_credentials, identity, &part, have, size).await {
            Ok(n) => moved += n,
            Err(Transfer::Retry(n, why)) => {
                moved += n;
                tracing::warn!(%why, "download interrupted; resuming");
                last_error = why;
            }
            Err(Transfer::Refuse(refusal)) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(refusal);
            }
        }
    }
    let have = tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0);
    if have != size {
        return Err(fail(FailureClass::Download, format!("downloaded {have} of {size} bytes: {last_error}")));
    }
    let got = hash_of(&part).await.unwrap_or_default();
    if got != sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(fail(FailureClass::Integrity, format!("the bytes' SHA-256 is {got}, not the artifact's {sha256}")));
    }
    tokio::fs::rename(&part, &done)
        .await
        .map_err(|e| fail(FailureClass::Download, format!("cannot keep the download: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    let bytes_per_sec = (secs > 0.0 && moved > 0).then(|| (moved as f64 / secs) as u64);
    Ok(Fetched { path: done, bytes_per_sec })
}

enum Transfer {
    /// Bytes moved before it broke, and why.
    Retry(u64, String),
    Refuse(Refusal),
}

/// One HTTP transfer from byte `have`, appended to `part`; the bytes it moved.
async fn transfer_once(
    http: &reqwest::Client,
    url: &str,
    with_credentials: bool,
    identity: &Identity,
    part: &Path,
    have: u64,
    size: u64,
) -> Result<u64, Transfer> {
    let mut request = http.get(url).timeout(Duration::from_secs(3600));
    if with_credentials {
        request = request.header(DEVICE_ID_HEADER, &identity.device_id);
        // Without a secret, the client certificate (in the TLS handshake) speaks for the device.
        if !identity.secret.is_empty() {
            request = request.bearer_auth(&identity.secret);
        }
    }
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let response = request.send().await.map_err(|e| Transfer::Retry(0, crate::errors::innermost(&e)))?;
    let status = response.status();
    let resumes_here = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
        == Some(have);
    let append = match status.as_u16() {
        // A part that does not start where ours ends (a proxy ignoring the offset) starts over.
        206 if !resumes_here => {
            let _ = tokio::fs::remove_file(part).await;
            return Err(Transfer::Retry(0, "the server sent a part from elsewhere; starting over".into()));
        }
        206 => true,
        200 => false,
        416 => {
            let _ = tokio::fs::remove_file(part).await;
            return Err(Transfer::Retry(0, "the server refused the range; starting over".into()));
        }
        401 | 403 | 404 | 409 => {
            return Err(Transfer::Refuse(Refusal {
                class: FailureClass::Download,
                detail: format!("the server answered {status} for the artifact"),
            }));
        }
        _ => return Err(Transfer::Retry(0, format!("the server answered {status}"))),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| {
            Transfer::Refuse(Refusal {
                class: FailureClass::Download,
                detail: format!("cannot write {}: {e}", part.display()),
            })
        })?;
    let mut written = if append { have } else { 0 };
    let mut moved = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = file.flush().await;
                return Err(Transfer::Retry(moved, crate::errors::innermost(&e)));
            }
        };
        if written + chunk.len() as u64 > size {
            return Err(Transfer::Refuse(Refusal {
                class: FailureClass::Integrity,
                detail: format!("the server sent more than the artifact's {size} bytes"),
            }));
        }
        file.write_all(&chunk).await.map_err(|e| Transfer::Retry(moved, format!("cannot write the download: {e}")))?;
        written += chunk.len() as u64;
        moved += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| Transfer::Retry(moved, e.to_string()))?;
    file.sync_all().await.map_err(|e| Transfer::Retry(moved, e.to_string()))?;
    Ok(moved)
}

/// The SHA-256 of a file, hex; `None` when it cannot be read.
pub async fn hash_of(path: &Path) -> Option<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(path).ok()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Some(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    })
    .await
    .ok()
    .flatten()
}
