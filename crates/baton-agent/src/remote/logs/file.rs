//! A file's lines: the allow-list check (an absolute path without `..`, inside `log_paths`
//! once symbolic links are resolved), the last lines (read backwards from the end, so a large
//! file costs only what is shown), and following the file as it grows, is truncated, or is
//! replaced by a new one (rotation: the old one is read to its end first). Following polls the
//! file's size, as `tail -F` does where it cannot be told.

use std::{
    fs::{File, Metadata},
    io::{self, Read, Seek, SeekFrom},
    path::{Component, Path, PathBuf},
    time::Duration,
};

use baton_proto::streams::{LogQuery, LogRecord};
use regex_lite::Regex;
use tokio::sync::mpsc;

use super::{DEFAULT_LINES, Input, MAX_LINE, Sink, closed, cut};
use crate::config::RemoteConfig;

/// How often a followed file is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Bytes read at a time.
const BLOCK: usize = 64 * 1024;
/// Most bytes read from a followed file per look (more waits for the next one), so a file
/// that grew a lot, or one read again from its start, is never loaded whole.
const FOLLOW_MAX: u64 = 1 << 20;
/// Most bytes of lines the last lines shown may hold (older lines are left out past it).
const TAIL_MAX: usize = 8 << 20;

/// A file the allow-list lets through, open.
pub(super) struct Opened {
    /// As asked: shown in each record, and looked at again when the file is replaced.
    asked: String,
    file: File,
    identity: (u64, u64),
    /// The allowed places (canonical), to check a replacement against.
    allowed: Vec<PathBuf>,
    listed: String,
}

