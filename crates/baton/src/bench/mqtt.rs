//! `baton bench mqtt`: Baton's MQTT front door beside Mosquitto, in one run on one machine.
//!
//! 1. **Memory per idle connection.** `--idle` clients CONNECT (MQTT 3.1.1, keep-alive
//!    `--keep-alive`) and stay idle; the server's RSS before and after, divided by the count.
//!    Baton first, then Mosquitto: this process holds every client socket itself, and one process
//!    may hold at most `RLIMIT_NOFILE` descriptors (raised here to the hard limit; the servers
//!    inherit it).
//! 2. **QoS 1 telemetry throughput.** `--clients` connections, each keeping `--window` QoS 1
//!    publishes of a small JSON sample in flight, for `--secs` seconds after a warm-up:
//!    acknowledged messages per second and the server's CPU. Baton sends a PUBACK only once the
//!    values are stored (SQLite, committed and synced: `sqlite_synchronous = "full"`), and the run
//!    checks that the points stored match the acknowledged messages. The same load then runs on a
//!    second Baton with `sqlite_synchronous = "normal"` (synced only at checkpoints): the cost of
//!    surviving a power cut is the difference (`--no-normal-sync` skips it). Mosquitto only
//!    routes: one subscriber on `#` (QoS 1) consumes everything, and both acknowledged and
//!    delivered messages per second are reported.
//!
//! The client side is Baton's own codec (`baton_proto::mqtt`): a task per publishing connection
//! and none for idle ones (a socket in a list), so the generator stays small. Linux only.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::{
    api::{devices::DeviceCreate, enrollment::DeviceImport, telemetry::Latest},
    mqtt::{self, Ack, Connect, Packet, Properties, Publish, Subscribe, Subscription, Version},
};
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use super::{metric, mib, peer, proc};
use crate::output::Format;

#[derive(clap::Args)]
pub struct MqttArgs {
    /// Publishing clients in the throughput test (one device each).
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// QoS 1 publishes each client keeps in flight.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Seconds over which throughput is measured, after a warm-up.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Idle connections for memory per connection (0 skips that part).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Keep-alive the clients ask for, in seconds.
    #[arg(long, default_value_t = 600)]
    keep_alive: u16,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Skip the second Baton run, with `sqlite_synchronous = "normal"`.
    #[arg(long)]
    no_normal_sync: bool,
}

/// What every publish carries: two values, so two points stored per message.
const PAYLOAD: &[u8] = br#"{"temp":21.5,"hum":40}"#;
const POINTS_PER_MESSAGE: u64 = 2;
/// Descriptors this process needs besides the client sockets (HTTP client, stdio, runtime).
const SPARE_FDS: u64 = 200;
const WARM_UP: Duration = Duration::from_secs(3);
/// Longest wait for any one answer from a server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest packet the generator accepts.
const MAX_PACKET: usize = 64 * 1024;

