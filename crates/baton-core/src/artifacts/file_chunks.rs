//! A range of a file as a stream of chunks, for serving artifacts from the local store at the
//! page cache's speed with a fixed, small amount of memory per download.
//!
//! Each download owns one buffer of [`CHUNK`] bytes and lends it out: a chunk handed to the HTTP
//! layer is that buffer itself (no copy into a fresh one), and the buffer comes back when the
//! layer has written the chunk and drops it; only then is the next chunk read into it. So a
//! download never holds more than one chunk, however far the socket lags, and reading allocates
//! nothing after the first chunk.
//!
//! On Linux a chunk is first read with `preadv2(RWF_NOWAIT)`, which answers from the page cache
//! or refuses at once: the common case (an artifact many devices fetch is cached after the first)
//! costs no thread switch. Only what is not cached is read on tokio's blocking pool, so a cold
//! disk never stalls the worker threads. (`tokio::fs` did both on the pool for every chunk and
//! copied each chunk again: at 1,000 downloads, 400 threads and most of the server's CPU.)

use std::{fs::File, io, sync::Arc};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::store::ByteStream;

/// Bytes per chunk, and a download's memory: 1,000 downloads at once hold 16 MiB. Measured
/// with `baton bench ota` (BENCHMARKS.md): 32 KiB cost 17 MiB more at 1,000 downloads for
/// ≈ 10 % more throughput; the peak memory is the floor this serves.
pub const CHUNK: usize = 16 * 1024;

/// `len` bytes of `file` (shared by the artifact's downloads) from `start`, in chunks of at most
/// [`CHUNK`] bytes.
pub fn stream(file: Arc<File>, start: u64, len: u64) -> ByteStream {
    let end = start.saturating_add(len);
    let state = (file, start, Buffer::Here(Vec::new()));
    Box::pin(futures::stream::try_unfold(state, move |(file, at, buffer)| async move {
        if at >= end {
            return Ok(None);
        }
        let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(CHUNK);
        let mut buf = buffer.back().await;
        buf.resize(want, 0);
        let (mut buf, n) = read_chunk(&file, at, buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the artifact's file is shorter than recorded"));
        }
        buf.truncate(n);
        let (returned, back) = oneshot::channel();
        let chunk = Bytes::from_owner(Lent { buf, back: Some(returned) });
        Ok(Some((chunk, (file, at + n as u64, Buffer::Lent(back)))))
    }))
}

/// The download's buffer: in hand, or lent out as the chunk being written.
enum Buffer {
    Here(Vec<u8>),
    Lent(oneshot::Receiver<Vec<u8>>),
}

impl Buffer {
    /// The buffer, once the chunk lent out has been written and dropped (a fresh one if the
    /// chunk was dropped some other way).
    async fn back(self) -> Vec<u8> {
        match self {
            Buffer::Here(buf) => buf,
            Buffer::Lent(back) => back.await.unwrap_or_default(),
        }
    }
}

/// A chunk's bytes, sent back to their download when the HTTP layer drops them.
struct Lent {
    buf: Vec<u8>,
    back: Option<oneshot::Sender<Vec<u8>>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            // The download may have ended already; the buffer is then freed here.
            let _ = back.send(std::mem::take(&mut self.buf));
        }
    }
}

/// Fills `buf` from `at` as far as the file goes, from the page cache without leaving this
/// thread when the bytes are there, else on the blocking pool; gives the buffer back with the
/// count read.
async fn read_chunk(file: &Arc<File>, at: u64, mut buf: Vec<u8>) -> io::Result<(Vec<u8>, usize)> {
    match read_cached(file, at, &mut buf) {
        Ok(n) if n > 0 => return Ok((buf, n)),
        // Nothing cached there, or the end of the file: the blocking read below decides.
        Ok(_) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported) => {}
        Err(e) => return Err(e),
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let n = read_at(&file, at, &mut buf)?;
        Ok((buf, n))
    })
    .await
    .map_err(io::Error::other)?
}

/// Whether the page cache holds the byte of `file` at `at`, asked without waiting for the disk
/// (never, where it cannot be asked so): lets a caller that has the kernel send the file
/// (`sendfile`) keep reads from the disk off its worker threads.
pub fn in_page_cache(file: &File, at: u64) -> bool {
    matches!(read_cached(file, at, &mut [0u8]), Ok(1))
}

/// Reads what the page cache holds at `at`, never waiting for the disk.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    match preadv2(file, &mut [io::IoSliceMut::new(buf)], at, ReadWriteFlags::NOWAIT) {
        Ok(n) => Ok(n),
        // Kernels or file systems without RWF_NOWAIT: every chunk is read on the blocking pool.
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Err(io::ErrorKind::Unsupported.into()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _at: u64, _buf: &mut [u8]) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A blocking positioned read, filling `buf` as far as the file goes.
#[cfg(unix)]
fn read_at(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(windows)]
fn read_at(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, at)
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn a_download_holds_one_chunk_and_the_next_waits_for_its_return() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(3 * CHUNK + 10) as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let mut chunks = stream(Arc::new(File::open(&path).expect("open")), 5, bytes.len() as u64 - 5);
        let first = chunks.next().await.expect("a chunk").expect("read");
        assert_eq!(first[..], bytes[5..5 + CHUNK]);
        assert!(chunks.next().now_or_never().is_none(), "the next chunk is read only once the first is given back");
        drop(first);
        let mut got = bytes[5..5 + CHUNK].to_vec();
        while let Some(chunk) = chunks.next().await {
            got.extend_from_slice(&chunk.expect("read"));
        }
        assert_eq!(got, bytes[5..]);
    }
}
