//! A rollout's executions counted by wave and state, in one grouped query: what the API shows
//! as progress and what the engine's gates judge; and the estimate of the time left, from what
//! is known: the devices' reported download speeds, the server's measured serving rate
//! (`artifacts::serving`), `max_in_flight`, the waves and their bake times. The estimate says
//! which of those it mostly waits for.

use std::collections::BTreeMap;

use baton_proto::api::rollouts::{EtaBound, ExecutionState, RolloutProgress, StateCounts, WaveProgress};
use sqlx::Row;

use super::Spec;
use crate::{Error, store::Db};

/// Counts of one rollout's executions.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Install executions by wave (from 1), then state.
    pub waves: BTreeMap<u32, StateCounts>,
    /// Rollback executions by state.
    pub rollback: StateCounts,
}

impl Tally {
    pub async fn of(db: &Db, rollout_id: &str) -> Result<Self, Error> {
        let rows = sqlx::query(
            "SELECT wave, action, state, COUNT(*) AS n FROM rollout_executions WHERE rollout_id = $1 \
             GROUP BY wave, action, state",
        )
        .bind(rollout_id)
        .fetch_all(db.reader())
        .await?;
        let mut tally = Self::default();
        for row in rows {
            let state: String = row.try_get("state")?;
            let Some(state) = ExecutionState::parse(&state) else { continue };
            let n = super::count(&row, "n")?;
            if row.try_get::<String, _>("action")? == "rollback" {
                *tally.rollback.entry(state).or_default() += n;
            } else {
                let wave = u32::try_from(row.try_get::<i64, _>("wave")?).unwrap_or(0);
                *tally.waves.entry(wave).or_default().entry(state).or_default() += n;
            }
        }
        Ok(tally)
    }

    /// Install executions by state, all waves together.
    pub fn states(&self) -> StateCounts {
        let mut all = StateCounts::new();
        for counts in self.waves.values() {
            for (state, n) in counts {
                *all.entry(*state).or_default() += n;
            }
        }
        all
    }

    /// Devices in a wave.
    pub fn wave_size(&self, wave: u32) -> u64 {
        self.waves.get(&wave).map_or(0, |c| c.values().sum())
    }

    /// Executions of a wave in states that pass `keep`.
    pub fn wave_count(&self, wave: u32, keep: impl Fn(ExecutionState) -> bool) -> u64 {
        self.waves.get(&wave).map_or(0, |c| sum(c, keep))
    }

    pub fn last_wave(&self) -> u32 {
        self.waves.keys().next_back().copied().unwrap_or(1)
    }

    /// `(failed, executed)` over every install execution, as the failure gate counts them.
    pub fn failed_executed(&self) -> (u64, u64) {
        let all = self.states();
        (sum(&all, ExecutionState::is_failure), sum(&all, ExecutionState::is_final))
    }

    pub fn progress(&self, eta: Option<&Estimate>) -> RolloutProgress {
        let states = self.states();
        let (failed, executed) = self.failed_executed();
        let left = eta.and_then(|e| self.eta(e));
        RolloutProgress {
            bandwidth_bytes_per_sec: eta.and_then(|e| e.bandwidth),
            eta_secs: left.as_ref().map(|l| l.total()),
            eta_download_secs: left.as_ref().and_then(Left::downloads),
            eta_bound: left.as_ref().map(Left::bound),
            eta_device_speed_needed: left.as_ref().and_then(|l| l.links_needed).map(|b| b.ceil() as u64),
            serving_bytes_per_sec: eta.and_then(|e| e.serving),
            devices: states.values().sum(),
            waves: self
                .waves
                .iter()
                .map(|(wave, counts)| WaveProgress {
                    wave: *wave,
                    devices: counts.values().sum(),
                    states: counts.clone(),
                })
                .collect(),
            states,
            rollback: self.rollback.clone(),
            failed,
            executed,
        }
    }
}

/// What the estimate needs besides the counts.
pub struct Estimate<'a> {
    pub spec: &'a Spec,
    pub size: u64,
    pub current_wave: u32,
    /// Observed median, bytes per second.
    pub bandwidth: Option<u64>,
    /// The server's aggregate serving rate, bytes per second; `None` when it does not serve
    /// the bytes (an external artifact).
    pub serving: Option<u64>,
}

/// Assumed seconds to install and report, besides the download and the verify window.
const INSTALL_SECS: u64 = 10;

