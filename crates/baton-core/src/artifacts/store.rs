//! Where artifact bytes live. [`ArtifactStore`] is the seam: [`LocalStore`] keeps them as files
//! in a directory (`artifacts/` in the data directory); the server's `artifact_stores::s3`
//! keeps them in an S3-compatible bucket when one machine is not enough (an HTTP client the core
//! does not carry). Uploads are written to a staging file
//! first and moved into place only once their hash and size are known to be right, so a reader
//! never sees half an artifact.

use std::{
    collections::HashMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, Weak},
};

use bytes::Bytes;
use futures::{Stream, future::BoxFuture};

/// A stream of an artifact's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub trait ArtifactStore: Send + Sync {
    /// A directory for uploads in progress, on the same file system as the store when it is
    /// local (so finishing an upload is a rename).
    fn staging(&self) -> &Path;
    /// Moves a finished upload in under `key`.
    fn put<'a>(&'a self, key: &'a str, finished: &'a Path) -> BoxFuture<'a, io::Result<()>>;
    /// `len` bytes of `key` from `start`. Read it chunk by chunk, dropping each before asking
    /// for the next (as an HTTP body or a copy does): the local store lends one buffer per read,
    /// so a reader that holds every chunk (`try_collect`) waits forever for the second.
    fn read<'a>(&'a self, key: &'a str, start: u64, len: u64) -> BoxFuture<'a, io::Result<ByteStream>>;
    /// `key`'s file, when the store keeps it as one on this machine: the HTTP layer can then
    /// have the kernel send it (`sendfile`) instead of reading it through [`read`](Self::read).
    fn file<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Arc<File>>>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }
    /// Removes `key`; removing what is not there is no error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// A short-lived URL that serves `key`'s bytes without this server (an S3 presigned GET),
    /// when the store hands such URLs out; `None`: the server serves the bytes itself.
    fn direct_url<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<String>>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }
}

/// Artifacts as files under one directory: `objects/<key>`, with uploads staged in `staging/`.
pub struct LocalStore {
    objects: PathBuf,
    staging: PathBuf,
    /// The files being read, one open file per artifact shared by all its downloads (reads are
    /// positioned): a rollout's thousand downloads starting at once open the file once, instead
    /// of a thousand opens on the blocking pool that grew it by dozens of threads (and their
    /// allocator arenas) at the moment memory peaks.
    reading: Mutex<HashMap<String, Weak<File>>>,
    /// Held while a file is opened, so downloads that start together wait for the one open.
    opening: tokio::sync::Mutex<()>,
}

impl LocalStore {
    /// Opens (creating it if needed) the store in `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        let store = LocalStore {
            objects: root.join("objects"),
            staging: root.join("staging"),
            reading: Mutex::default(),
            opening: tokio::sync::Mutex::const_new(()),
        };
        std::fs::create_dir_all(&store.objects)?;
        sweep_staging(&store.staging)?;
        Ok(store)
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.objects.join(key))
    }

    /// `key`'s file as its downloads share it, opened now if none of them holds it.
    async fn open_shared(&self, key: &str) -> io::Result<Arc<File>> {
        if let Some(file) = self.being_read(key) {
            return Ok(file);
        }
        let _opening = self.opening.lock().await;
        if let Some(file) = self.being_read(key) {
            return Ok(file);
        }
        let file = Arc::new(tokio::fs::File::open(self.path(key)?).await?.into_std().await);
        let mut reading = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reading.retain(|_, file| file.strong_count() > 0);
        reading.insert(key.to_owned(), Arc::downgrade(&file));
        Ok(file)
    }

    fn being_read(&self, key: &str) -> Option<Arc<File>> {
        let reading = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reading.get(key).and_then(Weak::upgrade)
    }
}

