//! What cutfs knows: the inode table, the open backing files, the unsynced writes per file,
//! and whether the power was cut. Each method is one FUSE operation's work on the backing
//! directory, without the FUSE reply.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
    sync::Arc,
};

use fuser::{FileHandle, INodeNo};

use super::{
    Lost,
    nodes::{self, Nodes},
    overlay::Overlay,
};

/// Everything the file system knows; one lock, since FUSE sends one request at a time here.
#[derive(Debug)]
pub struct State {
    pub(super) nodes: Nodes,
    /// Open files: handle → (inode, the backing file, open for reading and writing).
    pub(super) handles: HashMap<u64, (u64, Arc<File>)>,
    /// Unsynced writes per inode.
    pub(super) overlays: HashMap<u64, Overlay>,
    next_handle: u64,
    /// Set by the cut: from then on nothing reaches the backing directory.
    cut: bool,
}

impl State {
    pub fn new(backing: std::path::PathBuf) -> Self {
        Self {
            nodes: Nodes::new(backing),
            handles: HashMap::new(),
            overlays: HashMap::new(),
            next_handle: 1,
            cut: false,
        }
    }

    /// The power cut: every unsynced write is dropped, and nothing written later is kept.
    pub fn cut(&mut self) -> Lost {
        self.cut = true;
        let lost = Lost {
            files: self.overlays.values().filter(|o| o.unsynced_bytes() > 0).count(),
            bytes: self.overlays.values().map(Overlay::unsynced_bytes).sum(),
        };
        self.overlays.clear();
        lost
    }

    /// The attributes of `ino`, its size counting unsynced writes.
    pub(super) fn attr(&self, ino: u64, handle: Option<FileHandle>) -> io::Result<fuser::FileAttr> {
        let meta = self.metadata(ino, handle)?;
        let size = self.overlays.get(&ino).map_or(meta.len(), Overlay::size);
        Ok(nodes::attr(ino, &meta, size))
    }

    fn metadata(&self, ino: u64, handle: Option<FileHandle>) -> io::Result<Metadata> {
        if let Some((_, file)) = handle.and_then(|fh| self.handles.get(&fh.0)) {
            return file.metadata();
        }
        match self.nodes.path(ino) {
            Some(path) => std::fs::symlink_metadata(path),
            // Unlinked but still open.
            None => match self.handles.values().find(|(i, _)| *i == ino) {
                Some((_, file)) => file.metadata(),
                None => Err(io::ErrorKind::NotFound.into()),
            },
        }
    }

    /// Looks `name` up in `parent`: its inode number and attributes.
    pub(super) fn entry(&mut self, parent: u64, name: &OsStr) -> io::Result<fuser::FileAttr> {
        let relative = self.nodes.child(parent, name).ok_or(io::ErrorKind::NotFound)?;
        let meta = std::fs::symlink_metadata(self.nodes.path(INodeNo::ROOT.0).unwrap_or_default().join(&relative))?;
        let ino = self.nodes.number(&relative, &meta);
        self.attr(ino, None)
    }

    pub(super) fn open_handle(&mut self, ino: u64, file: File) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, (ino, Arc::new(file)));
        fh
    }

    fn file(&self, fh: FileHandle) -> io::Result<Arc<File>> {
        self.handles.get(&fh.0).map(|(_, f)| f.clone()).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// A backing file for `ino`: an open handle's, or the path opened now.
    pub(super) fn any_file(&self, ino: u64, fh: Option<FileHandle>) -> io::Result<Arc<File>> {
        if let Some(file) = fh.and_then(|fh| self.handles.get(&fh.0)).map(|(_, f)| f.clone()) {
            return Ok(file);
        }
        let path = self.nodes.path(ino).ok_or(io::ErrorKind::NotFound)?;
        Ok(Arc::new(open_backing(&path, &OpenOptions::new())?))
    }

    /// Drops what is known of a file that is gone: its number, and its unsynced writes once
    /// no handle has it open.
    pub(super) fn gone(&mut self, meta: &Metadata) {
        if (meta.is_dir() || meta.nlink() <= 1)
            && let Some(ino) = self.nodes.forget(meta)
            && !self.handles.values().any(|(i, _)| *i == ino)
        {
            self.overlays.remove(&ino);
        }
    }

    pub(super) fn read(&self, ino: u64, fh: FileHandle, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let file = self.file(fh)?;
        if let Some(overlay) = self.overlays.get(&ino) {
            return overlay.read(&file, offset, u64::from(size));
        }
        let mut buf = vec![0; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    pub(super) fn write(&mut self, ino: u64, fh: FileHandle, offset: u64, data: &[u8]) -> io::Result<()> {
        self.refuse_after_cut()?;
        let file = self.file(fh)?;
        let overlay = match self.overlays.entry(ino) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(Overlay::new(file.metadata()?.len())),
        };
        overlay.write(&file, offset, data)
    }

    pub(super) fn sync(&mut self, ino: u64, fh: FileHandle) -> io::Result<()> {
        self.refuse_after_cut()?;
        if let Some(mut overlay) = self.overlays.remove(&ino) {
            overlay.sync(&*self.file(fh)?)?;
        }
        Ok(())
    }

    pub(super) fn set_size(&mut self, ino: u64, fh: Option<FileHandle>, size: u64) -> io::Result<()> {
        self.refuse_after_cut()?;
        self.any_file(ino, fh)?.set_len(size)?;
        if let Some(overlay) = self.overlays.get_mut(&ino) {
            overlay.truncate(size);
        }
        Ok(())
    }

    fn refuse_after_cut(&self) -> io::Result<()> {
        if self.cut { Err(io::Error::from_raw_os_error(libc::EIO)) } else { Ok(()) }
    }
}

/// A backing file opened for reading and writing (a sync may come through any handle), or
/// read-only where writing is not allowed.
pub(super) fn open_backing(path: &Path, options: &OpenOptions) -> io::Result<File> {
    match options.clone().read(true).write(true).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EISDIR) => File::open(path),
        other => other,
    }
}