pub async fn run(a: MqttArgs, output: Format) -> anyhow::Result<()> {
    anyhow::ensure!(a.clients > 0 && a.secs > 0, "--clients and --secs must be at least 1");
    anyhow::ensure!((1..=1000).contains(&a.window), "--window must be 1 to 1000");
    // Children (the servers measured) inherit the raised limit.
    let files = baton_server::app::files::raise_open_file_limit().unwrap_or(u64::MAX);
    let needed = a.idle.max(a.clients + 1) as u64 + SPARE_FDS;
    anyhow::ensure!(
        needed <= files,
        "{} connections need about {needed} open files in this process, and RLIMIT_NOFILE allows {files} \
         (its hard limit, which only root can raise); run with fewer: --idle {}",
        a.idle.max(a.clients),
        files.saturating_sub(SPARE_FDS)
    );

    let (server, token) = start_baton("full")?;
    let baton_addr = server.mqtt.clone().context("the server printed no MQTT address")?;
    let baton_pid = server.child.id();
    let client = Client::new(&server.url, Some(token), None)?;
    let broker = peer::start_mosquitto("").await?;
    let mosquitto = mosquitto_version();
    // With `-o json` stdout carries the figures alone.
    eprintln!(
        "Baton on {} {} (pid {baton_pid}, MQTT {baton_addr}); {mosquitto} (pid {}, {}); open files allowed: {files}",
        super::database_name(),
        server.url,
        broker.pid(),
        broker.address
    );

    // Devices and their credentials: one per connection (a device's second connection would
    // take over its first).
    let devices = a.idle.max(a.clients);
    let credentials = create_devices(&client, devices, a.connect_concurrency).await?;
    let baton_logins = logins(&credentials);
    let mosquitto_logins = |prefix: &str, n: usize| -> Vec<Login> {
        (0..n).map(|i| Login { client_id: format!("{prefix}-{i}"), username: None, password: None }).collect()
    };

    // 1. Memory per idle connection.
    let idle = if a.idle > 0 {
        tokio::time::sleep(Duration::from_secs(2)).await; // let device creation settle
        let baton = idle_memory("Baton", &baton_addr, baton_pid, &baton_logins[..a.idle], &a).await?;
        wait_disconnected(&server.url).await?;
        let peer =
            idle_memory("Mosquitto", &broker.address, broker.pid(), &mosquitto_logins("idle", a.idle), &a).await?;
        Some((baton, peer))
    } else {
        None
    };

    // 2. QoS 1 telemetry throughput.
    let points_before = metric(&server.url, "baton_telemetry_points_stored_total").await?;
    let rejected_before = metric(&server.url, "baton_mqtt_messages_rejected_total").await?;
    let baton_topics = vec!["baton/v1/me/telemetry".to_owned(); a.clients];
    let baton =
        throughput("Baton", &baton_addr, baton_pid, &baton_logins[..a.clients], baton_topics, false, &a).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let points = (metric(&server.url, "baton_telemetry_points_stored_total").await? - points_before) as u64;
    let rejected = (metric(&server.url, "baton_mqtt_messages_rejected_total").await? - rejected_before) as u64;
    let sample = client.latest_telemetry(&credentials[0].0).await?;
    // `sqlite_synchronous` is SQLite's: on PostgreSQL every commit is flushed.
    let normal =
        if a.no_normal_sync || super::database_name() != "SQLite" { None } else { Some(normal_sync(&a).await?) };
    // Mosquitto twice: as installed (20 QoS 1 messages in flight to a subscriber, 1,000 queued,
    // the rest dropped), and with no in-flight limit, so that every message reaches the subscriber.
    let peer_topics: Vec<String> = (0..a.clients).map(|i| format!("bench/{i}/telemetry")).collect();
    let publishers = mosquitto_logins("pub", a.clients);
    let stock =
        throughput("Mosquitto", &broker.address, broker.pid(), &publishers, peer_topics.clone(), true, &a).await?;
    drop(broker);
    let unlimited_broker = peer::start_mosquitto("max_inflight_messages 0\n").await?;
    let (address, pid) = (unlimited_broker.address.clone(), unlimited_broker.pid());
    let unlimited =
        throughput("Mosquitto, no in-flight limit", &address, pid, &publishers, peer_topics, true, &a).await?;
    drop(unlimited_broker);

    // The figures.
    let ratio = |b: f64, m: f64| if m > 0.0 { format!("{:.2}×", b / m) } else { "–".to_owned() };
    let ratios = |b: f64, m1: f64, m2: f64| format!("{} / {}", ratio(b, m1), ratio(b, m2));
    let per_cpu = |t: &Throughput| t.acked_per_sec / t.server_cpu.max(1e-9);
    let cpu = |t: &Throughput| format!("{:.0} % of one core", t.server_cpu * 100.0);
    let mut rows: Vec<[String; 5]> = vec![
        [
            format!(
                "QoS 1 messages acknowledged per second ({} clients × {} in flight, {} s)",
                a.clients, a.window, a.secs
            ),
            thousands(baton.acked_per_sec),
            thousands(stock.acked_per_sec),
            thousands(unlimited.acked_per_sec),
            ratios(baton.acked_per_sec, stock.acked_per_sec, unlimited.acked_per_sec),
        ],
        [
            "what a PUBACK means".into(),
            format!("stored ({}, committed and synced)", super::database_name()),
            "accepted for routing (in memory)".into(),
            "accepted for routing (in memory)".into(),
            String::new(),
        ],
        [
            "messages delivered per second".into(),
            format!(
                "stored: {} points/s ({POINTS_PER_MESSAGE} per message)",
                thousands(baton.acked_per_sec * POINTS_PER_MESSAGE as f64)
            ),
            format!("{} to one `#` subscriber (QoS 1)", thousands(stock.delivered_per_sec)),
            format!("{} to one `#` subscriber (QoS 1)", thousands(unlimited.delivered_per_sec)),
            ratios(baton.acked_per_sec, stock.delivered_per_sec, unlimited.delivered_per_sec),
        ],
        ["server CPU while publishing".into(), cpu(&baton), cpu(&stock), cpu(&unlimited), String::new()],
        [
            "acknowledged messages per server CPU-second".into(),
            thousands(per_cpu(&baton)),
            thousands(per_cpu(&stock)),
            thousands(per_cpu(&unlimited)),
            ratios(per_cpu(&baton), per_cpu(&stock), per_cpu(&unlimited)),
        ],
        [
            "server RSS after publishing".into(),
            format!("{:.1} MiB", mib(baton.rss_after)),
            format!("{:.1} MiB", mib(stock.rss_after)),
            format!("{:.1} MiB", mib(unlimited.rss_after)),
            String::new(),
        ],
        [
            "bench process (load generator) CPU".into(),
            format!("{:.0} % of one core", baton.generator_cpu * 100.0),
            format!("{:.0} % of one core", stock.generator_cpu * 100.0),
            format!("{:.0} % of one core", unlimited.generator_cpu * 100.0),
            String::new(),
        ],
    ];
    if let Some(n) = &normal {
        rows.push([
            "QoS 1 messages acknowledged per second, `sqlite_synchronous = \"normal\"` (a second Baton, same load)"
                .into(),
            format!(
                "{} (`full` above: {} of it)",
                thousands(n.acked_per_sec),
                ratio(baton.acked_per_sec, n.acked_per_sec)
            ),
            "–".into(),
            "–".into(),
            ratios(n.acked_per_sec, stock.acked_per_sec, unlimited.acked_per_sec),
        ]);
        rows.push(["server CPU while publishing, `normal`".into(), cpu(n), "–".into(), "–".into(), String::new()]);
    }
    let stored_ok = points == baton.acked_total * POINTS_PER_MESSAGE && rejected == 0;
    let fate = |t: &Throughput| {
        format!(
            "{} acked, {} delivered, {} not delivered (dropped, or still queued when the run ended)",
            thousands(t.acked_total as f64),
            thousands(t.delivered_total as f64),
            thousands(t.acked_total.saturating_sub(t.delivered_total) as f64)
        )
    };
    rows.push([
        "whole run: every acknowledged message stored / delivered?".into(),
        format!(
            "{}: {} acked, {} points stored, {rejected} rejected",
            if stored_ok { "yes" } else { "NO" },
            thousands(baton.acked_total as f64),
            thousands(points as f64)
        ),
        fate(&stock),
        fate(&unlimited),
        String::new(),
    ]);
    if let Some((b, m)) = &idle {
        let na = || "–".to_owned();
        rows.push([
            format!("idle connections (MQTT 3.1.1, keep-alive {} s)", a.keep_alive),
            thousands(b.connections as f64),
            thousands(m.connections as f64),
            na(),
            String::new(),
        ]);
        rows.push([
            format!("time to connect them all ({} at a time)", a.connect_concurrency),
            format!("{:.1} s", b.took.as_secs_f64()),
            format!("{:.1} s", m.took.as_secs_f64()),
            na(),
            String::new(),
        ]);
        rows.push([
            "server RSS before → with all connected".into(),
            format!("{:.1} → {:.1} MiB", mib(b.before), mib(b.after)),
            format!("{:.1} → {:.1} MiB", mib(m.before), mib(m.after)),
            na(),
            String::new(),
        ]);
        rows.push([
            "**server memory per idle connection**".into(),
            format!("**{:.2} KiB**", b.per_connection() / 1024.0),
            format!("**{:.2} KiB**", m.per_connection() / 1024.0),
            na(),
            ratio(b.per_connection(), m.per_connection()),
        ]);
        rows.push([
            "bench process memory per idle client socket".into(),
            format!("{:.2} KiB", b.generator_per_connection() / 1024.0),
            format!("{:.2} KiB", m.generator_per_connection() / 1024.0),
            na(),
            String::new(),
        ]);
    }
    if output == Format::Table {
        print_table(&mosquitto, rows, &sample)?;
    } else {
        let report = Report {
            database: super::database_name(),
            peer: &mosquitto,
            clients: a.clients,
            window: a.window,
            secs: a.secs,
            baton: &baton,
            baton_normal_sync: normal.as_ref(),
            mosquitto_stock: &stock,
            mosquitto_no_inflight_limit: &unlimited,
            points_stored: points,
            rejected,
            every_acked_message_stored: stored_ok,
            idle_baton: idle.as_ref().map(|(b, _)| b),
            idle_mosquitto: idle.as_ref().map(|(_, m)| m),
        };
        crate::output::structured(output, &report)?;
    }
    anyhow::ensure!(
        stored_ok,
        "Baton acknowledged {} messages but stored {points} points ({rejected} rejected)",
        baton.acked_total
    );
    Ok(())
}

