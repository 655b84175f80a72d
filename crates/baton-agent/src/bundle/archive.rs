//! Writing a support bundle: a `tar.gz` on disk that stays under the agent's
//! `bundle_max_bytes`. Before each entry the compressed size so far is known (the compressor is
//! flushed), so an entry goes in whole when even uncompressed it would fit, or when its own
//! compressed size fits; otherwise only its end goes in (logs matter most at their end), or
//! nothing. Whatever was cut or left out is written in `manifest.json`, the last entry, for
//! which room is kept.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use flate2::{Compression, write::GzEncoder};
use serde::Serialize;

use super::sources::Skipped;

/// Tar header and padding of one entry, compressed, at most (a long name takes more; the
/// margin below covers it).
const ENTRY_OVERHEAD: u64 = 1536;
/// Room kept for the manifest, at most.
const MANIFEST_ROOM: u64 = 64 * 1024;
/// A cut entry keeping less than this is left out instead.
const SMALLEST_CUT: usize = 1024;
/// Entries the manifest lists one by one (the rest are counted).
const LISTED: usize = 1000;

/// What the bundle holds and what it does not, and why: `manifest.json`.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub bundle_id: String,
    pub device_id: String,
    pub agent_version: String,
    pub created_at: String,
    pub since_secs: u64,
    pub max_bytes: u64,
    pub included: Vec<Included>,
    pub skipped: Vec<Skipped>,
    /// Something was cut or left out to stay under `max_bytes`.
    pub cut_for_size: bool,
    /// Entries beyond the first 1,000 of each list, not listed.
    pub not_listed: usize,
}

/// One entry of the archive.
#[derive(Debug, Serialize)]
pub struct Included {
    pub name: String,
    /// The file it came from, for logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub bytes: u64,
    /// What was cut, when something was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A `tar.gz` being written.
pub struct Archive {
    builder: tar::Builder<GzEncoder<Counted<BufWriter<File>>>>,
    max: u64,
    reserve: u64,
    pub manifest: Manifest,
}

impl Archive {
    pub fn create(path: &Path, manifest: Manifest) -> io::Result<Self> {
        let file = Counted { inner: BufWriter::new(File::create(path)?), count: 0 };
        let max = manifest.max_bytes;
        let builder = tar::Builder::new(GzEncoder::new(file, Compression::default()));
        Ok(Archive { builder, max, reserve: MANIFEST_ROOM.min(max / 8), manifest })
    }

    /// Adds `data` as `name` if it fits, else its end if that fits, saying so in the manifest.
    pub fn add(&mut self, name: &str, source: Option<&str>, data: &[u8], note: Option<String>) -> io::Result<()> {
        let encoder = self.builder.get_mut();
        encoder.flush()?;
        let used = encoder.get_ref().count;
        let room = self.max.saturating_sub(self.reserve).saturating_sub(used).saturating_sub(ENTRY_OVERHEAD);
        let len = data.len() as u64;
        let kept = if len <= room { data } else { self.fitting(data, room) };
        if kept.is_empty() && !data.is_empty() {
            self.manifest.cut_for_size = true;
            self.skip(source.unwrap_or(name), "left out: the bundle reached bundle_max_bytes".into());
            return Ok(());
        }
        let note = if kept.len() < data.len() {
            self.manifest.cut_for_size = true;
            let cut = format!("cut to its last {} of {} bytes to stay under bundle_max_bytes", kept.len(), data.len());
            Some(note.map(|n| format!("{n}; {cut}")).unwrap_or(cut))
        } else {
            note
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(kept.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        self.builder.append_data(&mut header, name, kept)?;
        self.list(Included {
            name: name.to_owned(),
            source: source.map(str::to_owned),
            bytes: kept.len() as u64,
            note,
        });
        Ok(())
    }

    /// The end of `data` that compresses into `room` bytes, as far as one trial compression
    /// tells; empty when not even [`SMALLEST_CUT`] bytes would.
    fn fitting<'a>(&self, data: &'a [u8], room: u64) -> &'a [u8] {
        let compressed = compressed_len(data).max(1);
        if compressed <= room {
            return data;
        }
        // Bytes of input per byte of output, with a tenth kept as margin.
        let keep = (room as f64 * (data.len() as f64 / compressed as f64) * 0.9) as usize;
        if keep < SMALLEST_CUT {
            return &[];
        }
        let tail = &data[data.len() - keep.min(data.len())..];
        // Start at a line's beginning when one is near.
        match tail.iter().take(4096).position(|&b| b == b'\n') {
            Some(i) if i + 1 < tail.len() => &tail[i + 1..],
            _ => tail,
        }
    }

