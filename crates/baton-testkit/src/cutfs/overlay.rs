//! The unsynced writes of one file: whole pages copied from the backing file on first write
//! and changed in memory, plus the file's size as those writes left it. Reads see them;
//! [`Overlay::sync`] writes them to the backing file and empties the overlay; dropping it is
//! losing them.

use std::{collections::BTreeMap, fs::File, io, os::unix::fs::FileExt};

/// Bytes per page: the unit copied from the backing file and written back.
const PAGE: u64 = 4096;

/// Writes to one file not yet synced.
#[derive(Debug)]
pub struct Overlay {
    /// Page index → the page as the writes left it (copied from the backing file first).
    pages: BTreeMap<u64, Vec<u8>>,
    /// The file's size as the writes left it; never below the backing file's, since a
    /// truncation reaches both at once.
    size: u64,
}

impl Overlay {
    /// An empty overlay over a backing file of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self { pages: BTreeMap::new(), size }
    }

    /// The file's size, unsynced writes included.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory that a sync would write.
    pub fn unsynced_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Writes `data` at `offset`, in memory only.
    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        for Span { index, within, n, done } in spans(offset, end) {
            let page = match self.pages.entry(index) {
                std::collections::btree_map::Entry::Occupied(page) => page.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => slot.insert(read_backing(backing, index * PAGE)?),
            };
            page[within..within + n].copy_from_slice(&data[done..done + n]);
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Up to `len` bytes at `offset` as a reader sees them: unsynced pages over the backing
    /// file, short at the end of the file.
    pub fn read(&self, backing: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = (offset + len).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for Span { index, within, n, .. } in spans(offset, end) {
            match self.pages.get(&index) {
                Some(page) => out.extend_from_slice(&page[within..within + n]),
                None => out.extend_from_slice(&read_backing(backing, index * PAGE)?[within..within + n]),
            }
        }
        Ok(out)
    }

    /// The file cut to (or grown to) `size`, as a truncation the caller also applied to the
    /// backing file: pages past it go, the tail of the last page reads as zeros.
    pub fn truncate(&mut self, size: u64) {
        self.pages.retain(|index, _| index * PAGE < size);
        if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
            page[(size % PAGE) as usize..].fill(0);
        }
        self.size = size;
    }

    /// Writes every unsynced page to the backing file and sizes it; the overlay is then empty.
    pub fn sync(&mut self, backing: &File) -> io::Result<()> {
        for (index, page) in &self.pages {
            let start = index * PAGE;
            let n = (self.size.saturating_sub(start)).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        backing.set_len(self.size)?;
        self.pages.clear();
        Ok(())
    }
}

/// The part of one page a byte range covers.
struct Span {
    /// The page's index.
    index: u64,
    /// Where in the page the part starts.
    within: usize,
    /// Its length.
    n: usize,
    /// How many bytes of the range come before it.
    done: usize,
}

/// The bytes `offset..end`, page by page.
fn spans(offset: u64, end: u64) -> impl Iterator<Item = Span> {
    let mut at = offset;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let index = at / PAGE;
            let within = (at - index * PAGE) as usize;
            let n = (PAGE as usize - within).min((end - at) as usize);
            let span = Span { index, within, n, done: (at - offset) as usize };
            at += n as u64;
            span
        })
    })
}

/// The page at `start` of the backing file, zeros past its end.
fn read_backing(backing: &File, start: u64) -> io::Result<Vec<u8>> {
    let mut page = vec![0; PAGE as usize];
    let mut filled = 0;
    while filled < page.len() {
        match backing.read_at(&mut page[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn backing(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(content).expect("write");
        file
    }

    fn on_disk(file: &File) -> Vec<u8> {
        let mut all = vec![0; file.metadata().expect("metadata").len() as usize];
        file.read_exact_at(&mut all, 0).expect("read");
        all
    }

    #[test]
    fn a_write_is_read_back_but_reaches_the_backing_file_only_when_synced() {
        let file = backing(b"hello world");
        let mut overlay = Overlay::new(11);
        overlay.write(&file, 6, b"there, and beyond").expect("write");
        assert_eq!(overlay.read(&file, 0, 100).expect("read"), b"hello there, and beyond");
        assert_eq!(on_disk(&file), b"hello world");
        overlay.sync(&file).expect("sync");
        assert_eq!(on_disk(&file), b"hello there, and beyond");
        assert_eq!(overlay.unsynced_bytes(), 0);
    }

    #[test]
    fn writes_across_pages_and_past_the_end_leave_zeros_in_the_gap() {
        let file = backing(b"abc");
        let mut overlay = Overlay::new(3);
        overlay.write(&file, 4094, b"XYZW").expect("write");
        overlay.write(&file, 10_000, b"!").expect("write");
        assert_eq!(overlay.size(), 10_001);
        let read = overlay.read(&file, 0, 20_000).expect("read");
        assert_eq!(&read[..3], b"abc");
        assert_eq!(&read[4094..4098], b"XYZW");
        assert!(read[4098..10_000].iter().all(|b| *b == 0));
        overlay.sync(&file).expect("sync");
        assert_eq!(on_disk(&file), read);
    }

    #[test]
    fn a_truncation_forgets_the_bytes_past_it() {
        let file = backing(b"");
        let mut overlay = Overlay::new(0);
        overlay.write(&file, 0, &[7; 5000]).expect("write");
        overlay.truncate(10);
        file.set_len(10).expect("set_len");
        overlay.write(&file, 20, b"x").expect("write");
        let read = overlay.read(&file, 0, 100).expect("read");
        assert_eq!(read, [&[7; 10][..], &[0; 10], b"x"].concat());
    }
}
