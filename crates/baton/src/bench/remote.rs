//! `baton bench remote`: remote terminals beside OpenSSH, in one run on one machine.
//!
//! 1. **Keystroke to echo.** The bench starts `baton serve` and the real `baton-agent`
//!    (`[remote] terminal = true`, `/bin/sh`) as child processes, opens a session and attaches
//!    as `baton terminal` does; then it sends one key at a time and waits until the device's
//!    terminal echoes it (the kernel's line discipline echoes, as for any shell at a prompt).
//!    The peer ([`super::sshd`]) is the same through its own `sshd` and `ssh -tt … /bin/sh`.
//! 2. **Memory per open session.** `--sessions` idle sessions spread over `--agents` agents:
//!    the server's RSS before and after, divided by their number (and the agents' likewise); for
//!    the peer, sshd's processes per idle `ssh` session.
//!
//! Linux only (reads /proc).

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::{devices::DeviceQuery, enrollment::EnrollmentTokenCreate, remote::SessionCreate};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use super::{
    Server,
    keys::{Keyboard, PATIENCE, keystrokes, until},
    mib, proc, sshd, start_server_with, uuid_like,
};

#[derive(clap::Args)]
pub struct RemoteArgs {
    /// Keystrokes timed on each side, one at a time.
    #[arg(long, default_value_t = 2_000)]
    keystrokes: usize,
    /// Idle sessions held open for Baton's memory per session (0 skips it).
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// Agents those sessions are spread over (the server opens at most 256 streams per agent).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    agents: u32,
    /// Idle `ssh` sessions for sshd's memory per session (0 skips it).
    #[arg(long, default_value_t = 20)]
    ssh_sessions: usize,
    /// Leave out the OpenSSH peer (needs /usr/sbin/sshd: apt-get install openssh-server).
    #[arg(long)]
    no_ssh: bool,
}

/// Streams the server opens at most on one agent connection (`agents/streams.rs`).
const STREAMS_PER_AGENT: usize = 256;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Keyboard for Ws {
    async fn type_in(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send(Message::Binary(bytes.to_vec().into())).await.context("sending to the session")
    }

    async fn output(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            match self.next().await.context("the session's WebSocket ended")?? {
                Message::Binary(bytes) => return Ok(bytes.to_vec()),
                Message::Text(text) if text.contains("\"closed\"") => anyhow::bail!("the session ended: {text}"),
                _ => {}
            }
        }
    }
}

