//! Writing a file on the device: the bytes go to a partial file beside the target, named after
//! the expected SHA-256 (`.<name>.<sha256[..16]>.baton-part`), so an interrupted upload of the
//! same content resumes where it stopped; once every byte arrived they are synced, checked
//! against the SHA-256 and renamed over the target (atomic: the target is the old file or the
//! new one, never a mix), and the directory is synced. A stream closed early keeps the partial.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use baton_proto::{agent::AgentMessage, streams::FileKind};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Input, Outgoing, blocking, check_sha256, closed, describe, hash_from, opened, paths};
use crate::config::RemoteConfig;

/// Permission bits of a written file unless the upload names others.
const DEFAULT_MODE: u32 = 0o644;
/// Bytes gathered before they go to the disk.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes written before the server is credited for them, while more input waits.
const CREDIT_BATCH: u32 = 64 * 1024;

/// What the server says of the file it sends.
pub(super) struct Upload {
    pub size: u64,
    pub sha256: String,
    pub offset: u64,
    pub mode: Option<u32>,
}

/// Where an upload of content `sha256` to `target` is kept until it is whole.
pub(super) fn partial_path(target: &Path, sha256: &str) -> Option<PathBuf> {
    let name = target.file_name()?.to_string_lossy();
    let key = sha256.get(..16)?.to_ascii_lowercase();
    Some(target.with_file_name(format!(".{name}.{key}.baton-part")))
}

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    path: &str,
    upload: Upload,
    input: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::Sender<Outgoing>,
) -> Result<(), String> {
    check_sha256(&upload.sha256)?;
    let max = config.file_max_bytes;
    if upload.size > max {
        return Err(format!(
            "the file is {} bytes, more than this device accepts (`[remote] file_max_bytes` = {max})",
            upload.size
        ));
    }
    if upload.offset > upload.size {
        return Err(format!("offset {} is past the file's size {}", upload.offset, upload.size));
    }
    if upload.mode.is_some_and(|m| m > 0o7777) {
        return Err("the mode must be permission bits (at most 7777 in octal)".into());
    }
    let target = paths::allowed(config, path)?;
    let sha256 = upload.sha256.to_ascii_lowercase();
    let (found, key) = (target.clone(), sha256.clone());
    let offset = upload.offset;
    let (info, partial, file, hasher) = blocking(move || {
        let info = describe(&found, false)?;
        if info.kind == FileKind::Directory {
            return Err(io::Error::other("the path is a directory; name the file to write"));
        }
        let partial = partial_path(&found, &key).ok_or_else(|| io::Error::other("the path names no file"))?;
        let (file, hasher) = resume(&partial, offset)?;
        Ok((info, partial, file, hasher))
    })
    .await?;
    opened(&tx, stream, baton_proto::streams::FileInfo { received: Some(offset), ..info }).await;
    let job = Job { stream, target, partial, sha256, size: upload.size, received: offset, mode: upload.mode };
    let out = tx.clone();
    let end = tokio::task::spawn_blocking(move || job.receive(file, hasher, input, &out))
        .await
        .unwrap_or_else(|e| End::Failed(format!("the write failed: {e}")));
    match end {
        End::Written => closed(&tx, stream, "written", Some(0)).await,
        End::Mismatch(reason) => closed(&tx, stream, &reason, Some(1)).await,
        End::Failed(reason) => closed(&tx, stream, &reason, None).await,
        End::Stopped => {}
    }
    Ok(())
}

/// The partial file ready to take bytes at `offset`, and the hash of what it holds before.
fn resume(partial: &Path, offset: u64) -> io::Result<(File, Sha256)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(partial)?;
    let kept = file.metadata()?.len();
    if kept < offset {
        return Err(io::Error::other(format!("the device has only {kept} bytes of this upload; resume from {kept}")));
    }
    file.set_len(offset)?;
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0))?;
    hash_from(&mut file, &mut hasher, offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok((file, hasher))
}

enum End {
    Written,
    /// Every byte came, and they hash to something else: the partial is gone.
    Mismatch(String),
    Failed(String),
    /// Closed before the end: the partial stays for a resume.
    Stopped,
}

struct Job {
    stream: u32,
    target: PathBuf,
    partial: PathBuf,
    sha256: String,
    size: u64,
    received: u64,
    mode: Option<u32>,
}

impl Job {
    /// Writes what comes, crediting the server for each chunk written, until `size` bytes.
    fn receive(
        mut self,
        file: File,
        mut hasher: Sha256,
        mut input: mpsc::UnboundedReceiver<Input>,
        tx: &mpsc::Sender<Outgoing>,
    ) -> End {
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut uncredited = 0u32;
        while self.received < self.size {
            match input.blocking_recv() {
                Some(Input::Data(bytes)) => {
                    if self.received + bytes.len() as u64 > self.size {
                        let _ = std::fs::remove_file(&self.partial);
                        return End::Failed(format!("more bytes came than the file's size, {}", self.size));
                    }
                    if let Err(e) = file.write_all(&bytes) {
                        return End::Failed(format!("cannot write {}: {e}", self.partial.display()));
                    }
                    hasher.update(&bytes);
                    self.received += bytes.len() as u64;
                    // Credit in batches (one message per chunk would be one frame per 16 KiB),
                    // and at once when nothing else waits, so the server never stalls on it.
                    uncredited += bytes.len() as u32;
                    if uncredited >= CREDIT_BATCH || input.is_empty() {
                        let credit = AgentMessage::StreamCredit { stream: self.stream, bytes: uncredited };
                        uncredited = 0;
                        if tx.blocking_send(Outgoing::Message(credit)).is_err() {
                            return self.keep(file);
                        }
                    }
                }
                Some(Input::Resize(..)) => {}
                Some(Input::Close(_)) | None => return self.keep(file),
            }
        }
        match self.finish(file, hasher) {
            Ok(end) => end,
            Err(e) => End::Failed(format!("cannot put the file in place: {e}")),
        }
    }

    /// Stopped early: what came is synced, for a resume.
    fn keep(&self, file: BufWriter<File>) -> End {
        if let Ok(file) = file.into_inner() {
            let _ = file.sync_data();
        }
        tracing::info!(partial = %self.partial.display(), received = self.received, "remote upload interrupted; kept");
        End::Stopped
    }

    fn finish(&self, file: BufWriter<File>, hasher: Sha256) -> io::Result<End> {
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let got = format!("{:x}", hasher.finalize());
        if got != self.sha256 {
            let _ = std::fs::remove_file(&self.partial);
            return Ok(End::Mismatch(format!(
                "the SHA-256 does not match: the bytes received hash to {got}, not {}; upload the file again",
                self.sha256
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = self.mode.unwrap_or(DEFAULT_MODE);
            std::fs::set_permissions(&self.partial, std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = (self.mode, DEFAULT_MODE);
        std::fs::rename(&self.partial, &self.target)?;
        #[cfg(unix)]
        if let Some(dir) = self.target.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(End::Written)
    }
}