/// The time left, in seconds, by what it waits for.
#[derive(Debug, Default, PartialEq)]
struct Left {
    /// Batches of downloads whose bytes take the server longer than one device's link.
    server: f64,
    /// Batches of downloads as long as one device's download at its link speed.
    links: f64,
    installs: f64,
    bake: f64,
    /// No device has reported its speed and the server does not serve the bytes: the
    /// downloads' time is not known (and not counted).
    downloads_unknown: bool,
    /// No device has reported its speed: the per-device speed the estimate needs, the server's
    /// rate shared by the largest batch (a slower link makes that batch longer).
    links_needed: Option<f64>,
}

impl Left {
    fn total(&self) -> u64 {
        (self.server + self.links + self.installs + self.bake).ceil() as u64
    }

    fn downloads(&self) -> Option<u64> {
        (!self.downloads_unknown).then(|| (self.server + self.links).ceil() as u64)
    }

    fn bound(&self) -> EtaBound {
        let parts = [
            (self.server, EtaBound::ServerRate),
            (self.links, EtaBound::DeviceLinks),
            (self.installs, EtaBound::Installs),
            (self.bake, EtaBound::BakeTimes),
        ];
        parts.into_iter().fold((-1.0, EtaBound::DeviceLinks), |best, p| if p.0 > best.0 { p } else { best }).1
    }
}

impl Tally {
    /// Waves from the current one on: each takes its unfinished devices in batches of
    /// `max_in_flight` (all at once without); a batch downloads for the longer of one device's
    /// download at its link speed and the batch's bytes at the server's rate, then installs;
    /// plus the bake time before every wave still to start. A link speed no device has reported
    /// is not invented: the batch then takes the server's time, and the speed that needs is
    /// reported beside the estimate.
    fn eta(&self, e: &Estimate) -> Option<Left> {
        let size = e.size as f64;
        let one_device = e.bandwidth.map(|b| size / b.max(1) as f64);
        let install = (INSTALL_SECS + u64::from(e.spec.install.verify_secs.unwrap_or(0))) as f64;
        let mut left = Left::default();
        let mut largest = 0;
        for (&wave, counts) in self.waves.range(e.current_wave..) {
            let open = sum(counts, |s| !s.is_final());
            if open > 0 {
                let batch = e.spec.max_in_flight.map_or(open, u64::from).clamp(1, open);
                largest = largest.max(batch);
                let (full, rest) = (open / batch, open % batch);
                for (batches, devices) in [(full, batch), (u64::from(rest > 0), rest)] {
                    let server = e.serving.map(|rate| devices as f64 * size / rate.max(1) as f64);
                    match (server, one_device) {
                        (Some(server), Some(link)) if server > link => left.server += batches as f64 * server,
                        (_, Some(link)) => left.links += batches as f64 * link,
                        (Some(server), None) => left.server += batches as f64 * server,
                        (None, None) => left.downloads_unknown = true,
                    }
                    left.installs += batches as f64 * install;
                }
            }
            if wave > e.current_wave {
                left.bake += e.spec.success_gate.bake_secs as f64;
            }
        }
        if largest == 0 {
            return None;
        }
        if one_device.is_none() {
            left.links_needed = e.serving.map(|rate| rate as f64 / largest as f64);
        }
        Some(left)
    }
}

/// The median download speed devices reported for a rollout.
pub async fn bandwidth(db: &Db, rollout_id: &str) -> Result<Option<u64>, Error> {
    let rows = sqlx::query(
        "SELECT bytes_per_sec FROM rollout_executions WHERE rollout_id = $1 AND bytes_per_sec IS NOT NULL \
         ORDER BY bytes_per_sec LIMIT 10001",
    )
    .bind(rollout_id)
    .fetch_all(db.reader())
    .await?;
    let speeds: Vec<i64> = rows.iter().map(|r| r.try_get("bytes_per_sec")).collect::<Result<_, _>>()?;
    Ok(speeds.get(speeds.len() / 2).and_then(|s| u64::try_from(*s).ok()))
}

pub fn sum(counts: &StateCounts, keep: impl Fn(ExecutionState) -> bool) -> u64 {
    counts.iter().filter(|(s, _)| keep(**s)).map(|(_, n)| n).sum()
}

#[cfg(test)]
mod tests {
    use baton_proto::api::rollouts::{RolloutCreate, SuccessGate};

    use super::*;

