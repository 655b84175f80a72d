//! `baton bench ingest`: telemetry through the agent's batch path at saturation. `--agents`
//! WebSocket connections speak the agent protocol (`hello`, then numbered telemetry batches of
//! `--samples` samples × `--metrics` values), each sending its next batch as soon as the last
//! one is acknowledged — and an acknowledgement means stored and committed. Reports the points
//! acknowledged per second and the server's CPU, and checks that the points stored
//! (`baton_telemetry_points_stored_total`) are exactly those acknowledged.
//!
//! The connections are this bench's own (the protocol's JSON frames over tokio-tungstenite),
//! not simulated agents: an agent batches what it sampled over an interval of at least a
//! second, and a fleet large enough to saturate the server that way would measure the fleet.

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
    agent::{AgentMessage, CONNECT_PATH, DEVICE_ID_HEADER, PROTOCOL_VERSION, Sample, ServerMessage, TelemetryBatch},
    inventory::Inventory,
};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use super::{metric, mqtt, proc};
use crate::output::Format;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Connections, one device each, sending batches at once.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Samples per batch (the protocol allows 1,000).
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Values per sample.
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    /// Seconds over which throughput is measured, after a warm-up.
    #[arg(long, default_value_t = 20)]
    secs: u64,
}

const WARM_UP: Duration = Duration::from_secs(3);

/// Figures of one run.
#[derive(serde::Serialize)]
struct Report {
    database: &'static str,
    agents: usize,
    points_per_batch: usize,
    secs: u64,
    batches_acked_per_sec: f64,
    points_acked_per_sec: f64,
    server_cpu: f64,
    generator_cpu: f64,
    points_acked_total: u64,
    points_stored_total: u64,
    every_acked_point_stored: bool,
}

