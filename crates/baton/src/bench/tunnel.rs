//! `baton bench tunnel`: port forwarding through the server beside `ssh -L`, in one run on one
//! machine. The bench starts `baton serve` and the real `baton-agent` (`[remote] tunnel_ports`
//! allowing its targets) as child processes, three TCP servers of its own as the device's
//! services ([`super::tunnel_targets`]: a source, a sink, an echo), and the real `baton
//! port-forward` (this binary) forwarding a local port to each; then `ssh -N -L` to the same three
//! through its own `sshd` ([`super::sshd`]). Through each it times one connection reading
//! `--mb` MB from the source, 10 connections at once reading a tenth each, and one connection
//! sending `--mb` MB to the sink (`--runs` times, the median counts). Before those, while the
//! heaps are still small, it holds `--idle` connections open through one session (each answered
//! by the echo once) and divides the server's growth in resident memory by their number; and
//! sshd's likewise.
//!
//! Everything is on loopback, on the same 2 cores: the figures compare the two paths' own costs
//! (Baton's three hops and WebSocket framing against ssh's encryption), not a network.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::enrollment::EnrollmentTokenCreate;

use super::{
    mib, proc, remote, sshd, start_server_with,
    tunnel_targets::{Targets, download, idle, upload},
    uuid_like,
};

#[derive(clap::Args)]
pub struct TunnelArgs {
    /// MB (10^6 bytes) through one connection each way; 10 connections at once read a tenth each.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    mb: u64,
    /// Times each transfer runs (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Idle connections held through one session for the memory per connection (0 skips it).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=250))]
    idle: u64,
    /// Leave out the `ssh -L` peer (needs /usr/sbin/sshd: apt-get install openssh-server).
    #[arg(long)]
    no_ssh: bool,
}

/// Connections at once in the parallel figure.
const PARALLEL: u64 = 10;

