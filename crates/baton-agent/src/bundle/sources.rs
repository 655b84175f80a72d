//! What goes into a support bundle besides the inventory: the log files under `log_paths`
//! changed within the window (directories walked; a symbolic link is followed only to a file
//! still inside `log_paths`), the journal of the window through `journalctl`, and the output
//! of `diagnostics_command`. Each thing left out is a [`Skipped`] with the reason, for the
//! manifest.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::{io::AsyncReadExt, process::Command};

/// Deepest directory level walked under a log path.
const MAX_DEPTH: usize = 16;
/// Most files looked at under all log paths.
const MAX_FILES: usize = 10_000;
/// How long the journal and the diagnostics command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output kept of the diagnostics command, per stream.
const DIAGNOSTICS_MAX: usize = 1 << 20;

/// Something left out of the bundle, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub source: String,
    pub reason: String,
}

/// A log file to include, and when it changed.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub path: PathBuf,
    pub modified: SystemTime,
}

/// The files under `roots` changed within `since`, most recently changed first.
pub fn log_files(roots: &[PathBuf], since: Duration, skipped: &mut Vec<Skipped>) -> Vec<LogFile> {
    let cutoff = SystemTime::now().checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let allowed = canonical_roots(roots);
    let mut found = Vec::new();
    let mut seen = 0usize;
    for root in roots {
        let Ok(real) = std::fs::canonicalize(root) else {
            skipped.push(Skipped { source: root.display().to_string(), reason: "does not exist".into() });
            continue;
        };
        walk(&real, 0, &allowed, cutoff, &mut found, &mut seen, skipped);
    }
    if seen >= MAX_FILES {
        skipped.push(Skipped {
            source: "log_paths".into(),
            reason: format!("more than {MAX_FILES} files; the rest were not looked at"),
        });
    }
    found.sort_by(|a: &LogFile, b| b.modified.cmp(&a.modified).then_with(|| a.path.cmp(&b.path)));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

fn walk(
    path: &Path,
    depth: usize,
    allowed: &[PathBuf],
    cutoff: SystemTime,
    found: &mut Vec<LogFile>,
    seen: &mut usize,
    skipped: &mut Vec<Skipped>,
) {
    if *seen >= MAX_FILES {
        return;
    }
    let skip = |skipped: &mut Vec<Skipped>, reason: String| {
        skipped.push(Skipped { source: path.display().to_string(), reason });
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    let (real, meta) = if meta.file_type().is_symlink() {
        match std::fs::canonicalize(path) {
            Ok(target) if allowed.iter().any(|a| target.starts_with(a)) => match std::fs::metadata(&target) {
                Ok(m) if m.is_file() => (target, m),
                // A link to a directory inside is reached through the directory itself.
                Ok(_) => return,
                Err(e) => return skip(skipped, format!("cannot read: {e}")),
            },
            Ok(_) => return skip(skipped, "a symbolic link out of log_paths; not followed".into()),
            Err(_) => return skip(skipped, "a broken symbolic link".into()),
        }
    } else {
        (path.to_path_buf(), meta)
    };
    if meta.is_dir() {
        if depth >= MAX_DEPTH {
            return skip(skipped, format!("deeper than {MAX_DEPTH} levels; not walked"));
        }
        let entries = match std::fs::read_dir(&real) {
            Ok(entries) => entries,
            Err(e) => return skip(skipped, format!("cannot list: {e}")),
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            walk(&child, depth + 1, allowed, cutoff, found, seen, skipped);
        }
    } else if meta.is_file() {
        *seen += 1;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if modified >= cutoff {
            found.push(LogFile { path: real, modified });
        }
    }
}

/// The allowed places of `roots`, canonical (those that exist).
pub fn canonical_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect()
}

/// The last `max` bytes of a file (all of it when smaller), and its length when read; only a
/// regular file, and only if once open it is still under one of `roots` (canonical).
pub fn tail(path: &Path, roots: &[PathBuf], max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = crate::safe_open::open_regular(path, &path.display().to_string(), roots)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut data = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut data)?;
    Ok((data, len))
}

/// A program's output in words: the command, how it ended, stdout and stderr.
pub async fn run_for_bundle(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("the command is empty")?;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut kept = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(DIAGNOSTICS_MAX as u64).read_to_end(&mut kept).await;
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>));
    let ended = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("ended by a signal ({status})"),
        },
        Ok(Err(e)) => format!("waiting for it failed: {e}"),
        Err(_) => {
            #[cfg(unix)]
            if let Some(pid) = child.id() {
                let _ =
                    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill().await;
            format!("killed after {} s", timeout.as_secs())
        }
    };
    let collect = |h: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(2), h).await.ok().and_then(Result::ok).unwrap_or_default()
    };
    let (out, err) = (collect(stdout).await, collect(stderr).await);
    Ok(format!("$ {}\n{ended}\n\n--- stdout ---\n{out}\n--- stderr ---\n{err}", argv.join(" ")))
}

/// The journal of the last `since`, as `journalctl --output=short-iso` prints it, written to
/// `into`; `Ok(Some(note))` when it was cut short, `Err` says why there is none.
pub async fn journal(directory: Option<&Path>, since: Duration, into: &Path) -> Result<Option<String>, String> {
    let from = SystemTime::now().checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let epoch = from.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let file = std::fs::File::create(into).map_err(|e| format!("cannot write {}: {e}", into.display()))?;
    let mut command = Command::new("journalctl");
    command.args(["--output=short-iso", "--no-pager", "--quiet"]).arg(format!("--since=@{epoch}"));
    if let Some(dir) = directory {
        command.arg("--directory").arg(dir);
    }
    command.stdin(Stdio::null()).stdout(Stdio::from(file)).stderr(Stdio::piped()).kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("journalctl is not installed".into()),
        Err(e) => return Err(format!("cannot start journalctl: {e}")),
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(None),
        Ok(Ok(out)) => {
            let said = String::from_utf8_lossy(&out.stderr);
            Err(format!("journalctl failed ({}): {}", out.status, said.trim()))
        }
        Ok(Err(e)) => Err(format!("journalctl failed: {e}")),
        Err(_) => Ok(Some(format!("journalctl took more than {} s; cut there", COMMAND_TIMEOUT.as_secs()))),
    }
}