/// A real `baton-agent` with terminals on, against the bench's server; killed when dropped.
pub(super) struct Agent {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(server: &str, token: &str, serial: &str) -> anyhow::Result<Agent> {
    start_agent_with(server, token, serial, "terminal = true\nshell = \"/bin/sh\"\n")
}

/// A real `baton-agent` whose `[remote]` table is `remote`.
pub(super) fn start_agent_with(server: &str, token: &str, serial: &str, remote: &str) -> anyhow::Result<Agent> {
    let binary = std::env::current_exe()?.with_file_name(format!("baton-agent{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(binary.exists(), "{} is missing: cargo build --release -p baton-agent", binary.display());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "server = \"{server}\"\nenrollment_token = \"{token}\"\nserial = \"{serial}\"\nstate_dir = \"{}\"\n\n\
             [remote]\n{remote}",
            state.display()
        ),
    )?;
    let child = std::process::Command::new(binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    Ok(Agent { child, _dir: dir })
}

/// The device id of `serial`, once it is online.
pub(super) async fn online(client: &Client, serial: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let query = DeviceQuery { q: Some(serial.into()), online: Some(true), ..DeviceQuery::default() };
        if let Some(d) = client.devices(&query).await?.items.into_iter().find(|d| d.serial.as_deref() == Some(serial)) {
            return Ok(d.id);
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "the agent {serial} did not come online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a terminal on `device` and attaches to it.
async fn attach(client: &Client, device: &str) -> anyhow::Result<Ws> {
    let req = SessionCreate { cols: Some(80), rows: Some(24), ..Default::default() };
    let ticket = client.open_session(device, &req).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(client.attach_url(&ticket), None, true).await?;
    match ws.next().await.context("the attach WebSocket ended")?? {
        Message::Text(text) if text.contains("\"opened\"") => Ok(ws),
        other => anyhow::bail!("the session did not open: {other}"),
    }
}

/// The figures of one run.
struct Figures {
    baton: Vec<Duration>,
    ssh: anyhow::Result<Vec<Duration>>,
    memory: Option<Memory>,
    ssh_memory: anyhow::Result<sshd::Memory>,
}

/// Baton's memory for idle sessions.
struct Memory {
    sessions: usize,
    server_before: u64,
    server_after: u64,
    agents_before: u64,
    agents_after: u64,
}

pub async fn run(a: RemoteArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.keystrokes > 0, "--keystrokes must be at least 1");
    anyhow::ensure!(
        a.sessions <= STREAMS_PER_AGENT * a.agents as usize,
        "an agent holds at most {STREAMS_PER_AGENT} sessions: pass --agents {} or more",
        a.sessions.div_ceil(STREAMS_PER_AGENT)
    );
    let token = format!("bench-{}", uuid_like());
    let env = [
        ("BATON_REMOTE_SESSIONS_PER_DEVICE", (a.sessions + 1).to_string()),
        ("BATON_REMOTE_SESSIONS_PER_TENANT", (a.sessions + 8).to_string()),
    ];
    let server = start_server_with(&token, &env)?;
    let client = Client::new(&server.url, Some(token), None)?;
    let enrollment =
        client.create_enrollment_token(&EnrollmentTokenCreate { name: "bench".into(), ..Default::default() }).await?;
    let mut agents = Vec::new();
    let mut devices = Vec::new();
    for i in 1..=a.agents {
        let serial = format!("bench-remote-{i}");
        agents.push(start_agent(&server.url, &enrollment.secret, &serial)?);
        devices.push(online(&client, &serial).await?);
    }
    println!("server {} (pid {}), {} agent(s) with terminals on", server.url, server.child.id(), agents.len());

    let mut ws = attach(&client, &devices[0]).await?;
    let baton = keystrokes(&mut ws, a.keystrokes).await?;
    let _ = ws.close(None).await;
    let ssh_peer = if a.no_ssh { None } else { Some(sshd::Sshd::start().await) };
    let ssh = match &ssh_peer {
        None => Err(anyhow::anyhow!("left out (--no-ssh)")),
        Some(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
        Some(Ok(peer)) => peer.keystrokes(a.keystrokes).await,
    };
    let memory =
        if a.sessions > 0 { Some(memory(&server, &client, &devices, &agents, a.sessions).await?) } else { None };
    let ssh_memory = match &ssh_peer {
        Some(Ok(peer)) if a.ssh_sessions > 0 => peer.memory(a.ssh_sessions).await,
        Some(Ok(_)) => Err(anyhow::anyhow!("left out (--ssh-sessions 0)")),
        _ => Err(anyhow::anyhow!("no sshd")),
    };
    print(&Figures { baton, ssh, memory, ssh_memory }, a.keystrokes);
    Ok(())
}

async fn memory(
    server: &Server,
    client: &Client,
    devices: &[String],
    agents: &[Agent],
    sessions: usize,
) -> anyhow::Result<Memory> {
    let agents_rss = || -> anyhow::Result<u64> { agents.iter().map(|a| proc::rss_bytes(a.child.id())).sum() };
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await; // the keystroke session's end settles
    let (server_before, agents_before) = (proc::rss_bytes(pid)?, agents_rss()?);
    let mut held = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let mut ws = attach(client, &devices[i % devices.len()]).await?;
        ws.type_in(b"echo re\"\"ady\n").await?;
        until(&mut ws, "ready").await?;
        held.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // let the open sessions' writes settle
    let memory = Memory {
        sessions,
        server_before,
        server_after: proc::rss_bytes(pid)?,
        agents_before,
        agents_after: agents_rss()?,
    };
    drop(held);
    Ok(memory)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print(f: &Figures, n: usize) {
    let (p50, p99) = (proc::percentile(&f.baton, 50.0), proc::percentile(&f.baton, 99.0));
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| Baton keystroke → echo, p50 / p99 / max of {n} | {:.2} ms / {:.2} ms / {:.2} ms |",
        ms(p50),
        ms(p99),
        ms(f.baton[n - 1])
    );
    match &f.ssh {
        Ok(s) => {
            let (s50, s99) = (proc::percentile(s, 50.0), proc::percentile(s, 99.0));
            println!(
                "| OpenSSH keystroke → echo, p50 / p99 / max of {n} | {:.2} ms / {:.2} ms / {:.2} ms |",
                ms(s50),
                ms(s99),
                ms(s[n - 1])
            );
            let over = ms(p99) - ms(s99);
            let verdict = if over <= 2.0 { "met" } else { "missed" };
            println!(
                "| Baton − OpenSSH, p50 / p99 | {:+.2} ms / {over:+.2} ms (goal p99 ≤ +2 ms: {verdict}) |",
                ms(p50) - ms(s50)
            );
        }
        Err(e) => println!("| OpenSSH keystroke → echo | not measured: {e} |"),
    }
    if let Some(m) = &f.memory {
        let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / m.sessions as f64 / 1024.0;
        let server = per(m.server_before, m.server_after);
        let verdict = if server <= 64.0 { "met" } else { "missed" };
        println!(
            "| Baton server RSS before → with {} idle sessions | {:.1} MiB → {:.1} MiB |",
            m.sessions,
            mib(m.server_before),
            mib(m.server_after)
        );
        println!("| **Baton server memory per open session** | **{server:.1} KiB** (goal ≤ 64 KiB: {verdict}) |");
        println!(
            "| Baton agents' memory per open session (the device side; PTY, two threads) | {:.1} KiB |",
            per(m.agents_before, m.agents_after)
        );
    }
    match &f.ssh_memory {
        Ok(m) => println!(
            "| OpenSSH sshd memory per idle session ({} sessions; PSS / RSS of its processes) | {:.1} KiB / {:.1} KiB |",
            m.sessions,
            m.pss_per_session / 1024.0,
            m.rss_per_session / 1024.0
        ),
        Err(e) => println!("| OpenSSH sshd memory per session | not measured: {e} |"),
    }
}
