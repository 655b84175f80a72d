//! Inode numbers for the files under the backing directory: the root is 1, every other file
//! gets a number the first time it is seen, kept as long as the backing file (its device and
//! inode) lives, so a renamed file keeps its number and its unsynced writes.

use std::{
    collections::HashMap,
    fs::Metadata,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use fuser::{FileAttr, FileType, INodeNo};

/// The known files: inode number ↔ path below the backing directory.
#[derive(Debug)]
pub struct Nodes {
    backing: PathBuf,
    /// Inode number → path relative to the backing directory ("" is the root).
    paths: HashMap<u64, PathBuf>,
    /// The backing file's (device, inode) → our inode number.
    numbers: HashMap<(u64, u64), u64>,
    next: u64,
}

impl Nodes {
    pub fn new(backing: PathBuf) -> Self {
        let paths = HashMap::from([(INodeNo::ROOT.0, PathBuf::new())]);
        Self { backing, paths, numbers: HashMap::new(), next: INodeNo::ROOT.0 + 1 }
    }

    /// Where inode `ino` is in the backing directory.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        self.paths.get(&ino).map(|relative| self.backing.join(relative))
    }

    /// Where `name` in directory `parent` is, relative to the backing directory.
    pub fn child(&self, parent: u64, name: &std::ffi::OsStr) -> Option<PathBuf> {
        self.paths.get(&parent).map(|dir| dir.join(name))
    }

    /// The inode number of the file at `relative`, whose metadata is `meta`; a new one the
    /// first time.
    pub fn number(&mut self, relative: &Path, meta: &Metadata) -> u64 {
        if relative.as_os_str().is_empty() {
            return INodeNo::ROOT.0;
        }
        let ino = *self.numbers.entry((meta.dev(), meta.ino())).or_insert_with(|| {
            self.next += 1;
            self.next - 1
        });
        self.paths.insert(ino, relative.to_owned());
        ino
    }

    /// Forgets the file whose backing metadata is `meta` (unlinked, removed or replaced): a
    /// backing inode number used again later is a new file. Returns its number, if it had one.
    pub fn forget(&mut self, meta: &Metadata) -> Option<u64> {
        let ino = self.numbers.remove(&(meta.dev(), meta.ino()))?;
        self.paths.remove(&ino);
        Some(ino)
    }

    /// After a rename of `from` to `to`: every path at or below `from` moves.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for path in self.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(from) {
                // Joining an empty rest would add a trailing slash.
                *path = if rest.as_os_str().is_empty() { to.to_owned() } else { to.join(rest) };
            }
        }
    }
}

/// The attributes FUSE reports for inode `ino` with backing metadata `meta`, its size being
/// `size` (which counts unsynced writes).
pub fn attr(ino: u64, meta: &Metadata, size: u64) -> FileAttr {
    let time = |secs: i64, nanos: i64| {
        let since = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        UNIX_EPOCH + since
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind: kind(meta),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The FUSE file type of `meta`.
pub fn kind(meta: &Metadata) -> FileType {
    FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile)
}
