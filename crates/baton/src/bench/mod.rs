//! `baton bench fleet`: the fleet benchmark. It starts `baton serve` as a child process on a
//! fresh embedded database, connects a simulated fleet from this process, and measures what
//! operators size servers by — time until every device is online, server memory per connected
//! device, telemetry points stored per second, command round trip — then the real agent's idle
//! footprint. As a peer measured in the same run, it opens idle MQTT connections to the local
//! Mosquitto and reports its memory per connection beside Baton's. Linux only (reads /proc).
//!
//! `baton bench mqtt` ([`mqtt`]) measures the MQTT front door beside Mosquitto: QoS 1 telemetry
//! throughput and memory per idle connection. `baton bench ingest` ([`ingest`]) pushes agent
//! telemetry batches over the agent WebSocket at saturation.
//!
//! `baton bench console` ([`console`]) measures the web console's pages and chart data over
//! 10,000 devices and a week of telemetry, beside the JSON API.
//!
//! `baton bench ota` ([`ota`]) measures a fleet downloading one update artifact, beside nginx
//! serving the same file.
//!
//! `baton bench files` ([`files`]) measures `baton cp` up and down through the server, beside
//! `scp` to a local `sshd`.
//!
//! `baton bench tunnel` ([`tunnel`]) measures `baton port-forward` beside `ssh -L` to a local
//! `sshd`: throughput, and server memory per idle connection.
//!
//! `baton bench remote` ([`remote`]) measures remote terminals — keystroke to echo, server
//! memory per open session — beside OpenSSH ([`sshd`]).

mod console;
mod files;
mod fleet_figures;
mod ingest;
mod keys;
mod mqtt;
mod ota;
mod peer;
mod proc;
mod remote;
mod sshd;
mod tunnel;
mod tunnel_targets;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::{
    commands::{CommandCreate, CommandSpec, CommandTarget},
    devices::DeviceQuery,
    enrollment::EnrollmentTokenCreate,
};

use crate::sim::fleet::{FleetConfig, Progress, run_fleet};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run the servers the bench starts on PostgreSQL instead of the embedded SQLite: a server
    /// URL ending in a database the bench may connect to (e.g. postgres://postgres@127.0.0.1/test);
    /// each server gets a fresh database of its own on that server, dropped afterwards.
    #[arg(long, global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    what: BenchCommand,
}

/// `--database-url`, for every server a bench starts.
static DATABASE_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `-o`: the figures as a table (default) or one JSON/YAML document.
static OUTPUT: std::sync::OnceLock<crate::output::Format> = std::sync::OnceLock::new();

/// How the figures are printed; progress goes to stderr whenever this is not a table.
fn output() -> crate::output::Format {
    OUTPUT.get().copied().unwrap_or(crate::output::Format::Table)
}

/// Which database the servers run on, for the figures' headings.
fn database_name() -> &'static str {
    if DATABASE_URL.get().is_some() { "PostgreSQL" } else { "SQLite" }
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// A simulated fleet against one server.
    Fleet(FleetArgs),
    /// The MQTT front door beside Mosquitto: QoS 1 telemetry throughput and memory per idle
    /// connection.
    Mqtt(mqtt::MqttArgs),
    /// Telemetry through the agent's batch path at saturation: points stored (committed) per
    /// second.
    Ingest(ingest::IngestArgs),
    /// The web console's pages and chart data over 10,000 devices and a week of telemetry,
    /// beside the JSON API.
    Console(console::ConsoleArgs),
    /// A fleet downloading one update artifact, beside nginx serving the same file; and how
    /// long such a rollout takes.
    Ota(ota::OtaArgs),
    /// Remote terminals beside OpenSSH: keystroke to echo, and server memory per open session.
    Remote(remote::RemoteArgs),
    /// File transfer through the server (`baton cp` up and down) beside `scp` to a local sshd.
    Files(files::FilesArgs),
    /// Port forwarding through the server (`baton port-forward`) beside `ssh -L` to a local sshd:
    /// throughput of one and of 10 connections, and server memory per idle connection.
    Tunnel(tunnel::TunnelArgs),
}

