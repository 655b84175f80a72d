//! File transfer: reading a file (from an offset) or a directory (as tar), writing a file
//! (resumable, checked by SHA-256, moved into place whole), and describing a path; only under
//! `[remote] file_paths` ([`paths`]), with `..` and symbolic links out of them refused.
//!
//! Each stream answers `stream_opened` with what it found ([`FileInfo`]) and ends with
//! `stream_closed`: exit code 0 once everything was sent or the file is in place. The bytes
//! are read and written on a thread of their own (file I/O blocks), which sends within the
//! server's credit ([`read`]) or credits the server for what it wrote ([`write`]).

mod paths;
mod read;
mod write;

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use baton_proto::{
    agent::AgentMessage,
    streams::{self, FileInfo, FileKind, StreamKind},
};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::{config::RemoteConfig, safe_open::open_regular};

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    kind: StreamKind,
    user: &str,
    input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let done = match kind {
        StreamKind::FileStat { path, upload_sha256 } => stat(config, stream, &path, upload_sha256, &tx).await,
        StreamKind::FileRead { path, offset } => {
            tracing::info!(%user, %path, offset, "remote file read");
            read::run(config, stream, &path, offset, credit, tx.clone()).await
        }
        StreamKind::FileWrite { path, size, sha256, offset, mode } => {
            tracing::info!(%user, %path, size, offset, "remote file write");
            let upload = write::Upload { size, sha256, offset, mode };
            write::run(config, stream, &path, upload, input, tx.clone()).await
        }
        _ => Err("not a file stream".to_owned()),
    };
    if let Err(reason) = done {
        tracing::info!(%user, %reason, "remote file stream refused");
        let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
    }
}

/// Describes `path` (with how much of an upload of `upload_sha256` is kept) and closes.
async fn stat(
    config: &RemoteConfig,
    stream: u32,
    path: &str,
    upload_sha256: Option<String>,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), String> {
    let real = paths::allowed(config, path)?;
    if let Some(sha) = &upload_sha256 {
        check_sha256(sha)?;
    }
    let (roots, max) = (paths::roots(config), config.file_max_bytes);
    let info = blocking(move || {
        let mut info = describe(&real, Some(Hashing { max, roots: &roots }))?;
        if let Some(sha) = upload_sha256 {
            // The partial as it is: a link or anything but a regular file there counts as nothing.
            let kept = write::partial_path(&real, &sha).ok().and_then(|p| std::fs::symlink_metadata(p).ok());
            info.received = Some(kept.filter(|m| m.is_file()).map_or(0, |m| m.len()));
        }
        Ok(info)
    })
    .await?;
    opened(tx, stream, info).await;
    closed(tx, stream, "described", Some(0)).await;
    Ok(())
}

/// How [`describe`] hashes a file: only one of at most `max` bytes (`[remote] file_max_bytes`;
/// a larger one is described without its SHA-256), opened as [`open_regular`] does.
struct Hashing<'a> {
    max: u64,
    roots: &'a [PathBuf],
}

/// What is at `path` (following links: it is canonical already); with `hash`, a file's
/// SHA-256 too. Only a regular file is a file: anything else but a directory (a FIFO, a
/// device, a socket) is refused.
fn describe(path: &Path, hash: Option<Hashing>) -> std::io::Result<FileInfo> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileInfo {
                kind: FileKind::Missing,
                size: 0,
                sha256: None,
                mode: None,
                modified_ms: None,
                received: None,
            });
        }
        Err(e) => return Err(e),
    };
    let kind = if meta.is_dir() {
        FileKind::Directory
    } else if meta.is_file() {
        FileKind::File
    } else {
        return Err(std::io::Error::other(format!("`{}` is not a regular file", path.display())));
    };
    let sha256 = match hash {
        Some(h) if kind == FileKind::File && meta.len() <= h.max => Some(sha256_of(path, h.roots)?),
        _ => None,
    };
    let modified_ms =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64);
    Ok(FileInfo {
        kind,
        size: if kind == FileKind::File { meta.len() } else { 0 },
        sha256,
        mode: mode(&meta),
        modified_ms,
        received: None,
    })
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> Option<u32> {
    Some(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777)
}

#[cfg(not(unix))]
fn mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// The hex SHA-256 of a file's content (a regular file under `roots`).
fn sha256_of(path: &Path, roots: &[PathBuf]) -> std::io::Result<String> {
    let mut file = open_regular(path, &format!("`{}`", path.display()), roots)?;
    let mut hasher = Sha256::new();
    hash_from(&mut file, &mut hasher, u64::MAX)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Feeds at most `limit` bytes of `reader` to `hasher`; the count fed.
fn hash_from(reader: &mut impl Read, hasher: &mut Sha256, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut reader = reader.take(limit);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn check_sha256(sha: &str) -> Result<(), String> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("`{sha}` is not a hex SHA-256 (64 hex digits)"))
    }
}

/// Runs file I/O off the async threads; an I/O error becomes the reason.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the file task failed: {e}")),
    }
}

async fn opened(tx: &mpsc::Sender<Outgoing>, stream: u32, info: FileInfo) {
    let message = AgentMessage::StreamOpened { stream, window: streams::FILE_WINDOW, file: Some(info) };
    let _ = tx.send(Outgoing::Message(message)).await;
}

async fn closed(tx: &mpsc::Sender<Outgoing>, stream: u32, reason: &str, exit_code: Option<i32>) {
    let message = AgentMessage::StreamClosed { stream, reason: reason.to_owned(), exit_code };
    let _ = tx.send(Outgoing::Message(message)).await;
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_files_and_none_larger_than_the_limit_is_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::write(root.join("small"), "abc").expect("file");
        std::fs::write(root.join("large"), "abcdef").expect("file");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let roots = [root.clone()];
        let hashing = || Some(Hashing { max: 5, roots: &roots });

        let small = describe(&root.join("small"), hashing()).expect("small");
        assert_eq!((small.kind, small.sha256.as_deref().map(|s| &s[..8])), (FileKind::File, Some("ba7816bf")));
        let large = describe(&root.join("large"), hashing()).expect("large");
        assert_eq!((large.kind, large.size, large.sha256), (FileKind::File, 6, None));
        for other in [root.join("fifo"), PathBuf::from("/dev/zero")] {
            let err = describe(&other, hashing()).expect_err("not a file").to_string();
            assert!(err.ends_with("is not a regular file"), "{err}");
        }
        assert_eq!(describe(&root, hashing()).expect("dir").kind, FileKind::Directory);
    }
}
