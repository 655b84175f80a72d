//! What the agent keeps between runs: its identity (device id and secret, mode 0600), its client
//! certificate with the key it made for it (mode 0600), the
//! telemetry not yet acknowledged, the ids of commands it already ran (so none runs twice), and
//! a marker once the device is decommissioned. On disk for a real agent; in memory for the
//! simulator's thousands of devices.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use baton_proto::agent::{CommandUpdate, TelemetryBatch};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// The device's credentials, as enrollment returned them. The secret may be removed by hand
/// once the device holds a certificate: it then proves who it is by mutual TLS alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub server: String,
    pub device_id: String,
    #[serde(default)]
    pub secret: String,
}

/// The device's client certificate (PEM, with the authority's chain), the private key made for
/// it on this device (PKCS#8 PEM), and its validity in Unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldCertificate {
    pub certificate: String,
    pub private_key: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Telemetry waiting for the server's acknowledgement, and the next batch number. `epoch`
/// names this numbering: a backlog that starts over (lost or damaged file) gets a new one, so
/// the server does not mistake its new batches for ones it already stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Backlog {
    #[serde(default)]
    pub epoch: u64,
    pub next_seq: u64,
    pub batches: VecDeque<TelemetryBatch>,
}

/// One line of the on-disk backlog log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Header {
        epoch: u64,
        next_seq: u64,
    },
    Batch(TelemetryBatch),
    /// Batches up to and including this number are gone (acknowledged or dropped).
    Done(u64),
}

/// Where the agent's state lives.
#[derive(Debug, Clone)]
pub enum Storage {
    Disk(PathBuf),
    Memory(std::sync::Arc<std::sync::Mutex<MemoryState>>),
}

#[derive(Debug, Default)]
pub struct MemoryState {
    identity: Option<Identity>,
    certificate: Option<HeldCertificate>,
    backlog: Backlog,
    executed: Vec<String>,
    results: Vec<CommandUpdate>,
    /// The update journal, kept as JSON: its shape is the `updates` module's.
    updates: Option<serde_json::Value>,
    decommissioned: bool,
}

const IDENTITY: &str = "identity.json";
const CERTIFICATE: &str = "certificate.json";
/// An append-only log: a batch line per sample taken, a `done` line per acknowledgement; compacted
/// when loaded. Appending keeps the cost of a sample constant however long the device is offline.
const BACKLOG: &str = "telemetry-backlog.jsonl";
const EXECUTED: &str = "executed-commands.json";
const RESULTS: &str = "command-results.json";
const DECOMMISSIONED: &str = "decommissioned";
/// Installed versions and the executions carried out (see `updates::Journal`).
const UPDATES: &str = "updates.json";
/// Command ids remembered; older ones are forgotten (their commands expired long ago).
const EXECUTED_KEPT: usize = 2_000;

impl Storage {
    pub fn memory() -> Self {
        Self::Memory(Default::default())
    }

