//! Writing a file on the device: the bytes go to a partial file beside the target, named after
//! the expected SHA-256 (`.<name>.<sha256>.baton-part`), so an interrupted upload of the
//! same content resumes where it stopped; once every byte arrived they are synced, checked
//! against the SHA-256 and renamed over the target (atomic: the target is the old file or the
//! new one, never a mix), and the directory is synced. A stream closed early keeps the partial.
//!
//! The agent often runs as root in a directory others may write to, so on Unix the partial is
//! never reached through a link: it is opened with `O_NOFOLLOW` and used only when it is a
//! regular file of the agent's own with no other hard link; an upload from the start removes
//! any old partial and creates a new one (`O_EXCL`). The partial is locked (`flock`) from its
//! opening to its rename, so two uploads of the same content never write into one file, and
//! it is checked to still be at its path before the rename. Its mode and owner are set through
//! the open file. Partials untouched for a day are swept when a write starts beside them.

use std::{
    fs::File,
    io::{self, BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use baton_proto::{
    agent::AgentMessage,
    streams::{CREDIT_BATCH, FileKind},
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Input, Outgoing, blocking, check_sha256, closed, describe, hash_from, opened, paths};
use crate::config::RemoteConfig;

/// Permission bits of a new file unless the upload names others (a file replaced keeps its own).
const DEFAULT_MODE: u32 = 0o644;
/// The most an upload may ask for: no setuid, setgid or sticky bit.
const MAX_MODE: u32 = 0o777;
/// Bytes gathered before they go to the disk.
const WRITE_BUFFER: usize = 256 * 1024;
/// The longest file name (in bytes) most file systems take: the partial's name must fit.
const MAX_NAME: usize = 255;
/// How a partial file's name ends.
const PART_SUFFIX: &str = ".baton-part";
/// A partial untouched this long is an abandoned upload: swept when a write starts beside it.
const ABANDONED: Duration = Duration::from_secs(24 * 60 * 60);

/// What the server says of the file it sends.
pub(super) struct Upload {
    pub size: u64,
    pub sha256: String,
    pub offset: u64,
    pub mode: Option<u32>,
}

/// Where an upload of content `sha256` to `target` is kept until it is whole; refused when
/// its name would be longer than a file name may be.
pub(super) fn partial_path(target: &Path, sha256: &str) -> Result<PathBuf, String> {
    let name = target.file_name().ok_or("the path names no file")?.to_string_lossy();
    let part = format!(".{name}.{}{PART_SUFFIX}", sha256.to_ascii_lowercase());
    if part.len() > MAX_NAME {
        let room = MAX_NAME - (part.len() - name.len());
        return Err(format!(
            "the file name is {} bytes, too long to upload (the upload's partial file needs room: at most {room} bytes)",
            name.len()
        ));
    }
    Ok(target.with_file_name(part))
}

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    path: &str,
    upload: Upload,
    input: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::Sender<Outgoing>,
) -> Result<(), String> {
    check_sha256(&upload.sha256)?;
    let max = config.file_max_bytes;
    if upload.size > max {
        return Err(format!(
            "the file is {} bytes, more than this device accepts (`[remote] file_max_bytes` = {max})",
            upload.size
        ));
    }
    if upload.offset > upload.size {
        return Err(format!("offset {} is past the file's size {}", upload.offset, upload.size));
    }
    if upload.mode.is_some_and(|m| m > MAX_MODE) {
        return Err("the mode must be at most 0777 (no setuid, setgid or sticky bit)".into());
    }
    let target = paths::allowed(config, path)?;
    let sha256 = upload.sha256.to_ascii_lowercase();
    let offset = upload.offset;
    let partial = partial_path(&target, &sha256)?;
    let found = target.clone();
    let asked_mode = upload.mode;
    let (info, part, hasher, (mode, owner)) = blocking(move || {
        let info = describe(&found, None)?;
        if info.kind == FileKind::Directory {
            return Err(io::Error::other("the path is a directory; name the file to write"));
        }
        let kept = keeps(&found, asked_mode);
        if let Some(dir) = found.parent() {
            sweep(dir, SystemTime::now());
        }
        let (part, hasher) = resume(&partial, offset)?;
        Ok((info, part, hasher, kept))
    })
    .await?;
    opened(&tx, stream, baton_proto::streams::FileInfo { received: Some(offset), ..info }).await;
    let job = Job { stream, target, sha256, size: upload.size, received: offset, mode, owner };
    let out = tx.clone();
    let end = tokio::task::spawn_blocking(move || job.receive(part, hasher, input, &out))
        .await
        .unwrap_or_else(|e| End::Failed(format!("the write failed: {e}")));
    match end {
        End::Written => closed(&tx, stream, "written", Some(0)).await,
        End::Mismatch(reason) => closed(&tx, stream, &reason, Some(1)).await,
        End::Failed(reason) => closed(&tx, stream, &reason, None).await,
        End::Stopped => {}
    }
    Ok(())
}

/// The mode of the file written, and (when the agent runs as root) the owner it keeps: the mode
/// asked for, else the replaced file's (its permission bits only), else [`DEFAULT_MODE`]; the
/// replaced file's owner and group.
fn keeps(target: &Path, asked: Option<u32>) -> (u32, Option<(u32, u32)>) {
    let old = std::fs::symlink_metadata(target).ok().filter(|m| m.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = asked.or(old.as_ref().map(|m| m.mode())).unwrap_or(DEFAULT_MODE) & MAX_MODE;
        let owner = old.filter(|_| nix::unistd::geteuid().is_root()).map(|m| (m.uid(), m.gid()));
        (mode, owner)
    }
    #[cfg(not(unix))]
    {
        let _ = old;
        (asked.unwrap_or(DEFAULT_MODE) & MAX_MODE, None)
    }
}

/// The partial file of an upload, open (and on Unix locked) from its opening to its rename.
pub(super) struct Partial {
    path: PathBuf,
    file: File,
    /// Held until the partial is renamed or left for a resume (dropped: unlocked).
    #[cfg(unix)]
    _lock: nix::fcntl::Flock<File>,
}

/// The partial file ready to take bytes at `offset`, and the hash of what it holds before.
pub(super) fn resume(partial: &Path, offset: u64) -> io::Result<(Partial, Sha256)> {
    let part = if offset == 0 { unix_part::fresh(partial)? } else { unix_part::existing(partial)? };
    let mut file = &part.file;
    let kept = file.metadata()?.len();
    if kept < offset {
        return Err(io::Error::other(format!("the device has only {kept} bytes of this upload; resume from {kept}")));
    }
    file.set_len(offset)?;
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0))?;
    hash_from(&mut file, &mut hasher, offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok((part, hasher))
}

