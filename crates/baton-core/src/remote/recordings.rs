//! Session recordings: written while the session runs to a staging file of the artifact store
//! (so memory stays flat however long it runs), moved into the store when it ends (so S3 and
//! several server nodes work), listed with the sessions, and pruned after the retention period.
//! A recording stops growing at [`MAX_BYTES`] and says so in its last event.

use std::{
    fs::File,
    io::{self, BufWriter},
    path::PathBuf,
};

use sqlx::Row;

use super::asciicast::{self, Header, Stream};
use crate::{
    Error,
    artifacts::ArtifactStore,
    store::{Db, now_ms},
};

/// A recording stops growing beyond this.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// A recording in the artifact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub size_bytes: u64,
    pub duration_ms: u64,
    pub input_recorded: bool,
}

/// A recording being written.
pub struct Recorder {
    writer: Option<asciicast::Writer<BufWriter<File>>>,
    path: PathBuf,
    key: String,
    record_input: bool,
    full: bool,
}

impl Recorder {
    /// Starts the recording of `session_id` in the store's staging directory.
    pub fn start(
        store: &dyn ArtifactStore,
        tenant_id: &str,
        session_id: &str,
        header: &Header<'_>,
        record_input: bool,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(store.staging())?;
        let path = store.staging().join(format!("recording-{session_id}.cast"));
        let file = BufWriter::with_capacity(4096, File::create(&path)?);
        let writer = asciicast::Writer::new(file, header)?;
        let key = format!("recordings/{tenant_id}/{session_id}");
        Ok(Recorder { writer: Some(writer), path, key, record_input, full: false })
    }

    pub fn output(&mut self, bytes: &[u8]) {
        self.write(|w| w.data(Stream::Output, bytes));
    }

    /// Keystrokes, when the tenant records them.
    pub fn input(&mut self, bytes: &[u8]) {
        if self.record_input {
            self.write(|w| w.data(Stream::Input, bytes));
        }
    }

    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.write(|w| w.resize(cols, rows));
    }

    fn write(&mut self, f: impl FnOnce(&mut asciicast::Writer<BufWriter<File>>) -> io::Result<()>) {
        let Some(writer) = self.writer.as_mut() else { return };
        if self.full {
            return;
        }
        if writer.size() >= MAX_BYTES {
            self.full = true;
            let note = format!("\r\n[baton: the recording stops here, at its {} MiB limit]\r\n", MAX_BYTES >> 20);
            let _ = writer.data(Stream::Output, note.as_bytes());
            return;
        }
        if let Err(e) = f(writer) {
            tracing::warn!(error = %e, "cannot write a session recording; it stops here");
            self.writer = None;
        }
    }

    /// Ends the recording and moves it into the store.
    pub async fn finish(mut self, store: &dyn ArtifactStore) -> io::Result<Stored> {
        let writer = self.writer.take().ok_or_else(|| io::Error::other("the recording failed earlier"))?;
        let duration_ms = writer.elapsed().as_millis() as u64;
        let size_bytes = writer.size();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        })
        .await
        .map_err(io::Error::other)??;
        let size_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(size_bytes);
        store.put(&self.key, &path).await?;
        Ok(Stored { key: self.key.clone(), size_bytes, duration_ms, input_recorded: self.record_input })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Deletes recordings of sessions that ended more than `retention_days` ago, in every tenant;
/// returns how many.
pub async fn prune(db: &Db, store: &dyn ArtifactStore, retention_days: u32) -> Result<u64, Error> {
    let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
    let rows = sqlx::query(
        "SELECT id, recording_key FROM remote_sessions WHERE recording_key IS NOT NULL AND closed_at < $1 LIMIT 1000",
    )
    .bind(cutoff)
    .fetch_all(db.reader())
    .await?;
    let mut pruned = 0;
    for row in rows {
        let (id, key): (String, String) = (row.try_get("id")?, row.try_get("recording_key")?);
        store.delete(&key).await.map_err(|e| anyhow::anyhow!("deleting recording {key}: {e}"))?;
        sqlx::query("UPDATE remote_sessions SET recording_key = NULL WHERE id = $1")
            .bind(&id)
            .execute(db.writer())
            .await?;
        pruned += 1;
    }
    Ok(pruned)
}
