//! `baton bench ota -o json`: every figure of a run as one JSON object, for scripts and for
//! comparing runs (the database, both servers, their ratio and the rollout's estimate).

use serde::Serialize;

use super::{OtaArgs, Outcome, RolloutProgress};
use crate::bench::{database_name, proc};

#[derive(Serialize)]
pub struct Figures {
    database: &'static str,
    devices: usize,
    concurrency: usize,
    size_bytes: u64,
    baton: Server,
    nginx: Server,
    baton_over_nginx: Ratios,
    estimate: Estimate,
}

/// One server's figures.
#[derive(Serialize)]
struct Server {
    wall_secs: f64,
    bytes_per_sec: f64,
    download_p50_secs: f64,
    download_p99_secs: f64,
    rss_before_bytes: u64,
    rss_peak_bytes: u64,
    rss_after_bytes: u64,
    server_cpu_secs: f64,
    server_cpu_secs_per_gb: f64,
    bench_cpu_secs: f64,
    verified: usize,
    downloads: usize,
}

#[derive(Serialize)]
struct Ratios {
    throughput: f64,
    rss_peak: f64,
    cpu_per_gb: f64,
}

/// The rollout's estimate, read before the downloads started, beside what they took.
#[derive(Serialize)]
struct Estimate {
    eta_secs: Option<u64>,
    eta_download_secs: Option<u64>,
    bound: Option<baton_proto::api::rollouts::EtaBound>,
    serving_bytes_per_sec: Option<u64>,
    device_bytes_per_sec: Option<u64>,
    /// While no device has reported its speed: what the estimate needs of each.
    device_speed_needed: Option<u64>,
    measured_download_secs: f64,
    /// Estimated ÷ measured download time (the goal: 0.8–1.2).
    ratio: Option<f64>,
    /// The serving rate the server measured of itself during the downloads.
    measured_serving_bytes_per_sec: Option<u64>,
}

impl Figures {
    pub fn of(
        a: &OtaArgs,
        concurrency: usize,
        baton: &Outcome,
        nginx: &Outcome,
        e: &RolloutProgress,
        kept: Option<u64>,
    ) -> Self {
        let (b, n) = (Server::of(baton), Server::of(nginx));
        Figures {
            database: database_name(),
            devices: a.devices,
            concurrency,
            size_bytes: a.size_mb * 1_000_000,
            baton_over_nginx: Ratios {
                throughput: b.bytes_per_sec / n.bytes_per_sec.max(1e-9),
                rss_peak: b.rss_peak_bytes as f64 / n.rss_peak_bytes.max(1) as f64,
                cpu_per_gb: b.server_cpu_secs_per_gb / n.server_cpu_secs_per_gb.max(1e-9),
            },
            baton: b,
            nginx: n,
            estimate: Estimate {
                eta_secs: e.eta_secs,
                eta_download_secs: e.eta_download_secs,
                bound: e.eta_bound,
                serving_bytes_per_sec: e.serving_bytes_per_sec,
                device_bytes_per_sec: e.bandwidth_bytes_per_sec,
                device_speed_needed: e.eta_device_speed_needed,
                measured_download_secs: baton.wall.as_secs_f64(),
                ratio: eta_ratio(e, baton),
                measured_serving_bytes_per_sec: kept,
            },
        }
    }
}

impl Server {
    fn of(t: &Outcome) -> Self {
        let gb = t.bytes as f64 / 1e9;
        Server {
            wall_secs: t.wall.as_secs_f64(),
            bytes_per_sec: t.bytes_per_sec(),
            download_p50_secs: proc::percentile(&t.times, 50.0).as_secs_f64(),
            download_p99_secs: proc::percentile(&t.times, 99.0).as_secs_f64(),
            rss_before_bytes: t.rss_before,
            rss_peak_bytes: t.rss_peak,
            rss_after_bytes: t.rss_after,
            server_cpu_secs: t.server_cpu.as_secs_f64(),
            server_cpu_secs_per_gb: t.server_cpu.as_secs_f64() / gb.max(1e-9),
            bench_cpu_secs: t.bench_cpu.as_secs_f64(),
            verified: t.verified,
            downloads: t.times.len(),
        }
    }
}

/// The estimate's download time ÷ the measured one.
pub fn eta_ratio(e: &RolloutProgress, baton: &Outcome) -> Option<f64> {
    e.eta_download_secs.map(|s| s as f64 / baton.wall.as_secs_f64().max(1e-9))
}
