//! Support bundles: the `support-bundle` command. Refused unless the device's owner allowed
//! them (`[remote] bundles = true`); otherwise the agent collects into a `tar.gz` in its state
//! directory — `inventory.json` (this device and its inventory), `diagnostics.txt`
//! (`diagnostics_command`'s output and exit status), `journal.txt` (the journal of the window,
//! when `journalctl` is there), `logs/<path>` (files under `log_paths` changed within the
//! window, each its last 8 MiB at most) and `manifest.json` (what is in, what was cut or left
//! out and why) — keeps it under `bundle_max_bytes`, uploads it with the device's credentials
//! and removes it. The command's result says the size and SHA-256, or why it failed.
//! [`sources`] finds what goes in, [`archive`] writes it, [`upload`] sends it.

mod archive;
mod sources;
mod upload;

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use baton_proto::{api::commands::CommandResult, inventory::Inventory};
use sha2::{Digest, Sha256};

use crate::{config::RemoteConfig, executor::Outcome, storage::Identity};
use archive::{Archive, Manifest};

/// What a device without `[remote] bundles = true` answers.
pub const OFF: &str = "support bundles are off on this device; its owner can allow them with `[remote] bundles = true`";
/// The most of one log file (or the journal) a bundle keeps: its end.
pub const TAIL_BYTES: u64 = 8 << 20;

/// What making a bundle needs from the agent.
pub struct Context {
    pub remote: Arc<RemoteConfig>,
    /// Where the archive is written while it is made and sent (the state directory's
    /// `bundles/`).
    pub dir: PathBuf,
    pub identity: Identity,
    /// The serial the device enrolled with, if the agent knows it.
    pub serial: Option<String>,
    pub inventory: Inventory,
    pub http: reqwest::Client,
}

/// Makes bundle `id` of the last `since_secs` and uploads it.
pub async fn run(ctx: Context, id: &str, since_secs: u64) -> Outcome {
    if !ctx.remote.bundles {
        return Outcome::failed(OFF);
    }
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Outcome::failed("the request names no valid bundle id");
    }
    if let Err(e) = std::fs::create_dir_all(&ctx.dir) {
        return Outcome::failed(format!("cannot create {}: {e}", ctx.dir.display()));
    }
    sweep(&ctx.dir);
    let files = Leftovers(vec![ctx.dir.join(format!("{id}.tar.gz")), ctx.dir.join(format!("{id}.journal"))]);
    let since = Duration::from_secs(since_secs);
    let diagnostics = match ctx.remote.diagnostics_command.as_deref() {
        Some(argv) if !argv.is_empty() => Some(sources::run_for_bundle(argv, sources::COMMAND_TIMEOUT).await),
        _ => None,
    };
    let journal = sources::journal(ctx.remote.journal_directory.as_deref(), since, &files.0[1]).await;
    let manifest = Manifest {
        bundle_id: id.to_owned(),
        device_id: ctx.identity.device_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: chrono::Utc::now().to_rfc3339(),
        since_secs,
        max_bytes: ctx.remote.bundle_max_bytes,
        included: Vec::new(),
        skipped: Vec::new(),
        cut_for_size: false,
        not_listed: 0,
    };
    let about = serde_json::json!({
        "device_id": ctx.identity.device_id, "serial": ctx.serial, "inventory": ctx.inventory,
    });
    let parts = Parts {
        archive: files.0[0].clone(),
        journal_file: files.0[1].clone(),
        inventory: serde_json::to_vec_pretty(&about).unwrap_or_default(),
        diagnostics,
        journal,
        log_paths: ctx.remote.log_paths.clone(),
        since,
    };
    let built = tokio::task::spawn_blocking(move || build(manifest, parts)).await;
    let (size, sha256, cut) = match built {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Outcome::failed(format!("cannot write the bundle: {e}")),
        Err(e) => return Outcome::failed(format!("making the bundle failed: {e}")),
    };
    if let Err(why) = upload::put(&ctx.http, &ctx.identity, id, &files.0[0], size, &sha256).await {
        return Outcome::failed(why);
    }
    let cut_note =
        if cut { " (some logs were cut or left out to stay under bundle_max_bytes; see manifest.json)" } else { "" };
    Outcome::ok(CommandResult {
        stdout: format!("uploaded support bundle {id}: {size} bytes, sha256 {sha256}{cut_note}\n"),
        output: Some(serde_json::json!({"bundle_id": id, "size_bytes": size, "sha256": sha256, "cut_for_size": cut})),
        ..CommandResult::default()
    })
}

