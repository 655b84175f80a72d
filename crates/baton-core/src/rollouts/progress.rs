//! A rollout's executions counted by wave and state, in one grouped query: what the API shows
//! as progress and what the engine's gates judge.

use std::collections::BTreeMap;

use baton_proto::api::rollouts::{ExecutionState, RolloutProgress, StateCounts, WaveProgress};
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
        RolloutProgress {
            bandwidth_bytes_per_sec: eta.and_then(|e| e.bandwidth),
            eta_secs: eta.and_then(|e| self.eta_secs(e)),
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
}

/// Assumed download speed until a device reports one.
const ASSUMED_BANDWIDTH: u64 = 2_000_000;
/// Assumed seconds to install and report, besides the download and the verify window.
const INSTALL_SECS: u64 = 10;

impl Tally {
    /// Waves from the current one on: each takes its unfinished devices in batches of
    /// `max_in_flight` (all at once without), each batch one device's time; plus the bake time
    /// before every wave still to start.
    fn eta_secs(&self, e: &Estimate) -> Option<u64> {
        let per_device = e.size / e.bandwidth.unwrap_or(ASSUMED_BANDWIDTH).max(1)
            + INSTALL_SECS
            + u64::from(e.spec.install.verify_secs.unwrap_or(0));
        let mut total = 0u64;
        let mut left = false;
        for (&wave, counts) in self.waves.range(e.current_wave..) {
            let open = sum(counts, |s| !s.is_final());
            if open > 0 {
                left = true;
                let batch = e.spec.max_in_flight.map_or(open, u64::from).max(1);
                total += open.div_ceil(batch) * per_device;
            }
            if wave > e.current_wave {
                total += e.spec.success_gate.bake_secs;
            }
        }
        left.then_some(total)
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

    #[test]
    fn the_estimate_counts_batches_of_downloads_and_bake_times_left() {
        let mut req = RolloutCreate { max_in_flight: Some(100), ..RolloutCreate::default() };
        req.success_gate = SuccessGate { bake_secs: 600, ..SuccessGate::default() };
        req.install.path = Some("/x".into());
        let spec = Spec::from_request(&req).expect("spec");
        let mut tally = Tally::default();
        tally.waves.insert(1, [(ExecutionState::Succeeded, 10)].into());
        tally.waves.insert(2, [(ExecutionState::Queued, 90), (ExecutionState::Downloading, 100)].into());
        tally.waves.insert(3, [(ExecutionState::Queued, 800)].into());
        // 100 MB at 1 MB/s: 100 s + 10 s to install, per batch of 100 devices.
        let e = Estimate { spec: &spec, size: 100_000_000, current_wave: 2, bandwidth: Some(1_000_000) };
        assert_eq!(tally.eta_secs(&e), Some(2 * 110 + 8 * 110 + 600));
        let done = Estimate { current_wave: 4, ..e };
        assert_eq!(tally.eta_secs(&done), None);
    }
}