/// Removes the partial files in `dir` untouched for [`ABANDONED`] (regular files only, and
/// only those no upload holds); cheap, and quiet about what it cannot remove.
fn sweep(dir: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(PART_SUFFIX)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age >= ABANDONED);
        if meta.is_file() && old && unix_part::unused(&entry.path()) {
            tracing::info!(partial = %entry.path().display(), "an abandoned upload's partial file removed");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The partial on Unix: never through a link, only the agent's own, locked while in use.
#[cfg(unix)]
mod unix_part {
    use std::{
        fs::{File, OpenOptions},
        io,
        os::unix::fs::{MetadataExt, OpenOptionsExt},
        path::Path,
    };

    use nix::{
        errno::Errno,
        fcntl::{Flock, FlockArg, OFlag},
        libc,
        unistd::geteuid,
    };

    use super::Partial;

    pub(super) const IN_PROGRESS: &str = "another upload of this file is in progress";

    /// A new partial for an upload from the start: an old one is removed first (when no other
    /// upload holds it; a link or anything else there is removed, not followed).
    pub(super) fn fresh(path: &Path) -> io::Result<Partial> {
        match open(path, false) {
            Ok(old) => {
                let _held = lock(&old, path)?;
                std::fs::remove_file(path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        let file = open(path, true).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => io::Error::other(IN_PROGRESS),
            _ => e,
        })?;
        let lock = lock(&file, path)?;
        Ok(Partial { path: path.to_path_buf(), file, _lock: lock })
    }

    /// The partial of an upload resumed.
    pub(super) fn existing(path: &Path) -> io::Result<Partial> {
        let file = open(path, false).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => io::Error::other("the device has only 0 bytes of this upload; resume from 0"),
            _ => e,
        })?;
        let lock = lock(&file, path)?;
        Ok(Partial { path: path.to_path_buf(), file, _lock: lock })
    }

    /// Opens the partial without following a link at it, and only if it is a regular file of
    /// the agent's user with a single link (not a hard link to some other file).
    fn open(path: &Path, create_new: bool) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(create_new).mode(0o600);
        options.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits());
        let file = options.open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other(format!("{} is a symbolic link; refused", path.display())),
            _ => e,
        })?;
        let meta = file.metadata()?;
        let refused = if !meta.is_file() {
            "is not a regular file"
        } else if meta.uid() != geteuid().as_raw() {
            "is not the agent's own file"
        } else if meta.nlink() != 1 {
            "has other hard links"
        } else {
            return Ok(file);
        };
        Err(io::Error::other(format!("the partial upload {} {refused}; refused", path.display())))
    }

    /// Locks the partial (not waiting: another holder is another upload), then checks it is
    /// still the file at `path` (another upload starting over may have replaced it meanwhile).
    fn lock(file: &File, path: &Path) -> io::Result<Flock<File>> {
        let lock = Flock::lock(file.try_clone()?, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| match e {
            Errno::EWOULDBLOCK => io::Error::other(IN_PROGRESS),
            e => io::Error::from(e),
        })?;
        still_there(file, path)?;
        Ok(lock)
    }

    /// Whether `file` is (still) the file at `path`.
    pub(super) fn still_there(file: &File, path: &Path) -> io::Result<()> {
        let ours = file.metadata()?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (ours.dev(), ours.ino()) => Ok(()),
            Ok(_) => Err(io::Error::other(IN_PROGRESS)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::other(IN_PROGRESS)),
            Err(e) => Err(e),
        }
    }

    /// Whether no upload holds the partial at `path` (a regular file, not followed).
    pub(super) fn unused(path: &Path) -> bool {
        open(path, false).ok().and_then(|file| Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()).is_some()
    }
}