/// The figures of a run, for `-o json` / `-o yaml`.
#[derive(serde::Serialize)]
struct Report<'a> {
    database: &'static str,
    peer: &'a str,
    clients: usize,
    window: usize,
    secs: u64,
    baton: &'a Throughput,
    baton_normal_sync: Option<&'a Throughput>,
    mosquitto_stock: &'a Throughput,
    mosquitto_no_inflight_limit: &'a Throughput,
    points_stored: u64,
    rejected: u64,
    every_acked_message_stored: bool,
    idle_baton: Option<&'a Idle>,
    idle_mosquitto: Option<&'a Idle>,
}

/// The figures as a Markdown table, as BENCHMARKS.md quotes them.
fn print_table(mosquitto: &str, rows: Vec<[String; 5]>, sample: &Latest) -> anyhow::Result<()> {
    println!();
    println!(
        "| figure | Baton | {mosquitto}, stock limits | {mosquitto}, `max_inflight_messages 0` | Baton ÷ Mosquitto (stock / no limit) |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
    println!("Latest telemetry of one bench device, read back: {}", serde_json::to_string(sample)?);
    Ok(())
}

/// How one client logs in.
#[derive(Clone)]
struct Login {
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
}

/// A Baton server for the bench, message rate limits lifted, SQLite syncing as `synchronous`
/// says; with its bootstrap token.
fn start_baton(synchronous: &str) -> anyhow::Result<(super::Server, String)> {
    let token = format!("bench-{}", super::uuid_like());
    let unlimited = "1000000".to_owned();
    let env = [
        ("BATON_MQTT_MESSAGES_PER_SECOND", unlimited.clone()),
        ("BATON_MQTT_MESSAGE_BURST", unlimited),
        ("BATON_SQLITE_SYNCHRONOUS", synchronous.to_owned()),
    ];
    Ok((super::start_server_with(&token, &env)?, token))
}

/// How Baton's devices log in: user name = device id, password = secret.
fn logins(credentials: &[(String, String)]) -> Vec<Login> {
    let login = |(id, secret): &(String, String)| Login {
        client_id: id.clone(),
        username: Some(id.clone()),
        password: Some(secret.clone().into_bytes()),
    };
    credentials.iter().map(login).collect()
}

/// The throughput load on a second Baton (fresh data dir, `--clients` devices) whose SQLite
/// syncs only at checkpoints.
async fn normal_sync(a: &MqttArgs) -> anyhow::Result<Throughput> {
    let (server, token) = start_baton("normal")?;
    let address = server.mqtt.clone().context("the server printed no MQTT address")?;
    let client = Client::new(&server.url, Some(token), None)?;
    let logins = logins(&create_devices(&client, a.clients, a.connect_concurrency).await?);
    let topics = vec!["baton/v1/me/telemetry".to_owned(); a.clients];
    throughput("Baton, synchronous = normal", &address, server.child.id(), &logins, topics, false, a).await
}

/// Creates `n` devices (imported in chunks) and issues each a credential: (device id, secret).
pub(super) async fn create_devices(
    client: &Client,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let bar = bar(n as u64, "devices created");
    let mut ids = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + 2_000).min(n);
        let devices =
            (start..end).map(|i| DeviceCreate { serial: format!("mqtt-bench-{i:05}"), ..Default::default() }).collect();
        ids.extend(client.import_devices(&DeviceImport { devices }).await?.into_iter().map(|d| d.id));
        bar.set_position(end as u64);
        start = end;
    }
    bar.finish();
    let bar = self::bar(n as u64, "credentials issued");
    let credentials = stream::iter(ids)
        .map(|id| async move { client.issue_device_credential(&id).await })
        .buffered(concurrency.clamp(1, 32))
        .inspect(|_| bar.inc(1))
        .map_ok(|c| (c.device_id, c.secret))
        .try_collect::<Vec<_>>()
        .await?;
    bar.finish();
    Ok(credentials)
}

