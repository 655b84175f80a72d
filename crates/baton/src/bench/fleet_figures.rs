//! The fleet benchmark's figures: what `baton bench fleet` measured, printed as the table
//! BENCHMARKS.md quotes or, with `-o json`, as one JSON object for scripts. Also the two
//! measurements read back from the server after the run: each command's time from creation to
//! its answer (the fan-out's percentiles), and the database pools' waits (from the server's
//! `baton_db_pool_wait_seconds` probe).

use std::time::Duration;

use baton_client::Client;
use baton_proto::api::commands::CommandQuery;
use serde::Serialize;

use super::proc::percentile;
use crate::output::Format;

#[derive(Serialize, Default)]
pub struct FleetFigures {
    pub database: &'static str,
    pub devices: u32,
    pub all_online_secs: f64,
    pub server_rss_idle_mib: f64,
    pub server_rss_connected_mib: f64,
    pub server_kib_per_device: f64,
    /// The peer: Mosquitto's memory per idle MQTT connection (none when not measured).
    pub mosquitto_kib_per_connection: Option<f64>,
    pub telemetry_points_per_sec: f64,
    pub server_cpu_storing: f64,
    pub ping_one_p50_ms: f64,
    pub ping_one_p99_ms: f64,
    /// One ping to every device: until the client saw all answered.
    pub fan_out_all_answered_secs: f64,
    /// Of that, the create request: every target resolved and its command queued (committed).
    pub fan_out_create_ms: f64,
    /// Each command's created → finished (server clock).
    pub fan_out: Spread,
    /// Database pool waits sampled by the server's probe over the minute before all were
    /// online (the enrollment storm), and before the fan-out finished; `over_1s` counts from
    /// the server's start.
    pub pool_wait_enrolling: Vec<PoolWait>,
    pub pool_wait_fan_out: Vec<PoolWait>,
    pub agent_rss_mib: Option<f64>,
    pub agent_cpu: Option<f64>,
    pub agent_binary_mib: Option<f64>,
}

/// p50 / p99 / the largest, in milliseconds.
#[derive(Serialize, Default, Clone, Copy)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            p50_ms: ms(percentile(&times, 50.0)),
            p99_ms: ms(percentile(&times, 99.0)),
            max_ms: ms(times.last().copied().unwrap_or_default()),
        }
    }
}

#[derive(Serialize, Clone)]
pub struct PoolWait {
    pub pool: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub over_1s: u64,
}

/// Every command of a batch, created → finished, read back page by page.
pub async fn fan_out_spread(client: &Client, batch: &str) -> anyhow::Result<Spread> {
    let mut times = Vec::new();
    let mut cursor = None;
    loop {
        let query = CommandQuery { batch: Some(batch.to_owned()), limit: Some(500), cursor, ..Default::default() };
        let page = client.commands(&query).await?;
        times.extend(
            page.items.iter().filter_map(|c| c.finished_at.map(|f| (f - c.created_at).to_std().unwrap_or_default())),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(Spread::of(times)),
        }
    }
}

/// The pools' waits, from the server's /metrics (a summary per pool).
pub async fn pool_waits(url: &str) -> anyhow::Result<Vec<PoolWait>> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let value = |name: &str, pool: &str, quantile: Option<&str>| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("pool=\"{pool}\"")))
            .filter(|l| quantile.is_none_or(|q| l.contains(&format!("quantile=\"{q}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(["writer", "reader"]
        .into_iter()
        .filter(|pool| text.contains(&format!("baton_db_pool_wait_seconds{{pool=\"{pool}\"")))
        .map(|pool| PoolWait {
            pool: pool.to_owned(),
            p50_ms: value("baton_db_pool_wait_seconds{", pool, Some("0.5")) * 1000.0,
            p99_ms: value("baton_db_pool_wait_seconds{", pool, Some("0.99")) * 1000.0,
            max_ms: value("baton_db_pool_wait_seconds{", pool, Some("1")) * 1000.0,
            over_1s: value("baton_db_pool_waits_over_1s_total{", pool, None) as u64,
        })
        .collect())
}

impl FleetFigures {
    pub fn print(&self, format: Format, pings: usize, measure_secs: u64, interval: u32) -> anyhow::Result<()> {
        if format != Format::Table {
            return crate::output::structured(format, self);
        }
        println!();
        println!("| figure ({}) | value |", self.database);
        println!("|---|---|");
        println!("| devices | {} |", self.devices);
        println!(
            "| time until all online (enroll + connect, 5,000 starts/s offered) | {:.1} s |",
            self.all_online_secs
        );
        println!(
            "| server RSS idle → with all connected | {:.1} MiB → {:.1} MiB |",
            self.server_rss_idle_mib, self.server_rss_connected_mib
        );
        println!("| server memory per connected device | {:.1} KiB |", self.server_kib_per_device);
        match self.mosquitto_kib_per_connection {
            Some(kib) => println!("| peer: Mosquitto memory per idle MQTT connection | {kib:.1} KiB |"),
            None => println!("| peer: Mosquitto memory per idle MQTT connection | not measured |"),
        }
        println!(
            "| telemetry points stored per second (over {measure_secs} s) | {:.0} |",
            self.telemetry_points_per_sec
        );
        println!("| server CPU while storing | {:.0} % of one core |", self.server_cpu_storing * 100.0);
        println!(
            "| command round trip, one device (p50 / p99 of {pings}) | {:.1} ms / {:.1} ms |",
            self.ping_one_p50_ms, self.ping_one_p99_ms
        );
        println!("| ping to every device, until all answered | {:.2} s |", self.fan_out_all_answered_secs);
        println!(
            "| of that, the create request (targets resolved, commands queued) | {:.0} ms |",
            self.fan_out_create_ms
        );
        let f = self.fan_out;
        println!(
            "| ping to every device, each created → answered (p50 / p99 / all) | {:.0} ms / {:.0} ms / {:.0} ms |",
            f.p50_ms, f.p99_ms, f.max_ms
        );
        for (when, waits) in [("enrolling", &self.pool_wait_enrolling), ("fan-out", &self.pool_wait_fan_out)] {
            for w in waits {
                println!(
                    "| {} pool wait while {when}, sampled (p50 / p99 / max; waits over 1 s) | {:.1} / {:.1} / {:.1} ms; {} |",
                    w.pool, w.p50_ms, w.p99_ms, w.max_ms, w.over_1s
                );
            }
        }
        match (self.agent_rss_mib, self.agent_cpu, self.agent_binary_mib) {
            (Some(rss), Some(cpu), Some(binary)) => {
                println!("| agent idle RSS | {rss:.1} MiB |");
                println!(
                    "| agent CPU, idle connected (telemetry every {interval} s) | {:.2} % of one core |",
                    cpu * 100.0
                );
                println!("| agent binary (release, stripped) | {binary:.1} MiB |");
            }
            _ => println!("| agent footprint | not measured |"),
        }
        Ok(())
    }
}