/// What was gathered before the archive is written.
struct Parts {
    archive: PathBuf,
    journal_file: PathBuf,
    inventory: Vec<u8>,
    diagnostics: Option<Result<String, String>>,
    journal: Result<Option<String>, String>,
    log_paths: Vec<PathBuf>,
    since: Duration,
}

/// Writes the archive: small, telling entries first, then the logs, most recently changed
/// first. Its size, SHA-256 and whether something was cut for size.
fn build(manifest: Manifest, p: Parts) -> std::io::Result<(u64, String, bool)> {
    let mut archive = Archive::create(&p.archive, manifest)?;
    archive.add("inventory.json", None, &p.inventory, None)?;
    match p.diagnostics {
        None => archive.skip("diagnostics.txt", "no diagnostics_command is configured".into()),
        Some(Ok(text)) => archive.add("diagnostics.txt", None, text.as_bytes(), None)?,
        Some(Err(why)) => {
            archive.add("diagnostics.txt", None, why.as_bytes(), Some("the command could not run".into()))?
        }
    }
    match p.journal {
        Err(why) => archive.skip("journal.txt", why),
        Ok(note) => match sources::tail(&p.journal_file, &journal_dir(&p.journal_file), TAIL_BYTES) {
            Ok((data, len)) => {
                let note = join(note, tail_note(data.len(), len));
                archive.add("journal.txt", Some("journalctl"), &data, note)?;
            }
            Err(e) => archive.skip("journal.txt", format!("cannot read journalctl's output: {e}")),
        },
    }
    let mut skipped = Vec::new();
    let files = sources::log_files(&p.log_paths, p.since, &mut skipped);
    let roots = sources::canonical_roots(&p.log_paths);
    for s in skipped {
        archive.skip(&s.source, s.reason);
    }
    for file in files {
        let source = file.path.display().to_string();
        match sources::tail(&file.path, &roots, TAIL_BYTES) {
            Ok((data, len)) => {
                archive.add(&entry_name(&file.path), Some(&source), &data, tail_note(data.len(), len))?
            }
            Err(e) => archive.skip(&source, format!("cannot read: {e}")),
        }
    }
    let cut = archive.manifest.cut_for_size;
    let size = archive.finish()?;
    Ok((size, sha256_of(&p.archive)?, cut))
}

/// Where journalctl's output was written (the agent's own directory): the one place it is read from.
fn journal_dir(file: &Path) -> Vec<PathBuf> {
    file.parent().and_then(|d| std::fs::canonicalize(d).ok()).into_iter().collect()
}

fn tail_note(kept: usize, len: u64) -> Option<String> {
    (len > kept as u64).then(|| format!("kept its last {kept} of {len} bytes (at most {TAIL_BYTES} per file)"))
}

fn join(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// `logs/` and the file's path, with `/` separators and no drive colon.
fn entry_name(path: &Path) -> String {
    let text = path.display().to_string().replace('\\', "/").replace(':', "");
    format!("logs/{}", text.trim_start_matches('/'))
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Removes what an agent stopped while making a bundle left behind (a day old: a bundle being
/// made now is not touched).
fn sweep(dir: &Path) {
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Files removed whichever way making the bundle ends.
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::entry_name;
    use std::path::Path;

    #[test]
    fn log_entries_are_named_after_their_path() {
        assert_eq!(entry_name(Path::new("/var/log/syslog")), "logs/var/log/syslog");
        assert_eq!(entry_name(Path::new("C:\\logs\\app.log")), "logs/C/logs/app.log");
    }
}
