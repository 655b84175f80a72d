//! `baton cp <device>:<path> <local>`: a file grows in `<local>.baton-part` (its SHA-256 beside
//! it in `<local>.baton-part.sha256`, for `If-Range`), is checked against the device's SHA-256
//! and renamed into place; a part left by a cut resumes with `Range`. A directory comes as tar
//! and is unpacked into `<local>`, refusing any entry that would land outside it.

use std::{
    io::{Read, Write},
    path::{Component, Path, PathBuf},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::files::CHECKSUM_HEADER;
use indicatif::ProgressBar;
use sha2::Digest;

use super::{Cut, Options, human, progress, retriable};

pub(super) async fn run(
    client: &Client,
    device: &str,
    shown: &str,
    path: &str,
    local: &Path,
    options: &Options,
) -> anyhow::Result<()> {
    let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("download");
    let dest = if local.is_dir() { local.join(name) } else { local.to_owned() };
    let part = suffixed(&dest, ".baton-part");
    let tag = suffixed(&dest, ".baton-part.sha256");
    if !options.resume {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_file(&tag);
    }
    let bar = progress(None, "downloading");
    let mut attempt = 0;
    loop {
        match once(client, device, path, &dest, &part, &tag, &bar).await {
            Ok(done) => {
                bar.finish_and_clear();
                say!("{shown}:{path} → {}: {done}", dest.display());
                return Ok(());
            }
            Err(e) if attempt < options.retries && retriable(&e) => {
                attempt += 1;
                bar.suspend(|| eprintln!("baton: the download was cut ({e:#}); resuming"));
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
            }
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
    }
}

/// One attempt; what came, in words.
async fn once(
    client: &Client,
    device: &str,
    path: &str,
    dest: &Path,
    part: &Path,
    tag: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<String> {
    let kept = std::fs::metadata(part).ok().map(|m| m.len()).filter(|&n| n > 0);
    let kept_sha = std::fs::read_to_string(tag).ok().map(|s| s.trim().to_owned());
    let resume = kept.zip(kept_sha);
    let mut response = client.download_file(device, path, resume.as_ref().map(|(n, s)| (*n, s.as_str()))).await?;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header("content-type").as_deref() == Some("application/x-tar") {
        return tree(&mut response, dest, part, bar).await;
    }
    let sha256 = header(CHECKSUM_HEADER).context("the server sent no SHA-256 for the file; update the server")?;
    let partial = response.status().as_u16() == 206;
    let offset = if partial { kept.unwrap_or(0) } else { 0 };
    let length = response.content_length().unwrap_or(0);
    std::fs::write(tag, &sha256).with_context(|| format!("cannot write {}", tag.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut file = if partial {
        let mut file = std::fs::File::open(part)?;
        std::io::copy(&mut (&mut file).take(offset), &mut hasher)?;
        std::fs::OpenOptions::new().append(true).open(part)?
    } else {
        std::fs::File::create(part).with_context(|| format!("cannot write {}", part.display()))?
    };
    bar.set_length(offset + length);
    bar.set_position(offset);
    let mut file_w = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                file_w.write_all(&bytes)?;
                hasher.update(&bytes);
                bar.inc(bytes.len() as u64);
            }
            Ok(None) => break,
            Err(e) => {
                file_w.flush()?;
                let have = bar.position();
                return Err(
                    Cut(format!("the connection was cut after {} ({e}); run again to resume", human(have))).into()
                );
            }
        }
    }
    file_w.flush()?;
    drop(file_w);
    file.sync_all()?;
    let got = format!("{:x}", hasher.finalize());
    if got != sha256 {
        let _ = std::fs::remove_file(part);
        let _ = std::fs::remove_file(tag);
        anyhow::bail!(
            "the bytes received hash to {got}, not the device's SHA-256 {sha256}; nothing was kept: run the copy again"
        );
    }
    std::fs::rename(part, dest).with_context(|| format!("cannot move the download to {}", dest.display()))?;
    let _ = std::fs::remove_file(tag);
    let resumed = if offset > 0 { format!(", resumed after {}", human(offset)) } else { String::new() };
    Ok(format!("{} (SHA-256 {sha256}){resumed}", human(offset + length)))
}

/// A directory's tar stream: saved, then unpacked into `dest`.
async fn tree(response: &mut reqwest::Response, dest: &Path, part: &Path, bar: &ProgressBar) -> anyhow::Result<String> {
    let tar = suffixed(part, ".tar");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tar)?);
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                file.write_all(&bytes)?;
                bar.inc(bytes.len() as u64);
            }
            Ok(None) => break,
            Err(e) => {
                let _ = std::fs::remove_file(&tar);
                return Err(Cut(format!("the connection was cut ({e})")).into());
            }
        }
    }
    file.flush()?;
    drop(file);
    let (archive, into) = (tar.clone(), dest.to_owned());
    let unpacked = tokio::task::spawn_blocking(move || unpack(&archive, &into)).await?;
    let _ = std::fs::remove_file(&tar);
    Ok(format!("{} entries unpacked ({} of tar)", unpacked?, human(bar.position())))
}

/// Unpacks the archive at `tar` into `dest`; an entry that would land outside it stops it.
pub(crate) fn unpack(tar: &Path, dest: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot make {}", dest.display()))?;
    let mut archive = tar::Archive::new(std::fs::File::open(tar)?);
    // Permission bits masked to 0777: a device's archive never makes setuid files here.
    archive.set_preserve_permissions(false);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let outside = || {
            anyhow::anyhow!(
                "the archive holds `{}`, which would land outside {}; stopped there",
                name.display(),
                dest.display()
            )
        };
        if name.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(outside());
        }
        if !entry.unpack_in(dest)? {
            return Err(outside());
        }
        count += 1;
    }
    Ok(count)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