#[derive(clap::Args)]
pub struct FleetArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000)]
    devices: u32,
    /// Telemetry interval of every device, in seconds.
    #[arg(long, default_value_t = 10)]
    telemetry_interval: u32,
    /// Seconds over which telemetry throughput is measured.
    #[arg(long, default_value_t = 30)]
    measure_secs: u64,
    /// Single-device pings timed one after another.
    #[arg(long, default_value_t = 200)]
    pings: usize,
    /// Idle MQTT connections opened to the local Mosquitto as the peer (0 to skip).
    #[arg(long, default_value_t = 2_000)]
    peer_connections: usize,
}

/// Runs a bench; `output` is the CLI's `-o` (the benches that honour it print their figures as
/// one document on stdout, the rest only as tables).
pub async fn run(args: BenchArgs, output: crate::output::Format) -> anyhow::Result<()> {
    let _ = OUTPUT.set(output);
    if let Some(url) = args.database_url {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database-url takes a postgres:// URL (the embedded SQLite is the default)"
        );
        let _ = DATABASE_URL.set(url);
    }
    match args.what {
        BenchCommand::Fleet(a) => fleet(a).await,
        BenchCommand::Mqtt(a) => mqtt::run(a, output).await,
        BenchCommand::Ingest(a) => ingest::run(a, output).await,
        BenchCommand::Console(a) => console::run(a).await,
        BenchCommand::Ota(a) => ota::run(a, output == crate::output::Format::Json).await,
        BenchCommand::Remote(a) => remote::run(a).await,
        BenchCommand::Files(a) => files::run(a).await,
        BenchCommand::Tunnel(a) => tunnel::run(a).await,
    }
}

/// The server under test.
struct Server {
    child: Child,
    url: String,
    /// Where plain MQTT listens, from the banner.
    mqtt: Option<String>,
    /// The fresh data dir, removed with the server; `None` when the caller owns the data dir.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database made for this data dir (`--database-url`), dropped with the
    /// server when the server owns its data dir.
    database: Option<BenchDatabase>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let (Some(_), Some(db)) = (&self._dir, &self.database) {
            db.drop_database();
        }
    }
}

/// A database of its own on the `--database-url` server, named after the data dir it belongs
/// to (a bench that restarts its server on the same data dir finds the same database).
struct BenchDatabase {
    /// The server's URL, as given.
    admin_url: String,
    name: String,
}

impl BenchDatabase {
    fn for_data_dir(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let Some(admin_url) = DATABASE_URL.get() else { return Ok(None) };
        let marker = data_dir.join("bench-database");
        if let Ok(name) = std::fs::read_to_string(&marker) {
            return Ok(Some(Self { admin_url: admin_url.clone(), name }));
        }
        let name = format!("baton_bench_{}", uuid_like().replace('-', "_"));
        Self::psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        std::fs::write(&marker, &name)?;
        Ok(Some(Self { admin_url: admin_url.clone(), name }))
    }

    /// The URL the server is given.
    fn url(&self) -> anyhow::Result<String> {
        let (server, _) = self.admin_url.rsplit_once('/').context("--database-url must end in /<database>")?;
        Ok(format!("{server}/{}", self.name))
    }

    fn drop_database(&self) {
        if let Err(e) = Self::psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("warning: could not drop the bench database {}: {e:#}", self.name);
        }
    }

    fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
        let out = Command::new("psql")
            .args([url, "-qAtc", sql])
            .output()
            .context("running psql (apt-get install postgresql-client)")?;
        anyhow::ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        Ok(())
    }
}

fn start_server(token: &str, interval: u32) -> anyhow::Result<Server> {
    start_server_with(token, &[("BATON_TELEMETRY_INTERVAL_SECS", interval.to_string())])
}

/// Starts the server on a fresh data dir with the bench's settings plus `env`, which may
/// override them.
fn start_server_with(token: &str, env: &[(&str, String)]) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut server = start_server_in(dir.path(), token, env)?;
    server._dir = Some(dir);
    Ok(server)
}

