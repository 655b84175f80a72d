//! Putting a checked artifact in place, per kind, behind the [`Installer`] trait (the simulator
//! brings its own). The machine's installer:
//! - **file**: written next to its destination, given its mode (and owner), synced, and renamed
//!   over it — a reader sees the old file or the new one, never half; the old one is kept to
//!   revert to;
//! - **package** and **firmware**: the rollout's `command`, or the agent's configured one, with
//!   `{file}` replaced by the download's path. Exit code 75 (`EX_TEMPFAIL`) means "retry later".
//!
//! After installing, the device's health check (`health_command`, when configured) decides
//! whether the update stays; a file is reverted when it fails.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use baton_proto::{
    api::{
        artifacts::ArtifactKind,
        rollouts::{FailureClass, InstallSpec},
    },
    deployment::DeployedArtifact,
};

use super::trust::Refusal;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One install to carry out.
#[derive(Debug, Clone)]
pub struct InstallJob {
    pub artifact: DeployedArtifact,
    pub install: InstallSpec,
    /// The checked download.
    pub file: PathBuf,
    /// Where what is replaced can be kept, to revert to.
    pub keep_dir: PathBuf,
}

pub trait Installer: Send + Sync + 'static {
    fn install<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Whether the device is healthy with the update in place.
    fn healthy<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>>;
    /// Puts back what the install replaced.
    fn revert<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>>;
    /// Whether an `agent` artifact replaces this very process (see `self_update`); otherwise
    /// `install` gets it like any other.
    fn updates_agent(&self) -> bool {
        false
    }
}

/// Exit code of an installer or hook that asks to be tried again later.
pub const RETRY_LATER: i32 = 75;
/// Longest an installer command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Installs on the machine the agent runs on.
#[derive(Debug, Clone, Default)]
pub struct SystemInstaller {
    /// File artifacts' paths are taken under this directory (e.g. where a container sees the
    /// host's root); `/` when unset.
    pub install_root: Option<PathBuf>,
    pub package_command: Option<Vec<String>>,
    pub firmware_command: Option<Vec<String>>,
    pub health_command: Option<Vec<String>>,
}

impl Installer for SystemInstaller {
    fn install<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            match job.artifact.kind {
                ArtifactKind::File => install_file(job, &self.target(job)?).await,
                ArtifactKind::Package => run_installer(job, self.package_command.as_deref(), "package_command").await,
                ArtifactKind::Firmware => {
                    run_installer(job, self.firmware_command.as_deref(), "firmware_command").await
                }
                ArtifactKind::Agent => Err(Refusal {
                    class: FailureClass::Incompatible,
                    detail: "this platform's agent does not update itself; install the new agent as a package".into(),
                }),
            }
        })
    }

    fn updates_agent(&self) -> bool {
        cfg!(unix)
    }

    fn healthy<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(argv) = &self.health_command else { return Ok(()) };
            run(&substitute(argv, &job.file))
                .await
                .map_err(|(code, out)| format!("the health check exited {code}: {out}"))
        })
    }

    fn revert<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if job.artifact.kind != ArtifactKind::File {
                return Err("a package is reverted by rolling back to its previous version".into());
            }
            let target = self.target(job).map_err(|r| r.detail)?;
            let kept = kept_path(job);
            if tokio::fs::metadata(&kept).await.is_ok() {
                tokio::fs::rename(&kept, &target)
                    .await
                    .map_err(|e| format!("cannot put back {}: {e}", target.display()))
            } else {
                tokio::fs::remove_file(&target).await.map_err(|e| format!("cannot remove {}: {e}", target.display()))
            }
        })
    }
}

impl SystemInstaller {
    /// Where a file artifact goes: its absolute `install.path`, under `install_root` if set.
    fn target(&self, job: &InstallJob) -> Result<PathBuf, Refusal> {
        let refuse = |detail: String| Refusal { class: FailureClass::Incompatible, detail };
        let path = job.install.path.as_deref().unwrap_or_default();
        if let Some(problem) = InstallSpec::path_problem(path) {
            return Err(refuse(format!("`install.path` must be {problem}")));
        }
        // The same rule on this system's own terms (a Windows path is not absolute on Linux).
        let path = Path::new(path);
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(refuse(format!("`install.path` {} is not an absolute file path here", path.display())));
        }
        if let Some(Err(problem)) = job.install.mode.as_deref().map(InstallSpec::parse_mode) {
            return Err(refuse(format!("`install.mode` must be {problem}")));
        }
        Ok(match &self.install_root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        })
    }
}

fn kept_path(job: &InstallJob) -> PathBuf {
    job.keep_dir.join(format!("{}.previous", job.artifact.name.replace(['/', '\\'], "_")))
}

