//! The rollouts page: every rollout with its state, its progress by execution state, its wave
//! and what is left, newest first and filtered by state. Rollout pages follow the tenant's
//! rollout changes through a console stream of their own ([`stream`]): the API's event stream
//! carries device events, not `RolloutChanged`. One rollout's page is [`super::rollout`];
//! making one, [`super::rollout_new`].

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response, sse::Event},
};
use baton_proto::api::rollouts::{ExecutionState, PauseReason, Rollout, RolloutQuery, RolloutState, StateCounts};
use serde::Deserialize;

use super::{
    human,
    session::{Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState, web::sse};
use baton_core::{access::Permission, bus::Message, rollouts};

/// Execution states in the order a bar shows them: done well, done badly, stopped, then from
/// nearly done back to waiting.
const ORDER: [ExecutionState; 16] = [
    ExecutionState::Succeeded,
    ExecutionState::AlreadyInstalled,
    ExecutionState::Failed,
    ExecutionState::TimedOut,
    ExecutionState::Rejected,
    ExecutionState::RolledBack,
    ExecutionState::Canceled,
    ExecutionState::Superseded,
    ExecutionState::Verifying,
    ExecutionState::Rebooting,
    ExecutionState::Installing,
    ExecutionState::AwaitingWindow,
    ExecutionState::Downloaded,
    ExecutionState::Downloading,
    ExecutionState::Notified,
    ExecutionState::Queued,
];

/// Executions by state as `progress.html` draws them.
pub(super) struct Bar {
    pub total: u64,
    pub finished: u64,
    /// (state, count, percent of the total) for the states present, in [`ORDER`].
    pub parts: Vec<(&'static str, u64, f64)>,
}

impl Bar {
    pub(super) fn of(counts: &StateCounts) -> Bar {
        let total: u64 = counts.values().sum();
        let whole = total.max(1) as f64;
        let parts = ORDER
            .iter()
            .filter_map(|s| {
                let n = *counts.get(s)?;
                (n > 0).then(|| (s.as_str(), n, (n as f64 * 1000.0 / whole).round() / 10.0))
            })
            .collect();
        let finished = counts.iter().filter(|(s, _)| s.is_final()).map(|(_, n)| n).sum();
        Bar { total, finished, parts }
    }
}

/// Why a rollout is paused, in words.
fn paused_because(reason: Option<PauseReason>) -> Option<&'static str> {
    Some(match reason? {
        PauseReason::Manual => "paused by a person",
        PauseReason::FailureGate => "stopped by its failure gate",
        PauseReason::Approval => "waiting for approval of the next wave",
    })
}

/// A rollout as the list shows it.
pub(super) struct Line {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub artifact: String,
    pub bar: Bar,
    /// The current wave (from 1) and how many there are.
    pub wave: u32,
    pub waves: u32,
    pub eta: Option<String>,
    pub at: String,
}

impl From<&Rollout> for Line {
    fn from(r: &Rollout) -> Self {
        let waves = u32::try_from(r.progress.waves.len()).unwrap_or(u32::MAX).max(1);
        Line {
            id: r.id.clone(),
            name: r.name.clone(),
            state: r.state.as_str(),
            reason: paused_because(r.paused_reason),
            artifact: format!("{}@{}", r.artifact.name, r.artifact.version),
            bar: Bar::of(&r.progress.states),
            wave: r.current_wave.clamp(1, waves),
            waves,
            // Only while it moves: a draft's or a finished rollout's estimate would mislead.
            eta: r
                .progress
                .eta_secs
                .filter(|_| !(r.state.is_final() || r.state == RolloutState::Draft))
                .map(human::about),
            at: r.created_at.to_rfc3339(),
        }
    }
}

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    rollouts: Vec<Line>,
    state: String,
    states: [RolloutState; 8],
    self_url: String,
    next_url: Option<String>,
    can_create: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ListView {
    /// Only rollouts in this state.
    state: String,
    cursor: String,
}

/// `/rollouts`.
pub(super) async fn page(
    Page(user, _): Page<perm::RolloutsRead>,
    State(app): State<AppState>,
    Query(view): Query<ListView>,
) -> Result<Response, Error> {
    let state = match view.state.as_str() {
        "" => None,
        s => Some(
            RolloutState::parse(s)
                .ok_or_else(|| baton_core::Error::invalid("/state", format!("`{s}` is no rollout state")))?,
        ),
    };
    let query = RolloutQuery { state, limit: Some(25), cursor: Some(view.cursor.clone()).filter(|c| !c.is_empty()) };
    let page = rollouts::list(&app.db, &user.principal.scope, &query).await?;
    let base = format!("/rollouts?state={}", view.state);
    let csrf = user.csrf.clone();
    Ok(render(RolloutsPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "rollouts",
        rollouts: page.items.iter().map(Line::from).collect(),
        state: view.state.clone(),
        states: RolloutState::ALL,
        next_url: page.next_cursor.map(|c| format!("{base}&cursor={c}")),
        self_url: if view.cursor.is_empty() { base } else { format!("{base}&cursor={}", view.cursor) },
        can_create: user.principal.can(Permission::RolloutsWrite),
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StreamQuery {
    /// Only this rollout's changes; empty: all of the tenant's.
    rollout: String,
}

/// `/console/rollouts/stream`: Server-Sent Events `rollout` (data: the rollout's id) whenever
/// one of the tenant's rollouts moves, for the pages to refresh their live part. Console-only:
/// the session cookie, not a token.
pub(super) async fn stream(
    Page(user, _): Page<perm::RolloutsRead>,
    State(app): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, Error> {
    let only = Some(q.rollout).filter(|r| !r.is_empty());
    if let Some(id) = &only {
        rollouts::get(&app.db, &user.principal.scope, id).await?;
    }
    let tenant = user.principal.scope.id().to_owned();
    let events = sse::from_bus(app.bus.subscribe(), app.shutdown.subscribe(), move |m| match m {
        Message::RolloutChanged { tenant: t, rollout_id }
            if *t == tenant && only.as_ref().is_none_or(|o| o == rollout_id) =>
        {
            Some(Event::default().event("rollout").data(rollout_id.as_str()))
        }
        _ => None,
    });
    Ok(events.into_response())
}