/// Connects and reads the CONNACK; returns the stream and any bytes that came after it.
async fn open(address: &str, login: &Login, keep_alive: u16) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(address).await.with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let connect = Connect {
        version: Version::V311,
        client_id: login.client_id.clone(),
        clean_start: true,
        keep_alive,
        username: login.username.clone(),
        password: login.password.clone(),
        will: None,
        properties: Properties::default(),
    };
    let mut out = Vec::with_capacity(128);
    mqtt::encode(&Packet::Connect(connect), Version::V311, &mut out);
    stream.write_all(&out).await?;
    let mut buf = Vec::with_capacity(64);
    loop {
        let read = timeout(ANSWER_TIMEOUT, stream.read_buf(&mut buf)).await.context("no CONNACK")??;
        anyhow::ensure!(read > 0, "the server closed the connection before its CONNACK");
        if let Some((packet, used)) = mqtt::decode(&buf, Some(Version::V311), MAX_PACKET)? {
            return match packet {
                Packet::ConnAck(ack) if ack.reason == 0 => Ok((stream, buf.split_off(used))),
                Packet::ConnAck(ack) => Err(anyhow::anyhow!("CONNECT refused with code {}", ack.reason)),
                other => Err(anyhow::anyhow!("expected a CONNACK, got {}", other.name())),
            };
        }
    }
}