async fn install_file(job: &InstallJob, target: &Path) -> Result<(), Refusal> {
    let fail = |detail: String| Refusal { class: FailureClass::Install, detail };
    let target = target.to_path_buf();
    let dir = target.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    tokio::fs::create_dir_all(&job.keep_dir)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", job.keep_dir.display())))?;
    let kept = kept_path(job);
    let _ = tokio::fs::remove_file(&kept).await;
    if tokio::fs::metadata(&target).await.is_ok() {
        tokio::fs::copy(&target, &kept)
            .await
            .map_err(|e| fail(format!("cannot keep the current {}: {e}", target.display())))?;
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.baton-new"));
    // A fresh file, never through a link someone left at that name.
    let _ = tokio::fs::remove_file(&temp).await;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", temp.display())))?;
    let mut src = tokio::fs::File::open(&job.file).await.map_err(|e| fail(e.to_string()))?;
    tokio::io::copy(&mut src, &mut out).await.map_err(|e| fail(format!("cannot write {}: {e}", temp.display())))?;
    drop(out);
    let mode = job.install.mode.as_deref().and_then(|m| InstallSpec::parse_mode(m).ok()).unwrap_or(0o644);
    set_mode(&temp, mode).map_err(|e| fail(format!("cannot set the mode of {}: {e}", temp.display())))?;
    if let Some(owner) = &job.install.owner {
        set_owner(&temp, owner).map_err(|e| fail(format!("cannot give {} to {owner}: {e}", temp.display())))?;
    }
    let file = tokio::fs::File::open(&temp).await.map_err(|e| fail(e.to_string()))?;
    file.sync_all().await.map_err(|e| fail(format!("cannot sync {}: {e}", temp.display())))?;
    tokio::fs::rename(&temp, &target).await.map_err(|e| fail(format!("cannot replace {}: {e}", target.display())))?;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    Ok(())
}

async fn run_installer(job: &InstallJob, configured: Option<&[String]>, setting: &str) -> Result<(), Refusal> {
    let argv = if job.install.command.is_empty() { configured } else { Some(job.install.command.as_slice()) };
    let Some(argv) = argv.filter(|a| !a.is_empty()) else {
        return Err(Refusal {
            class: FailureClass::Incompatible,
            detail: format!("no installer: set `{setting}` in the agent config, or `install.command` in the rollout"),
        });
    };
    match run(&substitute(argv, &job.file)).await {
        Ok(()) => Ok(()),
        Err((RETRY_LATER, out)) => Err(Refusal {
            class: FailureClass::RetryLater,
            detail: format!("the installer asked to retry later: {out}"),
        }),
        Err((code, out)) => {
            Err(Refusal { class: FailureClass::Install, detail: format!("the installer exited {code}: {out}") })
        }
    }
}

/// Runs a pre- or post-install hook; on failure whether it asked to retry later, and why.
pub async fn hook(argv: &[String], job: &InstallJob) -> Result<(), (bool, String)> {
    let argv: Vec<String> = substitute(argv, &job.file)
        .into_iter()
        .map(|a| a.replace("{name}", &job.artifact.name).replace("{version}", &job.artifact.version))
        .collect();
    match run(&argv).await {
        Ok(()) => Ok(()),
        Err((RETRY_LATER, out)) => Err((true, format!("asked to retry later: {out}"))),
        Err((code, out)) => Err((false, format!("exited {code}: {out}"))),
    }
}

fn substitute(argv: &[String], file: &Path) -> Vec<String> {
    argv.iter().map(|a| a.replace("{file}", &file.to_string_lossy())).collect()
}

/// Runs a command; on failure its exit code (-1 when it could not run or timed out) and the
/// end of its output.
async fn run(argv: &[String]) -> Result<(), (i32, String)> {
    let Some((program, args)) = argv.split_first() else { return Err((-1, "an empty command".into())) };
    let child =
        tokio::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Err(_) => Err((-1, format!("{program} ran longer than {} minutes", COMMAND_TIMEOUT.as_secs() / 60))),
        Ok(Err(e)) => Err((-1, format!("cannot run {program}: {e}"))),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let text =
                String::from_utf8_lossy(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }).into_owned();
            let tail: String = text.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
            Err((out.status.code().unwrap_or(-1), tail.trim().to_owned()))
        }
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn set_owner(path: &Path, owner: &str) -> std::io::Result<()> {
    use nix::unistd::{Group, User, chown};
    let (user, group) = owner.split_once(':').map_or((owner, None), |(u, g)| (u, Some(g)));
    let missing = |what: &str| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {what} here"));
    let uid = User::from_name(user).map_err(std::io::Error::from)?.ok_or_else(|| missing(&format!("user {user}")))?.uid;
    let gid = match group {
        Some(g) => {
            Some(Group::from_name(g).map_err(std::io::Error::from)?.ok_or_else(|| missing(&format!("group {g}")))?.gid)
        }
        None => None,
    };
    chown(path, Some(uid), gid).map_err(std::io::Error::from)
}

#[cfg(not(unix))]
fn set_owner(_path: &Path, _owner: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "owners are set on Unix only"))
}
