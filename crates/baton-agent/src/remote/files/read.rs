//! Reading from the device: a file's bytes from an offset, or a directory as a tar stream
//! (links stored as links, never followed, so nothing outside the directory goes out). The
//! SHA-256 of a file is computed before its first byte is sent, so the server can tell the
//! client what to check. Bytes go out within the server's credit, from a blocking thread.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
    sync::Arc,
};

use baton_proto::streams::{self, FileKind};
use bytes::Bytes;
use tokio::{
    runtime::Handle,
    sync::{Semaphore, mpsc},
};

use super::{Outgoing, blocking, closed, describe, opened, paths};
use crate::config::RemoteConfig;

/// Bytes read from a file at once (sent as several chunks).
const READ_BUFFER: usize = 256 * 1024;

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    path: &str,
    offset: u64,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) -> Result<(), String> {
    let real = paths::allowed(config, path)?;
    let max = config.file_max_bytes;
    let (path_shown, found) = (path.to_owned(), real.clone());
    let (info, file) = blocking(move || {
        let info = describe(&found, false)?;
        let file = match info.kind {
            FileKind::File => Some(File::open(&found)?),
            _ => None,
        };
        Ok((info, file))
    })
    .await?;
    let out = Out { stream, credit, tx: tx.clone(), runtime: Handle::current(), sent: 0, limit: max, stopped: false };
    let end = match (info.kind, file) {
        (FileKind::Missing, _) => return Err(format!("`{path}` does not exist on the device")),
        (FileKind::File, Some(mut file)) => {
            if info.size > max {
                return Err(format!(
                    "`{path}` is {} bytes, more than this device sends (`[remote] file_max_bytes` = {max})",
                    info.size
                ));
            }
            let sha256 = blocking(move || {
                let mut hasher = sha2::Sha256::default();
                super::hash_from(&mut file, &mut hasher, u64::MAX)?;
                Ok((format!("{:x}", sha2::Digest::finalize(hasher)), file))
            })
            .await?;
            let (sha256, file) = sha256;
            let size = info.size;
            opened(&tx, stream, baton_proto::streams::FileInfo { sha256: Some(sha256), ..info }).await;
            run_blocking(move || send_file(file, offset, size, out)).await
        }
        _ => {
            opened(&tx, stream, info).await;
            run_blocking(move || send_tree(&real, out)).await
        }
    };
    match end {
        End::Done => closed(&tx, stream, "sent", Some(0)).await,
        End::Stopped => {}
        End::Failed(reason) => {
            tracing::warn!(path = %path_shown, %reason, "remote file read failed");
            closed(&tx, stream, &reason, None).await;
        }
    }
    Ok(())
}

/// How a read ended.
enum End {
    Done,
    /// The stream was closed meanwhile (by the server, or the connection ended): nobody to tell.
    Stopped,
    Failed(String),
}

async fn run_blocking(work: impl FnOnce() -> End + Send + 'static) -> End {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| End::Failed(format!("the read failed: {e}")))
}

/// The stream's way out: chunks of at most [`streams::MAX_CHUNK`], each once the server has
/// credit for it; at most `limit` bytes in all.
struct Out {
    stream: u32,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
    runtime: Handle,
    sent: u64,
    limit: u64,
    /// The stream closed while sending.
    stopped: bool,
}

impl Write for Out {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.sent + data.len() as u64 > self.limit {
            return Err(io::Error::other(format!(
                "more than this device sends (`[remote] file_max_bytes` = {})",
                self.limit
            )));
        }
        for chunk in data.chunks(streams::MAX_CHUNK) {
            let permit = self.runtime.block_on(self.credit.acquire_many(chunk.len() as u32));
            let sent = permit
                .ok()
                .map(|p| p.forget())
                .and_then(|()| self.tx.blocking_send(Outgoing::Data(self.stream, Bytes::copy_from_slice(chunk))).ok());
            if sent.is_none() {
                self.stopped = true;
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the stream was closed"));
            }
            self.sent += chunk.len() as u64;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Out {
    fn end(&self, result: io::Result<()>) -> End {
        match result {
            Ok(()) => End::Done,
            Err(_) if self.stopped => End::Stopped,
            Err(e) => End::Failed(e.to_string()),
        }
    }
}

/// Sends `file` (of `size` bytes when it was hashed) from `offset`; past the end, nothing.
fn send_file(mut file: File, offset: u64, size: u64, mut out: Out) -> End {
    let result = (|| {
        let start = offset.min(size);
        file.seek(SeekFrom::Start(start))?;
        let mut remaining = size - start;
        let mut buf = vec![0u8; READ_BUFFER];
        while remaining > 0 {
            let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(changed(size, &file));
            }
            out.write_all(&buf[..n])?;
            remaining -= n as u64;
        }
        if file.metadata()?.len() != size {
            return Err(changed(size, &file));
        }
        Ok(())
    })();
    out.end(result)
}

fn changed(size: u64, file: &File) -> io::Error {
    let now = file.metadata().map(|m| m.len().to_string()).unwrap_or_else(|_| "?".into());
    io::Error::other(format!("the file changed size while it was read (from {size} to {now} bytes); download it again"))
}

/// Sends the directory `root` as a tar stream of everything under it, paths relative to it.
fn send_tree(root: &Path, out: Out) -> End {
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(streams::MAX_CHUNK, out));
    builder.follow_symlinks(false);
    let result = add_dir(&mut builder, root, Path::new("")).and_then(|()| builder.finish());
    let mut writer = match builder.into_inner() {
        Ok(writer) => writer,
        Err(e) => return End::Failed(e.to_string()),
    };
    let result = result.and_then(|()| writer.flush());
    let out = match writer.into_inner() {
        Ok(out) => out,
        Err(e) => return End::Failed(e.error().to_string()),
    };
    out.end(result)
}

/// Adds what is in `dir` (as `rel` in the archive), in name order; sockets and devices are
/// left out, links kept as links.
fn add_dir<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (full, name) = (entry.path(), rel.join(entry.file_name()));
        let kind = entry.file_type()?;
        let add = |b: &mut tar::Builder<W>| b.append_path_with_name(&full, &name);
        if kind.is_dir() {
            builder.append_dir(&name, &full)?;
            add_dir(builder, &full, &name)?;
        } else if kind.is_file() || kind.is_symlink() {
            add(builder).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
        }
    }
    Ok(())
}