/// Checks `query.path` against `[remote] log_paths` and opens it; the reason when it may not.
pub(super) fn open(config: &RemoteConfig, query: &LogQuery) -> Result<Opened, String> {
    let asked = query.path.clone().filter(|p| !p.is_empty()).ok_or("a file log needs `path`: the file to read")?;
    let listed = config.log_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let entries: Vec<PathBuf> = config.log_paths.iter().map(|p| entry(p)).collect();
    let allowed: Vec<PathBuf> = entries.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let path = Path::new(&asked);
    if !path.is_absolute() {
        return Err(format!("the path must be absolute: {asked}"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the path must not contain `..`: {asked}"));
    }
    // Nothing outside the list is looked at, not even whether it exists.
    if !entries.iter().chain(&allowed).any(|a| path.starts_with(a)) {
        return Err(outside(&asked, &listed));
    }
    let (file, identity) = resolve(&asked, &allowed, &listed)?;
    Ok(Opened { asked, file, identity, allowed, listed })
}

/// Shows the last lines, then (when following) what is written, until the end or a close.
pub(super) async fn run(
    mut opened: Opened,
    query: &LogQuery,
    grep: Option<Regex>,
    mut sink: Sink,
    mut input: mpsc::UnboundedReceiver<Input>,
) {
    let lines = query.lines.unwrap_or(DEFAULT_LINES) as usize;
    let mut file = match opened.file.try_clone() {
        Ok(f) => f,
        Err(e) => return sink.close(format!("cannot read {}: {e}", opened.asked), Some(1)).await,
    };
    let shown = tokio::task::spawn_blocking({
        let grep = grep.clone();
        move || -> io::Result<(Vec<String>, Vec<u8>, u64)> {
            let end = file.metadata()?.len();
            let (lines, partial) = tail(&mut file, end, lines, grep.as_ref())?;
            Ok((lines, partial, end))
        }
    })
    .await;
    let (shown, mut pending, mut offset) = match shown {
        Ok(Ok(shown)) => shown,
        Ok(Err(e)) => return sink.close(format!("cannot read {}: {e}", opened.asked), Some(1)).await,
        Err(e) => return sink.close(format!("reading {} failed: {e}", opened.asked), Some(1)).await,
    };
    if sink.opened().await.is_err() {
        return;
    }
    let source = opened.asked.clone();
    let record = |message: String| LogRecord {
        ts: chrono::Utc::now(),
        source: source.clone(),
        unit: None,
        priority: None,
        message,
    };
    for line in shown {
        if sink.push(&record(line)).await.is_err() {
            return;
        }
    }
    if !query.follow {
        if !pending.is_empty() {
            let line = text(&pending);
            if sink.push(&record(line)).await.is_err() {
                return;
            }
        }
        return sink.close("the end of the file".into(), Some(0)).await;
    }
    if sink.flush().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            reason = closed(&mut input) => return sink.close(reason, None).await,
            _ = tick.tick() => {
                // The reading blocks: on a thread of its own, with what it reads from and into.
                let looked = tokio::task::spawn_blocking(move || {
                    let mut lines = Vec::new();
                    let read = follow(&mut opened, &mut offset, &mut pending, &mut lines);
                    (opened, offset, pending, lines, read)
                })
                .await;
                let lines;
                let read;
                (opened, offset, pending, lines, read) = match looked {
                    Ok(looked) => looked,
                    Err(e) => return sink.close(format!("reading {source} failed: {e}"), Some(1)).await,
                };
                for line in lines.into_iter().filter(|l| grep.as_ref().is_none_or(|g| g.is_match(l))) {
                    if sink.push(&record(line)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                if let Err(reason) = read {
                    return sink.close(reason, Some(1)).await;
                }
            }
        }
    }
}

/// Reads what was written since `offset` (at most [`FOLLOW_MAX`] bytes: the rest on the next
/// look), and switches to a new file that replaced the followed one (once the old one was read
/// to its end); a truncated file is read from its start.
fn follow(opened: &mut Opened, offset: &mut u64, pending: &mut Vec<u8>, lines: &mut Vec<String>) -> Result<(), String> {
    let read_err = |e: io::Error| format!("cannot read {}: {e}", opened.asked);
    let now = std::fs::metadata(&opened.asked).ok();
    let replaced = now.as_ref().is_some_and(|m| identity(m) != opened.identity);
    if !replaced && now.as_ref().is_some_and(|m| m.len() < *offset) {
        *offset = 0;
        pending.clear();
    }
    let at_end = read_from(&mut opened.file, offset, pending, lines).map_err(read_err)?;
    if replaced && at_end {
        let (file, identity) = resolve(&opened.asked, &opened.allowed, &opened.listed)?;
        (opened.file, opened.identity, *offset) = (file, identity, 0);
        if !pending.is_empty() {
            lines.push(text(pending));
            pending.clear();
        }
        read_from(&mut opened.file, offset, pending, lines)
            .map_err(|e| format!("cannot read {}: {e}", opened.asked))?;
    }
    Ok(())
}

/// Reads `file` from `offset` towards its end, at most [`FOLLOW_MAX`] bytes: complete lines
/// into `lines`, the rest kept in `pending`. Whether it reached the end.
fn read_from(file: &mut File, offset: &mut u64, pending: &mut Vec<u8>, lines: &mut Vec<String>) -> io::Result<bool> {
    file.seek(SeekFrom::Start(*offset))?;
    let mut buf = vec![0u8; BLOCK];
    let mut read = 0u64;
    loop {
        if read >= FOLLOW_MAX {
            return Ok(false);
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        read += n as u64;
        *offset += n as u64;
        let mut rest = &buf[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            keep(pending, &rest[..end]);
            lines.push(text(pending));
            pending.clear();
            rest = &rest[end + 1..];
        }
        keep(pending, rest);
    }
}

/// The last `n` lines of `file` up to `end` that `grep` keeps (oldest first), read backwards,
/// no more than [`TAIL_MAX`] bytes of them (older ones left out); and the partial last line
/// (not ended by a newline yet).
fn tail(file: &mut File, end: u64, n: usize, grep: Option<&Regex>) -> io::Result<(Vec<String>, Vec<u8>)> {
    tail_within(file, end, n, grep, TAIL_MAX)
}

fn tail_within(
    file: &mut File,
    end: u64,
    n: usize,
    grep: Option<&Regex>,
    max_bytes: usize,
) -> io::Result<(Vec<String>, Vec<u8>)> {
    let mut found = Vec::new();
    let mut bytes = 0usize;
    let mut full = false;
    let mut partial = None;
    // The start of a line whose beginning lies further back, capped.
    let mut carry: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 && found.len() < n && !full {
        let start = pos.saturating_sub(BLOCK as u64);
        let mut data = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut data)?;
        data.extend_from_slice(&carry);
        let mut segments: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let first = if start > 0 { Some(segments.remove(0)) } else { None };
        for (i, segment) in segments.iter().enumerate().rev() {
            if partial.is_none() {
                // The first look at the end: what follows the last newline.
                partial = Some(segment.to_vec());
                if i == segments.len() - 1 {
                    continue;
                }
            }
            let line = text(&segment[..segment.len().min(MAX_LINE + 1)]);
            if grep.is_none_or(|g| g.is_match(&line)) {
                if bytes + line.len() > max_bytes {
                    full = true;
                    break;
                }
                bytes += line.len();
                found.push(line);
                if found.len() == n {
                    break;
                }
            }
        }
        carry = first.map(|f| f[..f.len().min(MAX_LINE + 1)].to_vec()).unwrap_or_default();
        pos = start;
    }
    found.reverse();
    Ok((found, partial.unwrap_or_default()))
}

/// Adds `bytes` to a line being read, up to just past [`MAX_LINE`] (so it reads as cut).
fn keep(pending: &mut Vec<u8>, bytes: &[u8]) {
    let room = (MAX_LINE + 1).saturating_sub(pending.len());
    pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    cut(String::from_utf8_lossy(bytes).into_owned())
}

/// An entry of `log_paths`, without a trailing `/**` (which means the same).
fn entry(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    match text.strip_suffix("/**") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        Some(_) => PathBuf::from("/"),
        None => path.to_path_buf(),
    }
}

fn outside(asked: &str, listed: &str) -> String {
    format!(
        "{asked} is not under the device's allowed log paths ({listed}); its owner can add it to `[remote] log_paths` in the agent's config"
    )
}

/// Opens `asked` once its real path (symbolic links resolved) is inside `allowed`.
fn resolve(asked: &str, allowed: &[PathBuf], listed: &str) -> Result<(File, (u64, u64)), String> {
    let real = Path::new(asked).canonicalize().map_err(|e| format!("cannot read {asked}: {e}"))?;
    if !allowed.iter().any(|a| real.starts_with(a)) {
        return Err(format!(
            "{asked} leads to {} through a symbolic link, outside the device's allowed log paths ({listed})",
            real.display()
        ));
    }
    let file = crate::safe_open::open_regular(&real, asked, allowed).map_err(|e| match e.kind() {
        io::ErrorKind::Other => e.to_string(),
        _ => format!("cannot read {asked}: {e}"),
    })?;
    let meta = file.metadata().map_err(|e| format!("cannot read {asked}: {e}"))?;
    Ok((file, identity(&meta)))
}

/// What tells one file from another that replaced it at the same path.
#[cfg(unix)]
fn identity(meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(meta: &Metadata) -> (u64, u64) {
    let created = meta.created().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    (0, created.map_or(0, |d| d.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(content: &str, n: usize, grep: Option<&str>) -> (Vec<String>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        std::fs::write(&path, content).expect("written");
        let mut file = File::open(&path).expect("open");
        let grep = grep.map(|g| Regex::new(g).expect("pattern"));
        let (lines, partial) = tail(&mut file, content.len() as u64, n, grep.as_ref()).expect("tail");
        (lines, String::from_utf8(partial).expect("utf-8"))
    }

    #[test]
    fn the_last_lines_are_read_backwards_across_blocks() {
        let content: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let (lines, partial) = tail_of(&content, 3, None);
        assert_eq!(lines, ["line 19997", "line 19998", "line 19999"]);
        assert_eq!(partial, "");
        let (lines, _) = tail_of(&content, 2, Some("^line 1000[0-9]$"));
        assert_eq!(lines, ["line 10008", "line 10009"]);
        let (all, _) = tail_of("a\nb\n", 100, None);
        assert_eq!(all, ["a", "b"]);
    }

    #[test]
    fn the_last_lines_shown_are_capped_in_bytes_keeping_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let content: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
        std::fs::write(&path, &content).expect("written");
        let mut file = File::open(&path).expect("open");
        let (lines, _) = tail_within(&mut file, content.len() as u64, 1000, None, 8 * 3 + 7).expect("tail");
        assert_eq!(lines, ["line 097", "line 098", "line 099"]);
    }

    #[test]
    fn a_followed_file_is_read_a_bounded_amount_at_a_time() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, "").expect("empty");
        let config = RemoteConfig { log_paths: vec![dir.path().to_path_buf()], ..RemoteConfig::default() };
        let query = LogQuery { path: Some(path.display().to_string()), ..LogQuery::default() };
        let mut opened = open(&config, &query).expect("allowed");
        let line = format!("{}\n", "x".repeat(1023));
        let count = 3 * FOLLOW_MAX as usize / line.len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(line.repeat(count).as_bytes()).expect("written");
        let (mut offset, mut pending, mut looks) = (0, Vec::new(), Vec::new());
        while offset < (count * line.len()) as u64 {
            let mut lines = Vec::new();
            follow(&mut opened, &mut offset, &mut pending, &mut lines).expect("read");
            looks.push(lines.len());
        }
        assert_eq!(looks.iter().sum::<usize>(), count);
        assert!(looks.len() >= 3 && looks.iter().all(|&n| n <= FOLLOW_MAX as usize / line.len()), "{looks:?}");
    }

    #[test]
    fn a_partial_last_line_is_kept_apart() {
        let (lines, partial) = tail_of("one\r\ntwo\nthr", 10, None);
        assert_eq!((lines, partial.as_str()), (vec!["one".to_owned(), "two".to_owned()], "thr"));
        let (lines, partial) = tail_of("only", 10, None);
        assert_eq!((lines.len(), partial.as_str()), (0, "only"));
    }

    #[test]
    fn paths_outside_the_list_dot_dots_and_links_out_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).expect("mkdir");
        std::fs::write(logs.join("app.log"), "x\n").expect("written");
        std::fs::write(dir.path().join("secret"), "s\n").expect("written");
        let config = RemoteConfig {
            log_paths: vec![PathBuf::from(format!("{}/**", logs.display()))],
            ..RemoteConfig::default()
        };
        let ask = |path: String| {
            open(&config, &LogQuery { path: Some(path), ..LogQuery::default() }).map(|_| ()).err().unwrap_or_default()
        };
        assert_eq!(ask(format!("{}/app.log", logs.display())), "");
        assert!(ask("relative.log".into()).contains("must be absolute"));
        assert!(ask(format!("{}/../secret", logs.display())).contains("must not contain `..`"));
        assert!(ask(format!("{}/secret", dir.path().display())).contains("not under the device's allowed log paths"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), logs.join("link")).expect("symlink");
            assert!(ask(format!("{}/link", logs.display())).contains("through a symbolic link"));
        }
        assert!(ask(logs.display().to_string()).contains("is a directory"));
    }

    #[test]
    fn a_followed_file_is_read_as_it_grows_is_truncated_and_is_rotated() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let write = |text: &str| {
            let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&path).expect("open");
            f.write_all(text.as_bytes()).expect("written");
        };
        write("old\n");
        let config = RemoteConfig { log_paths: vec![dir.path().to_path_buf()], ..RemoteConfig::default() };
        let query = LogQuery { path: Some(path.display().to_string()), ..LogQuery::default() };
        let mut opened = open(&config, &query).expect("allowed");
        let (mut offset, mut pending) = (4, Vec::new());
        let mut step = |opened: &mut Opened| {
            let mut lines = Vec::new();
            follow(opened, &mut offset, &mut pending, &mut lines).expect("read");
            lines
        };
        write("one\ntw");
        assert_eq!(step(&mut opened), ["one"], "a partial line waits");
        write("o\n");
        assert_eq!(step(&mut opened), ["two"]);
        std::fs::write(&path, "new start\n").expect("truncated");
        assert_eq!(step(&mut opened), ["new start"], "a truncated file is read from its start");
        write("last of the old file\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rotated");
        std::fs::write(&path, "first of the new file\n").expect("new file");
        assert_eq!(step(&mut opened), ["last of the old file", "first of the new file"]);
        write("more\n");
        assert_eq!(step(&mut opened), ["more"]);
    }
}
