//! A rollout's executions counted by wave and state, in one grouped query: what the API shows
//! as progress and what the engine's gates judge.

use std::collections::BTreeMap;

use baton_proto::api::rollouts::{ExecutionState, RolloutProgress, StateCounts, WaveProgress};
use sqlx::Row;

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

    pub fn progress(&self) -> RolloutProgress {
        let states = self.states();
        let (failed, executed) = self.failed_executed();
        RolloutProgress {
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

pub fn sum(counts: &StateCounts, keep: impl Fn(ExecutionState) -> bool) -> u64 {
    counts.iter().filter(|(s, _)| keep(**s)).map(|(_, n)| n).sum()
}

/// What the API shows.
pub async fn of(db: &Db, rollout_id: &str) -> Result<RolloutProgress, Error> {
    Ok(Tally::of(db, rollout_id).await?.progress())
}
