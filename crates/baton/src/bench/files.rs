//! `baton bench files`: file transfer through the server beside `scp`, in one run on one
//! machine. The bench starts `baton serve` and the real `baton-agent` (`[remote] files = true`,
//! a fresh directory as `file_paths`) as child processes and times the real `baton cp` (this
//! binary) copying a file of random bytes up to the device and back down — SHA-256 on both ends,
//! the server relaying every byte over the agent's WebSocket — then `scp` the same file up and
//! down through its own `sshd` ([`super::sshd`]). Each direction runs `--runs` times; the median
//! counts. Everything is on loopback and the same disk, so the figures compare the two paths'
//! own costs (protocol, copies, hashing, encryption for scp), not a network.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::enrollment::EnrollmentTokenCreate;
use sha2::Digest;

use super::{remote, sshd, start_server_with, uuid_like};

#[derive(clap::Args)]
pub struct FilesArgs {
    /// Size of the file copied, in MB (10^6 bytes).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=4000))]
    mb: u64,
    /// Copies timed in each direction (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Leave out the scp peer (needs /usr/sbin/sshd: apt-get install openssh-server).
    #[arg(long)]
    no_ssh: bool,
}

pub async fn run(a: FilesArgs) -> anyhow::Result<()> {
    let token = format!("bench-{}", uuid_like());
    let server = start_server_with(&token, &[])?;
    let client = Client::new(&server.url, Some(token.clone()), None)?;
    let enrollment =
        client.create_enrollment_token(&EnrollmentTokenCreate { name: "bench".into(), ..Default::default() }).await?;
    let device_dir = tempfile::tempdir()?;
    let remote_body = format!("files = true\nfile_paths = [\"{}\"]\n", device_dir.path().display());
    let _agent = remote::start_agent_with(&server.url, &enrollment.secret, "bench-files", &remote_body)?;
    let device = remote::online(&client, "bench-files").await?;
    let here = tempfile::tempdir()?;
    let local = here.path().join("file.bin");
    let bytes = a.mb * 1_000_000;
    write_random(&local, bytes)?;
    println!("server {} (pid {}), one agent with files on; {} MB of random bytes", server.url, server.child.id(), a.mb);

    let up_target = device_dir.path().join("up.bin");
    let down = here.path().join("down.bin");
    let remote_up = format!("{device}:{}", up_target.display());
    let mut baton_up = Vec::new();
    let mut baton_down = Vec::new();
    for _ in 0..a.runs {
        let _ = std::fs::remove_file(&up_target);
        baton_up.push(cp(&server.url, &token, &local.display().to_string(), &remote_up)?);
        let _ = std::fs::remove_file(&down);
        baton_down.push(cp(&server.url, &token, &remote_up, &down.display().to_string())?);
    }
    let sha = sha256(&local)?;
    anyhow::ensure!(sha256(&up_target)? == sha && sha256(&down)? == sha, "a copy differs from the original");

    let peer = if a.no_ssh { Err(anyhow::anyhow!("left out (--no-ssh)")) } else { sshd::Sshd::start().await };
    let scp = match &peer {
        Ok(peer) => scp_runs(peer, &local, device_dir.path(), &down, a.runs, &sha).await,
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    print(bytes, &baton_up, &baton_down, &scp);
    Ok(())
}

/// One `baton cp` (this binary), timed.
fn cp(server: &str, token: &str, from: &str, to: &str) -> anyhow::Result<Duration> {
    let config = tempfile::tempdir()?;
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(["cp", "--no-resume", from, to])
        .env("BATON_CONFIG_DIR", config.path())
        .env("BATON_SERVER", server)
        .env("BATON_TOKEN", token)
        .stdin(Stdio::null())
        .output()?;
    let took = started.elapsed();
    anyhow::ensure!(out.status.success(), "baton cp {from} {to} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(took)
}

async fn scp_runs(
    peer: &sshd::Sshd,
    local: &Path,
    device_dir: &Path,
    down: &Path,
    runs: u32,
    sha: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let target = device_dir.join("scp.bin");
    let (mut up, mut back) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_file(&target);
        let started = Instant::now();
        peer.scp(&local.display().to_string(), &peer.remote(&target)).await?;
        up.push(started.elapsed());
        let _ = std::fs::remove_file(down);
        let started = Instant::now();
        peer.scp(&peer.remote(&target), &down.display().to_string()).await?;
        back.push(started.elapsed());
    }
    anyhow::ensure!(sha256(&target)? == sha && sha256(down)? == sha, "an scp copy differs from the original");
    Ok((up, back))
}

fn write_random(path: &Path, len: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush().context("writing the bench file")
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

fn print(bytes: u64, up: &[Duration], down: &[Duration], scp: &anyhow::Result<(Vec<Duration>, Vec<Duration>)>) {
    let (up, down) = (rate(bytes, median(up)), rate(bytes, median(down)));
    println!();
    println!(
        "| figure ({} MB, median of {} runs) | value |",
        bytes / 1_000_000,
        scp.as_ref().map_or(0, |s| s.0.len()).max(1)
    );
    println!("|---|---|");
    println!("| `baton cp` up (local → server → agent → disk, SHA-256 checked) | {up:.0} MB/s |");
    println!("| `baton cp` down (disk → agent → server → local, SHA-256 checked) | {down:.0} MB/s |");
    match scp {
        Ok((su, sd)) => {
            let (su, sd) = (rate(bytes, median(su)), rate(bytes, median(sd)));
            println!("| `scp` up to the local sshd | {su:.0} MB/s |");
            println!("| `scp` down from the local sshd | {sd:.0} MB/s |");
            let verdict = |r: f64| if r >= 1.0 { "met" } else { "missed" };
            println!(
                "| **Baton ÷ scp**, up / down | **{:.2}× / {:.2}×** (goal ≥ 1.0×: {} / {}) |",
                up / su,
                down / sd,
                verdict(up / su),
                verdict(down / sd)
            );
        }
        Err(e) => println!("| scp | not measured: {e:#} |"),
    }
}