    pub fn disk(dir: &Path) -> Result<Self, AgentError> {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::State(format!("cannot create {}: {e}", dir.display())))?;
        restrict_dir(dir);
        Ok(Self::Disk(dir.to_path_buf()))
    }

    pub fn identity(&self) -> Result<Option<Identity>, AgentError> {
        match self {
            Self::Disk(dir) => read_json(&dir.join(IDENTITY)),
            Self::Memory(m) => Ok(lock(m).identity.clone()),
        }
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => write_json(&dir.join(IDENTITY), identity),
            Self::Memory(m) => {
                lock(m).identity = Some(identity.clone());
                Ok(())
            }
        }
    }

    pub fn certificate(&self) -> Result<Option<HeldCertificate>, AgentError> {
        match self {
            Self::Disk(dir) => read_json(&dir.join(CERTIFICATE)),
            Self::Memory(m) => Ok(lock(m).certificate.clone()),
        }
    }

    pub fn save_certificate(&self, certificate: &HeldCertificate) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => write_json(&dir.join(CERTIFICATE), certificate),
            Self::Memory(m) => {
                lock(m).certificate = Some(certificate.clone());
                Ok(())
            }
        }
    }

    pub fn forget_identity(&self) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => {
                remove(&dir.join(CERTIFICATE))?;
                remove(&dir.join(IDENTITY))
            }
            Self::Memory(m) => {
                let mut state = lock(m);
                state.identity = None;
                state.certificate = None;
                Ok(())
            }
        }
    }

    /// Loads the backlog (compacting the log on disk), starting a new epoch when there is none.
    pub fn load_backlog(&self) -> Result<Backlog, AgentError> {
        let mut backlog = match self {
            Self::Disk(dir) => replay(&dir.join(BACKLOG))?,
            Self::Memory(m) => lock(m).backlog.clone(),
        };
        if backlog.epoch == 0 {
            backlog.epoch = rand::random::<u64>() >> 1 | 1;
        }
        self.compact_backlog(&backlog)?;
        Ok(backlog)
    }

    /// Rewrites the backlog as it is now.
    pub fn compact_backlog(&self, backlog: &Backlog) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => {
                let mut text = line(&Entry::Header { epoch: backlog.epoch, next_seq: backlog.next_seq })?;
                for batch in &backlog.batches {
                    text.push_str(&line(&Entry::Batch(batch.clone()))?);
                }
                write_bytes(&dir.join(BACKLOG), text.as_bytes())
            }
            Self::Memory(m) => {
                lock(m).backlog = backlog.clone();
                Ok(())
            }
        }
    }

    /// Records a new batch durably.
    pub fn append_batch(&self, batch: &TelemetryBatch, backlog: &Backlog) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => append(&dir.join(BACKLOG), &line(&Entry::Batch(batch.clone()))?, true),
            Self::Memory(m) => {
                lock(m).backlog = backlog.clone();
                Ok(())
            }
        }
    }

    /// Records that batches up to `seq` are gone. Not flushed: a lost line only means a batch is
    /// sent again, and the server stores it once.
    pub fn append_done(&self, seq: u64, backlog: &Backlog) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => append(&dir.join(BACKLOG), &line(&Entry::Done(seq))?, false),
            Self::Memory(m) => {
                lock(m).backlog = backlog.clone();
                Ok(())
            }
        }
    }

    /// Final command results kept to answer a server that asks again.
    pub fn results(&self) -> Result<Vec<CommandUpdate>, AgentError> {
        match self {
            Self::Disk(dir) => Ok(read_json(&dir.join(RESULTS))?.unwrap_or_default()),
            Self::Memory(m) => Ok(lock(m).results.clone()),
        }
    }

    pub fn save_results(&self, results: &[CommandUpdate]) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => write_json(&dir.join(RESULTS), &results),
            Self::Memory(m) => {
                lock(m).results = results.to_vec();
                Ok(())
            }
        }
    }

    /// What updates installed, and the executions carried out (the `updates` module's journal;
    /// storage keeps it without knowing its shape).
    pub fn updates<J: serde::de::DeserializeOwned + Default>(&self) -> Result<J, AgentError> {
        match self {
            Self::Disk(dir) => Ok(read_json(&dir.join(UPDATES))?.unwrap_or_default()),
            Self::Memory(m) => match lock(m).updates.clone() {
                Some(value) => {
                    serde_json::from_value(value).map_err(|e| AgentError::State(format!("update journal: {e}")))
                }
                None => Ok(J::default()),
            },
        }
    }

    /// Written before each step that changes the device, so a crash never repeats one.
    pub fn save_updates<J: serde::Serialize>(&self, journal: &J) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => write_json(&dir.join(UPDATES), journal),
            Self::Memory(m) => {
                let value =
                    serde_json::to_value(journal).map_err(|e| AgentError::State(format!("update journal: {e}")))?;
                lock(m).updates = Some(value);
                Ok(())
            }
        }
    }

    /// Where downloads are kept while they are checked and until installed: a directory in the
    /// state directory, or (state in memory) one under the system's temporary directory.
    pub fn downloads_dir(&self) -> std::path::PathBuf {
        match self {
            Self::Disk(dir) => dir.join("downloads"),
            Self::Memory(m) => {
                let key = std::sync::Arc::as_ptr(m) as usize;
                std::env::temp_dir().join(format!("baton-agent-{}-{key:x}", std::process::id()))
            }
        }
    }

    pub fn executed(&self) -> Result<Vec<String>, AgentError> {
        match self {
            Self::Disk(dir) => Ok(read_json(&dir.join(EXECUTED))?.unwrap_or_default()),
            Self::Memory(m) => Ok(lock(m).executed.clone()),
        }
    }

    /// Records that a command id is about to run. Written before the command starts, so a
    /// crash mid-run never leads to a second run.
    pub fn mark_executed(&self, id: &str) -> Result<(), AgentError> {
        let mut ids = self.executed()?;
        ids.push(id.to_owned());
        if ids.len() > EXECUTED_KEPT {
            ids.drain(..ids.len() - EXECUTED_KEPT);
        }
        match self {
            Self::Disk(dir) => write_json(&dir.join(EXECUTED), &ids),
            Self::Memory(m) => {
                lock(m).executed = ids;
                Ok(())
            }
        }
    }

    pub fn is_decommissioned(&self) -> bool {
        match self {
            Self::Disk(dir) => dir.join(DECOMMISSIONED).exists(),
            Self::Memory(m) => lock(m).decommissioned,
        }
    }

    /// Marks the device decommissioned; with `wipe`, everything else is erased first.
    pub fn decommission(&self, wipe: bool) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => {
                if wipe {
                    for file in [IDENTITY, CERTIFICATE, BACKLOG, EXECUTED, RESULTS] {
                        remove(&dir.join(file))?;
                    }
                }
                let note = format!("decommissioned by the server at {}\n", chrono::Utc::now().to_rfc3339());
                std::fs::write(dir.join(DECOMMISSIONED), note).map_err(|e| AgentError::State(e.to_string()))
            }
            Self::Memory(m) => {
                let mut state = lock(m);
                if wipe {
                    *state = MemoryState::default();
                }
                state.decommissioned = true;
                Ok(())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Disk(dir) => dir.display().to_string(),
            Self::Memory(_) => "memory".into(),
        }
    }
}

