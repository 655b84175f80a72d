//! What the agent keeps between runs: its identity (device id and secret, mode 0600), the
//! telemetry not yet acknowledged, the ids of commands it already ran (so none runs twice), and
//! a marker once the device is decommissioned. On disk for a real agent; in memory for the
//! simulator's thousands of devices.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use baton_proto::agent::TelemetryBatch;
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// The device's credentials, as enrollment returned them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub server: String,
    pub device_id: String,
    pub secret: String,
}

/// Telemetry waiting for the server's acknowledgement, and the next batch number.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Backlog {
    pub next_seq: u64,
    pub batches: VecDeque<TelemetryBatch>,
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
    backlog: Backlog,
    executed: Vec<String>,
    decommissioned: bool,
}

const IDENTITY: &str = "identity.json";
const BACKLOG: &str = "telemetry-backlog.json";
const EXECUTED: &str = "executed-commands.json";
const DECOMMISSIONED: &str = "decommissioned";
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

    pub fn forget_identity(&self) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => remove(&dir.join(IDENTITY)),
            Self::Memory(m) => {
                lock(m).identity = None;
                Ok(())
            }
        }
    }

    pub fn backlog(&self) -> Result<Backlog, AgentError> {
        match self {
            Self::Disk(dir) => Ok(read_json(&dir.join(BACKLOG))?.unwrap_or_default()),
            Self::Memory(m) => Ok(lock(m).backlog.clone()),
        }
    }

    pub fn save_backlog(&self, backlog: &Backlog) -> Result<(), AgentError> {
        match self {
            Self::Disk(dir) => write_json(&dir.join(BACKLOG), backlog),
            Self::Memory(m) => {
                lock(m).backlog = backlog.clone();
                Ok(())
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
                    for file in [IDENTITY, BACKLOG, EXECUTED] {
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

/// Writes through a temporary file and a rename, so a crash never leaves half a file; the file
/// is readable by its owner only.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(value).map_err(|e| AgentError::State(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| AgentError::State(format!("cannot write {}: {e}", path.display()));
    write_private(&tmp, &bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
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