/// Starts the server on `data_dir`, which outlives it (a bench that restarts the server keeps
/// its database).
fn start_server_in(data_dir: &Path, token: &str, env: &[(&str, String)]) -> anyhow::Result<Server> {
    let database = BenchDatabase::for_data_dir(data_dir)?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("BATON_BOOTSTRAP_TOKEN", token)
        .env("BATON_DEVICE_CONNECTS_PER_SECOND", "100000")
        .env("BATON_DEVICE_CONNECT_BURST", "100000")
        // Every simulated device connects from this one address.
        .env("BATON_MAX_CONNECTIONS_PER_SOURCE", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(db) = &database {
        command.arg("--database-url").arg(db.url()?);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("server stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut url = None;
    let mut mqtt = None;
    // The banner: the URL, then one line per listener, then how to sign in.
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).context("the server did not start")?;
        if let Some(u) = line.strip_prefix("Baton is listening on ") {
            url = Some(u.trim().to_owned());
        } else if let Some(rest) = line.trim_start().strip_prefix("MQTT:") {
            mqtt = rest.split_whitespace().next().map(str::to_owned);
        } else if line.trim_start().starts_with("Sign in:") && url.is_some() {
            break;
        }
    }
    let url = url.context("the server printed no URL")?;
    Ok(Server { child, url, mqtt, _dir: None, database })
}

/// A number from the server's /metrics.
async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn fleet(a: FleetArgs) -> anyhow::Result<()> {
    let token = format!("bench-{}", uuid_like());
    let server = start_server(&token, a.telemetry_interval)?;
    let pid = server.child.id();
    let client = Client::new(&server.url, Some(token), None)?;
    let idle_rss = proc::rss_bytes(pid)?;
    let enrollment =
        client.create_enrollment_token(&EnrollmentTokenCreate { name: "bench".into(), ..Default::default() }).await?;
    eprintln!(
        "server {} (pid {pid}, {}), {} devices, telemetry every {} s",
        server.url,
        database_name(),
        a.devices,
        a.telemetry_interval
    );

    // 1. Time until every device is online.
    let config = FleetConfig {
        server: server.url.clone(),
        enrollment_token: enrollment.secret.clone(),
        devices: a.devices,
        prefix: "bench".into(),
        fail_rate: 0.0,
        flap_rate: 0.0,
        connect_rate: 5_000,
        ca_cert: None,
        terminal: false,
        sandbox: None,
    };
    let (progress, _) = tokio::sync::watch::channel(Progress::default());
    let (stop_fleet, fleet_stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let fleet = tokio::spawn(run_fleet(config, progress, async {
        let _ = fleet_stopped.await;
    }));
    let bar = indicatif::ProgressBar::new(u64::from(a.devices)).with_message("devices online");
    loop {
        let online = metric(&server.url, "baton_agents_connected").await? as u64;
        bar.set_position(online);
        if online >= u64::from(a.devices) {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "not every device came online within 15 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
    let all_online = started.elapsed();
    let pool_wait_enrolling = fleet_figures::pool_waits(&server.url).await?;
    tokio::time::sleep(Duration::from_secs(5)).await; // let the first telemetry round settle before measuring memory
    let loaded_rss = proc::rss_bytes(pid)?;

    // 2. Telemetry stored per second, over the measuring window.
    let before = metric(&server.url, "baton_telemetry_points_stored_total").await?;
    let cpu_before = proc::cpu_time(pid)?;
    tokio::time::sleep(Duration::from_secs(a.measure_secs)).await;
    let stored = metric(&server.url, "baton_telemetry_points_stored_total").await? - before;
    let server_cpu = (proc::cpu_time(pid)? - cpu_before).as_secs_f64() / a.measure_secs as f64;
    let points_per_sec = stored / a.measure_secs as f64;

    // 3. Command round trip: one device at a time, server clock, created → finished.
    let some = client.devices(&DeviceQuery { limit: Some(500), online: Some(true), ..Default::default() }).await?.items;
    anyhow::ensure!(!some.is_empty(), "no online device to ping");
    let mut rtts = Vec::with_capacity(a.pings);
    for i in 0..a.pings {
        let device = &some[i % some.len()];
        let target = CommandTarget { device_ids: vec![device.id.clone()], ..Default::default() };
        let req = CommandCreate { target, command: CommandSpec::Ping, ttl_secs: Some(60), idempotency_key: None };
        let batch = client.create_commands(&req).await?;
        let query = baton_proto::api::commands::CommandQuery { batch: Some(batch.id), ..Default::default() };
        let id = client.commands(&query).await?.items.first().map(|c| c.id.clone()).context("the ping")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = client.command(&id).await?;
            if let Some(done) = c.finished_at.filter(|_| c.state.is_final()) {
                rtts.push((done - c.created_at).to_std().unwrap_or_default());
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "a ping did not come back within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    rtts.sort();

    // 4. One ping to the whole fleet at once.
    let everyone = CommandTarget { labels: None, group: None, device_ids: vec![] };
    let all = CommandCreate {
        target: CommandTarget { labels: Some("!nonexistent-label".into()), ..everyone },
        command: CommandSpec::Ping,
        ttl_secs: Some(600),
        idempotency_key: None,
    };
    let fan_started = Instant::now();
    let batch = client.create_commands(&all).await?;
    let fan_out_create = fan_started.elapsed();
    loop {
        let b = client.command_batch(&batch.id).await?;
        if b.finished() >= b.total {
            break;
        }
        anyhow::ensure!(fan_started.elapsed() < Duration::from_secs(600), "the fleet-wide ping did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fan_out = fan_started.elapsed();
    let pool_wait_fan_out = fleet_figures::pool_waits(&server.url).await?;
    let fan_out_spread = fleet_figures::fan_out_spread(&client, &batch.id).await?;
    let _ = stop_fleet.send(());
    let _ = fleet.await;

    // 5. The real agent, idle, against the same server.
    let agent = agent_footprint(&server.url, &enrollment.secret).await;

    // 6. The peer: Mosquitto's memory per idle MQTT connection, same machine, same run.
    let peer = if a.peer_connections > 0 {
        peer::mosquitto_per_connection(a.peer_connections).await
    } else {
        Err(anyhow::anyhow!("skipped"))
    };

    let per_device = loaded_rss.saturating_sub(idle_rss) as f64 / f64::from(a.devices);
    let figures = fleet_figures::FleetFigures {
        database: database_name(),
        devices: a.devices,
        all_online_secs: all_online.as_secs_f64(),
        server_rss_idle_mib: mib(idle_rss),
        server_rss_connected_mib: mib(loaded_rss),
        server_kib_per_device: per_device / 1024.0,
        mosquitto_kib_per_connection: peer.as_ref().ok().map(|bytes| bytes / 1024.0),
        telemetry_points_per_sec: points_per_sec,
        server_cpu_storing: server_cpu,
        ping_one_p50_ms: proc::percentile(&rtts, 50.0).as_secs_f64() * 1000.0,
        ping_one_p99_ms: proc::percentile(&rtts, 99.0).as_secs_f64() * 1000.0,
        fan_out_all_answered_secs: fan_out.as_secs_f64(),
        fan_out_create_ms: fan_out_create.as_secs_f64() * 1000.0,
        fan_out: fan_out_spread,
        pool_wait_enrolling,
        pool_wait_fan_out,
        agent_rss_mib: agent.as_ref().ok().map(|f| mib(f.rss)),
        agent_cpu: agent.as_ref().ok().map(|f| f.cpu),
        agent_binary_mib: agent.as_ref().ok().map(|f| mib(f.binary)),
    };
    if let Err(e) = &peer {
        eprintln!("peer not measured: {e}");
    }
    if let Err(e) = &agent {
        eprintln!("agent footprint not measured: {e}");
    }
    figures.print(output(), a.pings, a.measure_secs, a.telemetry_interval)
}

struct Footprint {
    rss: u64,
    cpu: f64,
    binary: u64,
}

/// Runs the agent as devices get it against the server and measures it idle: the `agent`
/// profile's build (`target/agent/`) when there is one, else the `baton-agent` next to this
/// binary.
async fn agent_footprint(server: &str, token: &str) -> anyhow::Result<Footprint> {
    let name = format!("baton-agent{}", std::env::consts::EXE_SUFFIX);
    let beside: PathBuf = std::env::current_exe()?.with_file_name(&name);
    let packaged = beside.parent().and_then(Path::parent).map(|target| target.join("agent").join(&name));
    let binary = packaged.filter(|p| p.exists()).unwrap_or(beside);
    anyhow::ensure!(binary.exists(), "{} is missing: cargo build --profile agent -p baton-agent", binary.display());
    println!("agent measured: {}", binary.display());
    let state = tempfile::tempdir()?;
    let mut child = Command::new(&binary)
        .args(["run", "--server", server, "--token", token, "--serial", "BENCH-AGENT", "--state-dir"])
        .arg(state.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(10)).await; // started, enrolled, connected, first samples taken
    let cpu_before = proc::cpu_time(pid)?;
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let cpu = (proc::cpu_time(pid)? - cpu_before).as_secs_f64() / window.as_secs_f64();
    let rss = proc::rss_bytes(pid)?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(Footprint { rss, cpu, binary: std::fs::metadata(&binary)?.len() })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24).map(|_| char::from(b'a' + rng.random_range(0..26))).collect()
}
