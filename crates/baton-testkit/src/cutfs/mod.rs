//! `cutfs`: a FUSE file system for power-cut tests, after LazyFS. It passes a backing directory
//! through, except that data written to a file stays in this process's memory — per file, in
//! 4 KiB pages — until the file is synced (`fsync` or `fdatasync`). Reads see the unsynced data,
//! as they would see a page cache. A [`CutFs::cut`] is the power cut: everything unsynced is
//! dropped, the file system unmounts, and the backing directory holds exactly what was synced.
//! Mount it again on the same backing directory to start a program on what survived; the new
//! mount has a new kernel cache, so nothing cached hides a lost write.
//!
//! What it does not model: metadata. Creating, renaming, unlinking, truncating files and
//! making or removing directories reach the backing directory at once (as a journaling file
//! system that commits them immediately would have it), so a lost write is always data, never
//! a lost or resurrected name. Files are opened through the kernel's page cache, not direct
//! I/O, so shared memory maps (SQLite's `-shm`) work; the kernel writes mapped pages back
//! through this file system like any write. Locks are the kernel's own, local to the machine.
//!
//! Needs `/dev/fuse` and the right to mount: root mounts directly, others go through
//! `fusermount3` (Debian's `fuse3`). No libfuse is linked.

mod fs;
mod nodes;
mod overlay;
mod state;

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use fuser::{BackgroundSession, Config, MountOption};

/// What a cut dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lost {
    /// Files that had unsynced writes.
    pub files: usize,
    /// Unsynced bytes dropped (whole pages).
    pub bytes: u64,
}

/// A mounted cutfs; cut (and so unmounted) when dropped.
pub struct CutFs {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<state::State>>,
    mountpoint: PathBuf,
}

impl CutFs {
    /// Mounts `backing` (a directory) at `mountpoint` (an empty directory). The file system is
    /// ready when this returns.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Self> {
        let state = Arc::new(Mutex::new(state::State::new(backing.canonicalize()?)));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("cutfs".into()),
            MountOption::Subtype("cutfs".into()),
            // The kernel checks permissions from the attributes; no `access` calls.
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount2(fs::CutFs(state.clone()), mountpoint, &config)?;
        Ok(Self { session: Some(session), state, mountpoint: mountpoint.to_owned() })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power cut: drops every unsynced write, then unmounts. Unmounting fails while a
    /// process still has a file open here (stop it first); the writes are dropped regardless.
    pub fn cut(mut self) -> io::Result<Lost> {
        self.cut_now()
    }

    fn cut_now(&mut self) -> io::Result<Lost> {
        let lost = self.state.lock().unwrap_or_else(PoisonError::into_inner).cut();
        match self.session.take() {
            Some(session) => session.umount_and_join().map(|()| lost),
            None => Ok(lost),
        }
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        let _ = self.cut_now();
    }
}