pub async fn run(a: IngestArgs, output: Format) -> anyhow::Result<()> {
    anyhow::ensure!(a.agents > 0 && a.secs > 0, "--agents and --secs must be at least 1");
    anyhow::ensure!(
        (1..=1000).contains(&a.samples) && a.samples * a.metrics <= 20_000,
        "a batch holds 1 to 1,000 samples and at most 20,000 values"
    );
    let token = format!("bench-{}", super::uuid_like());
    let server = super::start_server_with(&token, &[])?;
    let pid = server.child.id();
    let client = Client::new(&server.url, Some(token), None)?;
    eprintln!("Baton on {} {} (pid {pid})", super::database_name(), server.url);
    let credentials = mqtt::create_devices(&client, a.agents, 32).await?;
    let ws = format!("{}{CONNECT_PATH}", server.url.replacen("http", "ws", 1));
    let counters = Arc::new(Counters::default());
    let stored_before = metric(&server.url, "baton_telemetry_points_stored_total").await?;
    let mut tasks = Vec::new();
    for (index, device) in credentials.into_iter().enumerate() {
        let (ws, counters, shape) = (ws.clone(), counters.clone(), (a.samples, a.metrics));
        tasks.push(tokio::spawn(async move { agent(&ws, device, index, shape, &counters).await }));
    }
    while counters.connected.load(Ordering::Relaxed) < tasks.len() {
        if let Some(done) = tasks.iter_mut().find(|t| t.is_finished()) {
            done.await??;
            anyhow::bail!("an agent connection ended early");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(WARM_UP).await;

    let me = std::process::id();
    let points_per_batch = (a.samples * a.metrics) as u64;
    let acked0 = counters.acked.load(Ordering::Relaxed);
    let (cpu0, gen0, t0) = (proc::cpu_time(pid)?, proc::cpu_time(me)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(a.secs)).await;
    let acked1 = counters.acked.load(Ordering::Relaxed);
    let (cpu1, gen1, elapsed) = (proc::cpu_time(pid)?, proc::cpu_time(me)?, t0.elapsed().as_secs_f64());
    counters.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let acked_total = counters.acked.load(Ordering::Relaxed) * points_per_batch;
    let stored = (metric(&server.url, "baton_telemetry_points_stored_total").await? - stored_before) as u64;
    let batches_per_sec = (acked1 - acked0) as f64 / elapsed;
    let report = Report {
        database: super::database_name(),
        agents: a.agents,
        points_per_batch: points_per_batch as usize,
        secs: a.secs,
        batches_acked_per_sec: batches_per_sec,
        points_acked_per_sec: batches_per_sec * points_per_batch as f64,
        server_cpu: (cpu1 - cpu0).as_secs_f64() / elapsed,
        generator_cpu: (gen1 - gen0).as_secs_f64() / elapsed,
        points_acked_total: acked_total,
        points_stored_total: stored,
        every_acked_point_stored: stored == acked_total,
    };
    if output == Format::Table {
        print_table(&report);
    } else {
        crate::output::structured(output, &report)?;
    }
    anyhow::ensure!(report.every_acked_point_stored, "{acked_total} points acknowledged but {stored} stored");
    Ok(())
}

fn print_table(r: &Report) {
    println!();
    println!("| figure ({}) | Baton |", r.database);
    println!("|---|---|");
    println!(
        "| telemetry points acknowledged per second ({} agents, batches of {} points, {} s) | **{}** |",
        r.agents,
        r.points_per_batch,
        r.secs,
        mqtt::thousands(r.points_acked_per_sec)
    );
    println!("| batches acknowledged per second | {} |", mqtt::thousands(r.batches_acked_per_sec));
    println!("| server CPU | {:.0} % of one core |", r.server_cpu * 100.0);
    println!("| bench process (load generator) CPU | {:.0} % of one core |", r.generator_cpu * 100.0);
    println!(
        "| whole run: every acknowledged point stored? | {}: {} acknowledged, {} stored |",
        if r.every_acked_point_stored { "yes" } else { "NO" },
        mqtt::thousands(r.points_acked_total as f64),
        mqtt::thousands(r.points_stored_total as f64)
    );
}

#[derive(Default)]
struct Counters {
    stop: AtomicBool,
    connected: AtomicUsize,
    /// Batches acknowledged, by every connection.
    acked: AtomicU64,
}

/// One device: hello, then a batch at a time until told to stop. Sample times start an hour
/// back, a millisecond apart, so no two points of a device share a time (they would be stored once).
async fn agent(
    url: &str,
    (device_id, secret): (String, String),
    index: usize,
    (samples, metrics): (usize, usize),
    counters: &Counters,
) -> anyhow::Result<()> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {secret}").parse()?);
    request.headers_mut().insert(DEVICE_ID_HEADER, device_id.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.context("agent WebSocket")?;
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "bench".into(),
        inventory: Box::new(Inventory::default()),
        backlog_epoch: Some(index as u64 + 1),
        features: Vec::new(),
    };
    ws.send(Message::text(serde_json::to_string(&hello)?)).await?;
    next_message(&mut ws).await?;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let names: Vec<String> = (0..metrics).map(|m| format!("metric_{m:02}")).collect();
    let mut ts = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut seq = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        seq += 1;
        let batch = (0..samples)
            .map(|i| {
                ts += 1;
                Sample {
                    ts,
                    metrics: names.iter().map(|n| (n.clone(), (ts % 1000 + i as i64) as f64 / 10.0)).collect(),
                }
            })
            .collect();
        let frame = AgentMessage::Telemetry(TelemetryBatch { seq, samples: batch });
        ws.send(Message::text(serde_json::to_string(&frame)?)).await?;
        loop {
            if let ServerMessage::TelemetryAck { seq: acked } = next_message(&mut ws).await?
                && acked == seq
            {
                break;
            }
        }
        counters.acked.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The server's next JSON message (pings and binary frames skipped).
async fn next_message<S>(ws: &mut S) -> anyhow::Result<ServerMessage>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await.context("the server closed the connection")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => anyhow::bail!("the server closed the connection: {frame:?}"),
            _ => {}
        }
    }
}
