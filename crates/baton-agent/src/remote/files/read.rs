//! Reading from the device: a file's bytes from an offset, or a directory as a tar stream
//! (links stored as links, never followed, so nothing outside the directory goes out). The
//! SHA-256 of a file is computed before its first byte is sent, so the server can tell the
//! client what to check. Bytes go out within the server's credit, from a blocking thread.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use baton_proto::streams::{self, FileKind};
use bytes::Bytes;
use tokio::{
    runtime::Handle,
    sync::{Semaphore, mpsc},
};

use super::{Outgoing, blocking, closed, describe, opened, paths};
use crate::{config::RemoteConfig, safe_open::open_regular};

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
    let roots = paths::roots(config);
    let max = config.file_max_bytes;
    let (path_shown, found, tree_roots) = (path.to_owned(), real.clone(), roots.clone());
    let (info, file) = blocking(move || {
        let mut info = describe(&found, None)?;
        let file = match info.kind {
            FileKind::File => {
                // Opened without following a link swapped in since the check; judged as opened.
                let file = open_regular(&found, &format!("`{path_shown}`"), &roots)?;
                info.size = file.metadata()?.len();
                Some(file)
            }
            _ => None,
        };
        Ok((info, file))
    })
    .await?;
    let path_shown = path.to_owned();
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
            run_blocking(move || send_tree(&real, &tree_roots, out)).await
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
fn send_tree(root: &Path, roots: &[PathBuf], out: Out) -> End {
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(streams::MAX_CHUNK, out));
    builder.follow_symlinks(false);
    let result = add_dir(&mut builder, root, Path::new(""), roots).and_then(|()| builder.finish());
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

/// Adds what is in `dir` (as `rel` in the archive), in name order, walked here rather than by
/// `tar` (which opens by path, following links): a link is stored as a link (never followed),
/// a regular file is opened as [`open_regular`] does and sent from the open file, a directory
/// is walked only while it is still itself (not a link swapped in), and sockets, FIFOs and
/// devices are left out.
fn add_dir<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, rel: &Path, roots: &[PathBuf]) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (full, name) = (entry.path(), rel.join(entry.file_name()));
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", full.display()));
        let kind = entry.file_type().map_err(named)?;
        if kind.is_dir() {
            let meta = std::fs::symlink_metadata(&full).map_err(named)?;
            let real = std::fs::canonicalize(&full).map_err(named)?;
            if !meta.is_dir() || real != full || !roots.iter().any(|r| real.starts_with(r)) {
                return Err(io::Error::other(format!(
                    "{} changed while it was read; download it again",
                    full.display()
                )));
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            builder.append_data(&mut header, &name, io::empty()).map_err(named)?;
            add_dir(builder, &full, &name, roots)?;
        } else if kind.is_symlink() {
            let meta = std::fs::symlink_metadata(&full).map_err(named)?;
            let target = std::fs::read_link(&full).map_err(named)?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_size(0);
            builder.append_link(&mut header, &name, &target).map_err(named)?;
        } else if kind.is_file() {
            let file = open_regular(&full, &full.display().to_string(), roots)?;
            let meta = file.metadata().map_err(named)?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            builder.append_data(&mut header, &name, Exactly::new(file, meta.len())).map_err(named)?;
        }
    }
    Ok(())
}

/// Exactly `len` bytes of a file that may change while it is read: cut if it grew, padded
/// with zeros if it shrank (the tar entry's size is said before its bytes).
struct Exactly {
    file: io::Take<File>,
    padding: u64,
}

impl Exactly {
    fn new(file: File, len: u64) -> Self {
        Self { file: file.take(len), padding: 0 }
    }
}

impl Read for Exactly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.limit() > 0 {
            let n = self.file.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            (self.padding, _) = (self.file.limit(), self.file.set_limit(0));
        }
        let n = buf.len().min(usize::try_from(self.padding).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.padding -= n as u64;
        Ok(n)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_walked_by_the_agent_links_kept_as_links_and_only_regular_files_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical");
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("sub")).expect("dirs");
        std::fs::create_dir_all(&outside).expect("dirs");
        std::fs::write(outside.join("secret"), "s").expect("secret");
        std::fs::write(root.join("sub/a.txt"), "alpha").expect("file");
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).expect("link");
        std::os::unix::fs::symlink(&outside, root.join("door")).expect("link");
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");

        let mut builder = tar::Builder::new(Vec::new());
        add_dir(&mut builder, &root, Path::new(""), std::slice::from_ref(&root)).expect("walked");
        let bytes = builder.into_inner().expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let link = entry.link_name().expect("link").map(|l| l.display().to_string());
            let mut content = String::new();
            entry.read_to_string(&mut content).expect("content");
            seen.push((path, entry.header().entry_type(), link, content));
        }
        let secret = outside.join("secret").display().to_string();
        assert_eq!(
            seen,
            [
                ("door".into(), tar::EntryType::Symlink, Some(outside.display().to_string()), String::new()),
                ("link".into(), tar::EntryType::Symlink, Some(secret), String::new()),
                ("sub".into(), tar::EntryType::Directory, None, String::new()),
                ("sub/a.txt".into(), tar::EntryType::Regular, None, "alpha".into()),
            ]
        );
    }

    #[test]
    fn a_file_that_changes_size_while_archived_keeps_its_said_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").expect("file");
        let mut out = Vec::new();
        Exactly::new(File::open(&path).expect("open"), 5).read_to_end(&mut out).expect("read");
        assert_eq!(out, b"abc\0\0");
        out.clear();
        Exactly::new(File::open(&path).expect("open"), 2).read_to_end(&mut out).expect("read");
        assert_eq!(out, b"ab");
    }
}