    fn spec(max_in_flight: Option<u32>, bake_secs: u64) -> Spec {
        let mut req = RolloutCreate { max_in_flight, ..RolloutCreate::default() };
        req.success_gate = SuccessGate { bake_secs, ..SuccessGate::default() };
        req.install.path = Some("/x".into());
        Spec::from_request(&req).expect("spec")
    }

    #[test]
    fn the_estimate_counts_batches_of_downloads_and_bake_times_left() {
        let spec = spec(Some(100), 600);
        let mut tally = Tally::default();
        tally.waves.insert(1, [(ExecutionState::Succeeded, 10)].into());
        tally.waves.insert(2, [(ExecutionState::Queued, 90), (ExecutionState::Downloading, 100)].into());
        tally.waves.insert(3, [(ExecutionState::Queued, 800)].into());
        // 100 MB at 1 MB/s: 100 s + 10 s to install, per batch of 100 devices; a server at
        // 1 GB/s moves a batch's 10 GB in 10 s, so the links are the bound.
        let e = Estimate {
            spec: &spec,
            size: 100_000_000,
            current_wave: 2,
            bandwidth: Some(1_000_000),
            serving: Some(1_000_000_000),
        };
        let left = tally.eta(&e).expect("left");
        assert_eq!(left.total(), 2 * 110 + 8 * 110 + 600);
        assert_eq!(left.bound(), EtaBound::DeviceLinks);
        let done = Estimate { current_wave: 4, ..e };
        assert_eq!(tally.eta(&done), None);
    }

    #[test]
    fn a_thousand_devices_at_once_wait_for_the_server_not_their_links() {
        let spec = spec(None, 0);
        let mut tally = Tally::default();
        tally.waves.insert(1, [(ExecutionState::Notified, 1_000)].into());
        // 1,000 × 100 MB at 2 GB/s: 50 s, longer than one device's 100 MB at 10 MB/s (10 s).
        let e = Estimate {
            spec: &spec,
            size: 100_000_000,
            current_wave: 1,
            bandwidth: Some(10_000_000),
            serving: Some(2_000_000_000),
        };
        let left = tally.eta(&e).expect("left");
        assert_eq!((left.total(), left.bound()), (50 + 10, EtaBound::ServerRate));
        // The same rollout 100 at a time: each batch's 10 GB takes the server 5 s, the links 10 s.
        let spec = self::spec(Some(100), 0);
        let left = tally.eta(&Estimate { spec: &spec, ..e }).expect("left");
        assert_eq!((left.total(), left.bound()), (10 * (10 + 10), EtaBound::DeviceLinks));
        // Bytes the server does not serve (an external artifact) are bound by the links alone.
        let spec = self::spec(None, 0);
        let left = tally.eta(&Estimate { spec: &spec, serving: None, ..e }).expect("left");
        assert_eq!(left.total(), 10 + 10);
    }

    #[test]
    fn a_speed_no_device_reported_is_not_invented() {
        let spec = spec(None, 0);
        let mut tally = Tally::default();
        tally.waves.insert(1, [(ExecutionState::Notified, 1_000)].into());
        // Nothing reported: the server's 1,000 × 100 MB at 2.5 GB/s (40 s), which needs 2.5 MB/s
        // of each device.
        let e =
            Estimate { spec: &spec, size: 100_000_000, current_wave: 1, bandwidth: None, serving: Some(2_500_000_000) };
        let left = tally.eta(&e).expect("left");
        assert_eq!((left.total(), left.downloads(), left.bound()), (40 + 10, Some(40), EtaBound::ServerRate));
        assert_eq!(left.links_needed, Some(2_500_000.0));
        // 100 at a time need 25 MB/s each for the server's 4 s a batch.
        let spec_100 = self::spec(Some(100), 0);
        let left = tally.eta(&Estimate { spec: &spec_100, ..e }).expect("left");
        assert_eq!((left.total(), left.links_needed), (10 * (4 + 10), Some(25_000_000.0)));
        // Once a device reports, its speed counts and nothing more is asked of the others.
        let left = tally.eta(&Estimate { bandwidth: Some(1_000_000), ..e }).expect("left");
        assert_eq!((left.total(), left.bound(), left.links_needed), (100 + 10, EtaBound::DeviceLinks, None));
        // Neither known (an external artifact, no report): the downloads are not counted.
        let left = tally.eta(&Estimate { serving: None, ..e }).expect("left");
        assert_eq!((left.total(), left.downloads(), left.bound()), (10, None, EtaBound::Installs));
    }
}
