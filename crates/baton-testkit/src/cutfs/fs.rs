//! The FUSE operations: each one done on the backing directory, except that file data written
//! goes to the file's overlay (`overlay.rs`) until `fsync`/`fdatasync` writes it through. Metadata
//! operations (create, mkdir, rename, unlink, rmdir, truncate, chmod) reach the backing
//! directory at once, as if a journaling file system committed them immediately; so does a
//! directory's `fsync`, which has nothing left to do.

use std::{
    ffi::OsStr,
    fs::OpenOptions,
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};

use super::{
    nodes,
    state::{State, open_backing},
};

/// How long the kernel may keep an entry or attributes. Every change goes through this mount,
/// so the kernel's own updates keep them right meanwhile.
const TTL: Duration = Duration::from_secs(1);

/// The file system FUSE calls: the shared [`State`] behind a lock.
pub struct CutFs(pub Arc<Mutex<State>>);

impl CutFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn under(&self, parent: INodeNo, name: &OsStr) -> io::Result<std::path::PathBuf> {
        let state = self.state();
        let root = state.nodes.path(INodeNo::ROOT.0).unwrap_or_default();
        Ok(root.join(state.nodes.child(parent.0, name).ok_or(io::ErrorKind::NotFound)?))
    }

    /// Removes `name` from `parent` with `remove` (a file or a directory), and forgets it.
    fn remove(&self, parent: INodeNo, name: &OsStr, remove: impl Fn(&Path) -> io::Result<()>, reply: ReplyEmpty) {
        let removed = self.under(parent, name).and_then(|path| {
            let meta = std::fs::symlink_metadata(&path)?;
            remove(&path)?;
            self.state().gone(&meta);
            Ok(())
        });
        match removed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from(e)),
        }
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for CutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.state().entry(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let done = (|| -> io::Result<fuser::FileAttr> {
            if let Some(size) = size {
                state.set_size(ino.0, fh, size)?;
            }
            if mode.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some() {
                let file = state.any_file(ino.0, fh)?;
                if let Some(mode) = mode {
                    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::fchown(&*file, uid, gid)?;
                }
                let mut times = std::fs::FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(time(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(time(t));
                }
                file.set_times(times)?;
            }
            state.attr(ino.0, fh)
        })();
        match done {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let made = self.under(parent, name).and_then(|path| {
            std::fs::DirBuilder::new().mode(mode & !umask & 0o7777).create(path)?;
            self.state().entry(parent.0, name)
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |path| std::fs::remove_file(path), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |path| std::fs::remove_dir(path), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let renamed = (|| -> io::Result<()> {
            let (from, to) = (self.under(parent, name)?, self.under(newparent, newname)?);
            let replaced = std::fs::symlink_metadata(&to).ok();
            std::fs::rename(&from, &to)?;
            let mut state = self.state();
            if let Some(meta) = replaced {
                state.gone(&meta);
            }
            let root = state.nodes.path(INodeNo::ROOT.0).unwrap_or_default();
            let relative = |p: &Path| p.strip_prefix(&root).map(Path::to_path_buf).unwrap_or_default();
            state.nodes.renamed(&relative(&from), &relative(&to));
            Ok(())
        })();
        match renamed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let opened = state.nodes.path(ino.0).ok_or(io::Error::from(io::ErrorKind::NotFound)).and_then(|path| {
            let file = open_backing(&path, &OpenOptions::new())?;
            Ok(state.open_handle(ino.0, file))
        });
        match opened {
            // Through the page cache (no direct I/O), so SQLite can map its -shm file.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = (|| -> io::Result<(fuser::FileAttr, u64)> {
            let path = self.under(parent, name)?;
            let mut options = OpenOptions::new();
            options.create(true).create_new(flags & libc::O_EXCL != 0).mode(mode & !umask & 0o7777);
            let file = open_backing(&path, &options)?;
            let mut state = self.state();
            let attr = state.entry(parent.0, name)?;
            let ino = attr.ino.0;
            let fh = state.open_handle(ino, file);
            if flags & libc::O_TRUNC != 0 {
                state.set_size(ino, Some(FileHandle(fh)), 0)?;
            }
            Ok((state.attr(ino, Some(FileHandle(fh)))?, fh))
        })();
        match created {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().read(ino.0, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, fh, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _owner: fuser::LockOwner, reply: ReplyEmpty) {
        // close() is not a sync: the data stays unsynced.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        state.handles.remove(&fh.0);
        let open = state.handles.values().any(|(i, _)| *i == ino.0);
        if !open && state.nodes.path(ino.0).is_none() {
            // The last handle of an unlinked file: its data is gone for good.
            state.overlays.remove(&ino.0);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.state().sync(ino.0, fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut state = self.state();
        let listed = (|| -> io::Result<Vec<(u64, FileType, std::ffi::OsString)>> {
            let root = state.nodes.path(INodeNo::ROOT.0).unwrap_or_default();
            let dir = state.nodes.path(ino.0).ok_or(io::ErrorKind::NotFound)?;
            let mut entries = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let relative = entry.path().strip_prefix(&root).map(Path::to_path_buf).unwrap_or_default();
                entries.push((state.nodes.number(&relative, &meta), nodes::kind(&meta), entry.file_name()));
            }
            Ok(entries)
        })();
        match listed {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory changes reached the backing directory when they were made.
        reply.ok();
    }
}