/// Creates the staging directory `dir`, or empties it: an upload in progress belongs to the
/// process receiving it, so whatever is there when the store opens was left by one that a crash
/// cut short. (Each server node has a data directory of its own.)
pub fn sweep_staging(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path)?;
        }
        files += 1;
    }
    if files > 0 {
        tracing::info!(files, bytes, dir = %dir.display(), "removed uploads that a crash left unfinished");
    }
    Ok(())
}

/// Keys are `<tenant id>/<artifact id>`, made by the server, never by a client, and checked by
/// every store anyway so no key can name a path outside the store (or its bucket prefix).
pub fn check_key(key: &str) -> io::Result<()> {
    let safe = !key.is_empty()
        && key
            .split('/')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if safe {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{key}` is not an artifact key")))
    }
}

impl ArtifactStore for LocalStore {
    fn staging(&self) -> &Path {
        &self.staging
    }

    fn put<'a>(&'a self, key: &'a str, finished: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::rename(finished, &path).await?;
            // The rename is durable only once its directory is synced: what the database then
            // calls stored survives a power cut.
            #[cfg(unix)]
            if let Some(dir) = path.parent() {
                tokio::fs::File::open(dir).await?.sync_all().await?;
            }
            Ok(())
        })
    }

    fn read<'a>(&'a self, key: &'a str, start: u64, len: u64) -> BoxFuture<'a, io::Result<ByteStream>> {
        Box::pin(async move { Ok(super::file_chunks::stream(self.open_shared(key).await?, start, len)) })
    }

    fn file<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Arc<File>>>> {
        Box::pin(async move { Ok(Some(self.open_shared(key).await?)) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            // Downloads under way finish from the file they hold; new ones find it gone.
            self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
            match tokio::fs::remove_file(self.path(key)?).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    /// A store in `dir` holding `len` patterned bytes under `key`, and the bytes.
    async fn store_with(dir: &Path, key: &str, len: u32) -> (LocalStore, Vec<u8>) {
        let store = LocalStore::open(dir).expect("store");
        let staged = store.staging().join("upload");
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&staged, &bytes).expect("write");
        store.put(key, &staged).await.expect("put");
        (store, bytes)
    }

    #[tokio::test]
    async fn a_stored_file_reads_back_whole_or_from_an_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, bytes) = store_with(dir.path(), "t1/a1", 200_000).await;
        let store = &store;
        // Chunk by chunk, as every reader does: a local store lends each chunk's buffer and
        // reads the next into it once it is back.
        let read = |start, len| async move {
            let chunks = store.read("t1/a1", start, len).await.expect("read");
            chunks
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    Ok({
                        all.extend_from_slice(&chunk);
                        all
                    })
                })
                .await
                .expect("chunks")
        };
        assert_eq!(read(0, 200_000).await, bytes);
        assert_eq!(read(150_000, 10).await, bytes[150_000..150_010]);
        store.delete("t1/a1").await.expect("delete");
        store.delete("t1/a1").await.expect("deleting again is no error");
        for bad in ["../etc/passwd", "t1/../x", "", "t1//a"] {
            assert!(store.read(bad, 0, 1).await.is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn downloads_under_way_share_one_open_file_and_finish_after_a_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, bytes) = store_with(dir.path(), "t1/a2", 100_000).await;
        let first = store.read("t1/a2", 0, 100_000).await.expect("read");
        let second = store.read("t1/a2", 0, 100_000).await.expect("read");
        let open = store.being_read("t1/a2").expect("the file is open while it is read");
        assert_eq!(Arc::strong_count(&open), 3, "one file for both downloads (and this handle)");
        drop(open);
        store.delete("t1/a2").await.expect("delete");
        assert!(store.read("t1/a2", 0, 1).await.is_err(), "a new download finds the artifact gone");
        for download in [first, second] {
            let got: Vec<u8> = download
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await
                .expect("a download under way finishes");
            assert_eq!(got, bytes);
        }
        assert!(store.being_read("t1/a2").is_none(), "closed once its downloads ended");
    }
}