/// The partial elsewhere: a plain file beside the target.
#[cfg(not(unix))]
mod unix_part {
    use std::{fs::OpenOptions, io, path::Path};

    use super::Partial;

    pub(super) fn fresh(path: &Path) -> io::Result<Partial> {
        open(path)
    }

    pub(super) fn existing(path: &Path) -> io::Result<Partial> {
        open(path)
    }

    fn open(path: &Path) -> io::Result<Partial> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(Partial { path: path.to_path_buf(), file })
    }

    pub(super) fn still_there(_file: &std::fs::File, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn unused(_path: &Path) -> bool {
        true
    }
}

enum End {
    Written,
    /// Every byte came, and they hash to something else: the partial is gone.
    Mismatch(String),
    Failed(String),
    /// Closed before the end: the partial stays for a resume.
    Stopped,
}

struct Job {
    stream: u32,
    target: PathBuf,
    sha256: String,
    size: u64,
    received: u64,
    /// Permission bits of the file written (at most [`MAX_MODE`]).
    mode: u32,
    /// The owner and group of the file replaced, kept (when the agent runs as root).
    owner: Option<(u32, u32)>,
}

impl Job {
    /// Writes what comes, crediting the server for each chunk written, until `size` bytes.
    fn receive(
        mut self,
        part: Partial,
        mut hasher: Sha256,
        mut input: mpsc::UnboundedReceiver<Input>,
        tx: &mpsc::Sender<Outgoing>,
    ) -> End {
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, &part.file);
        let mut uncredited = 0u32;
        while self.received < self.size {
            match input.blocking_recv() {
                Some(Input::Data(bytes)) => {
                    if self.received + bytes.len() as u64 > self.size {
                        drop(file);
                        remove(&part);
                        return End::Failed(format!("more bytes came than the file's size, {}", self.size));
                    }
                    if let Err(e) = file.write_all(&bytes) {
                        return End::Failed(format!("cannot write {}: {e}", part.path.display()));
                    }
                    hasher.update(&bytes);
                    self.received += bytes.len() as u64;
                    // Credit in batches (one message per chunk would be one frame per 16 KiB),
                    // and at once when nothing else waits, so the server never stalls on it.
                    uncredited += bytes.len() as u32;
                    if uncredited >= CREDIT_BATCH || input.is_empty() {
                        let credit = AgentMessage::StreamCredit { stream: self.stream, bytes: uncredited };
                        uncredited = 0;
                        if tx.blocking_send(Outgoing::Message(credit)).is_err() {
                            return self.keep(file, &part);
                        }
                    }
                }
                Some(Input::Resize(..)) => {}
                Some(Input::Close(_)) | None => return self.keep(file, &part),
            }
        }
        let end = match file.into_inner().map_err(|e| e.into_error()).and_then(|_| self.finish(&part, hasher)) {
            Ok(end) => end,
            Err(e) => End::Failed(format!("cannot put the file in place: {e}")),
        };
        drop(part);
        end
    }

    /// Stopped early: what came is synced, for a resume.
    fn keep(&self, file: BufWriter<&File>, part: &Partial) -> End {
        if let Ok(file) = file.into_inner() {
            let _ = file.sync_data();
        }
        tracing::info!(partial = %part.path.display(), received = self.received, "remote upload interrupted; kept");
        End::Stopped
    }

    /// Every byte came (written, and the partial still locked): checked, then put in place.
    fn finish(&self, part: &Partial, hasher: Sha256) -> io::Result<End> {
        let file = &part.file;
        file.sync_all()?;
        let got = format!("{:x}", hasher.finalize());
        if got != self.sha256 {
            remove(part);
            return Ok(End::Mismatch(format!(
                "the SHA-256 does not match: the bytes received hash to {got}, not {}; upload the file again",
                self.sha256
            )));
        }
        // Through the open file (never by path); the owner first, as a change of owner clears
        // the setuid and setgid bits.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Some((uid, gid)) = self.owner {
                nix::unistd::fchown(file, Some(uid.into()), Some(gid.into()))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(self.mode & MAX_MODE))?;
        }
        #[cfg(not(unix))]
        let _ = (self.mode, self.owner);
        unix_part::still_there(file, &part.path)?;
        std::fs::rename(&part.path, &self.target)?;
        #[cfg(unix)]
        if let Some(dir) = self.target.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(End::Written)
    }
}