fn lock(m: &std::sync::Mutex<MemoryState>) -> std::sync::MutexGuard<'_, MemoryState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AgentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AgentError::State(format!("{} is damaged ({e}); remove it to start over", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::State(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(value).map_err(|e| AgentError::State(e.to_string()))?;
    write_bytes(path, &bytes)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file; the file
/// is readable by its owner only.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| AgentError::State(format!("cannot write {}: {e}", path.display()));
    write_private(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn line(entry: &Entry) -> Result<String, AgentError> {
    let mut text = serde_json::to_string(entry).map_err(|e| AgentError::State(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

fn append(path: &Path, text: &str, flush: bool) -> Result<(), AgentError> {
    use std::io::Write;
    let fail = |e: std::io::Error| AgentError::State(format!("cannot append to {}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    if flush {
        f.sync_data().map_err(fail)?;
    }
    Ok(())
}

/// Rebuilds the backlog from its log. A torn last line (a crash mid-append) is ignored; a
/// damaged line elsewhere loses that line only.
fn replay(path: &Path) -> Result<Backlog, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Backlog::default()),
        Err(e) => return Err(AgentError::State(format!("cannot read {}: {e}", path.display()))),
    };
    let mut backlog = Backlog::default();
    for entry in text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()) {
        match entry {
            Entry::Header { epoch, next_seq } => {
                backlog.epoch = epoch;
                backlog.next_seq = backlog.next_seq.max(next_seq);
            }
            Entry::Batch(batch) => {
                backlog.next_seq = backlog.next_seq.max(batch.seq + 1);
                backlog.batches.push_back(batch);
            }
            Entry::Done(seq) => {
                backlog.next_seq = backlog.next_seq.max(seq + 1);
                backlog.batches.retain(|b| b.seq > seq);
            }
        }
    }
    Ok(backlog)
}

fn remove(path: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(AgentError::State(format!("cannot remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt, os::unix::fs::PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_dir(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::disk(dir.path()).expect("storage");
        let id = Identity { server: "http://s".into(), device_id: "d".into(), secret: "bd_x".into() };
        storage.save_identity(&id).expect("saved");
        assert_eq!(Storage::disk(dir.path()).expect("again").identity().expect("read"), Some(id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_wipe_erases_the_identity_and_leaves_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::disk(dir.path()).expect("storage");
        storage
            .save_identity(&Identity { server: "s".into(), device_id: "d".into(), secret: "x".into() })
            .expect("saved");
        storage.mark_executed("c1").expect("marked");
        storage.decommission(true).expect("wiped");
        assert_eq!(storage.identity().expect("read"), None);
        assert!(storage.executed().expect("read").is_empty());
        assert!(storage.is_decommissioned());
    }
}
