//! `baton rollouts …`: take an artifact to devices in waves ([`create`]), follow a rollout
//! ([`watch`] draws its waves live), read it and its executions, and steer it — start, pause,
//! resume (which also approves the next wave), cancel, delete. This file holds the command tree,
//! the reads and the steering, and how rollouts and executions print.

mod create;
mod values;
mod watch;

use baton_client::Client;
use baton_proto::api::rollouts::{
    Execution, ExecutionAction, ExecutionQuery, ExecutionState, FailureGate, GateAction, PauseReason, Rollout,
    RolloutQuery, RolloutState, StateCounts, SuccessGate,
};
use comfy_table::{Table, presets::NOTHING};

use super::{
    Global,
    access::done,
    output::{self, Format, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum RolloutsCommand {
    /// Make a rollout of an artifact to groups, labelled devices or named devices; it starts at
    /// once unless --draft.
    Create(Box<create::CreateArgs>),
    /// List rollouts, newest first.
    List {
        /// DRAFT, RUNNING, PAUSED, COMPLETED, ABORTED, CANCELED, ROLLING_BACK or ROLLED_BACK.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show a rollout: its state, its waves' devices by state, failures and rollbacks.
    Get { id: String },
    /// List a rollout's executions (one per device, one more per device rolled back).
    Executions {
        id: String,
        /// Only executions in this state, e.g. FAILED or QUEUED.
        #[arg(long)]
        state: Option<String>,
        /// Only executions of this wave (from 1).
        #[arg(long)]
        wave: Option<u32>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Start a draft.
    Start { id: String },
    /// Pause a running rollout: no more devices are notified.
    Pause { id: String },
    /// Resume a paused rollout; for one paused for approval, this approves the next wave.
    Resume { id: String },
    /// Cancel a rollout: executions not finished are canceled.
    Cancel { id: String },
    /// Delete a draft or a rollout that is over.
    Delete { id: String },
    /// Follow a rollout live until it is over or paused. Exit status: 0 completed; 3 paused or a
    /// draft (a person must act); 4 aborted, canceled or rolled back.
    Watch { id: String },
}

pub async fn run(cmd: RolloutsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        RolloutsCommand::Create(args) => create::run(*args, client, g).await,
        RolloutsCommand::List { state, limit } => {
            let state = state.as_deref().map(rollout_state).transpose()?;
            let page = client.rollouts(&RolloutQuery { state, limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        RolloutsCommand::Get { id } => show(g.output, &client.rollout(&id).await?),
        RolloutsCommand::Executions { id, state, wave, limit } => {
            let state = state.as_deref().map(execution_state).transpose()?;
            let query = ExecutionQuery { state, wave, limit: Some(limit), cursor: None };
            let page = client.rollout_executions(&id, &query).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        RolloutsCommand::Start { id } => steer(client, &id, "start", g).await,
        RolloutsCommand::Pause { id } => steer(client, &id, "pause", g).await,
        RolloutsCommand::Resume { id } => steer(client, &id, "resume", g).await,
        RolloutsCommand::Cancel { id } => steer(client, &id, "cancel", g).await,
        RolloutsCommand::Delete { id } => {
            client.delete_rollout(&id).await?;
            done(g.output, &format!("deleted rollout {id}"))
        }
        RolloutsCommand::Watch { id } => watch::run(client, &id, g).await,
    }
}

/// Sends `action` and prints the state the rollout is in after it.
async fn steer(client: &Client, id: &str, action: &str, g: &Global) -> anyhow::Result<()> {
    let rollout = client.steer_rollout(id, action).await?;
    match g.output {
        Format::Table => {
            println!("Rollout {} is {}", rollout.id, state_text(&rollout));
            Ok(())
        }
        f => output::structured(f, &rollout),
    }
}

/// The rollout for people (facts, then a table of its waves), or as JSON / YAML.
pub fn show(format: Format, rollout: &Rollout) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::structured(format, rollout);
    }
    let p = &rollout.progress;
    let mut facts = vec![
        ("ID", rollout.id.clone()),
        ("NAME", rollout.name.clone()),
        ("ARTIFACT", format!("{}@{}", rollout.artifact.name, rollout.artifact.version)),
        ("STATE", state_text(rollout)),
        ("WAVE", format!("{} of {}", rollout.current_wave, p.waves.len())),
        ("DEVICES", format!("{} ({} finished)", p.devices, finished(&p.states))),
        ("FAILED", format!("{} of {} executed", p.failed, p.executed)),
        ("NEXT WAVE", next_wave(&rollout.success_gate)),
        ("STOPS", stops(&rollout.failure_gate)),
    ];
    if let Some(secs) = p.eta_secs {
        let speed = match (p.bandwidth_bytes_per_sec, p.eta_device_speed_needed, p.eta_download_secs) {
            (Some(b), _, _) => format!("at the {:.1} MB/s devices report", b as f64 / 1e6),
            (None, Some(needed), _) => {
                format!("if each device downloads at {:.1} MB/s or more; none has reported yet", needed as f64 / 1e6)
            }
            (None, None, None) => "downloads not counted: no device has reported its speed yet".to_owned(),
            (None, None, Some(_)) => "no download left".to_owned(),
        };
        let bound = p.eta_bound.map_or(String::new(), |b| format!("; bound by {}", b.describe()));
        facts.push(("TIME LEFT", format!("about {} ({speed}{bound})", in_words(secs))));
    }
    if rollout.left_out > 0 {
        facts.push(("LEFT OUT", format!("{} devices the artifact is not for", rollout.left_out)));
    }
    if let Some(back) = &rollout.rollback_artifact {
        facts.push(("ROLLBACK TO", format!("{}@{}", back.name, back.version)));
    }
    if !p.rollback.is_empty() {
        facts.push(("ROLLED BACK", counts(&p.rollback)));
    }
    facts.push(("CREATED", format!("{} by {}", ago(Some(rollout.created_at)), or_dash(&rollout.created_by))));
    let mut table = Table::new();
    table.load_preset(NOTHING);
    for (name, value) in facts {
        table.add_row(vec![format!("{name}:"), value]);
    }
    println!("{table}\n\n{}", waves(rollout));
    Ok(())
}

/// One row per wave: its devices, their count in every state any wave has, and how many finished.
fn waves(rollout: &Rollout) -> Table {
    let waves = &rollout.progress.waves;
    let states: Vec<ExecutionState> = ExecutionState::ALL
        .into_iter()
        .filter(|s| waves.iter().any(|w| w.states.get(s).is_some_and(|n| *n > 0)))
        .collect();
    let mut header = vec!["WAVE".to_owned(), "DEVICES".to_owned()];
    header.extend(states.iter().map(|s| s.as_str().to_owned()));
    header.push("FINISHED".to_owned());
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(header);
    let live = matches!(rollout.state, RolloutState::Running | RolloutState::Paused);
    for w in waves {
        let now = if live && w.wave == rollout.current_wave { " (now)" } else { "" };
        let mut row = vec![format!("{}{now}", w.wave), w.devices.to_string()];
        row.extend(states.iter().map(|s| w.states.get(s).copied().unwrap_or(0).to_string()));
        row.push(finished(&w.states).to_string());
        table.add_row(row);
    }
    table
}

/// The success gate in words, e.g. `at 100% succeeded, after 10m, with approval`.
fn next_wave(gate: &SuccessGate) -> String {
    let mut text = format!("at {}% succeeded", gate.percent);
    if gate.bake_secs > 0 {
        text += &format!(", after {}", duration(gate.bake_secs));
    }
    if gate.approval {
        text += ", with approval";
    }
    text
}

/// A duration the way people say it: `40 s`, `12 min`, `3 h 5 min`.
fn in_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// The failure gate in words, e.g. `at 20% failed or 3 failed, once 5 executed: PAUSE`.
fn stops(gate: &FailureGate) -> String {
    let share = gate.failed_percent.map(|p| format!("{p}% failed"));
    let limits: Vec<String> = share.into_iter().chain(gate.failed_count.map(|n| format!("{n} failed"))).collect();
    if limits.is_empty() {
        return "never by itself".into();
    }
    let action = match gate.action {
        GateAction::Pause => "PAUSE",
        GateAction::Abort => "ABORT",
        GateAction::Rollback => "ROLLBACK",
    };
    format!("at {}, once {} executed: {action}", limits.join(" or "), gate.min_executed)
}

/// Seconds in the largest unit that divides them: `90s`, `10m`, `2h`.
fn duration(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The state, and why when paused, e.g. `PAUSED (approval)`.
pub fn state_text(rollout: &Rollout) -> String {
    let state = rollout.state.as_str();
    match rollout.paused_reason.filter(|_| rollout.state == RolloutState::Paused) {
        Some(PauseReason::Manual) => format!("{state} (by a person)"),
        Some(PauseReason::FailureGate) => format!("{state} (failure gate)"),
        Some(PauseReason::Approval) => format!("{state} (waiting for approval: resume it to go on)"),
        None => state.to_owned(),
    }
}

/// Executions in a final state.
pub fn finished(states: &StateCounts) -> u64 {
    states.iter().filter(|(s, _)| s.is_final()).map(|(_, n)| n).sum()
}

/// Counts per state, e.g. `QUEUED=3 SUCCEEDED=7`.
fn counts(states: &StateCounts) -> String {
    let parts: Vec<String> =
        states.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{}={n}", s.as_str())).collect();
    parts.join(" ")
}

/// `failed`, `rolled-back` or `ROLLED_BACK` as a state name the API knows.
fn canonical(text: &str) -> String {
    text.trim().to_ascii_uppercase().replace('-', "_")
}

fn rollout_state(text: &str) -> anyhow::Result<RolloutState> {
    RolloutState::parse(&canonical(text)).ok_or_else(|| {
        let names: Vec<&str> = RolloutState::ALL.iter().map(|s| s.as_str()).collect();
        anyhow::anyhow!("`{text}` is not a rollout state: use one of {}", names.join(", "))
    })
}

fn execution_state(text: &str) -> anyhow::Result<ExecutionState> {
    ExecutionState::parse(&canonical(text)).ok_or_else(|| {
        let names: Vec<&str> = ExecutionState::ALL.iter().map(|s| s.as_str()).collect();
        anyhow::anyhow!("`{text}` is not an execution state: use one of {}", names.join(", "))
    })
}

impl Tabular for Rollout {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "ARTIFACT", "STATE", "WAVE", "FINISHED", "FAILED", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        let p = &self.progress;
        vec![
            self.id.clone(),
            self.name.clone(),
            format!("{}@{}", self.artifact.name, self.artifact.version),
            state_text(self),
            format!("{}/{}", self.current_wave, p.waves.len()),
            format!("{}/{}", finished(&p.states), p.devices),
            format!("{}/{}", p.failed, p.executed),
            ago(Some(self.created_at)),
        ]
    }
}

impl Tabular for Execution {
    fn headers() -> &'static [&'static str] {
        &["DEVICE", "DEVICE ID", "WAVE", "ACTION", "STATE", "ATTEMPT", "INSTALLED", "FAILURE", "DETAIL", "UPDATED"]
    }
    fn row(&self) -> Vec<String> {
        let action = match self.action {
            ExecutionAction::Install => "install",
            ExecutionAction::Rollback => "rollback",
        };
        vec![
            self.device_name.clone(),
            self.device_id.clone(),
            self.wave.to_string(),
            action.to_owned(),
            self.state.as_str().to_owned(),
            self.attempt.to_string(),
            or_dash(&self.installed_version),
            or_dash(&self.failure_class.map(|c| c.as_str().to_owned())),
            or_dash(&self.detail),
            ago(Some(self.updated_at)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_filters_are_read_in_any_case_and_a_wrong_one_names_the_choices() {
        assert_eq!(execution_state("failed").ok(), Some(ExecutionState::Failed));
        assert_eq!(execution_state("timed-out").ok(), Some(ExecutionState::TimedOut));
        assert_eq!(rollout_state("Rolled_Back").ok(), Some(RolloutState::RolledBack));
        let wrong = execution_state("broken").expect_err("not a state").to_string();
        assert!(wrong.starts_with("`broken` is not an execution state") && wrong.contains("QUEUED"), "{wrong}");
    }

    #[test]
    fn gates_read_as_sentences() {
        let success = SuccessGate { percent: 95.0, bake_secs: 600, approval: true };
        assert_eq!(next_wave(&success), "at 95% succeeded, after 10m, with approval");
        let failure =
            FailureGate { failed_count: Some(3), min_executed: 5, action: GateAction::Rollback, ..Default::default() };
        assert_eq!(stops(&failure), "at 20% failed or 3 failed, once 5 executed: ROLLBACK");
        assert_eq!(duration(90), "90s");
    }
}
