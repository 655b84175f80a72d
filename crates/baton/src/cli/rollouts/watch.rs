//! `baton rollouts watch` (and `create --watch`): polls the rollout every second and draws one
//! bar per wave — finished executions of the wave's devices, with counts by outcome — under a
//! line with the rollout's state, until the rollout is over or waits for a person. The exit
//! status then tells scripts which: 0 completed, 3 paused or a draft, 4 aborted, canceled or
//! rolled back. Polling one small read a second is cheap, and needs no stream to resume.

use std::time::Duration;

use baton_client::Client;
use baton_proto::api::rollouts::{ExecutionState, PauseReason, Rollout, RolloutState, StateCounts};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{finished, state_text};
use crate::cli::{
    ExitStatus, Global,
    output::{self, Format},
};

const POLL: Duration = Duration::from_secs(1);

/// Exit status when a person must act: resume, approve or start.
const NEEDS_A_PERSON: u8 = 3;
/// Exit status when the rollout ended without completing.
const DID_NOT_COMPLETE: u8 = 4;

pub async fn run(client: &Client, id: &str, g: &Global) -> anyhow::Result<()> {
    let mut rollout = client.rollout(id).await?;
    if !settled(&rollout) {
        let bars = Bars::new(&rollout)?;
        while !settled(&rollout) {
            bars.draw(&rollout);
            tokio::time::sleep(POLL).await;
            rollout = client.rollout(id).await?;
        }
        bars.draw(&rollout);
        bars.finish();
    }
    report(&rollout, g)
}

/// Whether watching is over: nothing more will happen, or nothing until a person acts.
fn settled(rollout: &Rollout) -> bool {
    rollout.state.is_final() || matches!(rollout.state, RolloutState::Paused | RolloutState::Draft)
}

/// The state line and a bar per wave (plus one for rollbacks once there are any), on stderr.
struct Bars {
    multi: MultiProgress,
    status: ProgressBar,
    waves: Vec<ProgressBar>,
    rollback: std::cell::OnceCell<ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new(rollout: &Rollout) -> anyhow::Result<Self> {
        let multi = MultiProgress::new();
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")?);
        status.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template("  {prefix:>8} [{bar:30}] {pos}/{len}  {msg}")?.progress_chars("=> ");
        let waves = rollout
            .progress
            .waves
            .iter()
            .map(|w| {
                let bar = multi.add(ProgressBar::new(w.devices).with_style(style.clone()));
                bar.set_prefix(format!("wave {}", w.wave));
                bar
            })
            .collect();
        Ok(Self { multi, status, waves, rollback: std::cell::OnceCell::new(), style })
    }

    fn draw(&self, rollout: &Rollout) {
        let p = &rollout.progress;
        self.status.set_message(format!(
            "{} · wave {} of {} · {}/{} finished · {} of {} executed failed",
            state_text(rollout),
            rollout.current_wave,
            p.waves.len(),
            finished(&p.states),
            p.devices,
            p.failed,
            p.executed
        ));
        for (bar, wave) in self.waves.iter().zip(&p.waves) {
            bar.set_position(finished(&wave.states));
            bar.set_message(outcomes(&wave.states));
        }
        if !p.rollback.is_empty() {
            let bar = self.rollback.get_or_init(|| {
                let bar = self.multi.add(ProgressBar::new(0).with_style(self.style.clone()));
                bar.set_prefix("rollback");
                bar
            });
            bar.set_length(p.rollback.values().sum());
            bar.set_position(finished(&p.rollback));
            bar.set_message(outcomes(&p.rollback));
        }
    }

    /// Stops the spinner and leaves the last picture on the terminal.
    fn finish(&self) {
        self.status.finish();
        self.waves.iter().chain(self.rollback.get()).for_each(ProgressBar::finish);
    }
}

/// Counts by outcome, e.g. `3 succeeded · 1 failed · 2 in flight · 4 queued`.
fn outcomes(states: &StateCounts) -> String {
    let count = |f: fn(ExecutionState) -> bool| states.iter().filter(|(s, _)| f(**s)).map(|(_, n)| n).sum::<u64>();
    let parts = [
        (count(ExecutionState::is_success), "succeeded"),
        (count(ExecutionState::is_failure), "failed"),
        (count(ExecutionState::is_in_flight), "in flight"),
        (count(|s| s == ExecutionState::Queued), "queued"),
        (count(|s| matches!(s, ExecutionState::Canceled | ExecutionState::Superseded)), "canceled"),
    ];
    let shown: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    shown.join(" · ")
}

/// Prints how the rollout ended; fails with the exit status that says what happened.
fn report(rollout: &Rollout, g: &Global) -> anyhow::Result<()> {
    if g.output != Format::Table {
        output::structured(g.output, rollout)?;
    }
    let (id, p) = (&rollout.id, &rollout.progress);
    let failures = format!("{} of {} finished execution(s) failed", p.failed, p.executed);
    let (code, message) = match (rollout.state, rollout.paused_reason) {
        (RolloutState::Completed, _) => {
            if g.output == Format::Table {
                let succeeded: u64 = p.states.iter().filter(|(s, _)| s.is_success()).map(|(_, n)| n).sum();
                println!("Rollout {id} COMPLETED: {succeeded} of {} device(s) succeeded; {failures}", p.devices);
            }
            return Ok(());
        }
        (RolloutState::Paused, Some(PauseReason::Approval)) => (
            NEEDS_A_PERSON,
            format!(
                "rollout {id} is PAUSED for approval: wave {} met its success gate; approve the next with \
                 `baton rollouts resume {id}`",
                rollout.current_wave
            ),
        ),
        (RolloutState::Paused, Some(PauseReason::FailureGate)) => (
            NEEDS_A_PERSON,
            format!(
                "rollout {id} is PAUSED by its failure gate: {failures}; see `baton rollouts executions {id} \
                 --state failed`, then resume or cancel it"
            ),
        ),
        (RolloutState::Paused, _) => {
            (NEEDS_A_PERSON, format!("rollout {id} is PAUSED by a person; go on with `baton rollouts resume {id}`"))
        }
        (RolloutState::Draft, _) => {
            (NEEDS_A_PERSON, format!("rollout {id} is a DRAFT: nothing happens until `baton rollouts start {id}`"))
        }
        (RolloutState::Aborted, _) => (
            DID_NOT_COMPLETE,
            format!("rollout {id} was ABORTED by its failure gate ({failures}); unfinished executions were canceled"),
        ),
        (RolloutState::RolledBack, _) => (
            DID_NOT_COMPLETE,
            format!("rollout {id} was ROLLED_BACK by its failure gate ({failures}); devices got the previous version"),
        ),
        (state, _) => (DID_NOT_COMPLETE, format!("rollout {id} was {}; {failures}", state.as_str())),
    };
    Err(ExitStatus { code, message }.into())
}
