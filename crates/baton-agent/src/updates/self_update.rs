//! The agent updating itself, with an automatic way back:
//! 1. the new binary is tried first (`<new> --version` must run), then the running binary is kept
//!    in the state directory and the new one renamed over it (atomic);
//! 2. a [`Trial`] is written to the journal and the process replaces itself with the new binary
//!    (same arguments, same PID, so a service manager sees nothing);
//! 3. the new agent finds the trial: it must connect to the server and pass the health check
//!    within the verify window. Then it commits (SUCCEEDED with the new version). Otherwise — the
//!    check fails, the window passes, or the new agent starts a second time during its trial
//!    (it crashed) — it puts the kept binary back and replaces itself with it; the old agent
//!    reports ROLLED_BACK with the version it still has.
//!
//! Unix only: elsewhere an agent artifact is refused as incompatible (install it as a package).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An update of the agent on trial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trial {
    pub execution_id: String,
    pub attempt: u32,
    /// The artifact's name and version.
    pub name: String,
    pub version: String,
    /// The agent binary's path, and where the previous one is kept.
    pub binary: PathBuf,
    pub kept: PathBuf,
    /// The new binary's SHA-256: at start, whether the swap happened.
    #[serde(default)]
    pub sha256: String,
    /// Milliseconds since the epoch by which the new agent must be healthy.
    pub deadline_ms: i64,
    /// Set by the new agent when it starts; found set on a start, the trial failed.
    pub started: bool,
}

/// The binary the service runs: the configured one, or this process's executable.
pub fn current_binary(configured: Option<&Path>) -> Result<PathBuf, String> {
    match configured {
        Some(path) => Ok(path.to_path_buf()),
        None => std::env::current_exe().map_err(|e| format!("cannot tell where this agent's binary is: {e}")),
    }
}

/// Checks that the downloaded binary runs here at all.
pub async fn preflight(new: &Path) -> Result<(), String> {
    set_executable(new).map_err(|e| format!("cannot make {} executable: {e}", new.display()))?;
    let out = tokio::process::Command::new(new)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(30), out).await {
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => Err(format!("the new agent does not run here: `--version` exited {}", o.status)),
        Ok(Err(e)) => Err(format!("the new agent does not run here: {e}")),
        Err(_) => Err("the new agent does not run here: `--version` hung".into()),
    }
}

/// Whether the binary at `path` is the one with this SHA-256.
pub fn is_binary(path: &Path, sha256: &str) -> bool {
    use sha2::{Digest, Sha256};
    let Ok(bytes) = std::fs::read(path) else { return false };
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    digest == sha256
}

/// Keeps the running binary at `kept` and puts `new` in its place, atomically.
pub fn swap(binary: &Path, kept: &Path, new: &Path) -> Result<(), String> {
    if let Some(dir) = kept.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::copy(binary, kept).map_err(|e| format!("cannot keep the running agent: {e}"))?;
    let staged = binary.with_file_name(format!(
        ".{}.baton-new",
        binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    std::fs::copy(new, &staged).map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
    set_executable(&staged).map_err(|e| format!("cannot make {} executable: {e}", staged.display()))?;
    std::fs::File::open(&staged).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
    std::fs::rename(&staged, binary).map_err(|e| format!("cannot replace {}: {e}", binary.display()))
}

/// Puts the kept binary back.
pub fn restore(trial: &Trial) -> Result<(), String> {
    let staged = trial.binary.with_extension("baton-revert");
    std::fs::copy(&trial.kept, &staged).map_err(|e| format!("cannot read the kept agent: {e}"))?;
    set_executable(&staged).map_err(|e| e.to_string())?;
    std::fs::rename(&staged, &trial.binary).map_err(|e| format!("cannot put the previous agent back: {e}"))
}

/// Replaces this process with `binary`, same arguments. Returns only if that failed.
#[cfg(unix)]
pub fn restart_as(binary: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    tracing::warn!(binary = %binary.display(), "restarting the agent");
    let e = std::process::Command::new(binary).args(args).exec();
    format!("cannot start {}: {e}", binary.display())
}

#[cfg(not(unix))]
pub fn restart_as(_binary: &Path) -> String {
    "this platform cannot restart the agent in place".into()
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