/// The medians of one path, and the CPU its processes used per GB moved.
struct Rates {
    one_down: f64,
    parallel_down: f64,
    one_up: f64,
    /// CPU seconds per GB, for each of the path's processes (or groups of them), by name.
    cpu_per_gb: Vec<(&'static str, f64)>,
}

pub async fn run(a: TunnelArgs) -> anyhow::Result<()> {
    let targets = Targets::start().await?;
    let token = format!("bench-{}", uuid_like());
    let server = start_server_with(&token, &[])?;
    let client = Client::new(&server.url, Some(token.clone()), None)?;
    let enrollment =
        client.create_enrollment_token(&EnrollmentTokenCreate { name: "bench".into(), ..Default::default() }).await?;
    let ports: Vec<String> = targets.all().iter().map(|t| t.port().to_string()).collect();
    let remote_body = format!("tunnel_ports = [{}]\n", ports.join(", "));
    let agent = remote::start_agent_with(&server.url, &enrollment.secret, "bench-tunnel", &remote_body)?;
    remote::online(&client, "bench-tunnel").await?;
    let (mut forward, local) = port_forward(&server.url, &token, &targets)?;
    println!(
        "server {} (pid {}), one agent, `baton port-forward` (pid {}); {} MB",
        server.url,
        server.child.id(),
        forward.id(),
        a.mb
    );

    // Memory first, while no transfer has grown the processes' heaps.
    let memory = match a.idle {
        0 => None,
        n => Some(memory(&local, n as usize, &[server.child.id(), agent.pid(), forward.id()]).await?),
    };
    let bytes = a.mb * 1_000_000;
    let processes = [("server", vec![server.child.id()]), ("agent", vec![agent.pid()]), ("CLI", vec![forward.id()])];
    let baton = rates(&local, bytes, a.runs, &processes).await?;
    let _ = forward.kill();
    let _ = forward.wait();

    let peer = if a.no_ssh { Err(anyhow::anyhow!("left out (--no-ssh)")) } else { sshd::Sshd::start().await };
    let ssh = match &peer {
        Ok(peer) => ssh(peer, &targets, bytes, a.runs, a.idle as usize).await,
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    print(a.mb, a.runs, &baton, memory.as_ref(), &ssh);
    Ok(())
}

/// `baton port-forward` (this binary) to the three targets; its local addresses, in their order.
fn port_forward(server: &str, token: &str, targets: &Targets) -> anyhow::Result<(Child, [SocketAddr; 3])> {
    let config = tempfile::tempdir()?;
    let mappings = targets.all().map(|t| format!("0:{t}"));
    let mut child = Command::new(std::env::current_exe()?)
        .args(["port-forward", "bench-tunnel"])
        .args(&mappings)
        .env("BATON_CONFIG_DIR", config.path())
        .env("BATON_SERVER", server)
        .env("BATON_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut local = Vec::new();
    while local.len() < mappings.len() {
        let line = lines.next().context("baton port-forward ended before it forwarded")??;
        let addr = line.strip_prefix("Forwarding ").and_then(|r| r.split(" -> ").next());
        local.push(addr.with_context(|| format!("not a Forwarding line: {line}"))?.parse()?);
    }
    // Its later lines (none unless a connection fails) go nowhere.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, [local[0], local[1], local[2]]))
}

/// One path's medians through its `local` forwards of the source and the sink, and the CPU
/// time of its `processes` (each a name and the pids counted under it).
async fn rates(
    local: &[SocketAddr; 3],
    bytes: u64,
    runs: u32,
    processes: &[(&'static str, Vec<u32>)],
) -> anyhow::Result<Rates> {
    // A process that ended meanwhile (sshd's short-lived helpers) counts as none.
    let cpu = || -> Vec<Duration> {
        processes.iter().map(|(_, pids)| pids.iter().filter_map(|p| proc::cpu_time(*p).ok()).sum()).collect()
    };
    let cpu_before = cpu();
    let (mut one_down, mut parallel_down, mut one_up) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        download(local[0], bytes).await?;
        one_down.push(started.elapsed());
        let started = Instant::now();
        let each = bytes / PARALLEL;
        let all = (0..PARALLEL).map(|_| tokio::spawn(download(local[0], each)));
        for done in futures::future::join_all(all).await {
            done??;
        }
        parallel_down.push(started.elapsed());
        let started = Instant::now();
        upload(local[1], bytes).await?;
        one_up.push(started.elapsed());
    }
    let moved = f64::from(runs) * (bytes * 2 + bytes / PARALLEL * PARALLEL) as f64 / 1e9;
    let cpu_per_gb = processes
        .iter()
        .zip(cpu().into_iter().zip(cpu_before))
        .map(|((name, _), (after, before))| (*name, after.saturating_sub(before).as_secs_f64() / moved))
        .collect();
    let rate = |runs: &[Duration], bytes: u64| bytes as f64 / 1e6 / median(runs).as_secs_f64();
    Ok(Rates {
        one_down: rate(&one_down, bytes),
        parallel_down: rate(&parallel_down, bytes / PARALLEL * PARALLEL),
        one_up: rate(&one_up, bytes),
        cpu_per_gb,
    })
}

/// Resident memory (before, with them) of the server, the agent and `baton port-forward`, with
/// this many idle connections through one session.
struct Memory {
    connections: usize,
    rss: Vec<(u64, u64)>,
}

/// Resident memory of `pids` (server, agent, CLI) before and with `n` idle connections through
/// the echo forward.
async fn memory(local: &[SocketAddr; 3], n: usize, pids: &[u32]) -> anyhow::Result<Memory> {
    let rss = || -> anyhow::Result<Vec<u64>> { pids.iter().map(|p| proc::rss_bytes(*p)).collect() };
    let before = rss()?;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(idle(local[2]).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the allocations settle
    let after = rss()?;
    drop(held);
    Ok(Memory { connections: n, rss: before.into_iter().zip(after).collect() })
}

/// The `ssh -L` peer: its rates, and sshd's memory (PSS, RSS) per idle forwarded connection.
async fn ssh(
    peer: &sshd::Sshd,
    targets: &Targets,
    bytes: u64,
    runs: u32,
    n: usize,
) -> anyhow::Result<(Rates, Option<(f64, f64)>)> {
    let (client, local) = peer.forward(&targets.all()).await?;
    let local = [local[0], local[1], local[2]];
    // sshd forks for the session: its processes once the client is through.
    let processes = [("ssh", client.id().into_iter().collect()), ("sshd", peer.pids())];
    let mut memory = None;
    if n > 0 {
        let before = peer.footprint()?;
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(idle(local[2]).await?);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = peer.footprint()?;
        let per = |b: u64, a: u64| a.saturating_sub(b) as f64 / n as f64;
        memory = Some((per(before.0, after.0), per(before.1, after.1)));
    }
    Ok((rates(&local, bytes, runs, &processes).await?, memory))
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn print(
    mb: u64,
    runs: u32,
    baton: &Rates,
    memory: Option<&Memory>,
    ssh: &anyhow::Result<(Rates, Option<(f64, f64)>)>,
) {
    println!();
    println!("| figure ({mb} MB, median of {runs} runs) | Baton | ssh -L | Baton ÷ ssh (goal ≥ 1.0×) |");
    println!("|---|---|---|---|");
    let rows = [
        ("one connection, device → client", baton.one_down, ssh.as_ref().ok().map(|s| s.0.one_down)),
        ("10 connections at once, device → client", baton.parallel_down, ssh.as_ref().ok().map(|s| s.0.parallel_down)),
        ("one connection, client → device", baton.one_up, ssh.as_ref().ok().map(|s| s.0.one_up)),
    ];
    for (what, ours, theirs) in rows {
        match theirs {
            Some(theirs) => {
                let ratio = ours / theirs;
                let verdict = if ratio >= 1.0 { "met" } else { "missed" };
                println!("| {what} | {ours:.0} MB/s | {theirs:.0} MB/s | **{ratio:.2}×** ({verdict}) |");
            }
            None => println!("| {what} | {ours:.0} MB/s | — | — |"),
        }
    }
    let cpu = |r: &Rates| {
        let parts: Vec<String> = r.cpu_per_gb.iter().map(|(name, s)| format!("{name} {s:.2}")).collect();
        let total: f64 = r.cpu_per_gb.iter().map(|(_, s)| s).sum();
        format!("{total:.2} s ({})", parts.join(", "))
    };
    let theirs = ssh.as_ref().map_or_else(|_| "—".to_owned(), |s| cpu(&s.0));
    println!("| CPU time per GB moved, all of the path's processes | {} | {theirs} | |", cpu(baton));
    if let Some(m) = memory {
        let per = |(b, a): (u64, u64)| a.saturating_sub(b) as f64 / 1024.0 / m.connections as f64;
        println!();
        println!("| memory, {} idle connections through one session | value |", m.connections);
        println!("|---|---|");
        println!("| Baton server RSS before → with them | {:.1} MiB → {:.1} MiB |", mib(m.rss[0].0), mib(m.rss[0].1));
        let who = ["**server**", "agent (the device side)", "`baton port-forward` (the client side)"];
        for (who, rss) in who.iter().zip(&m.rss) {
            println!("| Baton {who} per idle connection | {:.1} KiB |", per(*rss));
        }
    }
    match ssh {
        Ok((_, Some((pss, rss)))) => {
            println!(
                "| OpenSSH sshd per idle forwarded connection (PSS / RSS) | {:.1} KiB / {:.1} KiB |",
                pss / 1024.0,
                rss / 1024.0
            )
        }
        Ok((_, None)) => {}
        Err(e) => println!("| ssh -L | not measured: {e:#} |"),
    }
}