/// Removes the partial, if it is still the one at its path.
fn remove(part: &Partial) {
    if unix_part::still_there(&part.file, &part.path).is_ok() {
        let _ = std::fs::remove_file(&part.path);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn refused(result: io::Result<(Partial, Sha256)>) -> String {
        match result {
            Ok(_) => panic!("the partial was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_partial_is_named_after_the_whole_sha256_and_a_name_too_long_for_it_is_refused() {
        let part = partial_path(Path::new("/data/app.bin"), &SHA.to_ascii_uppercase()).expect("named");
        assert_eq!(part, PathBuf::from(format!("/data/.app.bin.{SHA}.baton-part")));
        let longest = "n".repeat(MAX_NAME - 2 - 64 - PART_SUFFIX.len());
        assert!(partial_path(&Path::new("/data").join(&longest), SHA).is_ok());
        let err = partial_path(&Path::new("/data").join(format!("{longest}x")), SHA).expect_err("too long");
        assert!(err.contains("too long to upload") && err.contains("at most 178 bytes"), "{err}");
    }

    #[test]
    fn a_partial_swapped_for_a_link_or_a_hard_link_is_refused_and_what_it_points_to_is_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "root:secret\n").expect("victim");
        let partial = partial_path(&dir.path().join("app.bin"), SHA).expect("named");

        std::os::unix::fs::symlink(&victim, &partial).expect("link");
        let err = refused(resume(&partial, 5));
        assert!(err.contains("is a symbolic link; refused"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "root:secret\n");
        // From the start: the link goes (not what it points to), and a new file takes its place.
        let (part, _) = resume(&partial, 0).expect("a fresh partial");
        drop(part);
        assert!(std::fs::symlink_metadata(&partial).expect("partial").is_file());
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "root:secret\n");

        std::fs::remove_file(&partial).expect("removed");
        std::fs::hard_link(&victim, &partial).expect("hard link");
        let err = refused(resume(&partial, 3));
        assert!(err.contains("has other hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "root:secret\n");
        let (part, _) = resume(&partial, 0).expect("a fresh partial");
        drop(part);
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "root:secret\n");

        std::fs::remove_file(&partial).expect("removed");
        nix::unistd::mkfifo(&partial, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let err = refused(resume(&partial, 1));
        assert!(err.contains("is not a regular file"), "{err}");
    }

    /// Uploads `content` to `target` through a job, as the stream would.
    fn upload(target: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> End {
        let sha = format!("{:x}", Sha256::digest(content));
        let partial = partial_path(target, &sha).expect("named");
        let (part, hasher) = resume(&partial, 0).expect("partial");
        let (input_tx, input) = mpsc::unbounded_channel();
        input_tx.send(Input::Data(bytes::Bytes::copy_from_slice(content))).expect("sent");
        let (tx, _rx) = mpsc::channel(16);
        let job = Job {
            stream: 1,
            target: target.to_path_buf(),
            sha256: sha,
            size: content.len() as u64,
            received: 0,
            mode,
            owner,
        };
        job.receive(part, hasher, input, &tx)
    }

    #[test]
    fn modes_are_permission_bits_only_and_a_replaced_file_keeps_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("tool");
        let mode_of = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;

        assert_eq!(keeps(&target, None).0, DEFAULT_MODE, "a new file");
        assert_eq!(keeps(&target, Some(0o4755)).0, 0o755, "setuid masked");
        let (mode, _) = keeps(&target, Some(0o750));
        assert!(matches!(upload(&target, b"v1", mode, None), End::Written));
        assert_eq!(mode_of(&target), 0o750);
        let root = nix::unistd::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(&target, Some(65534), Some(65534)).expect("chown");
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o6711)).expect("chmod");
        let (mode, owner) = keeps(&target, None);
        assert_eq!(mode, 0o711, "the replaced file's permission bits, without setuid or setgid");
        if root {
            assert_eq!(owner, Some((65534, 65534)));
        } else {
            assert_eq!(owner, None, "only root gives files away");
        }
        assert!(matches!(upload(&target, b"v2", mode, owner), End::Written));
        assert_eq!((std::fs::read(&target).expect("read"), mode_of(&target)), (b"v2".to_vec(), 0o711));
        if root {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&target).expect("meta");
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "the replaced file's owner kept");
        }
        // Even a mode asked for past 0777 reaching the job: only permission bits.
        assert!(matches!(upload(&target, b"v3", 0o4777, None), End::Written));
        assert_eq!(mode_of(&target), 0o777);
    }

    #[test]
    fn partials_abandoned_for_a_day_are_swept_and_others_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| dir.path().join(name);
        let day_ago = SystemTime::now() - ABANDONED - Duration::from_secs(60);
        let old = |name: &str| {
            std::fs::write(at(name), "x").expect("written");
            File::options().write(true).open(at(name)).expect("open").set_modified(day_ago).expect("aged");
        };
        old(".a.bin.0000.baton-part");
        old("kept.log");
        old(".b.bin.1111.baton-part");
        std::fs::write(at(".c.bin.2222.baton-part"), "recent").expect("written");
        std::os::unix::fs::symlink(at("kept.log"), at(".d.bin.3333.baton-part")).expect("link");
        // One an upload holds (resumed a moment ago, but left old on purpose).
        let (held, _) = resume(&at(".b.bin.1111.baton-part"), 1).expect("held");
        File::options()
            .write(true)
            .open(at(".b.bin.1111.baton-part"))
            .expect("open")
            .set_modified(day_ago)
            .expect("aged");

        sweep(dir.path(), SystemTime::now());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        left.sort();
        assert_eq!(left, [".b.bin.1111.baton-part", ".c.bin.2222.baton-part", ".d.bin.3333.baton-part", "kept.log"]);
        drop(held);
        sweep(dir.path(), SystemTime::now());
        assert!(!at(".b.bin.1111.baton-part").exists(), "swept once no upload holds it");
    }

    #[test]
    fn a_second_upload_of_the_same_content_is_refused_while_the_first_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = partial_path(&dir.path().join("app.bin"), SHA).expect("named");
        let (first, _) = resume(&partial, 0).expect("first");
        (&first.file).write_all(b"abc").expect("written");
        for offset in [0, 3] {
            assert_eq!(refused(resume(&partial, offset)), "another upload of this file is in progress", "at {offset}");
        }
        // Concurrent tries from other threads: none gets in.
        let tries: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn({
                    let partial = partial.clone();
                    move || resume(&partial, 0).is_err()
                })
            })
            .collect();
        assert!(tries.into_iter().all(|t| t.join().expect("joined")));
        assert_eq!(std::fs::read(&partial).expect("partial"), b"abc", "the first upload's bytes are untouched");
        drop(first);
        let (again, mut hasher) = resume(&partial, 3).expect("resumed once the first stopped");
        drop(again);
        let mut expected = Sha256::new();
        expected.update(b"abc");
        assert_eq!(std::mem::take(&mut hasher).finalize(), expected.finalize());
    }
}