/// Memory of a server holding idle connections.
#[derive(serde::Serialize)]
struct Idle {
    connections: usize,
    before: u64,
    after: u64,
    took: Duration,
    generator_before: u64,
    generator_after: u64,
}

impl Idle {
    fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.connections as f64
    }

    fn generator_per_connection(&self) -> f64 {
        self.generator_after.saturating_sub(self.generator_before) as f64 / self.connections as f64
    }
}

async fn idle_memory(name: &str, address: &str, pid: u32, logins: &[Login], a: &MqttArgs) -> anyhow::Result<Idle> {
    let me = std::process::id();
    let before = proc::rss_bytes(pid)?;
    let generator_before = proc::rss_bytes(me)?;
    let bar = bar(logins.len() as u64, &format!("{name}: idle connections"));
    let started = Instant::now();
    let mut held: Vec<TcpStream> = stream::iter(logins)
        .map(|login| open(address, login, a.keep_alive))
        .buffer_unordered(a.connect_concurrency.max(1))
        .inspect(|_| bar.inc(1))
        .map_ok(|(stream, _)| stream)
        .try_collect()
        .await
        .with_context(|| format!("opening idle connections to {name}"))?;
    let took = started.elapsed();
    bar.finish();
    tokio::time::sleep(Duration::from_secs(5)).await; // whatever a connection sets off has settled
    let after = proc::rss_bytes(pid)?;
    let generator_after = proc::rss_bytes(me)?;
    let connections = held.len();
    // A clean goodbye, so the server does not count lost connections.
    stream::iter(held.iter_mut())
        .for_each_concurrent(256, |s| async move {
            let _ = s.write_all(&[0xE0, 0x00]).await;
        })
        .await;
    drop(held);
    Ok(Idle { connections, before, after, took, generator_before, generator_after })
}

