//! `baton cp <local> <device>:<path>`: the file's SHA-256 first, then the device is asked what
//! it already has (a whole equal file: nothing to do; a kept part of this upload: resume after
//! it), then the rest is streamed to `PUT …/files` with a progress bar.

use std::{io::SeekFrom, path::Path};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::files::{FileKind, FileStatQuery, FileUpload};
use futures::Stream;
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Options, human, progress, retriable, sha256_of};

/// Bytes read from the local file at once.
const READ: usize = 256 * 1024;

pub(super) async fn run(
    client: &Client,
    local: &Path,
    device: &str,
    shown: &str,
    path: &str,
    options: &Options,
) -> anyhow::Result<()> {
    let meta = tokio::fs::metadata(local).await.with_context(|| format!("cannot read {}", local.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "{} is not a file; only files go up (pack a directory with tar first)",
        local.display()
    );
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut path = if path.ends_with('/') { format!("{path}{name}") } else { path.to_owned() };
    let size = meta.len();
    let sha256 = sha256_of(local).await?;
    let mode = options.mode.clone().or_else(|| local_mode(&meta));
    let bar = progress(Some(size), "uploading");
    let mut attempt = 0;
    loop {
        let query = FileStatQuery { path: path.clone(), upload_sha256: Some(sha256.clone()) };
        let there = client.file_stat(device, &query).await?.file;
        if there.kind == FileKind::Directory && !name.is_empty() {
            path = format!("{}/{name}", path.trim_end_matches('/'));
            continue;
        }
        let fresh = attempt == 0 && !options.resume;
        if !fresh && there.sha256.as_deref() == Some(sha256.as_str()) && there.size == size {
            bar.finish_and_clear();
            say!("{shown}:{path} already holds this file (SHA-256 {sha256})");
            return Ok(());
        }
        let offset = if fresh { 0 } else { there.received.unwrap_or(0).min(size) };
        bar.set_position(offset);
        let body = chunks(local, offset, bar.clone()).await?;
        let facts = FileUpload { path: path.clone(), size, sha256: sha256.clone(), offset, mode: mode.clone() };
        match client.upload_file(device, &facts, body).await {
            Ok(_) => {
                bar.finish_and_clear();
                let resumed = if offset > 0 { format!(", resumed after {}", human(offset)) } else { String::new() };
                say!("{} → {shown}:{path}: {} (SHA-256 {sha256}){resumed}", local.display(), human(size));
                return Ok(());
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                if attempt >= options.retries || !retriable(&e) {
                    bar.abandon();
                    return Err(e);
                }
                attempt += 1;
                bar.suspend(|| eprintln!("baton: the upload was cut ({}); resuming", super::super::describe(&e)));
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}

/// The local file from `offset`, in chunks, moving the bar as they are read.
async fn chunks(
    local: &Path,
    offset: u64,
    bar: ProgressBar,
) -> anyhow::Result<impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static> {
    let mut file = tokio::fs::File::open(local).await.with_context(|| format!("cannot open {}", local.display()))?;
    file.seek(SeekFrom::Start(offset)).await?;
    Ok(futures::stream::unfold(Some(file), move |file| {
        let bar = bar.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; READ];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok(buf), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    }))
}

/// The local file's permission bits, in octal, to keep on the device.
#[cfg(unix)]
fn local_mode(meta: &std::fs::Metadata) -> Option<String> {
    Some(format!("{:o}", std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777))
}

#[cfg(not(unix))]
fn local_mode(_meta: &std::fs::Metadata) -> Option<String> {
    None
}