    /// Notes something left out.
    pub fn skip(&mut self, source: &str, reason: String) {
        if self.manifest.skipped.len() < LISTED {
            self.manifest.skipped.push(Skipped { source: source.to_owned(), reason });
        } else {
            self.manifest.not_listed += 1;
        }
    }

    fn list(&mut self, entry: Included) {
        if self.manifest.included.len() < LISTED {
            self.manifest.included.push(entry);
        } else {
            self.manifest.not_listed += 1;
        }
    }

    /// Writes the manifest, ends the archive and syncs it; its size in bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        let json = serde_json::to_vec_pretty(&self.manifest).map_err(io::Error::other)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        self.builder.append_data(&mut header, "manifest.json", json.as_slice())?;
        let counted = self.builder.into_inner()?.finish()?;
        let file = counted.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(counted.count)
    }
}

/// How many bytes `data` compresses to on its own.
fn compressed_len(data: &[u8]) -> u64 {
    let mut encoder = GzEncoder::new(Counted { inner: io::sink(), count: 0 }, Compression::default());
    if encoder.write_all(data).is_err() {
        return data.len() as u64;
    }
    encoder.finish().map(|c| c.count).unwrap_or(data.len() as u64)
}

/// A writer that counts what passes through it.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(max_bytes: u64) -> Manifest {
        Manifest {
            bundle_id: "b".into(),
            device_id: "d".into(),
            agent_version: "0".into(),
            created_at: "now".into(),
            since_secs: 60,
            max_bytes,
            included: Vec::new(),
            skipped: Vec::new(),
            cut_for_size: false,
            not_listed: 0,
        }
    }

    /// Lines of hex from random bytes: compresses to about half, never to nothing.
    fn noise(lines: usize) -> Vec<u8> {
        (0..lines).flat_map(|_| format!("{:032x}\n", rand::random::<u128>()).into_bytes()).collect()
    }

    #[test]
    fn a_bundle_stays_under_its_limit_keeping_the_end_of_a_log_and_saying_so() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("b.tar.gz");
        let mut archive = Archive::create(&path, manifest(32 * 1024)).expect("archive");
        archive.add("inventory.json", None, b"{\"serial\": \"s\"}", None).expect("added");
        let log = noise(10_000);
        archive.add("logs/big.log", Some("/var/log/big.log"), &log, None).expect("added");
        archive.add("logs/more.log", Some("/var/log/more.log"), &noise(10_000), None).expect("added");
        assert!(archive.manifest.cut_for_size);
        let included: Vec<(String, u64, Option<String>)> =
            archive.manifest.included.iter().map(|e| (e.name.clone(), e.bytes, e.note.clone())).collect();
        assert_eq!(included[0].0, "inventory.json");
        let (name, kept, note) = &included[1];
        assert_eq!(name, "logs/big.log");
        assert!(*kept > 1024 && *kept < log.len() as u64, "{kept}");
        assert!(note.as_deref().is_some_and(|n| n.contains("bundle_max_bytes")), "{note:?}");
        // What room is left takes at most a small end of the next log, saying so, or nothing.
        let more = included.get(2).map(|(_, _, note)| note.clone().unwrap_or_default());
        let skipped = archive.manifest.skipped.iter().any(|s| s.source == "/var/log/more.log");
        assert!(skipped || more.is_some_and(|n| n.contains("bundle_max_bytes")), "{:?}", archive.manifest);
        let size = archive.finish().expect("finished");
        assert!(size <= 32 * 1024, "{size}");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), size);

        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&path).expect("open")));
        let mut names = Vec::new();
        for entry in tar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            if name == "logs/big.log" {
                let mut kept = Vec::new();
                io::Read::read_to_end(&mut entry, &mut kept).expect("read");
                assert!(log.ends_with(&kept) && kept.first() != Some(&b'\n'), "the end of the log, from a line");
            }
            names.push(name);
        }
        assert_eq!(names[..2], ["inventory.json", "logs/big.log"]);
        assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    }
}