/// Waits until Baton has closed every MQTT session (the next phase reuses the devices).
async fn wait_disconnected(url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while metric(url, "baton_mqtt_connections").await? > 0.0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "Baton did not close the idle sessions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Figures of one throughput run.
#[derive(serde::Serialize)]
struct Throughput {
    acked_per_sec: f64,
    rss_after: u64,
    delivered_per_sec: f64,
    server_cpu: f64,
    generator_cpu: f64,
    /// Over the whole run, warm-up and drain included.
    acked_total: u64,
    delivered_total: u64,
}

/// Shared counters of one run.
#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    connected: AtomicUsize,
    acked: AtomicU64,
    delivered: AtomicU64,
}

async fn throughput(
    name: &str,
    address: &str,
    pid: u32,
    logins: &[Login],
    topics: Vec<String>,
    subscriber: bool,
    a: &MqttArgs,
) -> anyhow::Result<Throughput> {
    let counters = Arc::new(Counters::default());
    let sub_stop = Arc::new(AtomicBool::new(false));
    let sub = if subscriber {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscribe_all(address.to_owned(), counters.clone(), sub_stop.clone(), ready_tx));
        if ready_rx.await.is_err() {
            task.await??;
            anyhow::bail!("the subscriber stopped before subscribing");
        }
        Some(task)
    } else {
        None
    };
    let mut tasks = Vec::with_capacity(logins.len());
    for (login, topic) in logins.iter().zip(topics) {
        let login = login.clone();
        let (address, counters, window, keep_alive) = (address.to_owned(), counters.clone(), a.window, a.keep_alive);
        tasks.push(tokio::spawn(async move { publish(&address, &login, &topic, window, keep_alive, &counters).await }));
    }
    let started = Instant::now();
    while counters.connected.load(Ordering::Relaxed) < tasks.len() {
        if let Some(done) = tasks.iter_mut().find(|t| t.is_finished()) {
            done.await??;
            anyhow::bail!("a publisher stopped early");
        }
        anyhow::ensure!(started.elapsed() < ANSWER_TIMEOUT, "{name}: not every publisher connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(WARM_UP).await;

    let me = std::process::id();
    let (acked0, delivered0) = (counters.acked.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
    let (cpu0, gen0, t0) = (proc::cpu_time(pid)?, proc::cpu_time(me)?, Instant::now());
    let bar = bar(a.secs, &format!("{name}: QoS 1 publishing"));
    let mut last = (acked0, Instant::now());
    for _ in 0..a.secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acked = counters.acked.load(Ordering::Relaxed);
        let rate = (acked - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (acked, Instant::now());
        bar.set_message(format!("{name}: {} acked/s", thousands(rate)));
        bar.inc(1);
    }
    let (acked1, delivered1) = (counters.acked.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
    let (cpu1, gen1, elapsed) = (proc::cpu_time(pid)?, proc::cpu_time(me)?, t0.elapsed().as_secs_f64());
    bar.finish();

    counters.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    sub_stop.store(true, Ordering::Relaxed);
    if let Some(task) = sub {
        task.await??;
    }
    Ok(Throughput {
        acked_per_sec: (acked1 - acked0) as f64 / elapsed,
        rss_after: proc::rss_bytes(pid)?,
        delivered_per_sec: (delivered1 - delivered0) as f64 / elapsed,
        server_cpu: (cpu1 - cpu0).as_secs_f64() / elapsed,
        generator_cpu: (gen1 - gen0).as_secs_f64() / elapsed,
        acked_total: counters.acked.load(Ordering::Relaxed),
        delivered_total: counters.delivered.load(Ordering::Relaxed),
    })
}

/// One publishing client: keeps `window` QoS 1 publishes in flight until told to stop, then
/// waits for the last acknowledgements and disconnects.
async fn publish(
    address: &str,
    login: &Login,
    topic: &str,
    window: usize,
    keep_alive: u16,
    counters: &Counters,
) -> anyhow::Result<()> {
    let (mut stream, mut input) = open(address, login, keep_alive).await?;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    // Every publish is the same bytes but for its packet id, which sits just before the payload.
    let mut template = Vec::new();
    let publish = Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: topic.to_owned(),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: PAYLOAD.to_vec(),
    };
    mqtt::encode(&Packet::Publish(publish), Version::V311, &mut template);
    let id_at = template.len() - PAYLOAD.len() - 2;
    let mut next_id: u16 = 0;
    let mut output = Vec::with_capacity(template.len() * window);
    let mut queue = |output: &mut Vec<u8>| {
        next_id = next_id.checked_add(1).unwrap_or(1);
        let start = output.len();
        output.extend_from_slice(&template);
        output[start + id_at..start + id_at + 2].copy_from_slice(&next_id.to_be_bytes());
    };
    for _ in 0..window {
        queue(&mut output);
    }
    let mut outstanding = window;
    stream.write_all(&output).await?;
    output.clear();
    input.reserve(4096);
    while outstanding > 0 {
        let mut at = 0;
        let mut acks = 0;
        while let Some((packet, used)) = mqtt::decode(&input[at..], Some(Version::V311), MAX_PACKET)? {
            at += used;
            if let Packet::PubAck(_) = packet {
                acks += 1;
                outstanding -= 1;
                if !counters.stop.load(Ordering::Relaxed) {
                    queue(&mut output);
                    outstanding += 1;
                }
            }
        }
        input.drain(..at);
        counters.acked.fetch_add(acks, Ordering::Relaxed);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if outstanding == 0 {
            break;
        }
        let read = timeout(ANSWER_TIMEOUT, stream.read_buf(&mut input)).await.context("no PUBACK for 30 s")??;
        anyhow::ensure!(read > 0, "the server closed a publishing connection");
    }
    let _ = stream.write_all(&[0xE0, 0x00]).await;
    Ok(())
}

/// Mosquitto's consumer: subscribes to `#` with QoS 1 and acknowledges everything it gets,
/// until told to stop and nothing more arrives for 2 s.
async fn subscribe_all(
    address: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let login = Login { client_id: "bench-subscriber".into(), username: None, password: None };
    let (mut stream, mut input) = open(&address, &login, 600).await?;
    let mut output = Vec::with_capacity(4096);
    let subscribe = Subscribe {
        packet_id: 1,
        subscriptions: vec![Subscription { filter: "#".into(), qos: 1, options: 0 }],
        properties: Properties::default(),
    };
    mqtt::encode(&Packet::Subscribe(subscribe), Version::V311, &mut output);
    stream.write_all(&output).await?;
    output.clear();
    let mut ready = Some(ready);
    input.reserve(64 * 1024);
    loop {
        let mut at = 0;
        let mut delivered = 0;
        while let Some((packet, used)) = mqtt::decode(&input[at..], Some(Version::V311), MAX_PACKET)? {
            at += used;
            match packet {
                Packet::SubAck(ack) => {
                    anyhow::ensure!(ack.codes.first() == Some(&1), "the `#` subscription got code {:?}", ack.codes);
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Packet::Publish(p) => {
                    delivered += 1;
                    if let Some(id) = p.packet_id {
                        mqtt::encode(&Packet::PubAck(Ack::new(id, 0)), Version::V311, &mut output);
                    }
                }
                _ => {}
            }
        }
        input.drain(..at);
        counters.delivered.fetch_add(delivered, Ordering::Relaxed);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        match timeout(Duration::from_secs(2), stream.read_buf(&mut input)).await {
            Ok(read) => anyhow::ensure!(read? > 0, "the broker closed the subscriber's connection"),
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    let _ = stream.write_all(&[0xE0, 0x00]).await;
    Ok(())
}

fn mosquitto_version() -> String {
    std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.replace("mosquitto version", "Mosquitto"))
        })
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| "Mosquitto".to_owned())
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:40} [{elapsed_precise}] {wide_bar} {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(message.to_owned())
}

/// `12345.6` → `12,346`.
pub(super) fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn the_packet_id_sits_where_the_template_says() {
        let mut bytes = Vec::new();
        let publish = Publish {
            dup: false,
            qos: 1,
            retain: false,
            topic: "baton/v1/me/telemetry".into(),
            packet_id: Some(0x1234),
            properties: Properties::default(),
            payload: PAYLOAD.to_vec(),
        };
        mqtt::encode(&Packet::Publish(publish), Version::V311, &mut bytes);
        let at = bytes.len() - PAYLOAD.len() - 2;
        assert_eq!(&bytes[at..at + 2], &[0x12, 0x34]);
    }
}
